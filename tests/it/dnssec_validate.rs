//! Signed answers checked by real validators on loopback: Unbound (with its subnetcache
//! module, so each client subnet gets its own signed geo answer) sets AD on every kind of
//! answer and gives SERVFAIL when a proxy in between spoils the signatures; `delv` fully
//! validates a geo answer straight from mirrordns with one key or a KSK and a ZSK.
//!
//! Each resolver has its own config: stubs for `.` and `example.com` at mirrordns (or the
//! proxy), root hints naming only 127.0.0.1, a `trust-anchor:` for the test key's DS and no
//! trust-anchor updates, so nothing it does can reach beyond 127.0.0.1.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

use crate::common::resolver::{Resolver, start_unbound};
use crate::common::*;
use crate::dnssec::{Keys, dnssec_query, geo_config};

/// Unbound validating with the test key, sending its queries to `upstream`; its address, the
/// guard that stops it, and its scratch directory.
fn unbound(upstream: SocketAddr, keys: &Keys) -> (SocketAddr, Resolver, tempfile::TempDir) {
    start_unbound(upstream, Some(&keys.ds()))
}

/// Asks the resolver with DO set, on behalf of a client in `ecs`/24 if given.
async fn resolve(
    resolver: SocketAddr,
    name: &str,
    rtype: RecordType,
    ecs: Option<&str>,
) -> Message {
    let q = dnssec_query(name, rtype, true, ecs);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(r) = udp_raw(resolver, &q).await {
            return Message::from_vec(&r).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the resolver did not answer {name} {rtype}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The resolver's log, to show with a failure.
fn log(dir: &tempfile::TempDir) -> String {
    std::fs::read_to_string(dir.path().join("unbound.log")).unwrap_or_default()
}

/// A question to the resolver (name, type, client subnet) and the rcode and addresses wanted.
type Case<'a> = (
    &'a str,
    RecordType,
    Option<&'a str>,
    ResponseCode,
    &'a [&'a str],
);

#[tokio::test]
#[ignore = "needs unbound (unbound); `cargo test -- --ignored` runs it, as CI does"]
async fn unbound_validates_geo_answers_cnames_wildcards_and_denials() {
    require("unbound", "-V", "unbound");
    let keys = Keys::new(false);
    let ts = start(&geo_config(1, &keys.section("")), ZONE, None).await;
    let (resolver, _guard, dir) = unbound(ts.addr, &keys);
    let dl = "downloads.example.com.";
    let cases: [Case; 9] = [
        (
            dl,
            RecordType::A,
            Some("81.2.69.0"),
            ResponseCode::NoError,
            &["192.0.2.11"],
        ),
        (
            dl,
            RecordType::A,
            Some("1.0.16.0"),
            ResponseCode::NoError,
            &["192.0.2.14"],
        ),
        (
            dl,
            RecordType::AAAA,
            Some("1.0.16.0"),
            ResponseCode::NoError,
            &["2001:db8::14"],
        ),
        (
            "get.example.com.",
            RecordType::A,
            Some("81.2.69.0"),
            ResponseCode::NoError,
            &["192.0.2.11"],
        ),
        (
            "x.docs.example.com.",
            RecordType::A,
            None,
            ResponseCode::NoError,
            &["192.0.2.101"],
        ),
        (
            "nope.example.com.",
            RecordType::A,
            None,
            ResponseCode::NXDomain,
            &[],
        ),
        (
            "www.example.com.",
            RecordType::TXT,
            None,
            ResponseCode::NoError,
            &[],
        ),
        (
            dl,
            RecordType::TXT,
            Some("81.2.69.0"),
            ResponseCode::NoError,
            &[],
        ),
        // The delegation `lab` has no DS: the parent's signed NSEC at the cut proves it (asking
        // for names below it would send Unbound to lab's server, off loopback).
        (
            "lab.example.com.",
            RecordType::DS,
            None,
            ResponseCode::NoError,
            &[],
        ),
    ];
    for (name, rtype, ecs, rcode, want) in cases {
        let m = resolve(resolver, name, rtype, ecs).await;
        let what = format!("{name} {rtype} from {ecs:?}");
        assert_eq!(
            m.metadata.response_code,
            rcode,
            "{what}:\n{m}\n{}",
            log(&dir)
        );
        assert_eq!(addrs(&m), want, "{what}:\n{m}");
        assert!(
            m.metadata.authentic_data,
            "{what}: no AD:\n{m}\n{}",
            log(&dir)
        );
    }
    // The CNAME into the service is there too, signed.
    let m = resolve(
        resolver,
        "get.example.com.",
        RecordType::A,
        Some("1.0.16.0"),
    )
    .await;
    assert!(
        m.answers
            .iter()
            .any(|r| r.record_type() == RecordType::CNAME),
        "{m}"
    );
    assert_eq!(addrs(&m), ["192.0.2.14"], "Tokyo behind the CNAME");
    assert!(m.metadata.authentic_data, "{m}");
    ts.server.shutdown().await;
}

