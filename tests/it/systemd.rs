//! The process under a service manager. Under systemd (`Type=notify`) the server says READY=1
//! only once it answers DNS, reports reloads (good and rejected) as RELOADING=1 then READY=1
//! with a status line, pings the watchdog, and says STOPPING=1 on SIGTERM. systemd's side is
//! played by a Unix datagram socket named in `NOTIFY_SOCKET`, as systemd itself does it. A
//! reload's log tells the operator what it could not apply.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::common::config::ServerSection;
use crate::common::process::{self, Serving};
use crate::common::*;

fn config(port: u16) -> String {
    format!(
        "{}\n[[service]]\nname = \"downloads.example.com\"\nmirrors = [\"us-east\", \"eu-west\", \"ap-northeast\"]\n{MIRRORS}",
        ServerSection::http_port(port)
    )
}

/// The next notification that is not a watchdog ping, within `secs`.
fn next_state(sock: &UnixDatagram, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no notification within {secs} s");
        sock.set_read_timeout(Some(left)).unwrap();
        let n = sock
            .recv(&mut buf)
            .expect("a notification before the deadline");
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        if msg != "WATCHDOG=1" {
            return msg;
        }
    }
}

/// An A query for www.example.com over UDP: the answer's addresses.
fn www(dns: std::net::SocketAddr) -> Vec<String> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let q = query(
        "www.example.com.",
        hickory_proto::rr::RecordType::A,
        None,
        None,
    );
    addrs(&rt.block_on(udp(dns, &q)))
}

/// A config (monitoring endpoint on a free port) and the zone, written to a fresh directory.
fn files() -> (tempfile::TempDir, u16, String, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = config(port);
    let cfg_path = write_files(&dir, &cfg, ZONE, None);
    (dir, port, cfg, cfg_path)
}

fn lines_of(msg: &str) -> Vec<&str> {
    msg.lines().collect()
}

#[test]
fn tells_systemd_when_it_answers_reloads_and_stops() {
    let (dir, port, cfg, cfg_path) = files();
    let notify_path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&notify_path).unwrap();
    let mut srv = Serving::start_with_env(
        &cfg_path,
        port,
        &[
            ("NOTIFY_SOCKET", notify_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );

    let ready = next_state(&sock, 15);
    let ready_lines = lines_of(&ready);
    assert_eq!(ready_lines[0], "READY=1", "{ready}");
    assert!(
        ready_lines
            .iter()
            .any(|l| l.starts_with("STATUS=serving config generation 1 on 127.0.0.1:")),
        "{ready}"
    );
    // Ready means answering: no wait between the notification and the first query.
    assert_eq!(www(srv.dns), ["192.0.2.100"]);

    // The watchdog is pinged at half of WATCHDOG_USEC while DNS is served.
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 64];
    let n = sock.recv(&mut buf).expect("a watchdog ping within 2 s");
    assert_eq!(&buf[..n], b"WATCHDOG=1");

    // A good reload: RELOADING=1 with the monotonic timestamp, then READY=1, generation 2.
    std::fs::write(
        dir.path().join("example.com.zone"),
        ZONE.replace("192.0.2.100", "192.0.2.101"),
    )
    .unwrap();
    srv.signal(libc::SIGHUP);
    let reloading = next_state(&sock, 15);
    let r = lines_of(&reloading);
    assert_eq!(r[0], "RELOADING=1", "{reloading}");
    let usec: u64 = r
        .iter()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading}"));
    assert!(usec > 0);
    let again = next_state(&sock, 30);
    assert!(
        again.starts_with("READY=1\nSTATUS=serving config generation 2 "),
        "{again}"
    );
    assert_eq!(www(srv.dns), ["192.0.2.101"]);

    // A rejected reload: still READY (the old state serves), and the status says why.
    std::fs::write(&cfg_path, format!("{cfg}\nwhat is this line\n")).unwrap();
    srv.signal(libc::SIGHUP);
    assert!(next_state(&sock, 15).starts_with("RELOADING=1\n"));
    let rejected = next_state(&sock, 30);
    assert!(
        rejected.starts_with("READY=1\nSTATUS=serving config generation 2 "),
        "{rejected}"
    );
    assert!(rejected.contains("last reload rejected: "), "{rejected}");
    assert!(rejected.contains("mirrordns.toml"), "{rejected}");
    assert_eq!(rejected.lines().count(), 2, "one status line: {rejected}");
    assert_eq!(www(srv.dns), ["192.0.2.101"]);

    // Every reload is announced, not only SIGHUP: `POST /reload` (as `mirrordns reload` does).
    std::fs::write(&cfg_path, &cfg).unwrap();
    let (code, body) = process::http(port, "POST", "/reload");
    assert_eq!(code, 200, "{body}");
    assert!(next_state(&sock, 15).starts_with("RELOADING=1\n"));
    let again = next_state(&sock, 30);
    assert!(
        again.starts_with("READY=1\nSTATUS=serving config generation 3 "),
        "{again}"
    );
    assert!(!again.contains("rejected"), "{again}");
    srv.assert_running();
    let log = srv.stop();
    let stopping = next_state(&sock, 5);
    assert!(stopping.starts_with("STOPPING=1"), "{stopping}\n{log}");
}

/// Older systemd versions (and other service managers) name a socket in the abstract
/// namespace (`@/org/freedesktop/...`).
#[test]
fn notifies_an_abstract_socket() {
    use std::os::linux::net::SocketAddrExt;
    let (_dir, port, _, cfg_path) = files();
    let name = format!("mirrordns-test-{}-{port}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = UnixDatagram::bind_addr(&addr).unwrap();
    let srv = Serving::start_with_env(&cfg_path, port, &[("NOTIFY_SOCKET", &format!("@{name}"))]);
    assert!(next_state(&sock, 15).starts_with("READY=1\n"));
    assert_eq!(www(srv.dns), ["192.0.2.100"]);
    srv.stop();
    assert!(next_state(&sock, 5).starts_with("STOPPING=1"));
}
