//! A UDP worker whose socket stops being a socket ends, and the server stops its DNS
//! listeners rather than answer on some sockets and not others: `/healthz` says so and
//! `dns_stopping` completes (`mirrordns serve` then exits non-zero for its supervisor).

use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::common::*;
use hickory_proto::rr::RecordType;

/// This process's file descriptors for UDP sockets bound to `port` on IPv4.
fn udp_fds(port: u16) -> Vec<i32> {
    let table = std::fs::read_to_string("/proc/self/net/udp").expect("/proc/self/net/udp");
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let local_port = cols.get(1)?.rsplit(':').next()?;
            (u16::from_str_radix(local_port, 16).ok()? == port)
                .then(|| cols.get(9).map(|s| s.to_string()))?
        })
        .collect();
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| {
            let e = e.ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            let t = target.to_string_lossy();
            let inode = t.strip_prefix("socket:[")?.strip_suffix(']')?;
            inodes
                .iter()
                .any(|i| i == inode)
                .then(|| e.file_name().to_string_lossy().parse().ok())?
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_socket_breaks_stops_the_dns_listeners() {
    mirrordns::health::http::install_crypto();
    let ts = start(
        &format!("{}{LONDON_OVERRIDE}\n[[service]]\nname = \"downloads.example.com\"\nmirrors = [\"eu-west\", \"us-east\"]\n{MIRRORS}", server_section()),
        ZONE,
        None,
    )
    .await;
    let q = query("downloads.example.com.", RecordType::A, Some(1232), None);
    assert!(!addrs(&udp(ts.addr, &q).await).is_empty(), "answers first");
    let health = format!("http://{}/healthz", ts.server.http_addr().expect("http"));
    assert_eq!(reqwest::get(&health).await.expect("healthz").status(), 200);

    let fds = udp_fds(ts.addr.port());
    assert!(!fds.is_empty(), "found the server's UDP sockets");
    // Put /dev/null where one worker's socket was: its next receive fails with ENOTSOCK.
    let null = std::fs::File::open("/dev/null").expect("/dev/null");
    // SAFETY: dup2 onto a descriptor this process owns; the worker thread holding it only
    // passes the number to recvmmsg/sendmmsg, which then fail cleanly.
    let r = unsafe { libc::dup2(null.as_raw_fd(), fds[0]) };
    assert_eq!(r, fds[0], "{}", std::io::Error::last_os_error());

    tokio::time::timeout(Duration::from_secs(5), ts.server.dns_stopping())
        .await
        .expect("the DNS listeners stop within seconds of a worker ending");
    // The other workers notice within one receive timeout; then /healthz tells the load
    // balancer and the supervisor.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = reqwest::get(&health).await.expect("healthz still answers");
        if r.status() == 503 {
            assert_eq!(r.text().await.expect("body"), "DNS listeners stopped\n");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/healthz still says {} after the listeners stopped",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ts.server.shutdown().await;
}
