//! BIND's key file format, as `dnssec-keygen` and `ldns-keygen` write it: a key pair is
//! `K<zone>.+<alg>+<tag>.key` (the DNSKEY record in zone file syntax) and `.private` beside it
//! (`Field: value` lines).
//!
//! Only the text is handled here; `keys` checks what it means (algorithms, lengths, that the
//! halves belong together).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;

use crate::zone::Name;

/// The DNSKEY record of a `.key` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PublicFile {
    pub owner: Name,
    pub ttl: Option<u32>,
    pub flags: u16,
    pub protocol: u8,
    pub algorithm: u8,
    pub public_key: Vec<u8>,
    /// The line the record starts on.
    pub line: usize,
}

/// What a `.private` file says that we use; other fields (dates, BIND's own) are skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PrivateFile {
    pub algorithm: u8,
    pub private_key: Vec<u8>,
}

/// A problem in a key file: the line when there is one, and what is wrong.
pub(super) type Bad = (Option<usize>, String);

/// Algorithm mnemonics (RFC 8624's table), for messages and for `.key` files that write a
/// mnemonic instead of the number.
const ALGORITHMS: [(u8, &str); 12] = [
    (1, "RSAMD5"),
    (3, "DSA"),
    (5, "RSASHA1"),
    (6, "NSEC3DSA"),
    (7, "RSASHA1NSEC3SHA1"),
    (8, "RSASHA256"),
    (10, "RSASHA512"),
    (12, "ECCGOST"),
    (13, "ECDSAP256SHA256"),
    (14, "ECDSAP384SHA384"),
    (15, "ED25519"),
    (16, "ED448"),
];

/// The mnemonic of a DNSSEC algorithm number, "unknown" if it has none.
pub fn algorithm_name(number: u8) -> &'static str {
    ALGORITHMS
        .iter()
        .find(|(n, _)| *n == number)
        .map_or("unknown", |(_, name)| name)
}

fn algorithm_number(text: &str) -> Option<u8> {
    text.parse().ok().or_else(|| {
        ALGORITHMS
            .iter()
            .find(|(_, name)| name.eq_ignore_ascii_case(text))
            .map(|(n, _)| *n)
    })
}

fn base64(text: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("`{text}` is not base64: {e}"))
}

pub(super) fn to_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Reads the one DNSKEY record of a `.key` file: `;` comments, an optional TTL and class, the
/// key possibly split over several words or, inside parentheses, several lines.
pub(super) fn parse_public(text: &str) -> Result<PublicFile, Bad> {
    // (line the record starts on, its words)
    let mut records: Vec<(usize, Vec<&str>)> = Vec::new();
    let mut open = false;
    for (i, line) in text.lines().enumerate() {
        // A record goes on past its line only inside parentheses.
        let continues = open;
        let code = line.split(';').next().unwrap_or_default();
        let mut words = Vec::new();
        for w in code.split_whitespace() {
            let mut w = w;
            if let Some(rest) = w.strip_prefix('(') {
                open = true;
                w = rest;
            }
            if let Some(rest) = w.strip_suffix(')') {
                open = false;
                w = rest;
            }
            if !w.is_empty() {
                words.push(w);
            }
        }
        match records.last_mut() {
            _ if words.is_empty() => {}
            Some((_, r)) if continues => r.extend(words),
            _ => records.push((i + 1, words)),
        }
    }
    if open {
        return Err((None, "a `(` is never closed".into()));
    }
    let (line, words) = match records.as_slice() {
        [one] => one,
        [] => return Err((None, "no DNSKEY record in it".into())),
        [_, (second, _), ..] => {
            return Err((
                Some(*second),
                "a second record: a key file holds one DNSKEY record".into(),
            ));
        }
    };
    let bad = |m: String| Err((Some(*line), m));
    let Some((owner_text, rest)) = words.split_first() else {
        return bad("an empty record".into());
    };
    let Some(owner) = Name::from_text(owner_text) else {
        return bad(format!("`{owner_text}` is not a domain name"));
    };
    let mut ttl = None;
    let mut rest = rest;
    loop {
        match rest.split_first() {
            Some((w, r)) if w.eq_ignore_ascii_case("DNSKEY") => {
                rest = r;
                break;
            }
            Some((w, r)) if w.eq_ignore_ascii_case("IN") => rest = r,
            Some((w, r)) if ttl.is_none() && w.bytes().all(|b| b.is_ascii_digit()) => {
                match w.parse() {
                    Ok(t) => ttl = Some(t),
                    Err(_) => return bad(format!("TTL `{w}` is too large")),
                }
                rest = r;
            }
            Some((w, _)) => {
                return bad(format!(
                    "`{w}`: expected `{owner_text} [TTL] IN DNSKEY flags 3 algorithm key`"
                ));
            }
            None => return bad("no DNSKEY in the record".into()),
        }
    }
    let [flags, protocol, algorithm, key @ ..] = rest else {
        return bad("expected `DNSKEY flags protocol algorithm key`".into());
    };
    let Ok(flags) = flags.parse() else {
        return bad(format!("flags `{flags}` are not a number from 0 to 65535"));
    };
    let Ok(protocol) = protocol.parse() else {
        return bad(format!("protocol `{protocol}` is not a number (it is 3)"));
    };
    let Some(algorithm) = algorithm_number(algorithm) else {
        return bad(format!("algorithm `{algorithm}` is not a number or name"));
    };
    if key.is_empty() {
        return bad("no public key after the algorithm".into());
    }
    let public_key = base64(&key.concat()).map_err(|m| (Some(*line), m))?;
    Ok(PublicFile {
        owner,
        ttl,
        flags,
        protocol,
        algorithm,
        public_key,
        line: *line,
    })
}

