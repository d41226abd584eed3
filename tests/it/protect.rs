//! Abuse protection over real sockets: response rate limiting under a bounded loopback flood,
//! DNS cookies (checked with dig as the peer), and zone transfers with an allow-list and TSIG
//! (dig verifies our signatures on every message).

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::config::Config;
use crate::common::*;

/// `extra` is TOML appended after the service (e.g. `[rate-limit]`, `[transfer]`).
fn config(extra: &str) -> String {
    format!(
        "{}{LONDON_OVERRIDE}\
         [[service]]\nname = \"downloads.example.com\"\nmirrors = [\"us-east\", \"eu-west\"]\n\
         [service.regions]\ndefault = [\"us-east\"]\n{extra}\n{MIRRORS}",
        server_section()
    )
}

/// A limit of 20 identical responses a second, loopback included: what the flood tests use.
const LIMITED: &str = "[rate-limit]\nresponses-per-second = 20\nslip = 2\nexempt = []\n";

/// The ECS option (code 8) of [`london_query`]: 81.2.69.0/24.
fn london_ecs() -> (u16, Vec<u8>) {
    (8, vec![0, 1, 24, 0, 81, 2, 69])
}

async fn metrics_text(ts: &TestServer) -> String {
    mirrordns::health::http::install_crypto();
    let url = format!("http://{}/metrics", ts.server.http_addr().unwrap());
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

fn metric(text: &str, key: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {key}"))
}

/// The bytes of the COOKIE option (code 10) in a raw response, if any.
fn cookie_option(resp: &[u8]) -> Option<Vec<u8>> {
    let m = hickory_proto::op::Message::from_vec(resp).ok()?;
    match m
        .edns
        .as_ref()?
        .option(hickory_proto::rr::rdata::opt::EdnsCode::Cookie)?
    {
        hickory_proto::rr::rdata::opt::EdnsOption::Unknown(_, data) => Some(data.clone()),
        _ => None,
    }
}

/// Sends `n` copies of `q` in bursts of 50 and collects every answer: (full, truncated).
async fn flood(addr: SocketAddr, q: &[u8], n: usize) -> (usize, usize) {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (mut full, mut tc) = (0, 0);
    let mut buf = vec![0u8; 4096];
    for _ in 0..n / 50 {
        for _ in 0..50 {
            sock.send_to(q, addr).await.unwrap();
        }
        // Drain what came back; a short quiet gap means the burst is done.
        while let Ok(Ok(len)) =
            tokio::time::timeout(Duration::from_millis(30), sock.recv(&mut buf)).await
        {
            let m = hickory_proto::op::Message::from_vec(&buf[..len]).unwrap();
            if m.metadata.truncation {
                assert!(m.answers.is_empty(), "a slipped answer carries no records");
                tc += 1;
            } else {
                assert_eq!(addrs(&m), ["192.0.2.11"]);
                full += 1;
            }
        }
    }
    (full, tc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limiting_drops_and_slips_a_flood_but_not_tcp_or_cookie_clients() {
    let ts = start(&config(LIMITED), ZONE, None).await;
    let q = london_query();
    let started = Instant::now();
    let (full, tc) = flood(ts.addr, &q, 2000).await;
    let secs = started.elapsed().as_secs_f64();
    let text = metrics_text(&ts).await;
    let dropped = metric(&text, "mirrordns_dns_rrl_total{action=\"dropped\"}") as usize;
    let slipped = metric(&text, "mirrordns_dns_rrl_total{action=\"slipped\"}") as usize;
    println!(
        "flood of 2000 in {secs:.2} s: {full} answered, {tc} truncated (slip), {dropped} dropped"
    );
    // One second's burst plus the refill at 20/s while the flood lasted.
    assert!(full >= 20, "{full}");
    assert!(
        full as f64 <= 20.0 + 20.0 * secs + 2.0,
        "{full} in {secs} s"
    );
    // Every query is accounted for, and half the limited ones slipped.
    assert_eq!(full + dropped + slipped, 2000);
    assert_eq!(slipped, tc, "every slip reached the client");
    assert!(slipped.abs_diff(dropped) <= 1, "{slipped} vs {dropped}");

    // Still limited for this flow, yet TCP is answered in full...
    let m = tcp(ts.addr, &q).await;
    assert_eq!(addrs(&m), ["192.0.2.11"]);
    // ...and so is a different answer to the same name (another client subnet behind the same
    // resolver: not an identical response)...
    let elsewhere = query(
        "downloads.example.com.",
        hickory_proto::rr::RecordType::A,
        Some(1232),
        Some(("10.1.2.0", 24)),
    );
    let m = udp(ts.addr, &elsewhere).await;
    assert!(!m.metadata.truncation);
    assert_eq!(addrs(&m), ["192.0.2.10"]);
    // ...and another name from the same network.
    let www = query(
        "www.example.com.",
        hickory_proto::rr::RecordType::A,
        None,
        None,
    );
    assert_eq!(addrs(&udp(ts.addr, &www).await), ["192.0.2.100"]);

    // A resolver that speaks cookies: the first answer hands out a server cookie; returned, it
    // exempts the client, so a burst above the limit is answered in full.
    let client_cookie = vec![1, 2, 3, 4, 5, 6, 7, 8];
    let first = raw_query(
        "downloads.example.com",
        1,
        &[london_ecs(), (10, client_cookie.clone())],
    );
    let mut cookie = None;
    for _ in 0..20 {
        // This flow is limited too, so ask until an answer (full or slipped) brings a cookie.
        if let Some(r) = udp_raw(ts.addr, &first).await {
            cookie = cookie_option(&r);
            break;
        }
    }
    let cookie = cookie.expect("an answer with our cookie");
    assert_eq!(cookie.len(), 24);
    assert_eq!(
        cookie[..8],
        client_cookie[..],
        "the client cookie comes back"
    );
    let with_cookie = raw_query("downloads.example.com", 1, &[london_ecs(), (10, cookie)]);
    let (full, tc) = flood(ts.addr, &with_cookie, 200).await;
    assert_eq!(
        (full, tc),
        (200, 0),
        "a client with a valid cookie is not limited"
    );
    let text = metrics_text(&ts).await;
    assert!(metric(&text, "mirrordns_dns_cookies_valid_total") >= 200.0);
}

/// A reload that changes `[rate-limit] table-size` swaps in a table of the new size: the gauge
/// says so, the UDP workers answer from the new (empty) table at once, it limits a flood, and
/// a server cookie handed out before the reload still exempts its client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_resizes_the_rate_limit_table() {
    let ts = start(&config(LIMITED), ZONE, None).await;
    let cells = |text: &str| metric(text, "mirrordns_dns_rrl_table_cells");
    assert_eq!(cells(&metrics_text(&ts).await), 65536.0);
    let hello = raw_query(
        "downloads.example.com",
        1,
        &[london_ecs(), (10, vec![7; 8])],
    );
    let answer = udp_raw(ts.addr, &hello).await.expect("an answer");
    let cookie = cookie_option(&answer).expect("a server cookie");
    let q = london_query();
    // Use up this flow's burst in the old table.
    let (full, _) = flood(ts.addr, &q, 200).await;
    assert!(full < 100, "limited before the reload: {full}");

    let path = ts.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("exempt = []\n"));
    let mut resized = Config::parse(&text);
    resized
        .table("rate-limit")
        .insert("table-size".into(), 1024.into());
    std::fs::write(&path, resized.to_string()).unwrap();
    ts.server.reload().await.expect("reloads");
    assert_eq!(cells(&metrics_text(&ts).await), 1024.0);

    // One burst of 50 at once: the new table has not seen this flow, so a whole second's
    // allowance (20) is answered in full; a worker still on the old, spent table would
    // answer about one.
    let (full, tc) = flood(ts.addr, &q, 50).await;
    assert!(
        (19..=22).contains(&full),
        "a fresh burst from the new table: {full}"
    );
    assert!(tc > 0, "limited responses slip");

    let with_cookie = raw_query("downloads.example.com", 1, &[london_ecs(), (10, cookie)]);
    assert_eq!(
        flood(ts.addr, &with_cookie, 200).await,
        (200, 0),
        "the cookie from before the reload still exempts"
    );
}

fn dig(args: &[&str]) -> String {
    let out = Command::new("dig")
        .args(args)
        .output()
        .expect("dig is installed (dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs dig (dnsutils); `cargo test -- --ignored` runs it, as CI does"]
async fn dig_gets_and_returns_a_server_cookie() {
    require("dig", "-v", "dnsutils");
    let ts = start(&config(""), ZONE, None).await;
    let port = ts.addr.port().to_string();
    let out = tokio::task::spawn_blocking(move || {
        dig(&[
            "@127.0.0.1",
            "-p",
            &port,
            "+cookie",
            "+norec",
            "www.example.com",
            "A",
        ])
    })
    .await
    .unwrap();
    // dig checks that our answer echoes its client cookie and says "good".
    let line = out
        .lines()
        .find(|l| l.contains("COOKIE:"))
        .unwrap_or_else(|| panic!("no cookie in:\n{out}"));
    assert!(line.contains("(good)"), "{line}");
    let hex = line.split_whitespace().nth(2).unwrap().to_string();
    assert_eq!(hex.len(), 48, "client (8) and server (16) cookie: {line}");
    let port = ts.addr.port().to_string();
    let again = tokio::task::spawn_blocking(move || {
        dig(&[
            "@127.0.0.1",
            "-p",
            &port,
            &format!("+cookie={hex}"),
            "+norec",
            "www.example.com",
            "A",
        ])
    })
    .await
    .unwrap();
    assert!(again.contains("192.0.2.100"), "{again}");
    let text = metrics_text(&ts).await;
    assert_eq!(metric(&text, "mirrordns_dns_cookies_valid_total"), 1.0);
    assert_eq!(metric(&text, "mirrordns_dns_cookies_new_total"), 1.0);
}

const KEY: &str = "3q2+7wAAAAAREiIzRFVmd4iZqrvM3e7/AAAAAAAAAAA=";

fn transfer_config(allow: &str, tsig: bool) -> String {
    let mut t = format!("[transfer]\nallow = [{allow}]\n");
    if tsig {
        t.push_str(&format!(
            "[transfer.tsig]\nname = \"xfr-key\"\nalgorithm = \"hmac-sha256\"\nsecret = \"{KEY}\"\n"
        ));
    }
    config(&t)
}

async fn axfr(ts: &TestServer, extra: &[&str]) -> String {
    let port = ts.addr.port().to_string();
    let mut args: Vec<String> = vec!["@127.0.0.1".into(), "-p".into(), port];
    args.extend(extra.iter().map(|s| s.to_string()));
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        dig(&a)
    })
    .await
    .unwrap()
}

