//! Differential test: for a large generated set of queries (names, types, ECS variants,
//! malformed options, bit flips), the batched UDP path and the TCP path answer byte for byte
//! what the answer function answers in-process against the same routing table.

use std::net::IpAddr;
use std::time::Duration;

use crate::common::mmdb::{build, place};
use crate::common::*;
use mirrordns::dns::answer::handle_full;
use mirrordns::dns::{Ctx, Event, Guard, Stats, Transport, handle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config() -> String {
    format!(
        r#"{}
[geo]
database = "geo.mmdb"
[[geo.override]]
network = "81.2.69.0/24"
location = {{ lat = 35.7, lon = 139.7, country = "JP", continent = "AS" }}
[[service]]
name = "downloads.example.com"
answers = 2
mirrors = ["us-east", "eu-west", "ap-south", "sa-east", "ap-northeast"]
# The in-process answers must make the same cookies as the server.
[cookies]
secret = "000102030405060708090a0b0c0d0e0f"
{MIRRORS}"#,
        server_section()
    )
}

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[(self.next() % v.len() as u64) as usize]
    }

    /// Flips one random bit past the ID (kept so answers can be matched).
    fn flip_bit(&mut self, q: &mut [u8]) {
        let at = 2 + (self.next() as usize % (q.len() - 2));
        q[at] ^= 1 << (self.next() % 8);
    }

    /// Cuts the packet short, keeping at least the header.
    fn cut_short(&mut self, q: &mut Vec<u8>) {
        let keep = 12 + (self.next() as usize % (q.len() - 12));
        q.truncate(keep);
    }
}