/// Flips a byte of the signature in every RRSIG of a DNS message, walking its records;
/// returns how many it spoiled. A message it cannot walk is left as it is.
fn spoil_signatures(p: &mut [u8]) -> usize {
    fn skip_name(p: &[u8], mut i: usize) -> Option<usize> {
        loop {
            let len = *p.get(i)? as usize;
            match len {
                0 => return Some(i + 1),
                l if l & 0xC0 == 0xC0 => return Some(i + 2),
                l => i += 1 + l,
            }
        }
    }
    let u16_at = |p: &[u8], i: usize| Some(u16::from_be_bytes([*p.get(i)?, *p.get(i + 1)?]));
    let walk = |p: &mut [u8]| -> Option<usize> {
        let qd = u16_at(p, 4)?;
        let rrs = u16_at(p, 6)? as usize + u16_at(p, 8)? as usize + u16_at(p, 10)? as usize;
        let mut i = 12;
        for _ in 0..qd {
            i = skip_name(p, i)? + 4;
        }
        let mut spoiled = 0;
        for _ in 0..rrs {
            i = skip_name(p, i)?;
            let rtype = u16_at(p, i)?;
            let rdata = i + 10;
            let end = rdata + u16_at(p, i + 8)? as usize;
            if rtype == 46 {
                // Type covered, algorithm, labels, original TTL, expiration, inception and key
                // tag (18 bytes), then the signer's name, then the signature.
                let sig = skip_name(p, rdata + 18)?;
                if sig < end {
                    p[sig] ^= 0x55;
                    spoiled += 1;
                }
            }
            i = end;
        }
        Some(spoiled)
    };
    walk(p).unwrap_or(0)
}

/// A UDP and TCP proxy on loopback in front of `upstream` that spoils every RRSIG it passes on.
struct Spoiler {
    addr: SocketAddr,
    spoiled: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Spoiler {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn spoiler(upstream: SocketAddr) -> Spoiler {
    let port = free_port();
    let udp = Arc::new(UdpSocket::bind(("127.0.0.1", port)).await.unwrap());
    let tcp = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let spoiled = Arc::new(AtomicUsize::new(0));
    let (count, sock) = (spoiled.clone(), udp.clone());
    let udp_task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        while let Ok((n, client)) = sock.recv_from(&mut buf).await {
            let q = buf[..n].to_vec();
            let (count, sock) = (count.clone(), sock.clone());
            tokio::spawn(async move {
                if let Some(mut r) = udp_raw(upstream, &q).await {
                    count.fetch_add(spoil_signatures(&mut r), Ordering::Relaxed);
                    let _ = sock.send_to(&r, client).await;
                }
            });
        }
    });
    let count = spoiled.clone();
    let tcp_task = tokio::spawn(async move {
        while let Ok((conn, _)) = tcp.accept().await {
            tokio::spawn(relay_tcp(conn, upstream, count.clone()));
        }
    });
    Spoiler {
        addr: ([127, 0, 0, 1], port).into(),
        spoiled,
        tasks: vec![udp_task, tcp_task],
    }
}

