//! Reloads while queries flow: no query lost, every answer valid for the old or the new state,
//! bad reloads change nothing; watched files reload by themselves; `mirrordns reload`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::common::config::{Config, strings};
use crate::common::mmdb::{build, place};
use crate::common::*;
use hickory_proto::rr::RecordType;

/// Static mirrors, eu-west at `eu_ip`, and a London database.
fn config(eu_ip: &str) -> Config {
    let mut c = Config::parse(&format!(
        r#"{}
[geo]
database = "geo.mmdb"

[[service]]
name = "downloads.example.com"
mirrors = ["us-east", "eu-west", "ap-northeast"]
{}"#,
        server_section(),
        MIRRORS
    ));
    c.mirror("eu-west").insert("ipv4".into(), strings([eu_ip]));
    c
}

/// `config` with `answers = 0`, which a reload must reject.
fn answers_zero(mut c: Config) -> String {
    c.service("downloads.example.com")
        .insert("answers".into(), 0.into());
    c.to_string()
}

fn london_db() -> Vec<u8> {
    build(&[("81.2.64.0/19", place("EU", "GB", 51.5, -0.13))])
}

fn tokyo_db() -> Vec<u8> {
    build(&[("81.2.64.0/19", place("AS", "JP", 35.7, 139.7))])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_reloads_under_load_lose_nothing() {
    let ts = start(&config("192.0.2.11").to_string(), ZONE, Some(london_db())).await;
    let dir = ts.dir.path().to_path_buf();
    let addr = ts.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, lost) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut clients = Vec::new();
    for c in 0..3 {
        let (stop, sent, lost) = (stop.clone(), sent.clone(), lost.clone());
        clients.push(tokio::spawn(async move {
            let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let mut buf = vec![0u8; 4096];
            // Bounded: at most 20,000 queries per client.
            for i in 0..20_000u32 {
                if stop.load(Relaxed) {
                    break;
                }
                // Alternate the geo name and a static name.
                let q = if i % 2 == 0 {
                    query(
                        "downloads.example.com.",
                        RecordType::A,
                        Some(1232),
                        Some(("81.2.69.0", 24)),
                    )
                } else {
                    query("www.example.com.", RecordType::A, None, None)
                };
                sock.send_to(&q, addr).await.unwrap();
                sent.fetch_add(1, Relaxed);
                match tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf)).await {
                    Ok(Ok(n)) => {
                        let m = hickory_proto::op::Message::from_vec(&buf[..n]).unwrap();
                        assert_eq!(
                            m.metadata.id,
                            u16::from_be_bytes([q[0], q[1]]),
                            "client {c}"
                        );
                        let a = addrs(&m);
                        let valid = if i % 2 == 0 {
                            a == ["192.0.2.11"] || a == ["192.0.2.111"]
                        } else {
                            a == ["192.0.2.100"]
                        };
                        assert!(valid, "answer valid for neither state: {a:?}");
                    }
                    _ => {
                        lost.fetch_add(1, Relaxed);
                    }
                }
            }
        }));
    }
    let good_a = config("192.0.2.11").to_string();
    let good_b = config("192.0.2.111").to_string();
    let path = dir.join("mirrordns.toml");
    let (mut ok, mut rejected) = (0, 0);
    let started = Instant::now();
    for i in 0..100 {
        let expect_ok = match i % 4 {
            0 => {
                std::fs::write(&path, answers_zero(config("192.0.2.11"))).unwrap();
                false
            }
            1 => {
                std::fs::write(&path, &good_b).unwrap();
                true
            }
            2 => {
                std::fs::write(
                    dir.join("example.com.zone"),
                    ZONE.replace("ns2         A     198.51.100.53", "ns2 A 300.1.1.1"),
                )
                .unwrap();
                false
            }
            _ => {
                std::fs::write(dir.join("example.com.zone"), ZONE).unwrap();
                std::fs::write(&path, &good_a).unwrap();
                true
            }
        };
        let before = london(addr).await;
        let r = ts.server.reload().await;
        assert_eq!(r.is_ok(), expect_ok, "reload {i}: {r:?}");
        if r.is_ok() {
            ok += 1;
        } else {
            rejected += 1;
            assert_eq!(
                london(addr).await,
                before,
                "a rejected reload changed answers"
            );
        }
    }
    let reload_time = started.elapsed();
    stop.store(true, Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let (sent, lost) = (sent.load(Relaxed), lost.load(Relaxed));
    println!(
        "reloads under load: {ok} applied, {rejected} rejected in {reload_time:?}; {sent} queries, {lost} lost"
    );
    assert_eq!(lost, 0, "queries lost during reloads");
    assert!(sent > 1000, "only {sent} queries ran");
    assert_eq!(london(addr).await, ["192.0.2.11"]);
}

