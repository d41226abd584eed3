//! A mirror found serving wrong bytes is out of every answer. Once someone fixes the file it is
//! routed again within two probe intervals plus the download, not after the minutes a full
//! re-check of a mismatch waits; while it stays wrong, a round costs a HEAD of the wrong file,
//! not its download. Real loopback mirrors, observed through real DNS answers and `/status`.

use std::time::{Duration, Instant};

use crate::common::config::Config;
use crate::common::mirrors::*;
use crate::common::release;

const INTERVAL: Duration = Duration::from_millis(500);
const FILE: &str = "eu/tool/v1.8.2/tool-linux-amd64.tar.gz";

/// `Setup`'s config probing every `INTERVAL` instead of every 100 ms, so that the bound on
/// a repair is measured in rounds long enough to tell apart.
fn slow_interval(config: String) -> String {
    let mut c = Config::parse(&config);
    c.table("health").insert(
        "interval".into(),
        format!("{}ms", INTERVAL.as_millis()).into(),
    );
    c.to_string()
}

#[tokio::test]
async fn a_repaired_mirror_is_routed_again_within_two_intervals() {
    // The operator's fix: the right file renamed into place (rsync's default), or written in
    // place (rsync --inplace), which passes through a file cut short.
    for in_place in [false, true] {
        let s = Setup::new().await;
        let file = s.path(FILE);
        let good = std::fs::read(&file).unwrap();
        release::corrupt(&file);
        let cfg = slow_interval(s.config(MANIFEST, "", ""));
        let (server, addr) = s.start(&cfg).await;
        wait_for(addr, &[US], 10).await;
        let eu = mirror_status(&server, "eu-west").await;
        assert_eq!(eu["state"], "mismatch", "{eu}");
        assert_eq!(eu["routable"], false, "{eu}");
        assert!(
            eu["reason"].as_str().unwrap().contains("sha256 mismatch"),
            "{eu}"
        );

        // It stays wrong: answers stay on us-east, and each round costs the liveness probe
        // and one HEAD, never the 96 KiB file.
        let (bytes, requests, started) = (s.eu.bytes_sent(), s.eu.requests(), Instant::now());
        for _ in 0..25 {
            assert_eq!(london_answer(addr).await.1, [US]);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let spent = s.eu.bytes_sent() - bytes;
        let asked = s.eu.requests() - requests;
        // Rounds come every interval less up to 10 % jitter.
        let rounds = (started.elapsed().as_secs_f64() / (INTERVAL.as_secs_f64() * 0.9)) as u64 + 1;
        assert!(spent < 16 * 1024, "{spent} bytes sent in {rounds} rounds");
        assert!(
            asked <= 2 * rounds,
            "{asked} requests in {rounds} rounds: more than a probe and a HEAD each"
        );
        assert!(state_of(&server, "eu-west").await.starts_with("mismatch"));

        if in_place {
            std::fs::write(&file, &good[..40 * 1024]).unwrap();
            wait_state(&server, "eu-west", |st| {
                st.starts_with("mismatch") && st.contains("incomplete: 40960 of 98304 bytes")
            })
            .await;
            assert_eq!(london_answer(addr).await.1, [US], "still out mid-repair");
            std::fs::write(&file, &good).unwrap();
        } else {
            release::replace(&file, &good);
        }
        let fixed = Instant::now();
        wait_for(addr, &[EU], 10).await;
        let took = fixed.elapsed();
        eprintln!("in place: {in_place}: routed again {took:?} after the fix");
        // Two intervals (with jitter) plus the download and the answer's way to DNS.
        assert!(
            took < INTERVAL.mul_f64(2.2) + Duration::from_millis(500),
            "routed again only after {took:?}"
        );
        let eu = mirror_status(&server, "eu-west").await;
        assert_eq!(eu["state"], "ready", "{eu}");
        assert_eq!(eu["routable"], true, "{eu}");
        server.shutdown().await;
    }
}

/// The state file keeps which file was wrong and what the mirror sent with it: a repair made
/// while the server was stopped is seen in the first round after the start.
#[tokio::test]
async fn a_repair_made_while_stopped_is_seen_at_the_next_start() {
    let s = Setup::new().await;
    let file = s.path(FILE);
    let good = std::fs::read(&file).unwrap();
    release::corrupt(&file);
    let health = format!("state-file = \"{}\"", s.path("state.json").display());
    let cfg = slow_interval(s.config(MANIFEST, "", &health));
    let (server, addr) = s.start(&cfg).await;
    wait_for(addr, &[US], 10).await;
    wait_state(&server, "eu-west", |st| st.starts_with("mismatch")).await;
    server.shutdown().await;

    release::replace(&file, &good);
    let started = Instant::now();
    let (server, addr) = s.start(&cfg).await;
    wait_for(addr, &[EU], 10).await;
    let took = started.elapsed();
    eprintln!("routed {took:?} after the start");
    assert!(
        took < INTERVAL.mul_f64(2.2) + Duration::from_millis(500),
        "routed only after {took:?}"
    );
    server.shutdown().await;
}
