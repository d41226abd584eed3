//! TSIG (RFC 8945): checking a signed request and signing the responses to it (zone
//! transfers), and signing a request and checking the response to it (NOTIFY, which we send).
//! HMAC (RFC 2104) is a few lines over `sha2`, which we
//! already depend on; the `hmac` crate in the registry pairs with an older `sha2`.

use sha2::{Digest, Sha256, Sha512};

use crate::config::{TsigAlgorithm, TsigKey};

pub const CLASS_ANY: u16 = 255;
/// TSIG error codes (RFC 8945 3), carried in the record; the header rcode is NOTAUTH.
pub const BADSIG: u16 = 16;
pub const BADKEY: u16 = 17;
pub const BADTIME: u16 = 18;
pub const RCODE_NOTAUTH: u16 = 9;

fn hmac<D: Digest>(key: &[u8], block: usize, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = if key.len() > block {
        D::digest(key).to_vec()
    } else {
        key.to_vec()
    };
    k.resize(block, 0);
    let mut inner = D::new();
    inner.update(k.iter().map(|b| b ^ 0x36).collect::<Vec<u8>>());
    for p in parts {
        inner.update(p);
    }
    let ih = inner.finalize();
    let mut outer = D::new();
    outer.update(k.iter().map(|b| b ^ 0x5c).collect::<Vec<u8>>());
    outer.update(ih);
    outer.finalize().to_vec()
}

pub fn mac(key: &TsigKey, parts: &[&[u8]]) -> Vec<u8> {
    match key.algorithm {
        TsigAlgorithm::HmacSha256 => hmac::<Sha256>(&key.secret, 64, parts),
        TsigAlgorithm::HmacSha512 => hmac::<Sha512>(&key.secret, 128, parts),
    }
}

/// Compares MACs without an early exit, so timing does not reveal how much matched.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads a possibly compressed name into lower-case uncompressed wire form. Pointers must point
/// backwards, so a loop cannot form; the name is capped at 255 bytes.
pub fn read_name(pkt: &[u8], mut at: usize) -> Option<(Vec<u8>, usize)> {
    let mut name = Vec::new();
    let mut end = None;
    loop {
        let len = *pkt.get(at)? as usize;
        match len & 0xC0 {
            0x00 => {
                name.push(len as u8);
                if len == 0 {
                    return Some((name, end.unwrap_or(at + 1)));
                }
                let label = pkt.get(at + 1..at + 1 + len)?;
                name.extend(label.iter().map(u8::to_ascii_lowercase));
                if name.len() > 255 {
                    return None;
                }
                at += 1 + len;
            }
            0xC0 => {
                let target = (u16::from_be_bytes([pkt[at], *pkt.get(at + 1)?]) & 0x3FFF) as usize;
                if target >= at {
                    return None;
                }
                end.get_or_insert(at + 2);
                at = target;
            }
            _ => return None,
        }
    }
}

/// Lower-case wire form of a dotted name ("xfr-key" -> \x07xfr-key\x00).
pub fn wire_name(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in text
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(label.len() as u8);
        out.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
    }
    out.push(0);
    out
}

/// A TSIG record as received.
#[derive(Debug)]
pub struct Record<'a> {
    pub key_name: Vec<u8>,
    pub algorithm: Vec<u8>,
    pub time_signed: u64,
    pub fudge: u16,
    pub mac: &'a [u8],
    pub original_id: u16,
    pub error: u16,
    pub other: &'a [u8],
}

/// Parses the TSIG record at `at` (the query parser checked that it is the last record).
pub fn parse(pkt: &[u8], at: usize) -> Option<Record<'_>> {
    let (key_name, end) = read_name(pkt, at)?;
    let be16 = |o: usize| Some(u16::from_be_bytes([*pkt.get(o)?, *pkt.get(o + 1)?]));
    let rdlen = be16(end + 8)? as usize;
    let rd_start = end + 10;
    let rd_end = rd_start.checked_add(rdlen)?;
    if rd_end != pkt.len() || be16(end + 2)? != CLASS_ANY {
        return None;
    }
    let (algorithm, mut o) = read_name(pkt, rd_start)?;
    let t = pkt.get(o..o + 6)?;
    let time_signed = t.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    let fudge = be16(o + 6)?;
    let mac_len = be16(o + 8)? as usize;
    o += 10;
    let mac = pkt.get(o..o + mac_len)?;
    o += mac_len;
    let original_id = be16(o)?;
    let error = be16(o + 2)?;
    let other_len = be16(o + 4)? as usize;
    let other = pkt.get(o + 6..o + 6 + other_len)?;
    if o + 6 + other_len != rd_end {
        return None;
    }
    Some(Record {
        key_name,
        algorithm,
        time_signed,
        fudge,
        mac,
        original_id,
        error,
        other,
    })
}