async fn relay_tcp(mut conn: TcpStream, upstream: SocketAddr, count: Arc<AtomicUsize>) {
    loop {
        let mut len = [0u8; 2];
        if conn.read_exact(&mut len).await.is_err() {
            return;
        }
        let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
        if conn.read_exact(&mut q).await.is_err() {
            return;
        }
        let Some(mut r) = tcp_raw(upstream, &q).await else {
            return;
        };
        count.fetch_add(spoil_signatures(&mut r), Ordering::Relaxed);
        let mut framed = (r.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&r);
        if conn.write_all(&framed).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
#[ignore = "needs unbound (unbound); `cargo test -- --ignored` runs it, as CI does"]
async fn unbound_gives_servfail_when_a_signature_is_spoiled_on_the_way() {
    require("unbound", "-V", "unbound");
    let keys = Keys::new(false);
    let ts = start(&geo_config(1, &keys.section("")), ZONE, None).await;
    let proxy = spoiler(ts.addr).await;
    let (straight, _g1, dir1) = unbound(ts.addr, &keys);
    let (spoiled, _g2, dir2) = unbound(proxy.addr, &keys);
    let dl = "downloads.example.com.";
    for subnet in ["81.2.69.0", "1.0.16.0"] {
        let m = resolve(straight, dl, RecordType::A, Some(subnet)).await;
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::NoError,
            "{m}\n{}",
            log(&dir1)
        );
        assert!(m.metadata.authentic_data, "straight: AD for {subnet}:\n{m}");
        let m = resolve(spoiled, dl, RecordType::A, Some(subnet)).await;
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::ServFail,
            "through the spoiling proxy, {subnet}:\n{m}\n{}",
            log(&dir2)
        );
        assert!(addrs(&m).is_empty(), "{m}");
    }
    assert!(
        proxy.spoiled.load(Ordering::Relaxed) > 0,
        "the proxy saw signatures to spoil"
    );
    assert!(
        log(&dir2).contains("validation failure"),
        "the resolver says why:\n{}",
        log(&dir2)
    );
    ts.server.shutdown().await;
}

/// `delv` asking mirrordns directly with the test key as its only trust anchor: its output.
async fn delv(server: SocketAddr, keys: &Keys, name: &str, rtype: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let anchor = dir.path().join("anchor.conf");
    std::fs::write(&anchor, keys.delv_anchor()).unwrap();
    let args: Vec<String> = vec![
        format!("@{}", server.ip()),
        "-p".into(),
        server.port().to_string(),
        "-a".into(),
        anchor.to_str().unwrap().into(),
        "+root=example.com".into(),
        name.into(),
        rtype.into(),
    ];
    // delv blocks; the server answers on this test's runtime.
    let out = tokio::task::spawn_blocking(move || Command::new("delv").args(&args).output())
        .await
        .unwrap()
        .expect("delv runs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
#[ignore = "needs delv (bind9-utils); `cargo test -- --ignored` runs it, as CI does"]
async fn delv_fully_validates_the_geo_answer_with_a_csk_and_with_a_ksk_and_zsk() {
    require("delv", "-v", "bind9-utils");
    for split in [false, true] {
        let keys = Keys::new(split);
        let ts = start(&geo_config(1, &keys.section("")), ZONE, None).await;
        let out = delv(ts.addr, &keys, "downloads.example.com", "A").await;
        assert!(
            out.contains("; fully validated") && out.contains("192.0.2.10"),
            "split keys: {split}:\n{out}"
        );
        let out = delv(ts.addr, &keys, "nope.example.com", "A").await;
        assert!(
            out.contains("NXDOMAIN") && out.contains("fully validated"),
            "split keys: {split}:\n{out}"
        );
        // The same answer with another zone's key as the anchor does not validate: the check
        // above can fail.
        let other = Keys::new(false);
        let out = delv(ts.addr, &other, "downloads.example.com", "A").await;
        assert!(!out.contains("fully validated"), "{out}");
        ts.server.shutdown().await;
    }
}
