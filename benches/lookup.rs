//! Per-query costs: the prefix lookup alone, and a whole geo query from bytes to response.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use mirrordns::dns::Stats;
use mirrordns::dns::answer::{Transport, handle};
use mirrordns::geo::prefix::{PrefixTable, Span};
use mirrordns::load::Loaded;

/// A table shaped like a compiled GeoLite2-City IPv4 map: `n` ranges of varied sizes.
fn big_table(n: u32) -> PrefixTable<u32> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let step = (u32::MAX / n) as u128;
    let spans = (0..n as u128).map(|i| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        Span {
            start: i * step,
            end: i * step + step - 1,
            value: (x % 40) as u32,
        }
    });
    PrefixTable::from_spans(spans, 0)
}

/// A query for downloads.example.com A with ECS 81.2.69.0/24.
fn ecs_query() -> Vec<u8> {
    let mut p = vec![0x12, 0x34, 0x00, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    for l in ["downloads", "example", "com"] {
        p.push(l.len() as u8);
        p.extend_from_slice(l.as_bytes());
    }
    p.extend_from_slice(&[0, 0, 1, 0, 1]);
    p.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 11]);
    p.extend_from_slice(&[0, 8, 0, 7, 0, 1, 24, 0, 81, 2, 69]);
    p
}

fn benches(c: &mut Criterion) {
    let table = big_table(500_000);
    let mut addr: u32 = 0x1234_5678;
    c.bench_function("prefix lookup, 500k IPv4 ranges", |b| {
        b.iter(|| {
            addr = addr.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            black_box(table.lookup(black_box(addr)))
        })
    });

    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/mirrordns.toml");
    let loaded = Loaded::from_file(&cfg).expect("shipped config loads");
    let rt = loaded.table(1);
    let stats = Stats::default();
    let q = ecs_query();
    let src = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut out = Vec::with_capacity(512);
    c.bench_function("geo query with ECS, bytes to response", |b| {
        b.iter(|| {
            handle(&rt, black_box(&q), src, Transport::Udp, &mut out, &stats);
            black_box(out.len())
        })
    });
    let static_q = {
        let mut p = q.clone();
        p[13..22].copy_from_slice(b"wwwwwwwww");
        p
    };
    c.bench_function("static-zone miss (NXDOMAIN) with ECS", |b| {
        b.iter(|| {
            handle(
                &rt,
                black_box(&static_q),
                src,
                Transport::Udp,
                &mut out,
                &stats,
            );
            black_box(out.len())
        })
    });
}

criterion_group!(lookup, benches);
criterion_main!(lookup);