/// Reads a `.private` file: `Private-key-format: v1.x`, `Algorithm: 13 (ECDSAP256SHA256)` and
/// `PrivateKey: <base64>` are needed.
pub(super) fn parse_private(text: &str) -> Result<PrivateFile, Bad> {
    let mut format = None;
    let mut algorithm = None;
    let mut key = None;
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with(';') {
            continue;
        }
        let Some((field, value)) = line.split_once(':') else {
            return Err((Some(line_no), format!("`{line}` is not `Field: value`")));
        };
        let value = value.trim();
        match field.trim() {
            "Private-key-format" => format = Some((line_no, value)),
            "Algorithm" => {
                // "13 (ECDSAP256SHA256)": the number is what counts.
                let number = value.split_whitespace().next().unwrap_or_default();
                match number.parse::<u8>() {
                    Ok(n) => algorithm = Some(n),
                    Err(_) => {
                        return Err((
                            Some(line_no),
                            format!("Algorithm `{value}` does not start with a number"),
                        ));
                    }
                }
            }
            "PrivateKey" => key = Some(base64(value).map_err(|e| (Some(line_no), e))?),
            _ => {}
        }
    }
    match format {
        None => {
            return Err((
                None,
                "no `Private-key-format:` line: not a BIND private key file".into(),
            ));
        }
        Some((_, v)) if v.starts_with("v1.") => {}
        Some((line, v)) => {
            return Err((
                Some(line),
                format!("Private-key-format `{v}`: expected v1.2 or v1.3"),
            ));
        }
    }
    let Some(algorithm) = algorithm else {
        return Err((None, "no `Algorithm:` line".into()));
    };
    let Some(private_key) = key else {
        return Err((None, "no `PrivateKey:` line".into()));
    };
    Ok(PrivateFile {
        algorithm,
        private_key,
    })
}

/// What a `K<zone>.+<alg>+<tag>` file name says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FileName {
    pub owner: Name,
    pub algorithm: u8,
    pub tag: u16,
}

/// Reads a file stem in BIND's naming; None if it is not named that way (the operator may
/// name files as they like, and then the name says nothing to check).
pub(super) fn parse_file_name(stem: &str) -> Option<FileName> {
    let rest = stem.strip_prefix('K')?;
    // The zone ends with its dot: "example.com." then "+013+12345".
    let (zone, numbers) = rest.rsplit_once(".+")?;
    let (algorithm, tag) = numbers.split_once('+')?;
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(algorithm) || !all_digits(tag) {
        return None;
    }
    Some(FileName {
        owner: Name::from_text(if zone.is_empty() { "." } else { zone })?,
        algorithm: algorithm.parse().ok()?,
        tag: tag.parse().ok()?,
    })
}