fn put48(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes()[2..]);
}

/// Why a signed request is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Unknown key or algorithm: the answer carries an unsigned TSIG with BADKEY.
    BadKey,
    /// Wrong MAC: unsigned TSIG with BADSIG.
    BadSig,
    /// Outside the time window: signed TSIG with BADTIME and our time.
    BadTime,
}

/// Checks a request's TSIG (at `at`) against our key at `now` (Unix seconds).
pub fn verify(
    pkt: &[u8],
    at: usize,
    rec: &Record<'_>,
    key: &TsigKey,
    now: u64,
) -> Result<(), Failure> {
    verify_signed(pkt, at, rec, key, None, now)
}

/// Checks the TSIG of a response to a request we signed with `request_mac` (RFC 8945 4.3.1:
/// the response's MAC covers the request's).
pub fn verify_response(
    pkt: &[u8],
    at: usize,
    rec: &Record<'_>,
    key: &TsigKey,
    request_mac: &[u8],
    now: u64,
) -> Result<(), Failure> {
    verify_signed(pkt, at, rec, key, Some(request_mac), now)
}

/// A request (`prior` None) or a response to the request whose MAC is `prior`.
fn verify_signed(
    pkt: &[u8],
    at: usize,
    rec: &Record<'_>,
    key: &TsigKey,
    prior: Option<&[u8]>,
    now: u64,
) -> Result<(), Failure> {
    if rec.key_name != wire_name(&key.name) || rec.algorithm != wire_name(key.algorithm.name()) {
        return Err(Failure::BadKey);
    }
    // The message as it was before signing: TSIG removed, ARCOUNT one less, original ID.
    let mut msg = pkt[..at].to_vec();
    msg[..2].copy_from_slice(&rec.original_id.to_be_bytes());
    let ar = u16::from_be_bytes([msg[10], msg[11]]).saturating_sub(1);
    msg[10..12].copy_from_slice(&ar.to_be_bytes());
    let vars = variables(key, rec.time_signed, rec.fudge, rec.error, rec.other);
    let want = match prior {
        None => mac(key, &[&msg, &vars]),
        Some(p) => mac(key, &[&(p.len() as u16).to_be_bytes(), p, &msg, &vars]),
    };
    if !same(&want, rec.mac) {
        return Err(Failure::BadSig);
    }
    if now.abs_diff(rec.time_signed) > u64::from(rec.fudge) {
        return Err(Failure::BadTime);
    }
    Ok(())
}

/// Signs a request we send (a NOTIFY) in place at `now` (Unix seconds), and returns its MAC,
/// which the response's signature covers ([`verify_response`]).
pub fn sign_request(msg: &mut Vec<u8>, key: &TsigKey, now: u64) -> Vec<u8> {
    let vars = variables(key, now, FUDGE, 0, &[]);
    let m = mac(key, &[msg, &vars]);
    let fields = Fields {
        time_signed: now,
        mac: &m,
        error: 0,
        other: &[],
    };
    append(msg, key, &fields);
    m
}

/// The "TSIG variables" of RFC 8945 4.3.3.
fn variables(key: &TsigKey, time_signed: u64, fudge: u16, error: u16, other: &[u8]) -> Vec<u8> {
    let mut v = wire_name(&key.name);
    v.extend_from_slice(&CLASS_ANY.to_be_bytes());
    v.extend_from_slice(&0u32.to_be_bytes());
    v.extend_from_slice(&wire_name(key.algorithm.name()));
    put48(&mut v, time_signed);
    v.extend_from_slice(&fudge.to_be_bytes());
    v.extend_from_slice(&error.to_be_bytes());
    v.extend_from_slice(&(other.len() as u16).to_be_bytes());
    v.extend_from_slice(other);
    v
}

/// The RDATA fields that differ between the TSIG records we send: the key gives the owner
/// name and the algorithm, and the fudge is always [`FUDGE`].
struct Fields<'a> {
    time_signed: u64,
    /// Empty in an unsigned error record.
    mac: &'a [u8],
    error: u16,
    other: &'a [u8],
}

/// Appends a TSIG record to a finished response and bumps its ARCOUNT.
fn append(msg: &mut Vec<u8>, key: &TsigKey, fields: &Fields<'_>) {
    let (name, alg) = (wire_name(&key.name), wire_name(key.algorithm.name()));
    append_named(msg, &name, &alg, fields);
}

