use std::path::{Path, PathBuf};

use ring::signature::{ECDSA_P256_SHA256_FIXED, ED25519, UnparsedPublicKey};

use super::pkcs8::ec_private_scalar;
use super::*;

/// RFC 6605 section 6.1: an ECDSA P-256 key-signing key with its private key and DS.
const RFC6605_KEY: &str = "example.net. 3600 IN DNSKEY 257 3 13 (\n\
    GojIhhXUN/u4v54ZQqGSnyhWJwaubCvTmeexv7bR6edb\n\
    krSqQpF64cYbcB7wNcP+e+MAnLr+Wi9xMWyQLc8NAA== )\n";
const RFC6605_PRIVATE: &str = "Private-key-format: v1.2\n\
    Algorithm: 13 (ECDSAP256SHA256)\n\
    PrivateKey: GU6SnQ/Ou+xC5RumuIUIuJZteXT2z0O/ok1s38Et6mQ=\n";
const RFC6605_DS: &str = "example.net. IN DS 55648 13 2 \
    B4C8C1FE2E7477127B27115656AD6256F424625BF5C1E2770CE6D6E37DF61D17";

/// RFC 8080 section 6.1: an Ed25519 key-signing key with its private key and DS.
const RFC8080_KEY: &str =
    "example.com. 3600 IN DNSKEY 257 3 15 l02Woi0iS8Aa25FQkUd9RMzZHJpBoRQwAQEX1SxZJA4=\n";
const RFC8080_PRIVATE: &str = "Private-key-format: v1.2\n\
    Algorithm: 15 (ED25519)\n\
    PrivateKey: ODIyNjAzODQ2MjgwODAxMjI2NDUxOTAyMDQxNDIyNjI=\n";
const RFC8080_DS: &str = "example.com. IN DS 3613 15 2 \
    3AA5AB37EFCE57F737FC1627013FEE07BDF241BD10F3B1964AB55C78E79A304B";

/// Writes `<stem>.key` and `<stem>.private`; returns the `.private` path.
fn pair(dir: &Path, stem: &str, key: &str, private: &str) -> PathBuf {
    std::fs::write(dir.join(format!("{stem}.key")), key).unwrap();
    let p = dir.join(format!("{stem}.private"));
    std::fs::write(&p, private).unwrap();
    p
}

fn verifies(key: &Key, data: &[u8], signature: &[u8]) -> bool {
    let public = &key.dnskey[4..];
    let result = match key.algorithm {
        ECDSAP256SHA256 => {
            let mut point = vec![4];
            point.extend_from_slice(public);
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).verify(data, signature)
        }
        _ => UnparsedPublicKey::new(&ED25519, public).verify(data, signature),
    };
    result.is_ok()
}

/// The error of loading `private`, as text; it must name `file`.
fn error(private: &Path, file: &Path) -> String {
    let e = load(private).expect_err("should be rejected").to_string();
    assert!(
        e.contains(&file.display().to_string()),
        "`{e}` does not name {}",
        file.display()
    );
    e
}

#[test]
fn key_tag_and_ds_of_rfc6605_example() {
    let dir = tempfile::tempdir().unwrap();
    let p = pair(
        dir.path(),
        "Kexample.net.+013+55648",
        RFC6605_KEY,
        RFC6605_PRIVATE,
    );
    let key = load(&p).unwrap();
    assert_eq!(key.owner.wire(), b"\x07example\x03net\x00");
    assert_eq!(
        (key.algorithm, key.flags, key.tag, key.ttl),
        (13, 257, 55648, Some(3600))
    );
    assert!(key.is_ksk());
    assert_eq!(key_tag(&key.dnskey), 55648);
    assert_eq!(&key.dnskey[..4], &[1, 1, 3, 13]);
    assert_eq!(key.ds_text(), RFC6605_DS);
    let ds = key.ds_sha256();
    assert_eq!(&ds[..4], &[0xd9, 0x60, 13, 2]);
    assert_eq!(ds.len(), 36);
    assert_eq!(key.file, p);
    let sig = key.sign(b"to be signed").unwrap();
    assert_eq!(sig.len(), 64);
    assert!(verifies(&key, b"to be signed", &sig));
    assert!(!verifies(&key, b"something else", &sig));
}

#[test]
fn key_tag_and_ds_of_rfc8080_example() {
    let dir = tempfile::tempdir().unwrap();
    let p = pair(
        dir.path(),
        "Kexample.com.+015+03613",
        RFC8080_KEY,
        RFC8080_PRIVATE,
    );
    let key = load(&p).unwrap();
    assert_eq!((key.algorithm, key.flags, key.tag), (15, 257, 3613));
    assert_eq!(key.ds_text(), RFC8080_DS);
    assert_eq!(
        key.dnskey_text(),
        "example.com. IN DNSKEY 257 3 15 l02Woi0iS8Aa25FQkUd9RMzZHJpBoRQwAQEX1SxZJA4="
    );
    let sig = key.sign(b"data").unwrap();
    assert_eq!(sig.len(), 64);
    assert!(verifies(&key, b"data", &sig));
    // Ed25519 is deterministic.
    assert_eq!(key.sign(b"data").unwrap(), sig);
}

