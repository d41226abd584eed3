//! Rendering the status page (`GET /`) for a large deployment: 200 mirrors in two services,
//! 200 countries of client networks, two releases rolling out. Issue #22 asks for under
//! 100 ms.
//!
//! `cargo bench --bench page`

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use mirrordns::http::page;
use mirrordns::load::Loaded;
use mirrordns::schema::Status;
use serde_json::{Value, json};

const MIRRORS: usize = 200;

/// Country codes the map draws, from its own outline file.
fn countries() -> Vec<String> {
    let world = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http/world.txt");
    std::fs::read_to_string(world)
        .expect("src/http/world.txt")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' ').map(|(c, _)| c.to_string()))
        .collect()
}

/// A config of 200 mirrors spread over the globe and one override network per country.
fn config(dir: &Path) -> std::path::PathBuf {
    let zone = Path::new(env!("CARGO_MANIFEST_DIR")).join("zones/example.com.zone");
    let mut t = format!(
        "[server]\ndns-listen = [\"127.0.0.1:0\"]\nhttp-listen = \"\"\nzones = [{:?}]\n\n[geo]\n",
        zone.display().to_string()
    );
    for (i, cc) in countries().iter().enumerate().take(200) {
        let (lat, lon) = (
            (i as f64 * 37.0) % 140.0 - 60.0,
            (i as f64 * 71.0) % 360.0 - 180.0,
        );
        t += &format!(
            "[[geo.override]]\nnetwork = \"{}.{}.0.0/16\"\nlocation = {{ lat = {lat}, lon = {lon}, country = \"{cc}\", continent = \"EU\" }}\n",
            10 + i / 250,
            i % 250
        );
    }
    let names: Vec<String> = (0..MIRRORS).map(|i| format!("\"m{i:03}\"")).collect();
    for name in ["downloads.example.com", "cdn.example.com"] {
        t += &format!(
            "\n[[service]]\nname = \"{name}\"\npolicy = \"nearest\"\nttl = 30\nanswers = 2\nmirrors = [{}]\n",
            names.join(", ")
        );
    }
    for i in 0..MIRRORS {
        t += &format!(
            "\n[[mirror]]\nname = \"m{i:03}\"\nipv4 = [\"198.18.{}.{}\"]\nlocation = {{ lat = {}, lon = {} }}\n{}",
            i / 200,
            i % 200 + 1,
            (i as f64 * 13.0) % 120.0 - 50.0,
            (i as f64 * 29.0) % 360.0 - 180.0,
            if i % 17 == 0 { "drained = true\n" } else { "" }
        );
    }
    let path = dir.join("mirrordns.toml");
    std::fs::write(&path, t).expect("config written");
    path
}

/// The `/status` document of such a server, built as JSON so that fields added later (with
/// defaults, as the schema requires) do not break it.
fn status() -> Status {
    let t = "2026-12-01T09:00:00.000Z";
    let states = [
        "ready", "ready", "ready", "lagging", "mismatch", "down", "drained",
    ];
    let mirrors: Vec<Value> = (0..MIRRORS)
        .map(|i| {
            let state = states[i % states.len()];
            json!({"name": format!("m{i:03}"), "ipv4": [format!("198.18.0.{i}")], "ipv6": [],
                   "state": state, "routable": state == "ready",
                   "reason": if state == "ready" { "" } else { "a reason of some length, as probes give" },
                   "base_url": format!("https://m{i:03}.example.net/"), "last_probe": t,
                   "latency_ms": 12.5, "verified_versions": ["v1.0.0"], "lag_seconds": 0.0,
                   "last_error": null})
        })
        .collect();
    let releases: Vec<Value> = ["tool/v1.0.0/manifest.json", "tool/v1.1.0/manifest.json"]
        .iter()
        .map(|p| {
            json!({"path": p, "version": "v1.1.0", "digest": "ab", "published": t,
                   "changed_at": t, "ready_at": null, "ready_after_seconds": null,
                   "waiting_seconds": 60.0, "error": null})
        })
        .collect();
    let rollout: Vec<Value> = ["tool/v1.0.0/manifest.json", "tool/v1.1.0/manifest.json"]
        .iter()
        .map(|p| {
            let ms: Vec<Value> = (0..MIRRORS)
                .map(|i| {
                    json!({"mirror": format!("m{i:03}"),
                           "verified_at": (i % 3 != 0).then_some(t), "holding_up": i % 3 == 0})
                })
                .collect();
            json!({"release": p, "mirrors": ms})
        })
        .collect();
    let services: Vec<Value> = ["downloads.example.com", "cdn.example.com"]
        .iter()
        .map(|n| {
            json!({"name": n, "policy": "nearest", "ttl": 30, "answers": 2,
                   "required_releases": [], "fallback": "origin", "fallback_in_force": null,
                   "fallthrough_lists": 3, "fallthrough_answers": 10, "releases": releases,
                   "mirrors": mirrors, "rollout": rollout})
        })
        .collect();
    serde_json::from_value(json!({
        "version": "0.1.0", "started_at": t, "ready": true, "waiting_for": [],
        "config": {"path": "mirrordns.toml", "generation": 1, "loaded_at": t, "last_reload_error": null},
        "routing": {"generation": 5, "swapped_at": t},
        "dns": {"listen": ["127.0.0.1:53"], "queries": 0},
        "services": services, "zones": [],
        "admin": {"path": null, "mirrors": [], "blocks": [], "pins": [], "error": null}
    }))
    .expect("a status document")
}

fn benches(c: &mut Criterion) {
    let dir = tempfile_dir();
    let loaded = Loaded::from_file(&config(&dir)).expect("generated config loads");
    let table = loaded.table(1);
    let status = status();
    let now = SystemTime::now();
    let html = page::render(&status, &table, None, now);
    assert!(html.contains("data-cc=\"FR\""), "the map is drawn");
    println!("page: {} bytes with {MIRRORS} mirrors", html.len());
    c.bench_function("status page, 200 mirrors, 2 services", |b| {
        b.iter(|| black_box(page::render(black_box(&status), &table, None, now)))
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fresh directory for the generated config (no tempfile crate in the bench's reach).
fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("mirrordns-page-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

criterion_group! {
    name = group;
    config = Criterion::default().measurement_time(Duration::from_secs(5)).sample_size(20);
    targets = benches
}
criterion_main!(group);
