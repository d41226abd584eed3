//! Per-query costs: the prefix lookup alone, and a whole geo query from bytes to response.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use mirrordns::dns::{Ctx, Guard, Stats, Transport, handle};
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
    let guard = Guard::default();
    let q = ecs_query();
    let src = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut out = Vec::with_capacity(512);
    let ctx = Ctx {
        table: &rt,
        stats: &stats,
        guard: &guard,
        transport: Transport::Udp,
    };
    let geo = |out: &mut Vec<u8>| {
        handle(&ctx, black_box(&q), src, out);
        black_box(out.len())
    };
    c.bench_function("geo query with ECS, bytes to response", |b| {
        b.iter(|| geo(&mut out))
    });
    // Two threads answering at once, as two UDP workers on two cores do: one iteration is one
    // query on each thread, so with nothing shared but read-only data it costs what one query
    // costs on one thread. Anything more is the cores fighting over shared counters.
    c.bench_function("geo query with ECS, two threads at once (per pair)", |b| {
        b.iter_custom(|iters| {
            let start = std::sync::Barrier::new(2);
            std::thread::scope(|s| {
                let runs: Vec<_> = (0..2)
                    .map(|_| {
                        s.spawn(|| {
                            let geo = &geo;
                            let mut out = Vec::with_capacity(512);
                            start.wait();
                            let t = std::time::Instant::now();
                            for _ in 0..iters {
                                geo(&mut out);
                            }
                            t.elapsed()
                        })
                    })
                    .collect();
                runs.into_iter()
                    .map(|r| r.join().expect("bench thread"))
                    .max()
                    .unwrap_or_default()
            })
        })
    });
    let static_q = {
        let mut p = q.clone();
        p[13..22].copy_from_slice(b"wwwwwwwww");
        p
    };
    c.bench_function("static-zone miss (NXDOMAIN) with ECS", |b| {
        b.iter(|| {
            handle(&ctx, black_box(&static_q), src, &mut out);
            black_box(out.len())
        })
    });
}

/// A config with 200 mirrors around the globe and 2000 client networks placed by overrides,
/// with policy "nearest": thousands of distinct candidate orders.
fn many_mirrors() -> Loaded {
    let dir = std::env::temp_dir().join(format!("mirrordns-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(
        dir.join("z.zone"),
        "$ORIGIN example.com.\n$TTL 60\n@ SOA ns1 h 1 3600 600 86400 60\n@ NS ns1\nns1 A 192.0.2.53\n",
    )
    .expect("zone");
    let mut x: u64 = 0x243F_6A88_85A3_08D3;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut cfg =
        String::from("[server]\ndns-listen = [\"127.0.0.1:0\"]\nzones = [\"z.zone\"]\n\n[geo]\n");
    for i in 0..2000u32 {
        let lat = (next() % 140) as f64 - 70.0;
        let lon = (next() % 360) as f64 - 180.0;
        cfg.push_str(&format!(
            "[[geo.override]]\nnetwork = \"{}.{}.0.0/16\"\nlocation = {{ lat = {lat}, lon = {lon} }}\n",
            1 + i / 256,
            i % 256
        ));
    }
    let names: Vec<String> = (0..200).map(|i| format!("\"m{i}\"")).collect();
    cfg.push_str(&format!(
        "[[service]]\nname = \"downloads.example.com\"\nanswers = 2\nmirrors = [{}]\n",
        names.join(", ")
    ));
    for i in 0..200u32 {
        let lat = (next() % 140) as f64 - 70.0;
        let lon = (next() % 360) as f64 - 180.0;
        cfg.push_str(&format!(
            "[[mirror]]\nname = \"m{i}\"\nipv4 = [\"198.51.100.{i}\"]\nlocation = {{ lat = {lat}, lon = {lon} }}\n"
        ));
    }
    std::fs::write(dir.join("c.toml"), cfg).expect("config");
    Loaded::from_file(&dir.join("c.toml")).expect("bench config loads")
}

fn swaps(c: &mut Criterion) {
    use mirrordns::routing::{self, Eligibility, HealthSnapshot};
    let loaded = many_mirrors();
    let mut health = HealthSnapshot::static_config(&loaded.config);
    // A third of the mirrors down, as after a health change.
    for m in 0..200 {
        if m % 3 == 0 {
            health.services[0][m] = Eligibility::Out;
        }
    }
    let lists = loaded.inputs.maps[0].lists.len();
    c.bench_function(
        &format!("routing table build, 200 mirrors, {lists} candidate orders"),
        |b| b.iter(|| black_box(routing::build(&loaded.inputs, &health, 2))),
    );
}

criterion_group!(lookup, benches, swaps);
criterion_main!(lookup);