/// One ECDSA key in 256 has a private scalar starting with a zero byte, which BIND writes as a
/// 31-byte number: such a file loads and signs.
#[test]
fn an_ecdsa_private_key_without_its_leading_zero_loads() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let dir = tempfile::tempdir().unwrap();
    let zone = crate::zone::Name::from_text("example.com").unwrap();
    for _ in 0..4000 {
        let made = generate(&zone, ECDSAP256SHA256, true, dir.path()).unwrap();
        let text = std::fs::read_to_string(&made).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("PrivateKey: "))
            .unwrap();
        let scalar = b64.decode(&line["PrivateKey: ".len()..]).unwrap();
        if scalar[0] != 0 {
            // Gone, so that a later key with the same tag (and file name) can be written.
            std::fs::remove_file(&made).unwrap();
            std::fs::remove_file(made.with_extension("key")).unwrap();
            continue;
        }
        let bind_form = format!("PrivateKey: {}", b64.encode(&scalar[1..]));
        std::fs::write(&made, text.replace(line, &bind_form)).unwrap();
        let key = load(&made).unwrap_or_else(|e| panic!("{e}"));
        let sig = key.sign(b"data").unwrap();
        assert!(verifies(&key, b"data", &sig));
        return;
    }
    panic!("no key with a leading zero byte in 4000 (expected about 16)");
}

#[test]
fn key_tag_folds_the_carry() {
    // Words 0xffff + 0x0001 = 0x10000: the carry is added back once, giving 0x0001.
    assert_eq!(key_tag(&[0xff, 0xff, 0x00, 0x01]), 0x0001);
    assert_eq!(key_tag(&[0xff, 0xff, 0x00, 0x02]), 0x0002);
    // An odd length: the last byte is a high byte.
    assert_eq!(key_tag(&[0x00, 0x01, 0x02]), 0x0201);
}

