//! The routing table swapped while queries flow; reload keeps the last good state; IPv6.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::common::config::{Config, ServerSection, strings};
use crate::common::*;
use hickory_proto::rr::RecordType;
use mirrordns::load::Loaded;
use mirrordns::routing::{self, Eligibility, HealthSnapshot};

fn config() -> String {
    config_on(ServerSection::default())
}

fn config_on(server: ServerSection) -> String {
    format!(
        r#"{}
{LONDON_OVERRIDE}[[service]]
name = "downloads.example.com"
answers = 2
mirrors = ["us-east", "eu-west", "ap-south", "sa-east", "ap-northeast"]
{MIRRORS}"#,
        server
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_tables_under_load_loses_no_query_and_never_mixes_tables() {
    let ts = start(&config(), ZONE, None).await;
    let loaded = Loaded::from_file(&ts.config_path()).unwrap();
    // Table A: everything up -> London gets eu-west + us-east.
    // Table B: eu-west down -> us-east + sa-east.
    let up = HealthSnapshot::static_config(&loaded.config);
    let mut down = up.clone();
    down.services[0][1] = Eligibility::Out;
    let a: Vec<String> = vec!["192.0.2.11".into(), "192.0.2.10".into()];
    let b: Vec<String> = vec!["192.0.2.10".into(), "192.0.2.13".into()];

    let addr = ts.addr;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let mut buf = vec![0u8; 4096];
            // Bounded: at most 2000 queries per client.
            for _ in 0..2000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let q = query(
                    "downloads.example.com.",
                    RecordType::A,
                    Some(1232),
                    Some(("81.2.69.0", 24)),
                );
                sock.send_to(&q, addr).await.unwrap();
                let n = tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf))
                    .await
                    .expect("no query lost")
                    .unwrap();
                let m = hickory_proto::op::Message::from_vec(&buf[..n]).unwrap();
                assert_eq!(m.metadata.id, u16::from_be_bytes([q[0], q[1]]));
                seen.push(addrs(&m));
            }
            seen
        }));
    }
    let mut generation = 100;
    for i in 0..200 {
        let health = if i % 2 == 0 { &down } else { &up };
        generation += 1;
        let t = routing::build(&loaded.inputs, health, generation);
        ts.server.table().store(Arc::new(t));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut kinds = HashSet::new();
    let mut total = 0;
    for c in clients {
        for answer in c.await.unwrap() {
            total += 1;
            assert!(
                answer == a || answer == b,
                "mixed or wrong answer: {answer:?}"
            );
            kinds.insert(answer);
        }
    }
    assert!(total > 100, "only {total} queries ran");
    assert_eq!(kinds.len(), 2, "both tables were served");
}

#[tokio::test]
async fn reload_applies_good_config_and_keeps_last_good_on_error() {
    let ts = start(&config(), ZONE, None).await;
    let q = query(
        "downloads.example.com.",
        RecordType::A,
        Some(1232),
        Some(("81.2.69.0", 24)),
    );
    assert_eq!(addrs(&udp(ts.addr, &q).await), ["192.0.2.11", "192.0.2.10"]);

    // Good change: eu-west moves.
    let path = ts.config_path();
    let mut cfg = Config::parse(&std::fs::read_to_string(&path).unwrap());
    cfg.mirror("eu-west")
        .insert("ipv4".into(), strings(["192.0.2.111"]));
    let good = cfg.to_string();
    std::fs::write(&path, &good).unwrap();
    ts.server.reload().await.expect("reload succeeds");
    assert_eq!(
        addrs(&udp(ts.addr, &q).await),
        ["192.0.2.111", "192.0.2.10"]
    );

    // Bad config: rejected, answers unchanged.
    cfg.service("downloads.example.com")
        .insert("answers".into(), 0.into());
    std::fs::write(&path, cfg.to_string()).unwrap();
    let err = ts.server.reload().await.expect_err("bad config rejected");
    assert!(err.to_string().contains("answers"), "{err}");
    assert_eq!(
        addrs(&udp(ts.addr, &q).await),
        ["192.0.2.111", "192.0.2.10"]
    );

    // Bad zone: rejected too.
    std::fs::write(&path, &good).unwrap();
    std::fs::write(
        ts.dir.path().join("example.com.zone"),
        ZONE.replace("www         A     192.0.2.100", "www A"),
    )
    .unwrap();
    let err = ts.server.reload().await.expect_err("bad zone rejected");
    assert!(err.to_string().contains("example.com.zone:"), "{err}");
    let m = udp(
        ts.addr,
        &query("www.example.com.", RecordType::A, None, None),
    )
    .await;
    assert_eq!(addrs(&m), ["192.0.2.100"]);
}

