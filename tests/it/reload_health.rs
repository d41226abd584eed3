//! A reload keeps what the prober knows and is doing: a verification in flight finishes instead
//! of starting over (with large releases, every reload would otherwise cost a full download per
//! mirror), state follows each mirror by name when mirrors are reordered or added, and probe
//! counters go on counting. Real loopback mirrors, real DNS answers, real `/metrics` scrapes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::common::config::{Config, static_mirror, strings};
use crate::common::mirrors::*;
use crate::common::release;
use crate::common::{addrs, london_query, udp};
use mirrordns::daemon::Server;

const MB: u64 = 4;

/// Origin and mirrors hold v1.8.2 with a 4 MiB tarball; eu-west sends it slowly (about 3 s).
async fn slow_eu() -> Setup {
    let s = Setup::new().await;
    let files = release::large_files("v1.8.2", MB as usize);
    for d in ["origin", "eu", "us"] {
        release::write_files(&s.path(d), V1, "v1.8.2", &files);
    }
    s.eu.set(|k| {
        k.only_path = Some(".tar.gz".into());
        k.drip = Some((64 * 1024, Duration::from_millis(50)));
    });
    s
}

/// Returns once eu-west has sent half the tarball: its verification is well under way.
async fn mid_download(s: &Setup) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.eu.bytes_sent() < (MB << 20) / 2 {
        assert!(
            Instant::now() < deadline,
            "no download under way: {} bytes sent",
            s.eu.bytes_sent()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// eu-west, now routable, sent the tarball once: a second download would add at least half
/// of it again.
fn downloaded_once(s: &Setup) {
    let sent = s.eu.bytes_sent();
    assert!(
        sent < (MB << 20) * 13 / 10,
        "eu-west sent {sent} bytes for a {MB} MiB release: its verification started over"
    );
}

/// The prober's counters in `/metrics`, by sample name and labels.
async fn probe_counters(server: &Server) -> HashMap<String, f64> {
    const FAMILIES: [&str; 5] = [
        "mirrordns_probes_total",
        "mirrordns_probe_duration_seconds_count",
        "mirrordns_hash_mismatches_total",
        "mirrordns_manifest_failures_total",
        "mirrordns_manifest_signature_failures_total",
    ];
    monitoring(server, "/metrics")
        .await
        .lines()
        .filter(|l| FAMILIES.iter().any(|f| l.starts_with(f)))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn not_lower(before: &HashMap<String, f64>, after: &HashMap<String, f64>) {
    for (k, v) in before {
        let a = after.get(k).copied().unwrap_or(0.0);
        assert!(a >= *v, "{k}: {v} before the reload, {a} after");
    }
}

#[tokio::test]
async fn a_reload_lets_a_verification_in_flight_finish_and_counters_go_on() {
    let s = slow_eu().await;
    let (server, addr) = s.start(&s.config(MANIFEST, "", "")).await;
    wait_for(addr, &[US], 10).await;
    mid_download(&s).await;
    let before = probe_counters(&server).await;
    let us_ok = r#"mirrordns_probes_total{mirror="us-east",result="ok"}"#;
    assert!(before.get(us_ok).is_some_and(|n| *n >= 3.0), "{before:?}");

    // Only the service's TTL changes.
    std::fs::write(
        s.path("mirrordns.toml"),
        s.config(MANIFEST, "ttl = 120", ""),
    )
    .unwrap();
    server.reload().await.expect("reloads");
    let m = udp(addr, &london_query()).await;
    assert_eq!(m.answers[0].ttl, 120, "the new config is in force");
    assert_eq!(addrs(&m), [US], "us-east stays routable");
    not_lower(&before, &probe_counters(&server).await);

    wait_for(addr, &[EU], 15).await;
    downloaded_once(&s);
    let after = probe_counters(&server).await;
    not_lower(&before, &after);
    assert!(
        after[us_ok] > before[us_ok],
        "us-east probed since: {after:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn mirrors_reordered_and_added_by_a_reload_keep_their_own_state() {
    let s = slow_eu().await;
    let cfg = s.config(MANIFEST, "", "");
    let (server, addr) = s.start(&cfg).await;
    wait_for(addr, &[US], 10).await;
    mid_download(&s).await;

    // us-east's block before eu-west's, and a new static mirror for the service.
    let mut reordered = Config::parse(&cfg);
    reordered.service("downloads.example.com").insert(
        "mirrors".into(),
        strings(["eu-west", "us-east", "ap-south"]),
    );
    let mirrors = reordered.list("mirror");
    assert_eq!(mirrors.len(), 2, "eu-west and us-east");
    mirrors.swap(0, 1);
    mirrors.push(static_mirror("ap-south", "192.0.2.12", 1.35, 103.8));
    std::fs::write(s.path("mirrordns.toml"), reordered.to_string()).unwrap();
    server.reload().await.expect("reloads");
    // Each state went with its mirror: us-east (verified) answers, eu-west is not yet
    // routable.
    assert_eq!(london_answer(addr).await.1, [US]);
    let eu = state_of(&server, "eu-west").await;
    assert!(eu.starts_with("verifying"), "{eu}");

    wait_for(addr, &[EU], 15).await;
    downloaded_once(&s);
    for (name, state) in [
        ("eu-west", "ready"),
        ("us-east", "ready"),
        ("ap-south", "ready"),
    ] {
        let m = mirror_status(&server, name).await;
        assert_eq!(m["state"], state, "{m}");
        assert_eq!(m["routable"], true, "{m}");
    }
    server.shutdown().await;
}
