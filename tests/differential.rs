//! Differential test: for a large generated set of queries (names, types, ECS variants,
//! malformed options, bit flips), the batched UDP path and the TCP path answer byte for byte
//! what the answer function answers in-process against the same routing table.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::mmdb::{build, place};
use common::*;
use mirrordns::dns::answer::{Transport, handle};
use mirrordns::dns::{Guard, Stats};
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
}

fn queries() -> Vec<Vec<u8>> {
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
    let types: [u16; 14] = [1, 28, 15, 16, 2, 6, 255, 5, 33, 257, 43, 252, 999, 41];
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
        let qtype = *rng.pick(&types);
        let mut q = match rng.pick(&ecs) {
            Some(opt) => raw_query(name, qtype, &[(8, opt.clone())]),
            None if i % 3 == 0 => raw_query(name, qtype, &[]),
            None => {
                // No EDNS at all: drop the OPT record and fix ARCOUNT.
                let mut q = raw_query(name, qtype, &[]);
                q.truncate(q.len() - 11);
                q[11] = 0;
                q
            }
        };
        q[0] = (i >> 8) as u8;
        q[1] = i as u8;
        match i % 10 {
            // Flip a random bit past the ID (kept so answers can be matched).
            7 => {
                let at = 2 + (rng.next() as usize % (q.len() - 2));
                q[at] ^= 1 << (rng.next() % 8);
            }
            // Cut the packet short.
            8 => {
                let keep = 12 + (rng.next() as usize % (q.len() - 12));
                q.truncate(keep);
            }
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
    let db = build(&[
        ("81.2.64.0/19", place("EU", "GB", 51.5, -0.13)),
        ("1.0.16.0/20", place("AS", "JP", 35.68, 139.76)),
        ("177.0.0.0/8", place("SA", "BR", -23.55, -46.63)),
        ("2a02:c7c::/32", place("EU", "GB", 51.5, -0.1)),
    ]);
    let ts = start(&config(), ZONE, Some(db)).await;
    let table = ts.server.table().load_full();
    let stats = Stats::default();
    let guard = Guard::default();
    let udp_sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let src: IpAddr = "127.0.0.1".parse().unwrap();
    let mut tcp = tokio::net::TcpStream::connect(ts.addr).await.unwrap();
    let (mut answered, mut dropped) = (0, 0);
    for q in queries() {
        let mut want_udp = Vec::new();
        let udp_answers = handle(
            &table,
            &q,
            src,
            Transport::Udp,
            &mut want_udp,
            &stats,
            &guard,
        );
        let mut want_tcp = Vec::new();
        let tcp_answers = handle(
            &table,
            &q,
            src,
            Transport::Tcp,
            &mut want_tcp,
            &stats,
            &guard,
        );
        assert_eq!(
            udp_answers, tcp_answers,
            "answer or not must not depend on the transport: {q:?}"
        );
        if !udp_answers {
            dropped += 1;
            continue;
        }
        answered += 1;
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
