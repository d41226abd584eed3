//! Real recursive resolvers in front of mirrordns, on loopback only: Unbound with its
//! subnetcache module (ECS), and PowerDNS Recursor with ECS for our zone. Each config sends both
//! our zone and the root zone to mirrordns, has root hints naming only 127.0.0.1 and no trust
//! anchors, so nothing they do can reach beyond 127.0.0.1.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::resolver::{Resolver, resolver_dir, start_unbound};
use crate::common::*;
use hickory_proto::rr::RecordType;

fn config() -> String {
    geo_config(1, "")
}

/// Asks the resolver for the downloads name on behalf of a client in `subnet`/24.
async fn ask(resolver: SocketAddr, subnet: &str) -> Option<hickory_proto::op::Message> {
    let q = query(
        "downloads.example.com.",
        RecordType::A,
        Some(1232),
        Some((subnet, 24)),
    );
    udp_raw(resolver, &q)
        .await
        .map(|r| hickory_proto::op::Message::from_vec(&r).unwrap())
}

/// The London client's answer, waiting (bounded) for the resolver to come up.
async fn first_answer(resolver: SocketAddr) -> hickory_proto::op::Message {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(m) = ask(resolver, "81.2.69.0").await {
            return m;
        }
        assert!(Instant::now() < deadline, "the resolver did not answer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
#[ignore = "needs unbound (unbound); `cargo test -- --ignored` runs it, as CI does"]
async fn unbound_with_subnetcache_gets_the_mirror_for_the_client_subnet_and_caches_by_scope() {
    require("unbound", "-V", "unbound");
    let ts = start(&config(), ZONE, None).await;
    let (unbound, _resolver, _dir) = start_unbound(ts.addr, None);
    let ask = |subnet: &'static str| ask(unbound, subnet);
    let london = first_answer(unbound).await;
    assert_eq!(
        addrs(&london),
        ["192.0.2.11"],
        "London through the resolver: eu-west"
    );
    let tokyo = ask("1.0.16.0").await.unwrap();
    assert_eq!(
        addrs(&tokyo),
        ["192.0.2.14"],
        "Tokyo through the resolver: ap-northeast"
    );
    assert_eq!(
        ecs(&tokyo).map(|e| e.2),
        Some(20),
        "the resolver passes our scope on"
    );

    // Another /24 inside the /20 scope comes from the resolver's cache: mirrordns sees nothing.
    let before = ts.server.stats().total();
    let cached = ask("1.0.17.0").await.unwrap();
    assert_eq!(addrs(&cached), ["192.0.2.14"]);
    assert_eq!(
        ts.server.stats().total(),
        before,
        "served from the resolver's cache"
    );
    // Outside that scope, the resolver asks again and gets the default mirror.
    let other = ask("10.9.8.0").await.unwrap();
    assert_eq!(addrs(&other), ["192.0.2.10"]);
    assert!(
        ts.server.stats().total() > before,
        "a new subnet outside the scope is asked for"
    );
    ts.server.shutdown().await;
}

fn recursor_conf(dir: &std::path::Path, port: u16, upstream: SocketAddr) -> String {
    let d = dir.display();
    format!(
        r#"local-address=127.0.0.1
local-port={port}
allow-from=127.0.0.0/8
daemon=no
socket-dir={d}
config-dir={d}
hint-file={d}/root.hints
lua-config-file=
dnssec=off
security-poll-suffix=
forward-zones=example.com={upstream}, .={upstream}
dont-query=0.0.0.0/0, ::/0, !127.0.0.0/8
edns-subnet-allow-list=example.com
use-incoming-edns-subnet=yes
ecs-add-for=0.0.0.0/0
disable-syslog=yes
threads=1
pdns-distributes-queries=no
"#
    )
}

#[tokio::test]
#[ignore = "needs pdns_recursor (pdns-recursor); `cargo test -- --ignored` runs it, as CI does"]
async fn powerdns_recursor_passes_the_client_subnet_and_caches_by_scope() {
    require("pdns_recursor", "--version", "pdns-recursor");
    let ts = start(&config(), ZONE, None).await;
    let (dir, port) = resolver_dir();
    std::fs::write(
        dir.path().join("recursor.conf"),
        recursor_conf(dir.path(), port, ts.addr),
    )
    .unwrap();
    let _resolver = Resolver(
        Command::new("pdns_recursor")
            .arg(format!("--config-dir={}", dir.path().display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pdns_recursor starts"),
    );
    let rec: SocketAddr = ([127, 0, 0, 1], port).into();
    assert_eq!(
        addrs(&first_answer(rec).await),
        ["192.0.2.11"],
        "London: eu-west"
    );
    let tokyo = ask(rec, "1.0.16.0").await.unwrap();
    assert_eq!(addrs(&tokyo), ["192.0.2.14"], "Tokyo: ap-northeast");
    // Inside our /20 scope: from the recursor's cache.
    let before = ts.server.stats().total();
    let cached = ask(rec, "1.0.17.0").await.unwrap();
    assert_eq!(addrs(&cached), ["192.0.2.14"]);
    assert_eq!(ts.server.stats().total(), before, "served from the cache");
    // Outside it: asked again, default mirror.
    let other = ask(rec, "10.9.8.0").await.unwrap();
    assert_eq!(addrs(&other), ["192.0.2.10"]);
    assert!(ts.server.stats().total() > before);
    ts.server.shutdown().await;
}