/// [`append`] with the key name and algorithm given as wire names.
fn append_named(msg: &mut Vec<u8>, name: &[u8], alg: &[u8], fields: &Fields<'_>) {
    let Fields {
        time_signed,
        mac,
        error,
        other,
    } = *fields;
    let id = [msg[0], msg[1]];
    msg.extend_from_slice(name);
    msg.extend_from_slice(&crate::dns::wire::TYPE_TSIG.to_be_bytes());
    msg.extend_from_slice(&CLASS_ANY.to_be_bytes());
    msg.extend_from_slice(&0u32.to_be_bytes());
    let rdlen = alg.len() + 6 + 2 + 2 + mac.len() + 2 + 2 + 2 + other.len();
    msg.extend_from_slice(&(rdlen as u16).to_be_bytes());
    msg.extend_from_slice(alg);
    put48(msg, time_signed);
    msg.extend_from_slice(&FUDGE.to_be_bytes());
    msg.extend_from_slice(&(mac.len() as u16).to_be_bytes());
    msg.extend_from_slice(mac);
    msg.extend_from_slice(&id);
    msg.extend_from_slice(&error.to_be_bytes());
    msg.extend_from_slice(&(other.len() as u16).to_be_bytes());
    msg.extend_from_slice(other);
    let ar = u16::from_be_bytes([msg[10], msg[11]]).wrapping_add(1);
    msg[10..12].copy_from_slice(&ar.to_be_bytes());
}

/// What a signed request gets.
pub enum Checked<'k> {
    /// Valid: answer, and sign the answer with this.
    Valid(Signer<'k>),
    /// Not valid: answer NOTAUTH, and append the TSIG error with [`Rejection::append`].
    Invalid(Rejection<'k>),
    /// The TSIG record does not parse: FORMERR.
    Malformed,
}

/// The TSIG record a NOTAUTH answer carries (RFC 8945 5.2).
pub struct Rejection<'k> {
    failure: Failure,
    key: Option<&'k TsigKey>,
    /// The request's key name and algorithm, echoed in a BADKEY answer.
    name: Vec<u8>,
    algorithm: Vec<u8>,
    mac: Vec<u8>,
    time_signed: u64,
    now: u64,
}

impl Rejection<'_> {
    pub fn append(self, msg: &mut Vec<u8>) {
        match (self.failure, self.key) {
            (Failure::BadSig, Some(key)) => append_unsigned(msg, key, self.now, BADSIG),
            (Failure::BadTime, Some(key)) => {
                // Signed, with our clock in Other Data so the client can tell.
                let mut s = Signer::new(key, &self.mac, self.time_signed);
                s.sign(msg, BADTIME, &self.now.to_be_bytes()[2..]);
            }
            // An unknown key (or none configured): unsigned, naming the key the client used.
            _ => {
                let fields = Fields {
                    time_signed: self.now,
                    mac: &[],
                    error: BADKEY,
                    other: &[],
                };
                append_named(msg, &self.name, &self.algorithm, &fields);
            }
        }
    }
}

/// Checks the TSIG record at `at` of a request against our key, if we have one.
pub fn check<'k>(pkt: &[u8], at: usize, key: Option<&'k TsigKey>, now: u64) -> Checked<'k> {
    let Some(rec) = parse(pkt, at) else {
        return Checked::Malformed;
    };
    let result = match key {
        Some(k) => verify(pkt, at, &rec, k, now).map(|()| k),
        None => Err(Failure::BadKey),
    };
    match result {
        Ok(k) => Checked::Valid(Signer::new(k, rec.mac, now)),
        Err(failure) => Checked::Invalid(Rejection {
            failure,
            key,
            mac: rec.mac.to_vec(),
            name: rec.key_name,
            algorithm: rec.algorithm,
            time_signed: rec.time_signed,
            now,
        }),
    }
}

/// Signs the messages of one response in order (RFC 8945 5.3 and 5.3.1): the first covers
/// the request's MAC, each later one the MAC before it. Returns nothing; signs in place.
pub struct Signer<'k> {
    key: &'k TsigKey,
    prior_mac: Vec<u8>,
    first: bool,
    now: u64,
}

const FUDGE: u16 = 300;