#[tokio::test]
async fn ipv6_listener_answers_over_udp_and_tcp() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback on this machine; skipping");
        return;
    }
    let cfg = config_on(ServerSection {
        dns_listen: "[::1]:0".into(),
        ..ServerSection::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let path = write_files(&dir, &cfg, ZONE, None);
    let server = mirrordns::daemon::Server::start(Loaded::from_file(&path).unwrap())
        .await
        .unwrap();
    let addr = server.dns_addrs()[0];
    assert!(addr.is_ipv6());
    let q = query("www.example.com.", RecordType::AAAA, None, None);
    let sock = tokio::net::UdpSocket::bind("[::1]:0").await.unwrap();
    sock.send_to(&q, addr).await.unwrap();
    let mut buf = vec![0u8; 2048];
    let n = tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let m = hickory_proto::op::Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(addrs(&m), ["2001:db8::100"]);
    assert_eq!(addrs(&tcp(addr, &q).await), ["2001:db8::100"]);
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_releases_the_ports() {
    let ts = start(&config(), ZONE, None).await;
    let addr = ts.addr;
    ts.server.shutdown().await;
    // Both UDP and TCP can be bound again at once.
    std::net::UdpSocket::bind(addr).expect("UDP port free after shutdown");
    std::net::TcpListener::bind(addr).expect("TCP port free after shutdown");
}

/// Slowloris: stalled TCP connections from one address cannot take the server's TCP away from
/// other clients, and UDP keeps answering; stalled connections are closed after the idle time.
#[tokio::test]
async fn stalled_tcp_connections_from_one_client_do_not_starve_others() {
    let cfg = config_on(ServerSection {
        tcp_max_per_client: Some(8),
        tcp_idle_timeout: Some("1s"),
        ..ServerSection::default()
    });
    let ts = start(&cfg, ZONE, None).await;
    let attacker: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    // Bounded: 30 connections that send nothing (or half a length prefix).
    let mut stalled = Vec::new();
    for i in 0..30 {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind((attacker, 0).into()).unwrap();
        let mut s = sock.connect(ts.addr).await.unwrap();
        if i % 2 == 0 {
            use tokio::io::AsyncWriteExt;
            let _ = s.write_all(&[0]).await;
        }
        stalled.push(s);
    }
    let q = query("www.example.com.", RecordType::A, None, None);
    // Another client still gets TCP answers, and UDP is unaffected.
    assert_eq!(addrs(&tcp(ts.addr, &q).await), ["192.0.2.100"]);
    assert_eq!(addrs(&udp(ts.addr, &q).await), ["192.0.2.100"]);
    // Beyond its 8 connections, the attacker's are closed at once; the first 8 after the idle time.
    use tokio::io::AsyncReadExt;
    let started = std::time::Instant::now();
    let mut closed = 0;
    for s in &mut stalled {
        let mut b = [0u8; 1];
        // Closed: end of stream, or a reset when the half-sent prefix was never read.
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_secs(3), s.read(&mut b)).await
        {
            closed += 1;
        }
    }
    assert_eq!(closed, 30, "every stalled connection is closed");
    assert!(started.elapsed() < Duration::from_secs(4));
    ts.server.shutdown().await;
}
