//! A real recursive resolver in front of mirrordns: Unbound with its subnetcache module (ECS),
//! on loopback only. Its config stubs both our zone and the root zone to mirrordns and has no
//! trust anchors, so nothing it does can reach beyond 127.0.0.1.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::rr::RecordType;

/// Kills the resolver when the test ends, however it ends.
struct Resolver(Child);

impl Drop for Resolver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn config() -> String {
    format!(
        r#"{}
[[geo.override]]
network = "81.2.64.0/19"
location = {{ lat = 51.5, lon = -0.13, country = "GB", continent = "EU" }}
[[geo.override]]
network = "1.0.16.0/20"
location = {{ lat = 35.7, lon = 139.7, country = "JP", continent = "AS" }}
[[service]]
name = "downloads.example.com"
mirrors = ["us-east", "eu-west", "ap-northeast"]
{MIRRORS}"#,
        server_section()
    )
}

fn unbound_conf(dir: &std::path::Path, port: u16, upstream: SocketAddr) -> String {
    let d = dir.display();
    let up = format!("{}@{}", upstream.ip(), upstream.port());
    format!(
        r#"server:
  interface: 127.0.0.1
  port: {port}
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "{d}"
  pidfile: "{d}/unbound.pid"
  use-syslog: no
  logfile: "{d}/unbound.log"
  verbosity: 1
  do-not-query-localhost: no
  access-control: 127.0.0.0/8 allow
  module-config: "subnetcache iterator"
  send-client-subnet: 127.0.0.1
  max-client-subnet-ipv4: 24
  root-hints: "{d}/root.hints"
  qname-minimisation: no
  prefetch: no
stub-zone:
  name: "."
  stub-addr: {up}
stub-zone:
  name: "example.com"
  stub-addr: {up}
"#
    )
}

#[tokio::test]
async fn unbound_with_subnetcache_gets_the_mirror_for_the_client_subnet_and_caches_by_scope() {
    if Command::new("unbound").arg("-V").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI must install unbound");
        eprintln!("unbound is not installed; skipping (apt-get install unbound)");
        return;
    }
    let ts = start(&config(), ZONE, None).await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Root hints that name only a loopback server.
    std::fs::write(
        dir.path().join("root.hints"),
        ".  3600000 NS a.root.invalid.\na.root.invalid. 3600000 A 127.0.0.1\n",
    )
    .unwrap();
    let conf = dir.path().join("unbound.conf");
    std::fs::write(&conf, unbound_conf(dir.path(), port, ts.addr)).unwrap();
    let _resolver = Resolver(
        Command::new("unbound")
            .args(["-d", "-c"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("unbound starts"),
    );
    let unbound: SocketAddr = ([127, 0, 0, 1], port).into();
    let ask = |subnet: &'static str| async move {
        let q = query(
            "downloads.example.com.",
            RecordType::A,
            Some(1232),
            Some((subnet, 24)),
        );
        udp_raw(unbound, &q)
            .await
            .map(|r| hickory_proto::op::Message::from_vec(&r).unwrap())
    };
    // Wait (bounded) for the resolver to come up.
    let deadline = Instant::now() + Duration::from_secs(10);
    let london = loop {
        if let Some(m) = ask("81.2.69.0").await {
            break m;
        }
        assert!(Instant::now() < deadline, "unbound did not answer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
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
