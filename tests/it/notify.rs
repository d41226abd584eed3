//! NOTIFY (RFC 1996) to secondaries, on loopback only: UDP sockets that play a secondary
//! (answering, silent, answering with the wrong key or NOTAUTH), and NSD as a real TSIG
//! secondary that transfers the zone when notified.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use mirrordns::config::{TsigAlgorithm, TsigKey};
use mirrordns::dns::tsig;
use tokio::net::UdpSocket;

use crate::common::mirrors::monitoring;
use crate::common::*;

const KEY: &str = "3q2+7wAAAAAREiIzRFVmd4iZqrvM3e7/AAAAAAAAAAA=";
const WRONG_KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
const SERIAL: u32 = 2026112701;

fn key(secret: &str) -> TsigKey {
    use base64::Engine;
    TsigKey {
        name: "xfr-key".into(),
        algorithm: TsigAlgorithm::HmacSha256,
        secret: base64::engine::general_purpose::STANDARD
            .decode(secret)
            .unwrap(),
    }
}

fn config(notify: &[SocketAddr], tsig: bool) -> String {
    let list: Vec<String> = notify.iter().map(|a| format!("\"{a}\"")).collect();
    let mut t = format!(
        "[transfer]\nallow = [\"127.0.0.1/32\"]\nnotify = [{}]\n",
        list.join(", ")
    );
    if tsig {
        t.push_str(&format!(
            "[transfer.tsig]\nname = \"xfr-key\"\nalgorithm = \"hmac-sha256\"\nsecret = \"{KEY}\"\n"
        ));
    }
    format!(
        "{}[[service]]\nname = \"downloads.example.com\"\nmirrors = [\"us-east\", \"eu-west\"]\n{t}\n{MIRRORS}",
        server_section()
    )
}

/// The zone with a new serial and one more record.
fn changed_zone(serial: u32) -> String {
    format!(
        "{}fresh       A     192.0.2.77\n",
        ZONE.replace(&SERIAL.to_string(), &serial.to_string())
    )
}

/// How a fake secondary answers.
#[derive(Clone)]
enum Reply {
    Silent,
    Ack,
    /// NOERROR, signed over the request's MAC with this key.
    SignedAck(TsigKey),
    Rcode(u8),
}

/// A NOTIFY as a secondary received it.
#[derive(Debug, Clone)]
struct Got {
    at: Instant,
    id: u16,
    serial: u32,
    /// Whether its TSIG verified with our key (None: unsigned).
    tsig_ok: Option<bool>,
}

