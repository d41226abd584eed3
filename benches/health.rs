//! Health measurements (run with `cargo bench --bench health`; `bench/health.sh` wraps it):
//! - streaming verification throughput of a large file served on loopback, against
//!   `sha256sum` on the same file, and the process's peak memory while verifying;
//! - time from a mirror going down to DNS answers moving away from it, default settings.
//!
//! Sizes and the failover wait are bounded; everything talks to 127.0.0.1 only.
//! `VERIFY_MIB` (default 1024) sets the file size; `FAILOVER=0` skips the failover run.

use std::io::Write;
use std::time::{Duration, Instant};

use mirrordns::config::HealthConfig;
use mirrordns::demo::files::FileServer;
use mirrordns::health::http::{Endpoint, verify_file};
use sha2::{Digest, Sha256};

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

async fn throughput() {
    let mib: u64 = std::env::var("VERIFY_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big.bin");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
        let mut block = vec![0u8; 1 << 20];
        let mut x: u64 = 0x1234_5678_9abc_def1;
        for _ in 0..mib {
            for b in block.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            f.write_all(&block).expect("write");
        }
    }
    let size = mib << 20;
    // The expected hash, computed in-process (also warms the page cache).
    let mut h = Sha256::new();
    {
        use std::io::Read;
        let mut f = std::fs::File::open(&path).expect("open");
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    let sha: [u8; 32] = h.finalize().into();

    let t = Instant::now();
    let out = std::process::Command::new("sha256sum")
        .arg(&path)
        .output()
        .expect("sha256sum runs");
    let sha256sum = t.elapsed();
    assert!(out.status.success());

    let server = FileServer::start(dir.path()).await.expect("file server");
    let cfg = HealthConfig::default();
    let base = reqwest::Url::parse(&server.url()).expect("url");
    let ep = Endpoint::new(&cfg, &base, None).expect("endpoint");
    let url = ep.url("big.bin").expect("url");
    let hwm_before = vm_hwm_kib();
    let t = Instant::now();
    verify_file(
        &ep,
        &url,
        "big.bin",
        size,
        &sha,
        Duration::from_secs(10),
        Duration::from_secs(600),
    )
    .await
    .expect("verifies");
    let ours = t.elapsed();
    let hwm_after = vm_hwm_kib();
    let mbs = |d: Duration| size as f64 / (1 << 20) as f64 / d.as_secs_f64();
    println!(
        "verify {mib} MiB over loopback HTTP: {:.0} MiB/s ({:.2} s); sha256sum on the file: {:.0} MiB/s ({:.2} s); ratio {:.2}",
        mbs(ours),
        ours.as_secs_f64(),
        mbs(sha256sum),
        sha256sum.as_secs_f64(),
        sha256sum.as_secs_f64() / ours.as_secs_f64()
    );
    println!(
        "peak RSS (VmHWM) before verifying {} MiB after {} MiB: grew {} KiB",
        hwm_before / 1024,
        hwm_after / 1024,
        hwm_after.saturating_sub(hwm_before)
    );
}

async fn failover() {
    use mirrordns::daemon::Server;
    use mirrordns::load::Loaded;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::create_dir_all(d.join("m")).expect("dir");
    std::fs::write(d.join("m/alive.txt"), b"ok").expect("write");
    let mirror = FileServer::start(&d.join("m")).await.expect("mirror");
    std::fs::write(
        d.join("z.zone"),
        "$ORIGIN example.com.\n$TTL 60\n@ SOA ns1 h 1 3600 600 86400 60\n@ NS ns1\nns1 A 192.0.2.53\n",
    )
    .expect("zone");
    let cfg = format!(
        "[server]\ndns-listen = [\"127.0.0.1:0\"]\nhttp-listen = \"127.0.0.1:0\"\nzones = [\"z.zone\"]\n\n[[service]]\nname = \"downloads.example.com\"\nmirrors = [\"a\", \"b\"]\nanswers = 1\n\n[[mirror]]\nname = \"a\"\nipv4 = [\"192.0.2.1\"]\nlocation = {{ lat = 0.0, lon = 0.0 }}\nbase-url = \"{}\"\n\n[[mirror]]\nname = \"b\"\nipv4 = [\"192.0.2.2\"]\nlocation = {{ lat = 1.0, lon = 1.0 }}\n",
        mirror.url()
    );
    std::fs::write(d.join("c.toml"), cfg).expect("config");
    let server = Server::start(Loaded::from_file(&d.join("c.toml")).expect("loads"))
        .await
        .expect("starts");
    let addr = server.dns_addrs()[0];
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("socket");
    sock.set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let q: &[u8] = &[
        0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 9, b'd', b'o', b'w', b'n', b'l', b'o', b'a', b'd',
        b's', 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm', 0, 0, 1, 0, 1,
    ];
    let answer = || -> Option<u8> {
        sock.send_to(q, addr).ok()?;
        let mut b = [0u8; 512];
        let n = sock.recv(&mut b).ok()?;
        (n >= 4).then(|| b[n - 1])
    };
    // Let the first probe round mark the mirror up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(answer(), Some(1), "mirror a answers first");
    mirror.set(|k| k.status = Some(503));
    let t = Instant::now();
    while answer() == Some(1) && t.elapsed() < Duration::from_secs(90) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "mirror down -> answers moved away after {:.1} s (default interval 10 s with jitter, fall 3)",
        t.elapsed().as_secs_f64()
    );
    server.shutdown().await;
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(throughput());
    if std::env::var("FAILOVER").as_deref() != Ok("0") {
        rt.block_on(failover());
    }
}