/// Zone records in dig's transfer output (no comments, no TSIG records).
fn records(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty() && !l.contains("\tTSIG\t"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs dig (dnsutils); `cargo test -- --ignored` runs it, as CI does"]
async fn transfers_need_the_allow_list_and_the_key() {
    require("dig", "-v", "dnsutils");
    // Not listed: refused, over TCP and UDP alike.
    let ts = start(&transfer_config("\"192.0.2.0/24\"", false), ZONE, None).await;
    let out = axfr(&ts, &["axfr", "example.com"]).await;
    assert!(out.contains("Transfer failed"), "{out}");
    assert!(records(&out).is_empty(), "{out}");
    drop(ts);

    // Listed, no key configured: the whole zone, SOA first and last, with the service's
    // default answer for a secondary.
    let ts = start(&transfer_config("\"127.0.0.0/8\"", false), ZONE, None).await;
    let out = axfr(&ts, &["axfr", "example.com"]).await;
    let rr = records(&out);
    assert!(rr.first().unwrap().contains("SOA"), "{out}");
    assert!(rr.last().unwrap().contains("SOA"), "{out}");
    // 22 records in the zone file, the SOA again, and the service's A and AAAA records.
    assert_eq!(rr.len(), 25, "{out}");
    assert!(
        rr.iter()
            .any(|l| l.starts_with("downloads.example.com.") && l.ends_with("192.0.2.10")),
        "{out}"
    );
    // A zone we do not serve is refused.
    let out = axfr(&ts, &["axfr", "example.org"]).await;
    assert!(out.contains("Transfer failed"), "{out}");
    drop(ts);

    // With a key: unsigned and wrongly signed requests get nothing; the right key gets the zone,
    // and dig checks our signature on every message. A zone of some 3000 records needs several.
    let mut big = ZONE.to_string();
    for i in 0..3000 {
        big.push_str(&format!("host{i} A 10.0.{}.{}\n", i / 250, i % 250));
    }
    let ts = start(&transfer_config("\"127.0.0.1\"", true), &big, None).await;
    let out = axfr(&ts, &["axfr", "example.com"]).await;
    assert!(out.contains("Transfer failed"), "{out}");
    let wrong = "hmac-sha256:xfr-key:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let out = axfr(&ts, &["-y", wrong, "axfr", "example.com"]).await;
    assert!(out.contains("BADSIG") && !out.contains("SOA"), "{out}");
    let right = format!("hmac-sha256:xfr-key:{KEY}");
    let out = axfr(&ts, &["-y", &right, "axfr", "example.com"]).await;
    // dig prints one TSIG record per message it verified, and complains about any it could not.
    assert!(
        !out.contains("failure") && !out.contains("Couldn't"),
        "{out}"
    );
    assert_eq!(
        records(&out).len(),
        3025,
        "{}",
        &out[out.len().saturating_sub(2000)..]
    );
    let msgs: usize = out
        .lines()
        .find_map(|l| l.strip_prefix(";; XFR size: "))
        .and_then(|l| {
            l.split("messages ")
                .nth(1)?
                .split(',')
                .next()?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no XFR size line:\n{}", &out[out.len() - 500..]));
    assert!(msgs > 1, "{msgs} messages");
    assert_eq!(
        out.matches("\tTSIG\t").count(),
        msgs,
        "every message is signed"
    );
    // IXFR gets the whole zone too (RFC 1995 4).
    let out = axfr(&ts, &["-y", &right, "ixfr=2026010101", "example.com"]).await;
    assert_eq!(records(&out).len(), 3025);
    let text = metrics_text(&ts).await;
    assert_eq!(metric(&text, "mirrordns_dns_transfers_total"), 2.0);
    assert_eq!(metric(&text, "mirrordns_dns_transfers_refused_total"), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs dig (dnsutils); `cargo test -- --ignored` runs it, as CI does"]
async fn signed_queries_are_answered_signed_or_get_badkey() {
    require("dig", "-v", "dnsutils");
    let right = format!("hmac-sha256:xfr-key:{KEY}");
    let other = format!("hmac-sha256:other-key:{KEY}");
    let ts = start(&transfer_config("\"127.0.0.1\"", true), ZONE, None).await;
    // A signed ordinary query gets a signed answer, which dig verifies.
    let out = axfr(&ts, &["-y", &right, "www.example.com", "A"]).await;
    assert!(out.contains("status: NOERROR"), "{out}");
    assert!(out.contains("192.0.2.100"), "{out}");
    assert!(out.contains("\tTSIG\t"), "{out}");
    assert!(
        !out.contains("Couldn't") && !out.contains("failure"),
        "{out}"
    );
    // The same for the geo service name (the full path, never the hot one, signs).
    let out = axfr(&ts, &["-y", &right, "downloads.example.com", "A"]).await;
    assert!(
        out.contains("status: NOERROR") && out.contains("\tTSIG\t"),
        "{out}"
    );
    assert!(!out.contains("Couldn't"), "{out}");
    // A key we do not have: NOTAUTH with BADKEY, for a query and for a transfer.
    let out = axfr(&ts, &["-y", &other, "www.example.com", "A"]).await;
    assert!(
        out.contains("status: NOTAUTH") && out.contains("BADKEY"),
        "{out}"
    );
    assert!(!out.contains("192.0.2.100"), "{out}");
    let out = axfr(&ts, &["-y", &other, "axfr", "example.com"]).await;
    assert!(out.contains("BADKEY") && records(&out).is_empty(), "{out}");
    drop(ts);

    // No key configured at all: a signed request still gets BADKEY, never an unsigned zone.
    let ts = start(&transfer_config("\"127.0.0.0/8\"", false), ZONE, None).await;
    let out = axfr(&ts, &["-y", &right, "axfr", "example.com"]).await;
    assert!(out.contains("BADKEY") && records(&out).is_empty(), "{out}");
    let out = axfr(&ts, &["-y", &right, "www.example.com", "A"]).await;
    assert!(
        out.contains("status: NOTAUTH") && out.contains("BADKEY"),
        "{out}"
    );
    // Unsigned, the same server transfers as before.
    let out = axfr(&ts, &["axfr", "example.com"]).await;
    assert_eq!(records(&out).len(), 25, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs dig (dnsutils); `cargo test -- --ignored` runs it, as CI does"]
async fn a_signed_answer_too_big_for_udp_is_truncated_with_its_signature() {
    require("dig", "-v", "dnsutils");
    let right = format!("hmac-sha256:xfr-key:{KEY}");
    // 447 bytes unsigned, so it fits 512 without EDNS; the 80-byte signature would not.
    let zone = format!(
        "{ZONE}big TXT \"{}\" \"{}\"\n",
        "a".repeat(200),
        "b".repeat(200)
    );
    let ts = start(&transfer_config("\"127.0.0.1\"", true), &zone, None).await;
    let out = axfr(&ts, &["+noedns", "big.example.com", "TXT"]).await;
    assert!(out.contains("MSG SIZE  rcvd: 447"), "{out}");
    let out = axfr(
        &ts,
        &["+noedns", "+ignore", "-y", &right, "big.example.com", "TXT"],
    )
    .await;
    let size: usize = out
        .split("MSG SIZE  rcvd: ")
        .nth(1)
        .and_then(|r| r.trim().parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(size <= 512, "{out}");
    assert!(out.contains("flags: qr aa tc"), "{out}");
    assert!(
        out.contains("\tTSIG\t") && !out.contains("Couldn't"),
        "{out}"
    );
    assert!(!out.contains("aaaa"), "{out}");
    // dig retries a truncated answer over TCP, where the whole signed answer fits.
    let out = axfr(&ts, &["+noedns", "-y", &right, "big.example.com", "TXT"]).await;
    assert!(
        out.contains("status: NOERROR") && out.contains("aaaa"),
        "{out}"
    );
    assert!(
        out.contains("\tTSIG\t") && !out.contains("Couldn't"),
        "{out}"
    );
}

/// A header with these counts, then `rest`.
fn packet(qd: u16, ar: u16, rest: &[u8]) -> Vec<u8> {
    let mut p = vec![0x77, 0x01, 0x00, 0x00];
    for c in [qd, 0, 0, ar] {
        p.extend_from_slice(&c.to_be_bytes());
    }
    p.extend_from_slice(rest);
    p
}

/// The question `www.example.com A IN`.
const WWW_Q: &[u8] = b"\x03www\x07example\x03com\x00\x00\x01\x00\x01";
/// An empty OPT record.
const OPT: &[u8] = &[0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0];

#[tokio::test]
async fn odd_queries_get_the_right_rcode_and_are_counted() {
    let ts = start(&config(""), ZONE, None).await;
    let mut long_name = Vec::new();
    for _ in 0..5 {
        long_name.push(63);
        long_name.extend_from_slice(&[b'a'; 63]);
    }
    long_name.extend_from_slice(&[0, 0, 1, 0, 1]);
    let tsig_then_opt = [
        WWW_Q,
        b"\x01k\x00\x00\xfa\x00\xff\x00\x00\x00\x00\x00\x00",
        OPT,
    ]
    .concat();
    let cases: Vec<(&str, Vec<u8>, u8)> = vec![
        ("no question", packet(0, 0, &[]), 1),
        (
            "class CH",
            packet(1, 0, b"\x07version\x04bind\x00\x00\x10\x00\x03"),
            5,
        ),
        (
            "two OPT records",
            packet(1, 2, &[WWW_Q, OPT, OPT].concat()),
            1,
        ),
        (
            "OPT cut short",
            packet(1, 1, &[WWW_Q, &OPT[..9]].concat()),
            1,
        ),
        (
            "OPT owned by a name, not the root",
            packet(1, 1, &[WWW_Q, &[1, b'x'], OPT].concat()),
            1,
        ),
        (
            "compression pointer loop in the question",
            packet(1, 0, &[0xC0, 0x0C, 0, 1, 0, 1]),
            1,
        ),
        ("name longer than 255 bytes", packet(1, 0, &long_name), 1),
        ("TSIG not the last record", packet(1, 2, &tsig_then_opt), 1),
        (
            "cookie of a length RFC 7873 does not allow",
            raw_query("www.example.com", 1, &[(10, vec![1; 12])]),
            1,
        ),
    ];
    let before = metric(&metrics_text(&ts).await, "mirrordns_dns_malformed_total");
    let mut formerr = 0.0;
    for (what, q, want) in &cases {
        for r in [udp_raw(ts.addr, q).await, tcp_raw(ts.addr, q).await] {
            let r = r.unwrap_or_else(|| panic!("{what}: no answer"));
            assert_eq!(r[..2], q[..2], "{what}: ID echoed");
            assert_eq!(rcode(&r), *want, "{what}");
            if *want == 1 {
                formerr += 1.0;
            }
        }
    }
    let after = metric(&metrics_text(&ts).await, "mirrordns_dns_malformed_total");
    assert_eq!(after - before, formerr, "every FORMERR is counted");
    // And a normal query right after is answered.
    let m = udp(ts.addr, &packet(1, 0, WWW_Q)).await;
    assert_eq!(addrs(&m), ["192.0.2.100"]);
}