/// A UDP socket on loopback playing a secondary: records every NOTIFY and answers as told.
struct Secondary {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Got>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Secondary {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The ID, the SOA serial and the TSIG offset of a NOTIFY as we send it (one question, the SOA
/// in the answer, the TSIG last).
fn read_notify(pkt: &[u8]) -> Option<(u16, u32, Option<usize>)> {
    let be16 = |o: usize| Some(u16::from_be_bytes([*pkt.get(o)?, *pkt.get(o + 1)?]));
    let flags = be16(2)?;
    if flags & 0x8000 != 0 || (flags >> 11) & 0xF != 4 || flags & 0x0400 == 0 {
        return None;
    }
    let (_, q_end) = tsig::read_name(pkt, 12)?;
    let (_, owner_end) = tsig::read_name(pkt, q_end + 4)?;
    let rdlen = be16(owner_end + 8)? as usize;
    let rd_end = owner_end + 10 + rdlen;
    let s = pkt.get(rd_end - 20..rd_end - 16)?;
    let serial = u32::from_be_bytes([s[0], s[1], s[2], s[3]]);
    let signed = (be16(10)? == 1).then_some(rd_end);
    Some((be16(0)?, serial, signed))
}

impl Secondary {
    async fn start(reply: Reply) -> Secondary {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let seen = got.clone();
        let ours = key(KEY);
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                let pkt = &buf[..n];
                let Some((id, serial, signed)) = read_notify(pkt) else {
                    continue;
                };
                let now = mirrordns_now();
                let rec = signed.and_then(|at| tsig::parse(pkt, at).map(|r| (at, r)));
                let tsig_ok = rec
                    .as_ref()
                    .map(|(at, r)| tsig::verify(pkt, *at, r, &ours, now).is_ok());
                seen.lock().unwrap().push(Got {
                    at: Instant::now(),
                    id,
                    serial,
                    tsig_ok,
                });
                // The answer: the request's header and question, QR set.
                let q_end = tsig::read_name(pkt, 12).unwrap().1 + 4;
                let mut out = pkt[..q_end].to_vec();
                out[2] |= 0x80;
                out[6..12].fill(0);
                match &reply {
                    Reply::Silent => continue,
                    Reply::Ack => {}
                    Reply::Rcode(r) => out[3] = (out[3] & 0xF0) | r,
                    Reply::SignedAck(k) => {
                        let mac = rec
                            .as_ref()
                            .map(|(_, r)| r.mac.to_vec())
                            .unwrap_or_default();
                        tsig::Signer::new(k, &mac, now).sign(&mut out, 0, &[]);
                    }
                }
                let _ = sock.send_to(&out, from).await;
            }
        });
        Secondary { addr, got, task }
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// Waits (bounded) until some NOTIFY satisfies `ok`; returns them all.
    async fn wait_for(&self, secs: u64, ok: impl Fn(&[Got]) -> bool) -> Vec<Got> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.got();
            if ok(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "not within {secs} s; got {got:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn mirrordns_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn metric(ts: &TestServer, series: &str) -> f64 {
    let text = monitoring(&ts.server, "/metrics").await;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}"))
}

/// The zone's `notify` entry for `addr` in `/status`.
async fn notify_status(ts: &TestServer, addr: SocketAddr) -> serde_json::Value {
    let st: serde_json::Value =
        serde_json::from_str(&monitoring(&ts.server, "/status").await).unwrap();
    st["zones"][0]["notify"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["address"] == addr.to_string())
        .cloned()
        .unwrap_or_else(|| panic!("no notify entry for {addr}: {st}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_is_notified_promptly_and_a_silent_secondary_is_retried_without_delaying_it() {
    let ack = Secondary::start(Reply::Ack).await;
    let silent = Secondary::start(Reply::Silent).await;
    // The silent one first: a secondary that is down must not hold the others up.
    let ts = start(&config(&[silent.addr, ack.addr], false), ZONE, None).await;
    // Once at start: a restart may have changed the zone.
    let first = ack
        .wait_for(2, |g| g.iter().any(|n| n.serial == SERIAL))
        .await;
    assert_eq!(first[0].tsig_ok, None, "unsigned without [transfer.tsig]");

    std::fs::write(
        ts.dir.path().join("example.com.zone"),
        changed_zone(SERIAL + 1),
    )
    .unwrap();
    let reloaded = Instant::now();
    ts.server.reload().await.unwrap();
    let got = ack
        .wait_for(2, |g| g.iter().any(|n| n.serial == SERIAL + 1))
        .await;
    let n = got.iter().find(|n| n.serial == SERIAL + 1).unwrap();
    eprintln!(
        "NOTIFY for serial {} {:?} after the reload began",
        n.serial,
        n.at - reloaded
    );
    // Acknowledged: sent once, not retried.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(
        ack.got().iter().filter(|g| g.serial == SERIAL + 1).count(),
        1
    );

    // The silent secondary got the same NOTIFY again after about 1 s, then 2 s.
    let sends = silent
        .wait_for(6, |g| {
            g.iter().filter(|n| n.serial == SERIAL + 1).count() >= 3
        })
        .await;
    let sends: Vec<&Got> = sends.iter().filter(|n| n.serial == SERIAL + 1).collect();
    assert!(sends.iter().all(|n| n.id == sends[0].id), "{sends:?}");
    let (g1, g2) = (sends[1].at - sends[0].at, sends[2].at - sends[1].at);
    assert!(
        g1 >= Duration::from_millis(900) && g2 >= g1 + Duration::from_millis(700),
        "gaps {g1:?} then {g2:?}"
    );
    assert!(metric(&ts, "mirrordns_dns_notify_total{result=\"timeout\"}").await >= 2.0);
    assert!(metric(&ts, "mirrordns_dns_notify_total{result=\"acked\"}").await >= 2.0);

    let a = notify_status(&ts, ack.addr).await;
    assert_eq!(a["serial"], SERIAL + 1);
    assert_eq!(a["acknowledged"], true);
    assert_eq!(a["attempts"], 1);
    assert_eq!(a["last_result"], "acked");
    assert!(a["at"].is_string(), "{a}");
    let s = notify_status(&ts, silent.addr).await;
    assert_eq!(s["acknowledged"], false);
    assert!(s["attempts"].as_u64().unwrap() >= 3, "{s}");
    assert_eq!(s["last_result"], "timeout");
    ts.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifies_are_signed_and_answers_with_a_wrong_key_or_notauth_are_not_acks() {
    let good = Secondary::start(Reply::SignedAck(key(KEY))).await;
    let wrong = Secondary::start(Reply::SignedAck(key(WRONG_KEY))).await;
    let notauth = Secondary::start(Reply::Rcode(9)).await;
    let ts = start(
        &config(&[good.addr, wrong.addr, notauth.addr], true),
        ZONE,
        None,
    )
    .await;
    for s in [&good, &wrong, &notauth] {
        let got = s.wait_for(2, |g| !g.is_empty()).await;
        assert_eq!(got[0].tsig_ok, Some(true), "signed with the key: {got:?}");
    }
    // A wrong signature on the answer is not an acknowledgement: counted, and retried.
    wrong.wait_for(3, |g| g.len() >= 2).await;
    assert!(metric(&ts, "mirrordns_dns_notify_total{result=\"error\"}").await >= 1.0);
    assert_eq!(
        metric(&ts, "mirrordns_dns_notify_total{result=\"acked\"}").await,
        1.0
    );
    assert_eq!(
        metric(&ts, "mirrordns_dns_notify_total{result=\"refused\"}").await,
        1.0
    );
    assert_eq!(notify_status(&ts, good.addr).await["acknowledged"], true);
    let w = notify_status(&ts, wrong.addr).await;
    assert_eq!(w["acknowledged"], false);
    let n = notify_status(&ts, notauth.addr).await;
    assert_eq!(
        (n["acknowledged"].clone(), n["last_result"].clone()),
        (false.into(), "refused".into())
    );
    // A refusal is an answer: not sent again.
    assert_eq!(notauth.got().len(), 1);
    ts.server.shutdown().await;
}

/// NSD in the foreground, stopped by PID when the test ends, however it ends.
struct Nsd(Child);

impl Drop for Nsd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts NSD on loopback `port` as a TSIG secondary of mirrordns at `primary`, with its own
/// config and files in `dir`, and `zone_extra` lines in its `zone:` block.
fn nsd(
    dir: &std::path::Path,
    port: u16,
    primary: SocketAddr,
    secret: &str,
    zone_extra: &str,
) -> Nsd {
    let d = dir.display();
    let p = primary.port();
    let conf = format!(
        r#"server:
  ip-address: 127.0.0.1@{port}
  port: {port}
  zonesdir: "{d}"
  database: ""
  pidfile: "{d}/nsd.pid"
  username: ""
  chroot: ""
  xfrdfile: "{d}/xfrd.state"
  zonelistfile: "{d}/zone.list"
  logfile: "{d}/nsd.log"
  verbosity: 2
remote-control:
  control-enable: no
key:
  name: "xfr-key"
  algorithm: hmac-sha256
  secret: "{secret}"
zone:
  name: "example.com"
  request-xfr: 127.0.0.1@{p} xfr-key
  allow-notify: 127.0.0.1 xfr-key
{zone_extra}"#
    );
    let path = dir.join("nsd.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new("nsd")
        .arg("-d")
        .arg("-c")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nsd starts");
    Nsd(child)
}

/// mirrordns (config plus `extra`, notifying the NSD) and NSD as its TSIG secondary with
/// `secret`, each on its own loopback port; both stop when this is dropped.
struct Pair {
    ts: TestServer,
    nsd_port: u16,
    nsd_addr: SocketAddr,
    dir: tempfile::TempDir,
    _nsd: Nsd,
}

async fn mirrordns_and_nsd(extra: &str, secret: &str, zone_extra: &str) -> Pair {
    require("nsd", "-v", "nsd");
    let nsd_port = free_port();
    let nsd_addr: SocketAddr = ([127, 0, 0, 1], nsd_port).into();
    let ts = start(&(config(&[nsd_addr], true) + extra), ZONE, None).await;
    let dir = tempfile::tempdir().unwrap();
    let nsd = nsd(dir.path(), nsd_port, ts.addr, secret, zone_extra);
    Pair {
        ts,
        nsd_port,
        nsd_addr,
        dir,
        _nsd: nsd,
    }
}

/// NSD's answer for `name`/`rtype`, as addresses or SOA serials.
async fn ask_nsd(port: u16, name: &str, rtype: RecordType) -> Vec<String> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let Some(r) = udp_raw(addr, &query(name, rtype, None, None)).await else {
        return Vec::new();
    };
    let Ok(m) = hickory_proto::op::Message::from_vec(&r) else {
        return Vec::new();
    };
    m.answers
        .iter()
        .map(|rr| match &rr.data {
            hickory_proto::rr::RData::SOA(s) => s.serial.to_string(),
            d => d.to_string(),
        })
        .collect()
}

/// Polls NSD (bounded) until `ok` holds for its answer; returns how long that took.
async fn until_nsd(
    port: u16,
    name: &str,
    rtype: RecordType,
    secs: u64,
    ok: impl Fn(&[String]) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let got = ask_nsd(port, name, rtype).await;
        if ok(&got) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(secs),
            "NSD still answers {got:?} for {name} {rtype} after {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nsd (nsd); `cargo test -- --ignored` runs it, as CI does"]
async fn nsd_as_a_tsig_secondary_gets_a_change_within_two_seconds_through_notify() {
    let Pair {
        ts,
        nsd_port,
        nsd_addr,
        dir,
        _nsd,
    } = mirrordns_and_nsd("", KEY, "").await;
    // The first transfer: at NSD's start (or on the NOTIFY sent at ours, retried until NSD
    // is up to acknowledge it).
    until_nsd(nsd_port, "example.com.", RecordType::SOA, 20, |a| {
        a == [SERIAL.to_string()]
    })
    .await;

    std::fs::write(
        ts.dir.path().join("example.com.zone"),
        changed_zone(SERIAL + 1),
    )
    .unwrap();
    let reloaded = Instant::now();
    ts.server.reload().await.unwrap();
    // The zone's refresh timer is an hour: only a NOTIFY brings the change this soon.
    until_nsd(nsd_port, "fresh.example.com.", RecordType::A, 2, |a| {
        a == ["192.0.2.77"]
    })
    .await;
    let took = reloaded.elapsed();
    eprintln!("reload to NSD serving the change: {took:?}");
    let log = std::fs::read_to_string(dir.path().join("nsd.log")).unwrap_or_default();
    assert!(
        log.to_ascii_lowercase().contains("notify"),
        "NSD's log:\n{log}"
    );
    // NSD asks for IXFR (its default) and gets only the change: our journal served it, and
    // NSD's log shows a much smaller update than the first transfer.
    // "... received update to serial N ... of 343 bytes in 4.9e-05 seconds"
    let sizes: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("received update to serial") && l.contains(" bytes in "))
        .filter_map(|l| l.rsplit(" of ").next()?.split(' ').next()?.parse().ok())
        .collect();
    assert!(
        sizes.len() >= 2 && sizes[sizes.len() - 1] * 2 < sizes[0],
        "update sizes {sizes:?}, NSD's log:\n{log}"
    );

    // mirrordns saw NSD acknowledge, and NSD transfer.
    let n = notify_status(&ts, nsd_addr).await;
    assert_eq!(n["serial"], SERIAL + 1);
    assert_eq!(n["acknowledged"], true, "{n}");
    let st: serde_json::Value =
        serde_json::from_str(&monitoring(&ts.server, "/status").await).unwrap();
    let transfers = st["zones"][0]["transfers"].as_array().unwrap();
    assert!(
        transfers.len() >= 2 && transfers.iter().all(|t| t["client"] == "127.0.0.1"),
        "{transfers:?}"
    );
    assert_eq!(transfers.last().unwrap()["kind"], "IXFR", "{transfers:?}");
    let metrics = monitoring(&ts.server, "/metrics").await;
    assert!(
        metrics.contains("mirrordns_dns_transfers_incremental_total 1\n"),
        "{metrics}"
    );
    ts.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nsd (nsd); `cargo test -- --ignored` runs it, as CI does"]
async fn nsd_with_a_wrong_key_is_refused_and_counted() {
    // Every field bound: one left to `..` would be dropped here (NSD's directory with it).
    let Pair {
        ts,
        nsd_port,
        nsd_addr: _,
        dir: _dir,
        _nsd,
    } = mirrordns_and_nsd("", WRONG_KEY, "").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(&ts, "mirrordns_dns_transfers_refused_total").await < 1.0 {
        assert!(
            Instant::now() < deadline,
            "NSD's transfer with the wrong key was not refused within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(metric(&ts, "mirrordns_dns_transfers_total").await, 0.0);
    // NSD holds no copy, and refuses our NOTIFY, signed with a key it does not have.
    assert!(
        ask_nsd(nsd_port, "example.com.", RecordType::SOA)
            .await
            .is_empty()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(&ts, "mirrordns_dns_notify_total{result=\"refused\"}").await < 1.0 {
        assert!(
            Instant::now() < deadline,
            "NSD's refusal of the NOTIFY not counted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ts.server.shutdown().await;
}

/// A signed zone re-signed on its own (no reload, no zone file change): the served serial moves,
/// NSD is told and transfers, and its copy of the zone verifies with `dnssec-verify`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nsd (nsd), dig (dnsutils) and dnssec-verify (bind9-utils); `cargo test -- --ignored` runs it, as CI does"]
async fn nsd_gets_refreshed_signatures_through_a_new_serial_and_its_copy_verifies() {
    require("dig", "-v", "dnsutils");
    require("dnssec-verify", "-h", "bind9-utils");
    let keys = crate::dnssec::Keys::new(false);
    let timing = "signature-validity = \"60s\"\nrefresh = \"4s\"\n";
    let Pair {
        ts,
        nsd_port,
        nsd_addr: _,
        dir,
        _nsd,
    } = mirrordns_and_nsd(
        &keys.section(timing),
        KEY,
        "  provide-xfr: 127.0.0.1 NOKEY\n",
    )
    .await;
    let served = || async {
        let st: serde_json::Value =
            serde_json::from_str(&monitoring(&ts.server, "/status").await).unwrap();
        st["zones"][0]["serial"].as_u64().unwrap() as u32
    };
    let first = served().await;
    assert_eq!(first, SERIAL, "the zone file's serial at start");
    until_nsd(nsd_port, "example.com.", RecordType::SOA, 20, |a| {
        a.first().and_then(|s| s.parse::<u32>().ok()) >= Some(first)
    })
    .await;
    // Nothing is reloaded: the signatures come due (4 s), the serial moves with them, and the
    // NOTIFY brings NSD the new copy.
    let took = until_nsd(nsd_port, "example.com.", RecordType::SOA, 20, |a| {
        a.first()
            .and_then(|s| s.parse::<u32>().ok())
            .is_some_and(|s| s > first)
    })
    .await;
    eprintln!("NSD had a re-signed copy {took:?} after holding the first");
    let (ok, axfr) = crate::dnssec_zone::axfr_text(nsd_port).await;
    assert!(ok, "NSD's AXFR:\n{axfr}");
    let records: Vec<&str> = axfr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with(';'))
        .collect();
    assert!(
        records.iter().any(|l| l.contains("\tRRSIG\t")),
        "NSD holds the signatures:\n{axfr}"
    );
    let file = dir.path().join("nsd-copy.zone");
    std::fs::write(&file, records.join("\n") + "\n").unwrap();
    let (ok, out) = crate::dnssec_zone::run(
        "dnssec-verify",
        vec![
            "-z".into(),
            "-o".into(),
            "example.com".into(),
            file.to_str().unwrap().into(),
        ],
    )
    .await;
    assert!(ok && out.contains("Zone fully signed"), "{out}\n{axfr}");
    assert!(served().await > first);
    ts.server.shutdown().await;
}