impl<'k> Signer<'k> {
    pub fn new(key: &'k TsigKey, request_mac: &[u8], now: u64) -> Signer<'k> {
        Signer {
            key,
            prior_mac: request_mac.to_vec(),
            first: true,
            now,
        }
    }

    /// Bytes the TSIG record of an ordinary signed answer (no error, no other data) adds.
    pub fn record_len(&self) -> usize {
        let mac_len = match self.key.algorithm {
            TsigAlgorithm::HmacSha256 => 32,
            TsigAlgorithm::HmacSha512 => 64,
        };
        let (name, alg) = (
            wire_name(&self.key.name),
            wire_name(self.key.algorithm.name()),
        );
        // type, class, TTL, rdlength; then time (6), fudge, MAC size, MAC, original ID, error,
        // other length.
        name.len() + 10 + alg.len() + 6 + 2 + 2 + mac_len + 2 + 2 + 2
    }

    pub fn sign(&mut self, msg: &mut Vec<u8>, error: u16, other: &[u8]) {
        let size = (self.prior_mac.len() as u16).to_be_bytes();
        let mac = if self.first {
            let vars = variables(self.key, self.now, FUDGE, error, other);
            mac(self.key, &[&size, &self.prior_mac, msg, &vars])
        } else {
            let mut timers = Vec::with_capacity(8);
            put48(&mut timers, self.now);
            timers.extend_from_slice(&FUDGE.to_be_bytes());
            mac(self.key, &[&size, &self.prior_mac, msg, &timers])
        };
        self.first = false;
        let fields = Fields {
            time_signed: self.now,
            mac: &mac,
            error,
            other,
        };
        append(msg, self.key, &fields);
        self.prior_mac = mac;
    }
}

/// Appends an unsigned TSIG record carrying `error` (BADKEY, BADSIG: RFC 8945 5.2.1, 5.2.2).
pub fn append_unsigned(msg: &mut Vec<u8>, key: &TsigKey, now: u64, error: u16) {
    let fields = Fields {
        time_signed: now,
        mac: &[],
        error,
        other: &[],
    };
    append(msg, key, &fields);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2 for HMAC-SHA-256 and HMAC-SHA-512.
    #[test]
    fn hmac_rfc4231() {
        let data = b"what do ya want for nothing?";
        let h256 = hmac::<Sha256>(b"Jefe", 64, &[&data[..10], &data[10..]]);
        assert_eq!(
            h256.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let h512 = hmac::<Sha512>(b"Jefe", 128, &[data]);
        assert!(
            h512.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
                .starts_with("164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554")
        );
    }

    #[test]
    fn record_len_is_what_signing_adds() {
        for algorithm in [TsigAlgorithm::HmacSha256, TsigAlgorithm::HmacSha512] {
            let key = TsigKey {
                name: "xfr-key.example".into(),
                algorithm,
                secret: vec![7; 32],
            };
            let s = Signer::new(&key, &[1; 32], 1_800_000_000);
            let mut msg = vec![0x12, 0x34, 0x84, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            let predicted = s.record_len();
            let mut s = s;
            s.sign(&mut msg, 0, &[]);
            assert_eq!(msg.len() - 12, predicted, "{algorithm:?}");
        }
    }

    /// A request we sign verifies as a request; a response signed over its MAC (as a
    /// secondary signs its NOTIFY answer) verifies against that MAC and no other.
    #[test]
    fn signed_request_and_its_response() {
        let key = TsigKey {
            name: "xfr-key".into(),
            algorithm: TsigAlgorithm::HmacSha256,
            secret: vec![9; 32],
        };
        let now = 1_800_000_000;
        let mut req = vec![0xAB, 0xCD, 0x24, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let req_mac = sign_request(&mut req, &key, now);
        let rec = parse(&req, 12).unwrap();
        assert_eq!(verify(&req, 12, &rec, &key, now + 10), Ok(()));
        let mut resp = vec![0xAB, 0xCD, 0xA4, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        Signer::new(&key, &req_mac, now).sign(&mut resp, 0, &[]);
        let rec = parse(&resp, 12).unwrap();
        assert_eq!(
            verify_response(&resp, 12, &rec, &key, &req_mac, now),
            Ok(())
        );
        assert_eq!(
            verify_response(&resp, 12, &rec, &key, &[0; 32], now),
            Err(Failure::BadSig)
        );
        let other = TsigKey {
            secret: vec![1; 32],
            ..key.clone()
        };
        assert_eq!(
            verify_response(&resp, 12, &rec, &other, &req_mac, now),
            Err(Failure::BadSig)
        );
    }

    #[test]
    fn names_with_pointers_and_loops() {
        // "a" at 0, then "b" + pointer to 0 at 3.
        let pkt = [1, b'A', 0, 1, b'b', 0xC0, 0];
        assert_eq!(read_name(&pkt, 3).unwrap(), (vec![1, b'b', 1, b'a', 0], 7));
        // A pointer to itself or forwards is refused.
        assert!(read_name(&[0xC0, 0], 0).is_none());
        assert!(read_name(&[0xC0, 2, 0], 0).is_none());
    }
}