#[test]
fn generated_keys_load_and_sign() {
    let dir = tempfile::tempdir().unwrap();
    let zone = Name::from_text("Example.COM").unwrap();
    for (algorithm, ksk) in [(13, true), (13, false), (15, true), (15, false)] {
        let p = generate(&zone, algorithm, ksk, dir.path()).unwrap();
        let key = load(&p).unwrap();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(
            name,
            format!("Kexample.com.+{algorithm:03}+{:05}.private", key.tag)
        );
        assert_eq!(key.owner, Name::from_text("example.com").unwrap());
        assert_eq!((key.algorithm, key.is_ksk()), (algorithm, ksk));
        assert_eq!(key.flags, if ksk { 257 } else { 256 });
        assert_eq!(key.ttl, None);
        let sig = key.sign(b"rrsig data").unwrap();
        assert!(verifies(&key, b"rrsig data", &sig));

        let private = std::fs::read_to_string(&p).unwrap();
        assert!(
            private.starts_with("Private-key-format: v1.3\n"),
            "{private}"
        );
        let alg_line = if algorithm == 13 {
            "Algorithm: 13 (ECDSAP256SHA256)\n"
        } else {
            "Algorithm: 15 (ED25519)\n"
        };
        assert!(private.contains(alg_line), "{private}");
        for field in ["PrivateKey: ", "Created: ", "Publish: ", "Activate: "] {
            assert!(private.contains(field), "{field} missing:\n{private}");
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", p.display());
        let public = std::fs::read_to_string(p.with_extension("key")).unwrap();
        assert!(
            public.ends_with(&format!("{}\n", key.dnskey_text())),
            "{public}"
        );
    }
    // Written once, never replaced.
    let p = generate(&zone, 13, true, dir.path()).unwrap();
    let before = std::fs::read(&p).unwrap();
    assert!(matches!(
        write_new(&p, "x", 0o600),
        Err(KeyError::Write { .. })
    ));
    assert_eq!(std::fs::read(&p).unwrap(), before);
    assert!(matches!(
        generate(&zone, 8, true, dir.path()),
        Err(KeyError::CannotGenerate { algorithm: 8 })
    ));
    let e = generate(&zone, 13, true, &dir.path().join("no/such/dir")).unwrap_err();
    assert!(e.to_string().contains("no/such/dir"), "{e}");
}

#[test]
fn pkcs8_scalar_is_found_and_bad_documents_are_not_read() {
    let rng = SystemRandom::new();
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let scalar = ec_private_scalar(doc.as_ref()).unwrap();
    assert_eq!(scalar.len(), 32);
    let doc = doc.as_ref();
    for cut in [0, 1, 2, 10, 30, doc.len() - 1] {
        let _ = ec_private_scalar(&doc[..cut]);
    }
    assert_eq!(ec_private_scalar(&doc[..20]), None);
    assert_eq!(ec_private_scalar(b"\x30\x83\x00\x00\x00"), None);
    let mut wrong = doc.to_vec();
    wrong[0] = 0x31;
    assert_eq!(ec_private_scalar(&wrong), None);
}

#[test]
fn every_error_names_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let missing = d.join("Kexample.net.+013+55648.private");
    let e = error(&missing, &missing);
    assert!(e.starts_with("cannot read "), "{e}");

    std::fs::write(&missing, RFC6605_PRIVATE).unwrap();
    let e = error(&missing, &missing.with_extension("key"));
    assert!(e.contains("no public key file"), "{e}");

    let p = pair(d, "named-as-key", RFC6605_KEY, RFC6605_PRIVATE);
    let e = error(&p.with_extension("key"), &p.with_extension("key"));
    assert!(e.contains("not a `.private` file"), "{e}");

    let rsa = RFC6605_PRIVATE.replace("13 (ECDSAP256SHA256)", "8 (RSASHA256)");
    let p = pair(d, "rsa", RFC6605_KEY, &rsa);
    let e = error(&p, &p);
    assert!(
        e.contains(
            "algorithm 8 (RSASHA256) is not supported: 13 (ECDSAP256SHA256) and 15 (ED25519) are"
        ),
        "{e}"
    );
    let p = pair(
        d,
        "odd",
        RFC6605_KEY,
        &RFC6605_PRIVATE.replace("13 (ECDSAP256SHA256)", "200"),
    );
    assert!(error(&p, &p).contains("algorithm 200 (unknown) is not supported"));

    let p = pair(
        d,
        "b64",
        RFC6605_KEY,
        &RFC6605_PRIVATE.replace("PrivateKey: GU6", "PrivateKey: *U6"),
    );
    let e = error(&p, &p);
    assert!(
        e.contains(&format!("{}:3: ", p.display())) && e.contains("not base64"),
        "{e}"
    );

    // An ECDSA key shorter than 32 bytes is taken as a number with its leading zeros left
    // out (as BIND writes them): this one then does not belong to its public key.
    let p = pair(
        d,
        "short",
        RFC6605_KEY,
        &RFC6605_PRIVATE.replace("GU6SnQ/O", ""),
    );
    assert!(
        error(&p, &p).contains("does not belong to the public key"),
        "{}",
        error(&p, &p)
    );
    let p = pair(
        d,
        "long",
        RFC6605_KEY,
        &RFC6605_PRIVATE.replace("GU6SnQ/O", "GU6SnQ/OGU6SnQ/O"),
    );
    assert!(error(&p, &p).contains("the private key is 38 bytes"));

    let p = pair(
        d,
        "flags",
        &RFC6605_KEY.replace(" 257 ", " 385 "),
        RFC6605_PRIVATE,
    );
    let e = error(&p, &p.with_extension("key"));
    assert!(e.contains(":1: flags 385: expected 256"), "{e}");

    let p = pair(
        d,
        "proto",
        &RFC6605_KEY.replace(" 257 3 ", " 257 2 "),
        RFC6605_PRIVATE,
    );
    assert!(error(&p, &p.with_extension("key")).contains("protocol 2"));

    let p = pair(
        d,
        "alg",
        &RFC6605_KEY.replace(" 3 13 ", " 3 15 "),
        RFC6605_PRIVATE,
    );
    let e = error(&p, &p.with_extension("key"));
    assert!(e.contains("algorithm 15 (ED25519), but"), "{e}");

    let p = pair(d, "nokey", "; nothing\n", RFC6605_PRIVATE);
    assert!(error(&p, &p.with_extension("key")).contains("no DNSKEY record"));

    // The RFC's public key with another private key.
    let other = generate(&Name::from_text("example.net").unwrap(), 13, true, d).unwrap();
    let other = std::fs::read_to_string(other).unwrap();
    let p = pair(d, "mismatch", RFC6605_KEY, &other);
    let e = error(&p, &p);
    assert!(
        e.contains("the private key does not belong to the public key in"),
        "{e}"
    );
    assert!(
        e.contains(&p.with_extension("key").display().to_string()),
        "{e}"
    );
    let p = pair(
        d,
        "mismatch15",
        RFC8080_KEY,
        &RFC8080_PRIVATE.replace("ODIy", "ODIz"),
    );
    assert!(error(&p, &p).contains("does not belong"));

    let p = pair(d, "Kexample.org.+013+55648", RFC6605_KEY, RFC6605_PRIVATE);
    let e = error(&p, &p);
    assert!(
        e.contains("the file name says the key is for `example.org.`")
            && e.contains("holds a key for `example.net.`"),
        "{e}"
    );
    let p = pair(d, "Kexample.net.+013+55649", RFC6605_KEY, RFC6605_PRIVATE);
    let e = error(&p, &p);
    assert!(
        e.contains("says algorithm 13 tag 55649, but the key is algorithm 13 tag 55648"),
        "{e}"
    );
}
