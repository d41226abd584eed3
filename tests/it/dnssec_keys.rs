//! DNSSEC keys as an operator handles them: `mirrordns keygen`, `[dnssec] keys` in the config,
//! `mirrordns check` naming a bad key, `mirrordns ds` for the parent; and both directions with
//! BIND's own tools (`dnssec-keygen`, `dnssec-dsfromkey`).

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;

use crate::common::*;

fn mirrordns(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mirrordns"))
        .args(args)
        .output()
        .expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `mirrordns keygen` into `dir`: the `.private` path and the DNSKEY line it printed.
fn keygen(dir: &Path, zone: &str, extra: &[&str]) -> (PathBuf, String) {
    let mut args = vec!["keygen", zone, "--dir", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let (code, out, err) = mirrordns(&args);
    assert_eq!(code, 0, "{out}{err}");
    let mut lines = out.lines();
    let private = PathBuf::from(lines.next().expect("the .private path"));
    let dnskey = lines.next().expect("the DNSKEY line").to_string();
    assert!(private.is_file(), "{}", private.display());
    (private, dnskey)
}

/// A config serving the test zone (example.com) with these key files, relative to its
/// directory; returns its path.
fn config_with_keys(dir: &Path, keys: &[&Path]) -> PathBuf {
    let list: Vec<String> = keys
        .iter()
        .map(|k| {
            let rel = k.strip_prefix(dir).unwrap_or(k);
            format!("  {:?},\n", rel.to_str().unwrap())
        })
        .collect();
    let config = format!(
        "{}\n[dnssec]\nkeys = [\n{}]\n",
        server_section(),
        list.concat()
    );
    std::fs::write(dir.join("example.com.zone"), ZONE).unwrap();
    let path = dir.join("mirrordns.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// The DS line of a DNSKEY presentation line, worked out here from RFC 4034 (5.1.4 and
/// Appendix B) rather than by the server's code.
fn ds_of(dnskey_line: &str) -> String {
    let w: Vec<&str> = dnskey_line.split_whitespace().collect();
    let [owner, "IN", "DNSKEY", flags, protocol, algorithm, key @ ..] = w.as_slice() else {
        panic!("not a DNSKEY line: {dnskey_line}");
    };
    let mut rdata = flags.parse::<u16>().unwrap().to_be_bytes().to_vec();
    rdata.push(protocol.parse().unwrap());
    rdata.push(algorithm.parse().unwrap());
    rdata.extend(
        base64::engine::general_purpose::STANDARD
            .decode(key.concat())
            .unwrap(),
    );
    let mut wire = Vec::new();
    for label in owner.trim_end_matches('.').split('.') {
        wire.push(label.len() as u8);
        wire.extend(label.to_ascii_lowercase().bytes());
    }
    wire.push(0);
    let mut tag: u32 = rdata
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if i % 2 == 0 {
                u32::from(b) << 8
            } else {
                u32::from(b)
            }
        })
        .sum();
    tag += tag >> 16;
    let digest = ring::digest::digest(&ring::digest::SHA256, &[wire, rdata].concat());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    format!("{owner} IN DS {} {algorithm} 2 {hex}", tag & 0xffff)
}

fn tag_of(ds_line: &str) -> u16 {
    ds_line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

#[test]
fn keygen_then_ds_prints_each_ksk() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let (ksk, ksk_line) = keygen(&keys, "example.com", &[]);
    let (zsk, zsk_line) = keygen(&keys, "example.com", &["--zsk"]);
    let (ed, ed_line) = keygen(&keys, "Example.COM.", &["--algorithm", "ed25519", "--ksk"]);
    assert!(
        ksk_line.starts_with("example.com. IN DNSKEY 257 3 13 "),
        "{ksk_line}"
    );
    assert!(
        zsk_line.starts_with("example.com. IN DNSKEY 256 3 13 "),
        "{zsk_line}"
    );
    assert!(
        ed_line.starts_with("example.com. IN DNSKEY 257 3 15 "),
        "{ed_line}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&ksk).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let config = config_with_keys(dir.path(), &[&ksk, &zsk, &ed]);
    let (code, out, err) = mirrordns(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!((code, out.trim()), (0, "ok"), "{err}");

    let (code, out, err) = mirrordns(&["ds", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let mut expected = vec![ds_of(&ksk_line), ds_of(&ed_line)];
    expected.sort_by_key(|l| tag_of(l));
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        expected,
        "only the KSKs, by tag"
    );

    // A zone with only a ZSK has no DS to give: said, and not a success.
    let config = config_with_keys(dir.path(), &[&zsk]);
    let (code, out, err) = mirrordns(&["ds", "--config", config.to_str().unwrap()]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(
        err.contains("`example.com.` has no KSK (flags 257)"),
        "{err}"
    );
}

#[test]
fn check_names_a_mismatched_pair_and_a_key_for_no_zone() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (good, _) = keygen(d, "example.com", &[]);
    let (other, _) = keygen(d, "example.com", &[]);
    // The other key's private half beside the good key's public half.
    std::fs::copy(&other, &good).unwrap();
    let (stray, _) = keygen(d, "example.org", &[]);
    let config = config_with_keys(d, &[&good, &stray]);
    // The config line that lists a key file.
    let line = |config: &Path, key: &Path| {
        let text = std::fs::read_to_string(config).unwrap();
        let name = key.file_name().unwrap().to_str().unwrap();
        text.lines().position(|l| l.contains(name)).unwrap() + 1
    };
    let (code, out, err) = mirrordns(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(&format!(
            "{}:{}: `dnssec.keys`: {}: the private key does not belong to the public key in {}",
            config.display(),
            line(&config, &good),
            good.display(),
            good.with_extension("key").display()
        )),
        "{err}"
    );
    // The zone check runs once the keys load.
    let config = config_with_keys(d, &[&stray]);
    let (code, _, err) = mirrordns(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 1);
    let want = format!(
        "{}:{}: `dnssec.keys`: {}: key for example.org. but no zone has that apex",
        config.display(),
        line(&config, &stray),
        stray.display()
    );
    assert!(err.contains(&want), "{err}");
    let (code, out, err) = mirrordns(&["ds", "--config", config.to_str().unwrap()]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(err.contains(&want), "ds reports the same problem:\n{err}");
}

#[test]
fn a_zone_file_with_its_own_dnssec_records_is_rejected_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (key, dnskey_line) = keygen(d, "example.com", &[]);
    let config = config_with_keys(d, &[&key]);
    // Someone pastes the key into the zone file: mirrordns makes the DNSKEY set itself.
    let rdata = dnskey_line.split("DNSKEY").nth(1).unwrap().trim();
    let zone = format!("{ZONE}@ 3600 DNSKEY {rdata}\n");
    let file = d.join("example.com.zone");
    std::fs::write(&file, zone).unwrap();
    let (code, out, err) = mirrordns(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    // The zone parser refuses DNSKEY, RRSIG and NSEC records itself, with the line.
    let lines = ZONE.lines().count();
    let want = format!("{}:{}: DNSKEY record data", file.display(), lines + 1);
    assert!(err.contains(&want), "{want}\n{err}");
    // The same zone without them checks.
    std::fs::write(&file, ZONE).unwrap();
    let (code, out, err) = mirrordns(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
}

const BIND_TOOLS: (&str, &str, &str) = ("dnssec-keygen", "-V", "bind9-utils");

/// `dnssec-keygen -K dir ARGS zone`: the `.private` path of the key it made.
fn bind_keygen(dir: &Path, args: &[&str], zone: &str) -> PathBuf {
    let out = Command::new("dnssec-keygen")
        .arg("-K")
        .arg(dir)
        .args(args)
        .args(["-n", "ZONE", zone])
        .output()
        .expect("dnssec-keygen runs");
    let stem = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success() && !stem.is_empty(),
        "dnssec-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join(format!("{stem}.private"))
}

/// `dnssec-dsfromkey -2` of a key pair: BIND's SHA-256 DS line.
fn bind_ds(private: &Path) -> String {
    let out = Command::new("dnssec-dsfromkey")
        .arg("-2")
        .arg(private.with_extension("key"))
        .output()
        .expect("dnssec-dsfromkey runs");
    assert!(
        out.status.success(),
        "dnssec-dsfromkey: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
#[ignore = "needs dnssec-keygen (bind9-utils); `cargo test -- --ignored` runs it, as CI does"]
fn bind_keys_load_and_both_sides_agree_on_the_ds() {
    let (cmd, arg, package) = BIND_TOOLS;
    require(cmd, arg, package);
    require("dnssec-dsfromkey", arg, package);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bind_ksk = bind_keygen(d, &["-a", "ECDSAP256SHA256", "-f", "KSK"], "example.com");
    let bind_zsk = bind_keygen(d, &["-a", "ECDSAP256SHA256"], "example.com");
    let bind_ed = bind_keygen(d, &["-a", "ED25519", "-f", "KSK"], "example.com");
    let (ours, _) = keygen(d, "example.com", &[]);
    let (ours_ed, _) = keygen(d, "example.com", &["--algorithm", "ed25519"]);
    let all = [&bind_ksk, &bind_zsk, &bind_ed, &ours, &ours_ed];
    let config = config_with_keys(d, &all.map(|p| p.as_path()));
    let (code, out, err) = mirrordns(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!((code, out.trim()), (0, "ok"), "BIND's keys load:\n{err}");

    let (code, out, err) = mirrordns(&["ds", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let mut expected: Vec<String> = [&bind_ksk, &bind_ed, &ours, &ours_ed]
        .iter()
        .map(|p| bind_ds(p))
        .collect();
    expected.sort_by_key(|l| tag_of(l));
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        expected,
        "mirrordns ds and dnssec-dsfromkey -2 agree, for BIND's keys and for ours"
    );
}