/// `K<zone>+<alg:03>+<tag:05>`, the zone with its final dot ("Kexample.com.+013+04711"), or
/// None if the zone's name has a character that cannot be in a file name.
pub(super) fn file_stem(owner: &Name, algorithm: u8, tag: u16) -> Option<String> {
    let zone = owner.to_string();
    (!zone.contains(['/', '\\'])).then(|| format!("K{zone}+{algorithm:03}+{tag:05}"))
}

/// The dates written into new key files.
pub(super) struct Dates(String);

impl Dates {
    pub fn at(t: SystemTime) -> Dates {
        Dates(timestamp(t))
    }
}

/// The `.key` file of a new key.
pub(super) fn public_text(
    dnskey_line: &str,
    ksk: bool,
    tag: u16,
    owner: &Name,
    dates: &Dates,
) -> String {
    let role = if ksk { "key-signing" } else { "zone-signing" };
    let d = &dates.0;
    format!(
        "; This is a {role} key, keyid {tag}, for {owner}\n\
         ; Created: {d}\n; Publish: {d}\n; Activate: {d}\n\
         {dnskey_line}\n"
    )
}

/// The `.private` file of a new key.
pub(super) fn private_text(algorithm: u8, private_key: &[u8], dates: &Dates) -> String {
    let d = &dates.0;
    format!(
        "Private-key-format: v1.3\n\
         Algorithm: {algorithm} ({})\n\
         PrivateKey: {}\n\
         Created: {d}\nPublish: {d}\nActivate: {d}\n",
        algorithm_name(algorithm),
        to_base64(private_key),
    )
}

