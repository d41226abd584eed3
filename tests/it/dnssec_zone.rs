//! The signed zone over time: as transferred by AXFR, accepted by BIND's `dnssec-verify`;
//! signatures made again before they expire as real time passes; and a health change that
//! signs only the answer sets no earlier table had, as `/status` and `/metrics` count it.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use hickory_proto::dnssec::rdata::RRSIG;
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

use crate::common::*;
use crate::dnssec::{Keys, ask, geo_config, our_dnskeys, rrsig, sigs_over, verify_all};

/// `/status` as JSON.
async fn status(ts: &TestServer) -> serde_json::Value {
    mirrordns::health::http::install_crypto();
    let url = format!("http://{}/status", ts.server.http_addr().unwrap());
    serde_json::from_str(&reqwest::get(url).await.unwrap().text().await.unwrap()).unwrap()
}

/// One sample of `/metrics`, by its name and labels as written (`name{zone="..."}`).
async fn metric(ts: &TestServer, series: &str) -> f64 {
    mirrordns::health::http::install_crypto();
    let url = format!("http://{}/metrics", ts.server.http_addr().unwrap());
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}"))
        .parse()
        .unwrap()
}

/// Runs a tool off the runtime (the server answers on it) and returns its exit status and
/// output.
pub async fn run(cmd: &str, args: Vec<String>) -> (bool, String) {
    let cmd = cmd.to_string();
    let out = tokio::task::spawn_blocking(move || Command::new(&cmd).args(&args).output())
        .await
        .unwrap()
        .expect("the tool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
#[ignore = "needs dnssec-verify (bind9-utils) and dig (dnsutils); `cargo test -- --ignored` runs it, as CI does"]
async fn dnssec_verify_accepts_the_zone_as_transferred() {
    require("dnssec-verify", "-h", "bind9-utils");
    require("dig", "-v", "dnsutils");
    for split in [false, true] {
        let keys = Keys::new(split);
        let transfer = "[transfer]\nallow = [\"127.0.0.1/32\"]\n";
        let ts = start(&geo_config(2, &keys.section(transfer)), ZONE, None).await;
        let (ok, axfr) = axfr_text(ts.addr.port()).await;
        assert!(ok, "{axfr}");
        let records: Vec<&str> = axfr
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with(';'))
            .collect();
        let count = |rtype: &str| {
            records
                .iter()
                .filter(|l| l.split_whitespace().nth(3) == Some(rtype))
                .count()
        };
        assert_eq!(count("DNSKEY"), keys.keys.len(), "{axfr}");
        assert!(count("NSEC") >= 10, "an NSEC per name:\n{axfr}");
        assert!(count("RRSIG") > count("NSEC"), "{axfr}");
        assert!(
            records
                .iter()
                .any(|l| l.starts_with("downloads.example.com.") && l.contains("\tA\t")),
            "the service's default answer is in the transfer:\n{axfr}"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("example.com.axfr");
        std::fs::write(&file, records.join("\n") + "\n").unwrap();
        // A CSK alone is a KSK that signs everything: `-z` tells dnssec-verify so. With a
        // KSK and a ZSK, `-x` checks that only the KSK signs the DNSKEY set.
        let role = if split { "-x" } else { "-z" };
        let verify = |file: &std::path::Path| {
            run(
                "dnssec-verify",
                vec![
                    role.into(),
                    "-o".into(),
                    "example.com".into(),
                    file.to_str().unwrap().into(),
                ],
            )
        };
        let (ok, out) = verify(&file).await;
        assert!(
            ok && out.contains("Zone fully signed"),
            "split keys: {split}:\n{out}\n{axfr}"
        );

        // The same zone less one NSEC record is rejected: the check can fail.
        let nsec_line = records
            .iter()
            .position(|l| l.starts_with("www.example.com.") && l.contains("\tNSEC\t"))
            .expect("an NSEC at www");
        let mut broken = records.clone();
        broken.remove(nsec_line);
        let file = dir.path().join("broken.axfr");
        std::fs::write(&file, broken.join("\n") + "\n").unwrap();
        let (ok, out) = verify(&file).await;
        assert!(!ok, "a broken chain passes dnssec-verify:\n{out}");
        ts.server.shutdown().await;
    }
}

/// `dig AXFR` of example.com from the server on loopback `port`, without comments.
pub async fn axfr_text(port: u16) -> (bool, String) {
    run(
        "dig",
        vec![
            "@127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "example.com.".into(),
            "AXFR".into(),
            "+nocmd".into(),
            "+nocomments".into(),
            "+nostats".into(),
        ],
    )
    .await
}

/// The RRSIG over the London client's geo answer: (inception, expiration).
async fn london_window(addr: SocketAddr) -> (u32, u32, Message) {
    let (m, _) = ask(
        addr,
        "downloads.example.com.",
        RecordType::A,
        true,
        Some("81.2.69.0"),
    )
    .await;
    let s = sigs_over(&m.answers, RecordType::A)
        .first()
        .unwrap_or_else(|| panic!("no RRSIG:\n{m}"))
        .input()
        .clone();
    (s.sig_inception.get(), s.sig_expiration.get(), m)
}

#[tokio::test]
async fn signatures_are_made_again_before_they_expire() {
    let keys = Keys::new(false);
    let ours = our_dnskeys(&keys);
    let timing = "signature-validity = \"30s\"\nrefresh = \"3s\"\n";
    let ts = start(&geo_config(1, &keys.section(timing)), ZONE, None).await;
    let (inception, expiration, _) = london_window(ts.addr).await;
    assert_eq!(
        expiration - inception,
        30 + 3600,
        "30 s valid, inception an hour back"
    );
    let made = metric(&ts, "mirrordns_dnssec_signatures_total").await;
    let serial = soa_serial(&ts, &ours).await;
    let expiry_series = "mirrordns_dnssec_signature_expiry_seconds{zone=\"example.com.\"}";
    let left = metric(&ts, expiry_series).await;
    assert!(left > 0.0 && left <= 30.0, "expiry in {left} s");

    // Real time passes: within a few refresh periods the same answer has a newer signature.
    let deadline = Instant::now() + Duration::from_secs(15);
    let (later_inception, later_expiration, m) = loop {
        let (i, e, m) = london_window(ts.addr).await;
        if e > expiration {
            break (i, e, m);
        }
        assert!(
            Instant::now() < deadline,
            "the signature was not made again: still expires at {e}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(later_inception > inception);
    assert_eq!(later_expiration - later_inception, 30 + 3600);
    assert_eq!(verify_all(&m, &ours), 1, "the new signature verifies:\n{m}");
    let made_later = metric(&ts, "mirrordns_dnssec_signatures_total").await;
    assert!(made_later > made, "signatures_total {made} -> {made_later}");
    // New signatures are new content for a secondary: the served serial moved on ([dnssec]
    // serial = "increment", the default), from the zone file's.
    let later_serial = soa_serial(&ts, &ours).await;
    assert_eq!(serial, 2_026_112_701, "the zone file's serial at start");
    assert!(later_serial > serial, "serial {serial} -> {later_serial}");
    let left = metric(&ts, expiry_series).await;
    assert!(left > 0.0 && left <= 30.0, "expiry in {left} s");
    // The zone's own signatures were made again too, not only the geo answers'.
    let (m, _) = ask(ts.addr, "nope.example.com.", RecordType::A, true, None).await;
    let sigs: Vec<&RRSIG> = m.authorities.iter().filter_map(rrsig).collect();
    assert!(sigs.len() >= 2, "{m}");
    for s in sigs {
        assert!(
            s.input().sig_expiration.get() > expiration,
            "not refreshed:\n{m}"
        );
    }
    verify_all(&m, &ours);
    if installed("delv", "-v", "bind9-utils") {
        let anchor = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(anchor.path(), keys.delv_anchor()).unwrap();
        let (_, out) = run(
            "delv",
            vec![
                "@127.0.0.1".into(),
                "-p".into(),
                ts.addr.port().to_string(),
                "-a".into(),
                anchor.path().to_str().unwrap().into(),
                "+root=example.com".into(),
                "downloads.example.com".into(),
                "A".into(),
            ],
        )
        .await;
        assert!(out.contains("; fully validated"), "{out}");
    }
    ts.server.shutdown().await;
}

/// The SOA serial served, asked with and without DO (the same either way), and as `/status`
/// shows it.
async fn soa_serial(ts: &TestServer, ours: &[hickory_proto::dnssec::rdata::DNSKEY]) -> u32 {
    let mut seen = Vec::new();
    for dnssec_ok in [false, true] {
        let (m, _) = ask(ts.addr, "example.com.", RecordType::SOA, dnssec_ok, None).await;
        let soa = m
            .answers
            .iter()
            .find_map(|r| match &r.data {
                hickory_proto::rr::RData::SOA(soa) => Some(soa.serial),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no SOA:\n{m}"));
        if dnssec_ok {
            assert_eq!(verify_all(&m, ours), 1, "the SOA's RRSIG:\n{m}");
        }
        seen.push(soa);
    }
    assert_eq!(seen[0], seen[1], "with and without DO");
    let st = status(ts).await;
    // /status is read after the queries: a refresh in between may have moved it on.
    assert!(st["zones"][0]["serial"].as_u64().unwrap() >= seen[0] as u64);
    seen[0]
}

#[tokio::test]
async fn a_drain_signs_only_the_new_answer_sets() {
    let keys = Keys::new(false);
    let ours = our_dnskeys(&keys);
    let mut config = crate::common::config::Config::parse(&geo_config(2, &keys.section("")));
    config
        .server()
        .insert("admin-state".into(), "admin.toml".into());
    let config = config.to_string();
    let ts = start(&config, ZONE, None).await;
    let (_, _, before) = london_window(ts.addr).await;
    assert_eq!(
        addrs(&before),
        ["192.0.2.11", "192.0.2.10"],
        "eu-west, us-east"
    );
    let st = status(&ts).await;
    assert_eq!(st["zones"][0]["dnssec"]["keys"][0]["tag"], keys.keys[0].tag);
    let (made, reused) = (
        st["dnssec"]["signatures_made"].as_u64().unwrap(),
        st["dnssec"]["signatures_reused"].as_u64().unwrap(),
    );
    assert!(made > 30, "the whole zone is signed at start: {made}");

    std::fs::write(
        ts.dir.path().join("admin.toml"),
        "[[mirror]]\nname = \"eu-west\"\naction = \"drain\"\n",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let after = loop {
        let (_, _, m) = london_window(ts.addr).await;
        if !addrs(&m).contains(&"192.0.2.11".to_string()) {
            break m;
        }
        assert!(Instant::now() < deadline, "the drain was not applied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        verify_all(&after, &ours),
        1,
        "the new answer is signed:\n{after}"
    );
    let st = status(&ts).await;
    let (made_now, reused_now) = (
        st["dnssec"]["signatures_made"].as_u64().unwrap(),
        st["dnssec"]["signatures_reused"].as_u64().unwrap(),
    );
    let new = made_now - made;
    eprintln!(
        "signatures made at start {made}, for the drain {new}; reused {reused} -> {reused_now}"
    );
    // The new sets are the service's A and AAAA sets that no list had before, and its NSEC
    // variants at most: a handful, against the whole zone at start.
    assert!(new >= 1, "the new answer set was signed");
    assert!(
        new <= 6 && new * 5 < made,
        "{new} signatures for a drain ({made} at start)"
    );
    assert!(
        reused_now > reused,
        "unchanged sets reused: {reused} -> {reused_now}"
    );
    assert_eq!(
        metric(&ts, "mirrordns_dnssec_signatures_total").await as u64,
        made_now,
        "/metrics and /status agree"
    );
    assert_eq!(
        metric(&ts, "mirrordns_dnssec_signatures_reused_total").await as u64,
        reused_now
    );
    assert_eq!(
        metric(&ts, "mirrordns_dnssec_signing_failures_total").await,
        0.0
    );
    ts.server.shutdown().await;
}