/// With `signed`, DO is set on every other query with an OPT, and DNSKEY is asked for too.
fn queries(signed: bool) -> Vec<Vec<u8>> {
    let names = [
        "downloads.example.com",
        "DownLoads.Example.COM",
        "www.example.com",
        "example.com",
        "get.example.com",
        "releases.example.com",
        "nope.example.com",
        "a.b.example.com",
        "x.docs.example.com",
        "host.lab.example.com",
        "lab.example.com",
        "loop1.example.com",
        "away.example.com",
        "_https._tcp.example.com",
        "www.example.org",
        "com",
    ];
    let types: &[u16] = if signed {
        &[
            1, 28, 15, 16, 2, 6, 255, 5, 33, 257, 43, 252, 999, 41, 48, 1, 28,
        ]
    } else {
        &[1, 28, 15, 16, 2, 6, 255, 5, 33, 257, 43, 252, 999, 41]
    };
    let ecs: Vec<Option<Vec<u8>>> = vec![
        None,
        Some(vec![0, 1, 24, 0, 81, 2, 69]),
        Some(vec![0, 1, 24, 0, 1, 0, 16]),
        Some(vec![0, 1, 16, 0, 177, 5]),
        Some(vec![0, 1, 0, 0]),
        Some(vec![0, 2, 48, 0, 0x2a, 0x02, 0x0c, 0x7c, 0, 1]),
        Some(vec![0, 3, 24, 0, 1, 0, 16]),
        Some(vec![0, 1, 23, 0, 1, 0, 17]),
        Some(vec![0, 1, 33, 0, 1, 0, 16, 0, 0]),
        Some(vec![0, 1]),
    ];
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let mut out = Vec::new();
    for i in 0..1500 {
        let name = rng.pick(&names);
        let qtype = *rng.pick(types);
        let flags = if signed && i % 2 == 0 {
            [0, 0, 0x80, 0]
        } else {
            [0; 4]
        };
        let mut q = match rng.pick(&ecs) {
            Some(opt) => query_bytes(name, qtype, 1, Some((1232, flags, &[(8, opt.clone())]))),
            None if i % 3 == 0 => query_bytes(name, qtype, 1, Some((1232, flags, &[]))),
            // No EDNS at all.
            None => query_bytes(name, qtype, 1, None),
        };
        q[0] = (i >> 8) as u8;
        q[1] = i as u8;
        match i % 10 {
            7 => rng.flip_bit(&mut q),
            8 => rng.cut_short(&mut q),
            // A response (QR set): never answered.
            9 if i % 50 == 9 => q[2] |= 0x80,
            _ => {}
        }
        out.push(q);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_and_tcp_answer_exactly_what_the_answer_function_does() {
    sockets_against_answer_function(&config(), false).await;
}

/// The same with the zone signed and DO queries among the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_and_tcp_answer_signed_queries_exactly_like_the_answer_function() {
    let keys = crate::dnssec::Keys::new(false);
    sockets_against_answer_function(&format!("{}{}", config(), keys.section("")), true).await;
}

async fn sockets_against_answer_function(config: &str, signed: bool) {
    let db = build(&[
        ("81.2.64.0/19", place("EU", "GB", 51.5, -0.13)),
        ("1.0.16.0/20", place("AS", "JP", 35.68, 139.76)),
        ("177.0.0.0/8", place("SA", "BR", -23.55, -46.63)),
        ("2a02:c7c::/32", place("EU", "GB", 51.5, -0.1)),
    ]);
    let ts = start(config, ZONE, Some(db)).await;
    let table = ts.server.table().load_full();
    assert_eq!(table.dnssec.is_some(), signed);
    let stats = Stats::default();
    let guard = Guard::default();
    let udp_sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let src: IpAddr = "127.0.0.1".parse().unwrap();
    let mut tcp = tokio::net::TcpStream::connect(ts.addr).await.unwrap();
    let (mut answered, mut dropped, mut with_rrsig) = (0, 0, 0);
    for q in queries(signed) {
        let ctx = |transport| Ctx {
            table: &table,
            stats: &stats,
            guard: &guard,
            transport,
        };
        let mut want_udp = Vec::new();
        let udp_answers = handle(&ctx(Transport::Udp), &q, src, &mut want_udp);
        let mut want_tcp = Vec::new();
        let tcp_answers = handle(&ctx(Transport::Tcp), &q, src, &mut want_tcp);
        assert_eq!(
            udp_answers, tcp_answers,
            "answer or not must not depend on the transport: {q:?}"
        );
        if !udp_answers {
            dropped += 1;
            continue;
        }
        answered += 1;
        with_rrsig += has_rrsig(&want_udp) as usize;
        udp_sock.send_to(&q, ts.addr).await.unwrap();
        let mut buf = vec![0u8; 65535];
        let n = tokio::time::timeout(Duration::from_secs(2), udp_sock.recv(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no UDP answer for {q:?}"))
            .unwrap();
        assert_eq!(&buf[..n], &want_udp[..], "UDP path differs for {q:?}");

        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        tcp.write_all(&framed).await.unwrap();
        let mut len = [0u8; 2];
        tokio::time::timeout(Duration::from_secs(2), tcp.read_exact(&mut len))
            .await
            .unwrap_or_else(|_| panic!("no TCP answer for {q:?}"))
            .unwrap();
        let mut resp = vec![0u8; u16::from_be_bytes(len) as usize];
        tcp.read_exact(&mut resp).await.unwrap();
        assert_eq!(resp, want_tcp, "TCP path differs for {q:?}");
    }
    assert!(answered > 1000, "answered {answered}");
    assert_eq!(
        with_rrsig > 150,
        signed,
        "{with_rrsig} answers with an RRSIG"
    );
    assert!(
        dropped > 0,
        "the generator also makes packets that must not be answered"
    );
    // And the server still answers normally afterwards.
    let m = udp(
        ts.addr,
        &query(
            "www.example.com.",
            hickory_proto::rr::RecordType::A,
            None,
            None,
        ),
    )
    .await;
    assert_eq!(addrs(&m), ["192.0.2.100"]);
}

/// Queries aimed at the hot path's edges: every name kind (service, plain address names,
/// CNAMEs, wildcards, names below a delegation, other zones), address and other types, other
/// classes, every OPT shape (none, version 1, small and large payloads, ECS, two ECS, cookies,
/// unknown options, cut-short options), trailing bytes, compression in the question, and bit
/// flips and truncation on top. With `signed`, also the types DNSSEC answers differ on
/// (DNSKEY, TXT for NODATA, DS, NSEC, RRSIG, CDS) and DO set on two queries in three; otherwise
/// DO is set on every query with an OPT.
fn hot_queries(signed: bool) -> Vec<Vec<u8>> {
    let names = [
        "downloads.example.com",
        "DOWNLOADS.example.com",
        "www.example.com",
        "WwW.ExAmPlE.cOm",
        "ns1.example.com",
        "ns2.example.com",
        "mail.example.com",
        "example.com",
        "releases.example.com",
        "get.example.com",
        "x.docs.example.com",
        "*.docs.example.com",
        "ns.lab.example.com",
        "lab.example.com",
        "nope.example.com",
        "www.example.org",
    ];
    let types: &[u16] = if signed {
        &[1, 28, 1, 28, 1, 255, 15, 5, 48, 16, 43, 47, 46, 59, 6]
    } else {
        &[1, 28, 1, 28, 1, 255, 15, 5]
    };
    let ecs = [
        vec![0, 1, 24, 0, 81, 2, 69],
        vec![0, 1, 24, 0, 1, 0, 16],
        vec![0, 1, 16, 0, 177, 5],
        vec![0, 1, 0, 0],
        vec![0, 2, 48, 0, 0x2a, 0x02, 0x0c, 0x7c, 0, 1],
        vec![0, 1, 23, 0, 1, 0, 17],
        vec![0, 1, 32, 0, 10, 9, 8, 7],
    ];
    let mut rng = Rng(0x0ddb_a11c_afe5_7a7e);
    let mut out = Vec::new();
    for i in 0..4000u32 {
        let name = *rng.pick(&names);
        let qtype = *rng.pick(types);
        let class = if i % 23 == 0 { 3 } else { 1 };
        let e = rng.pick(&ecs).clone();
        let options: Vec<(u16, Vec<u8>)> = match rng.next() % 9 {
            0 => vec![],
            1..=3 => vec![(8, e)],
            4 => vec![(65001, vec![1, 2, 3]), (8, e)],
            5 => vec![(8, e.clone()), (8, e)],
            6 => vec![(10, vec![1, 2, 3, 4, 5, 6, 7, 8]), (8, e)],
            7 => vec![(8, e), (3, vec![])],
            _ => vec![(8, vec![0, 1, 24])],
        };
        let payload = *rng.pick(&[1232u16, 512, 100, 4096, 65535]);
        let version = if i % 31 == 0 { 1 } else { 0 };
        let flags = if signed && i % 3 == 0 { 0 } else { 0x80 };
        let mut q = if i % 7 == 0 {
            query_bytes(name, qtype, class, None)
        } else {
            query_bytes(
                name,
                qtype,
                class,
                Some((payload, [0, version, flags, 0], &options)),
            )
        };
        q[0] = (i >> 8) as u8;
        q[1] = i as u8;
        // RD, CD and AD in every combination: RD and CD are echoed, AD is not.
        q[2] ^= (rng.next() % 2) as u8;
        q[3] |= *rng.pick(&[0x00, 0x10, 0x20, 0x30]);
        match i % 13 {
            3 => rng.flip_bit(&mut q),
            5 => rng.cut_short(&mut q),
            7 => q.extend_from_slice(&[0xde, 0xad]),
            // The question name as a pointer into the header.
            9 => {
                let end = 12 + q[12..].iter().position(|&b| b == 0).unwrap_or(0) + 1;
                q.splice(12..end, [0xC0, 0x04]);
            }
            11 => q[2] |= 0x10, // opcode 2
            _ => {}
        }
        out.push(q);
    }
    out
}

/// Whether an answer holds an RRSIG record.
fn has_rrsig(answer: &[u8]) -> bool {
    hickory_proto::op::Message::from_vec(answer).is_ok_and(|m| {
        m.answers
            .iter()
            .chain(&m.authorities)
            .any(|r| r.record_type() == hickory_proto::rr::RecordType::RRSIG)
    })
}

/// Whether the packet's bytes hold a COOKIE option header with a client cookie's length.
fn has_cookie(q: &[u8]) -> bool {
    q.windows(4).any(|w| w == [0, 10, 0, 8])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_path_answers_byte_for_byte_what_the_full_path_does() {
    hot_path_against_full_path(&config(), false).await;
}

/// The same with the zone signed: the hot path's RRSIGs and NSEC proofs, for DO queries and
/// others, byte for byte as the full path writes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_path_answers_signed_queries_byte_for_byte_like_the_full_path() {
    let keys = crate::dnssec::Keys::new(false);
    hot_path_against_full_path(&format!("{}{}", config(), keys.section("")), true).await;
}

async fn hot_path_against_full_path(config: &str, signed: bool) {
    let db = build(&[
        ("81.2.64.0/19", place("EU", "GB", 51.5, -0.13)),
        ("1.0.16.0/20", place("AS", "JP", 35.68, 139.76)),
        ("177.0.0.0/8", place("SA", "BR", -23.55, -46.63)),
        ("2a02:c7c::/32", place("EU", "GB", 51.5, -0.1)),
    ]);
    // Rate limiting on for every source, with an allowance no test reaches: the flow is
    // worked out on both paths, and the verdicts cannot differ between the two calls.
    let config = format!(
        "{}\n[rate-limit]\nexempt = []\nresponses-per-second = 1000000\n",
        config
    );
    let ts = start(&config, ZONE, Some(db)).await;
    let table = ts.server.table().load_full();
    assert_eq!(table.dnssec.is_some(), signed);
    let (hot_stats, full_stats) = (Stats::default(), Stats::default());
    let guard = Guard::default();
    let sources: [IpAddr; 3] = [
        "127.0.0.1".parse().unwrap(),
        "203.0.113.9".parse().unwrap(),
        "2001:db8::9".parse().unwrap(),
    ];
    let mut rng = Rng(7);
    let mut answered = 0;
    let mut with_rrsig = 0;
    for q in hot_queries(signed) {
        let src = *rng.pick(&sources);
        for transport in [Transport::Udp, Transport::Tcp] {
            let ctx = |stats| Ctx {
                table: &table,
                stats,
                guard: &guard,
                transport,
            };
            let (mut hot, mut full) = (Vec::new(), Vec::new());
            let a = handle(&ctx(&hot_stats), &q, src, &mut hot);
            let b = handle_full(&ctx(&full_stats), &q, src, &mut full);
            assert_eq!(a, b, "answer or not differs for {q:?} from {src}");
            if a && hot != full && has_cookie(&q) {
                // A server cookie holds the time in seconds, which may have ticked between
                // the two calls: ask both again.
                let scratch = Stats::default();
                handle(&ctx(&scratch), &q, src, &mut hot);
                handle_full(&ctx(&scratch), &q, src, &mut full);
            }
            if a {
                answered += 1;
                with_rrsig += has_rrsig(&hot) as usize;
                assert_eq!(
                    hot, full,
                    "{transport:?} answer differs for {q:?} from {src}"
                );
            }
        }
    }
    assert!(answered > 6000, "answered {answered}");
    if signed {
        assert!(with_rrsig > 1000, "{with_rrsig} answers with an RRSIG");
    }
    // Counted alike: queries by transport, type and rcode, and the other counters.
    assert_eq!(hot_stats.queries(), full_stats.queries());
    for e in [
        Event::Ecs,
        Event::UnknownLocation,
        Event::Truncated,
        Event::Malformed,
        Event::Dropped,
        Event::CookiesNew,
    ] {
        assert_eq!(hot_stats.get(e), full_stats.get(e), "{e:?} counter differs");
    }
    assert!(hot_stats.get(Event::Ecs) > 1000);
}