/// `YYYYMMDDHHMMSS` in UTC, as BIND writes key dates.
fn timestamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, s) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_date(days);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// The Gregorian date `days` after 1970-01-01. Counts in 400-year cycles (146097 days) from
/// 0000-03-01, so that the leap day is the last day of its year and needs no special case.
fn civil_date(days: u64) -> (u64, u64, u64) {
    const CYCLE: u64 = 146_097;
    let z = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let cycle = z / CYCLE;
    let day_of_cycle = z % CYCLE;
    // Years into the cycle: a year is 365 days, less a day each 4 years, plus one each 100,
    // less one in the 400th.
    let year_of_cycle = (day_of_cycle - day_of_cycle / 1460 + day_of_cycle / 36_524
        - day_of_cycle / (CYCLE - 1))
        / 365;
    let day_of_year =
        day_of_cycle - (365 * year_of_cycle + year_of_cycle / 4 - year_of_cycle / 100);
    // Months from March: 153 days per 5 months (31, 30, 31, 30, 31).
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = cycle * 400 + year_of_cycle + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn public_file_forms() {
        let one = parse_public(
            "; This is a key-signing key, keyid 42317, for example.com.\n\
             ; Created: 20261203204014 (Thu Dec  3 20:40:14 2026)\n\
             example.com. IN DNSKEY 257 3 13 yLpUJpvFtDYdrsw0dAwDCCxu2+nGdXBr87gx8LslW4cCqre1UudhlNEA bgECnLFvMpzKZNV6QDuIAjpQ4JNAVA==\n",
        )
        .unwrap();
        assert_eq!(one.owner, Name::from_text("example.com").unwrap());
        assert_eq!(
            (one.ttl, one.flags, one.protocol, one.algorithm, one.line),
            (None, 257, 3, 13, 3)
        );
        assert_eq!(one.public_key.len(), 64);

        let multi = parse_public(
            "Example.NET. 3600 IN DNSKEY 257 3 ECDSAP256SHA256 (\n  GojIhhXUN/u4v54ZQqGSnyhWJwaubCvTmeexv7bR6edb ; half\n  krSqQpF64cYbcB7wNcP+e+MAnLr+Wi9xMWyQLc8NAA== )\n",
        )
        .unwrap();
        assert_eq!(multi.owner, Name::from_text("example.net").unwrap());
        assert_eq!((multi.ttl, multi.algorithm), (Some(3600), 13));
        assert_eq!(multi.public_key.len(), 64);

        let (line, msg) =
            parse_public("a. IN DNSKEY 256 3 13 AAAA\nb. IN DNSKEY 256 3 13 AAAA\n").unwrap_err();
        assert_eq!(line, Some(2));
        assert!(msg.contains("second record"), "{msg}");
        assert!(
            parse_public("; only a comment\n")
                .unwrap_err()
                .1
                .contains("no DNSKEY")
        );
        assert!(
            parse_public("a. IN DNSKEY 256 3 13 !!!\n")
                .unwrap_err()
                .1
                .contains("not base64")
        );
        assert!(
            parse_public("a. IN DNSKEY x 3 13 AAAA\n")
                .unwrap_err()
                .1
                .contains("flags")
        );
        assert!(
            parse_public("a. CH DNSKEY 256 3 13 AAAA\n")
                .unwrap_err()
                .1
                .contains("`CH`")
        );
        assert!(
            parse_public("a. IN DNSKEY 256 3 13 (AAAA\n")
                .unwrap_err()
                .1
                .contains("never closed")
        );
    }

    #[test]
    fn private_file_forms() {
        let p = parse_private(
            "Private-key-format: v1.3\nAlgorithm: 15 (ED25519)\nPrivateKey: ODIyNjAzODQ2MjgwODAxMjI2NDUxOTAyMDQxNDIyNjI=\nCreated: 20261203204014\n",
        )
        .unwrap();
        assert_eq!(p.algorithm, 15);
        assert_eq!(p.private_key, b"82260384628080122645190204142262");
        let err = |t: &str| parse_private(t).unwrap_err();
        assert!(
            err("Algorithm: 13\nPrivateKey: AAAA\n")
                .1
                .contains("Private-key-format")
        );
        assert_eq!(
            err("Private-key-format: v2.0\nAlgorithm: 13\nPrivateKey: AAAA\n").0,
            Some(1)
        );
        assert!(
            err("Private-key-format: v1.3\nPrivateKey: AAAA\n")
                .1
                .contains("Algorithm")
        );
        assert!(
            err("Private-key-format: v1.3\nAlgorithm: 13\n")
                .1
                .contains("PrivateKey")
        );
        assert_eq!(err("Private-key-format: v1.3\nAlgorithm: x\n").0, Some(2));
        assert_eq!(err("Private-key-format: v1.3\njunk\n").0, Some(2));
    }

    #[test]
    fn file_names() {
        let n = parse_file_name("Kexample.com.+013+04711").unwrap();
        assert_eq!(n.owner, Name::from_text("example.com").unwrap());
        assert_eq!((n.algorithm, n.tag), (13, 4711));
        assert_eq!(
            parse_file_name("K.+015+00001").unwrap().owner.wire(),
            Name::ROOT
        );
        assert_eq!(parse_file_name("zsk-2026"), None);
        assert_eq!(parse_file_name("Kexample.com.+013+x"), None);
        let owner = Name::from_text("Example.com").unwrap();
        assert_eq!(
            file_stem(&owner, 13, 4711).unwrap(),
            "Kexample.com.+013+04711"
        );
        assert_eq!(
            file_stem(&Name::from_text(".").unwrap(), 15, 1).unwrap(),
            "K.+015+00001"
        );
        assert_eq!(file_stem(&Name::from_text("a/b.com").unwrap(), 13, 1), None);
    }

    #[test]
    fn dates_in_utc() {
        let at = |s: u64| timestamp(UNIX_EPOCH + Duration::from_secs(s));
        // `date -u -d @N +%Y%m%d%H%M%S`
        assert_eq!(at(0), "19700101000000");
        assert_eq!(at(951_825_599), "20000229115959");
        assert_eq!(at(1_709_251_199), "20240229235959");
        assert_eq!(at(1_709_251_200), "20240301000000");
        assert_eq!(at(4_107_542_400), "21000301000000");
        assert_eq!(at(1_798_761_599), "20261231235959");
    }
}