#[tokio::test]
async fn replaced_geo_database_and_edited_zones_reload_by_themselves() {
    let ts = start(
        &{
            let mut c = config("192.0.2.11");
            c.server().insert("watch-zones".into(), true.into());
            c.to_string()
        },
        ZONE,
        Some(london_db()),
    )
    .await;
    let dir = ts.dir.path();
    assert_eq!(london(ts.addr).await, ["192.0.2.11"]);
    let wait = |want: &'static str| async move {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if london(ts.addr).await == [want] {
                return;
            }
            assert!(Instant::now() < deadline, "answer never became {want}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    // geoipupdate style: write a new file beside it, rename it into place.
    std::fs::write(dir.join("geo.mmdb.new"), tokyo_db()).unwrap();
    std::fs::rename(dir.join("geo.mmdb.new"), dir.join("geo.mmdb")).unwrap();
    wait("192.0.2.14").await;
    // A broken database renamed in is rejected; answers stay.
    std::fs::write(dir.join("geo.mmdb.new"), b"not a database").unwrap();
    std::fs::rename(dir.join("geo.mmdb.new"), dir.join("geo.mmdb")).unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(london(ts.addr).await, ["192.0.2.14"]);
    // Zone edits are picked up too (watch-zones = true).
    std::fs::write(dir.join("geo.mmdb.new"), london_db()).unwrap();
    std::fs::rename(dir.join("geo.mmdb.new"), dir.join("geo.mmdb")).unwrap();
    std::fs::write(
        dir.join("example.com.zone"),
        ZONE.replace("192.0.2.100", "192.0.2.200"),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let m = udp(
            ts.addr,
            &query("www.example.com.", RecordType::A, None, None),
        )
        .await;
        if addrs(&m) == ["192.0.2.200"] {
            break;
        }
        assert!(Instant::now() < deadline, "zone edit not picked up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(london(ts.addr).await, ["192.0.2.11"]);
}

/// A London-database server whose monitoring endpoint is on a known port, so that the
/// binary's `reload` and `check --diff` can find it from the config file.
async fn start_with_endpoint_port() -> (Config, TestServer) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = config("192.0.2.11");
    cfg.server()
        .insert("http-listen".into(), format!("127.0.0.1:{port}").into());
    let ts = start(&cfg.to_string(), ZONE, Some(london_db())).await;
    (cfg, ts)
}

#[test]
fn mirrordns_reload_command() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (cfg, ts) = rt.block_on(start_with_endpoint_port());
    let path = ts.config_path();
    let run = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mirrordns"))
            .args(["reload", "--config", path.to_str().unwrap()])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let mut moved = cfg.clone();
    moved
        .mirror("eu-west")
        .insert("ipv4".into(), strings(["192.0.2.111"]));
    std::fs::write(&path, moved.to_string()).unwrap();
    let (code, out) = run();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("reloaded"), "{out}");
    assert_eq!(rt.block_on(london(ts.addr)), ["192.0.2.111"]);
    std::fs::write(&path, answers_zero(cfg)).unwrap();
    let (code, out) = run();
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("answers") && out.contains("mirrordns.toml:"),
        "{out}"
    );
    assert_eq!(rt.block_on(london(ts.addr)), ["192.0.2.111"]);
    rt.block_on(ts.server.shutdown());
}

#[test]
fn check_diff_shows_what_a_reload_would_change() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (mut next, ts) = rt.block_on(start_with_endpoint_port());
    let path = ts.config_path();
    // The next config: eu-west moves, a network is placed in Tokyo, the zone's serial rises.
    next.mirror("eu-west")
        .insert("ipv4".into(), strings(["192.0.2.111"]));
    next.geo_override("8.8.8.0/24", 35.7, 139.7);
    std::fs::write(&path, next.to_string()).unwrap();
    std::fs::write(
        ts.dir.path().join("example.com.zone"),
        ZONE.replace("2026112701", "2026112702"),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mirrordns"))
        .args(["check", "--diff", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("~ mirror eu-west: addresses"), "{text}");
    assert!(
        text.contains("~ zone example.com.: serial 2026112701 -> 2026112702"),
        "{text}"
    );
    assert!(
        text.contains(
            "~ downloads.example.com for 8.8.8.0: [us-east, eu-west, ap-northeast] -> [ap-northeast"
        ),
        "{text}"
    );
    // Nothing was applied: the server still answers from the old state.
    assert_eq!(rt.block_on(london(ts.addr)), ["192.0.2.11"]);
    rt.block_on(ts.server.shutdown());
}
