//! Real recursive resolvers for the interop and DNSSEC tests, on loopback only: each gets its
//! own scratch directory, root hints naming only 127.0.0.1, and stubs for the root and our
//! zone at mirrordns, so that nothing it does can reach beyond 127.0.0.1.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use super::free_port;

/// Kills the resolver when the test ends, however it ends.
pub struct Resolver(pub Child);

impl Drop for Resolver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A scratch directory with root hints that name only a loopback server, and a free port.
pub fn resolver_dir() -> (tempfile::TempDir, u16) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(
        dir.path().join("root.hints"),
        ".  3600000 NS a.root.invalid.\na.root.invalid. 3600000 A 127.0.0.1\n",
    )
    .unwrap();
    (dir, port)
}

/// Unbound with the subnetcache module (ECS from 127.0.0.1, /24), the root and example.com
/// stubbed to `upstream`; `trust_anchor` (a DS line) adds the validator and that anchor, with
/// no trust-anchor updates or signalling.
pub fn unbound_conf(
    dir: &std::path::Path,
    port: u16,
    upstream: SocketAddr,
    trust_anchor: Option<&str>,
) -> String {
    let d = dir.display();
    let up = format!("{}@{}", upstream.ip(), upstream.port());
    let (modules, validation) = match trust_anchor {
        None => ("subnetcache iterator", String::new()),
        Some(ds) => (
            "subnetcache validator iterator",
            format!(
                "  val-log-level: 2\n  trust-anchor: \"{ds}\"\n  trust-anchor-signaling: no\n  root-key-sentinel: no\n"
            ),
        ),
    };
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
  module-config: "{modules}"
  send-client-subnet: 127.0.0.1
  max-client-subnet-ipv4: 24
  root-hints: "{d}/root.hints"
  qname-minimisation: no
  prefetch: no
{validation}stub-zone:
  name: "."
  stub-addr: {up}
stub-zone:
  name: "example.com"
  stub-addr: {up}
"#
    )
}

/// Starts Unbound on `upstream` in a fresh scratch directory: its address, the guard that
/// stops it, and the directory (its log is `unbound.log` there).
pub fn start_unbound(
    upstream: SocketAddr,
    trust_anchor: Option<&str>,
) -> (SocketAddr, Resolver, tempfile::TempDir) {
    let (dir, port) = resolver_dir();
    let conf = dir.path().join("unbound.conf");
    std::fs::write(
        &conf,
        unbound_conf(dir.path(), port, upstream, trust_anchor),
    )
    .unwrap();
    let child = Command::new("unbound")
        .args(["-d", "-c"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("unbound starts");
    (([127, 0, 0, 1], port).into(), Resolver(child), dir)
}
