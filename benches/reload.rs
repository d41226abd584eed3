//! Scrape latency while a reload compiles a GeoLite2-sized database (issue #17, item 4): the
//! monitoring endpoint's paths are requested back to back outside a reload and during one,
//! in the same run. `RELOAD_NETWORKS` (default 1,500,000 /24s) sizes the generated database;
//! `RELOADS` (default 3) how many reloads are measured.
//!
//! `cargo bench --bench reload`

// The integration tests' helpers: the bench uses a few, so the rest are dead code here.
#[path = "../tests/it/common/mod.rs"]
#[allow(unused_imports, dead_code)]
mod common;

use std::time::{Duration, Instant};

use common::mirrors::{Setup, V1, wait_for};
use common::scrape::{scrape_idle, scrape_while};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing of ours: run small.
    let quick = !std::env::args().any(|a| a == "--bench");
    let networks = if quick {
        20_000
    } else {
        env("RELOAD_NETWORKS", 1_500_000) as u32
    };
    let reloads = if quick { 1 } else { env("RELOADS", 3) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        mirrordns::health::http::install_crypto();
        let s = Setup::new().await;
        let t = Instant::now();
        let db = common::mmdb::many_networks(networks);
        println!(
            "generated database: {networks} networks, {:.1} MiB, in {:.1} s",
            db.len() as f64 / 1048576.0,
            t.elapsed().as_secs_f64()
        );
        std::fs::write(s.path("geo.mmdb"), db).expect("write database");
        let cfg = s.config(&format!("{V1}/manifest.json"), "", "").replacen(
            "[[geo.override]]",
            "[geo]\ndatabase = \"geo.mmdb\"\n[[geo.override]]",
            1,
        );
        let (server, addr) = s.start(&cfg).await;
        wait_for(addr, &["192.0.2.11"], 30).await;
        let base = format!("http://{}", server.http_addr().expect("http endpoint"));
        let gap = Duration::from_millis(2);
        for round in 1..=reloads {
            let idle = scrape_idle(&base, 40, gap).await;
            let started = Instant::now();
            let (r, during) = scrape_while(&base, gap, server.reload()).await;
            let took = started.elapsed();
            if let Err(p) = r {
                panic!("reload failed: {p}");
            }
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            println!("reload {round}: {:.2} s", took.as_secs_f64());
            println!("  outside a reload: {}", idle.summary());
            println!("  during the reload: {}", during.summary());
            println!(
                "  worst scrape during / outside: {:.2} / {:.2} ms (+{:.2} ms)",
                ms(during.worst()),
                ms(idle.worst()),
                ms(during.worst()) - ms(idle.worst())
            );
        }
        server.shutdown().await;
    });
}
