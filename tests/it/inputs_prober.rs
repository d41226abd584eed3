//! The files the prober reads and writes, broken the ways files break: empty, truncated,
//! half-written (the right size, zeros after the first half), binary garbage, huge.
//!
//! Release manifests broken at the origin make `mirrordns verify` (run as the release
//! pipeline runs it) name the manifest, and its line where there is one, and exit non-zero;
//! a running server keeps the last good manifest and keeps answering. The state file is a
//! cache: a broken one never stops a start. The operator's own files (config, zones, admin
//! state, geo database) are in inputs_config.rs.

use std::time::Duration;

use crate::common::broken_files::{broken, garbage, lines};
use crate::common::config::{Config, ServerSection, strings};
use crate::common::process::{Serving, metric, mirrordns, status};
use crate::common::release;
use crate::common::*;
use mirrordns::demo::files::FileServer;

const EU: &str = "192.0.2.11";
const ORIGIN: &str = "192.0.2.1";

/// A probed mirror, an origin, and a state file at `state.json`.
fn probed_config(port: u16, origin: &FileServer, eu: &FileServer) -> String {
    format!(
        r#"{}
{LONDON_OVERRIDE}
[origin]
base-url = "{}"
ipv4 = ["{ORIGIN}"]

[health]
interval = "100ms"
timeout = "2s"
state-file = "state.json"

[[service]]
name = "downloads.example.com"
mirrors = ["eu-west"]
releases = ["tool/v1.8.2/manifest.json"]

[[mirror]]
name = "eu-west"
ipv4 = ["{EU}"]
location = {{ lat = 50.1, lon = 8.7 }}
base-url = "{}"
"#,
        ServerSection::http_port(port),
        origin.url(),
        eu.url()
    )
}

/// An origin and one mirror (eu-west) on loopback, both holding release v1.8.2.
fn origin_and_mirror(
    rt: &tokio::runtime::Runtime,
    dir: &tempfile::TempDir,
) -> (FileServer, FileServer) {
    for d in ["origin", "eu"] {
        release::write(&dir.path().join(d), "tool/v1.8.2", "v1.8.2");
    }
    let start = |d: &str| rt.block_on(FileServer::start(&dir.path().join(d))).unwrap();
    (start("origin"), start("eu"))
}

/// The state file is a cache: empty, truncated, half-written, garbage or huge, it never stops
/// a start. It is ignored (logged), the fallback answers until the first probe round, as
/// without a state file, and it is written whole again. A good one also survives a restart
/// that ends before the first probe round.
#[test]
fn a_broken_state_file_never_stops_a_start() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (origin, eu) = origin_and_mirror(&rt, &dir);
    let port = free_port();
    let cfg_path = write_files(&dir, &probed_config(port, &origin, &eu), ZONE, None);
    let state = dir.path().join("state.json");

    // A good state file, from a run that verified eu-west.
    let mut srv = Serving::start(&cfg_path, port);
    srv.wait("eu-west verified", 15, |s| {
        rt.block_on(london(s.dns)) == [EU]
    });
    srv.stop();
    let good = std::fs::read(&state).unwrap();
    let saved: serde_json::Value = serde_json::from_slice(&good).unwrap();

    // From now on the origin and the mirror take 1.5 s to answer: what a new start answers
    // first can only come from the state file or the fallback.
    origin.set(|k| k.delay = Some(Duration::from_millis(1500)));
    eu.set(|k| k.delay = Some(Duration::from_millis(1500)));

    // Two restarts in a row, each stopped before its first probe round: the saved state
    // routes both times.
    for run in 1..=2 {
        let mut srv = Serving::start(&cfg_path, port);
        assert_eq!(
            rt.block_on(london(srv.dns)),
            [EU],
            "restart {run}: the saved state routes before the first probe round"
        );
        assert_eq!(status(port)["ready"], true, "restart {run}");
        srv.assert_running();
        srv.stop();
        // Saved again, as old as it was: a restart loop cannot outrun state-max-age.
        let now: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
        assert_eq!(now["written"], saved["written"], "restart {run}");
        assert_eq!(now["releases"], saved["releases"], "restart {run}");
        // Whole seconds apart, so a re-stamped file would show.
        std::thread::sleep(Duration::from_millis(1100));
    }

    let mut huge = br#"{"written": "2026-11-27T10:00:00Z", "releases": {}, "mirrors": {"#.to_vec();
    huge.resize(24 << 20, b' ');
    for (what, bytes) in broken(&good, huge) {
        std::fs::write(&state, &bytes).unwrap();
        let mut srv = Serving::start(&cfg_path, port);
        // Started, answering by fallback as if there were no state file, and not ready.
        assert_eq!(rt.block_on(london(srv.dns)), [ORIGIN], "{what}");
        let st = status(port);
        assert_eq!(st["ready"], false, "{what}: {st}");
        assert!(
            st["waiting_for"].to_string().contains("probe round"),
            "{what}: {st}"
        );
        srv.assert_running();
        let log = srv.stop();
        assert!(
            log.contains("not using a saved probe state") && log.contains("state.json"),
            "{what}: the log says why:\n{log}"
        );
        // Written whole again, by the server.
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap())
            .unwrap_or_else(|e| panic!("{what}: state file not rewritten: {e}"));
        assert!(v["mirrors"].is_object(), "{what}: {v}");
    }
}

/// Manifests, JSON and SHA256SUMS, broken at the origin: `verify` names the manifest (and
/// line) and exits 1; a running server keeps the last good manifest, counts the failure and
/// shows it per release, and keeps answering with the mirror verified against it.
#[test]
fn broken_manifests_are_named_and_the_last_good_one_stays_in_force() {
    const JSON: &str = "tool/v1.8.2/manifest.json";
    const SUMS: &str = "tool/v1.8.2/SHA256SUMS";
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (origin, eu) = origin_and_mirror(&rt, &dir);
    let port = free_port();
    let mut config = Config::parse(&probed_config(port, &origin, &eu));
    let service = config.service("downloads.example.com");
    service.insert("releases".into(), strings([JSON, SUMS]));
    service.insert("fallback".into(), "origin".into());
    let config = config.to_string();
    let cfg_path = write_files(&dir, &config, ZONE, None);
    let cfg = cfg_path.to_str().unwrap();
    let manifest_variants = |rel: &str| {
        let good = std::fs::read(dir.path().join("origin").join(rel)).unwrap();
        // Over the 16 MB a manifest may have.
        let huge = lines(&good, "\n", 17);
        (good.clone(), broken(&good, huge))
    };

    // `mirrordns verify` (the release pipeline's gate).
    let v = mirrordns(&["verify", "--config", cfg], 60);
    assert_eq!(v.code, Some(0), "{}{}", v.out, v.err);
    for rel in [JSON, SUMS] {
        let path = dir.path().join("origin").join(rel);
        let (good, variants) = manifest_variants(rel);
        for (what, bytes) in variants {
            std::fs::write(&path, &bytes).unwrap();
            let v = mirrordns(&["verify", "--config", cfg], 60);
            let case = format!("{rel} {what}: exit {:?}\n{}{}", v.code, v.out, v.err);
            assert_eq!(v.code, Some(1), "{case}");
            let line = v
                .out
                .lines()
                .find(|l| l.contains(&format!("{rel}  ERROR ")));
            assert!(
                line.is_some_and(|l| l.rsplit("  ERROR ").next().unwrap().contains(rel)),
                "{case}"
            );
            if rel == JSON && matches!(what, "truncated" | "half-written") {
                assert!(v.out.contains(&format!("{rel}: line ")), "{case}");
            }
            if what == "huge" {
                assert!(
                    v.out.contains("larger than the 16777216 bytes allowed"),
                    "{case}"
                );
            }
        }
        std::fs::write(&path, good).unwrap();
    }

    // While serving. First a start with a broken manifest: it serves, by fallback.
    let json_path = dir.path().join("origin").join(JSON);
    let (good_json, _) = manifest_variants(JSON);
    std::fs::write(&json_path, garbage(4096)).unwrap();
    let mut srv = Serving::start(&cfg_path, port);
    let release_error = |rel: &str| -> String {
        let st = status(port);
        st["services"][0]["releases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["path"] == rel)
            .and_then(|r| r["error"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    srv.wait("the manifest error in /status", 10, |_| {
        release_error(JSON).contains("not UTF-8 text")
    });
    assert_eq!(rt.block_on(london(srv.dns)), [ORIGIN]);
    std::fs::write(&json_path, &good_json).unwrap();
    srv.wait("eu-west verified", 15, |s| {
        rt.block_on(london(s.dns)) == [EU]
    });

    for rel in [JSON, SUMS] {
        let path = dir.path().join("origin").join(rel);
        let (good, variants) = manifest_variants(rel);
        for (what, bytes) in variants {
            let case = format!("{rel} {what}");
            srv.wait(&format!("{case}: a clean start"), 10, |_| {
                release_error(rel).is_empty()
            });
            let failures = metric(port, "mirrordns_manifest_failures_total ");
            std::fs::write(&path, &bytes).unwrap();
            srv.wait(&format!("{case}: the error in /status"), 10, |_| {
                release_error(rel).contains(rel)
            });
            assert!(
                metric(port, "mirrordns_manifest_failures_total ") > failures,
                "{case}"
            );
            // Several probe rounds against the broken manifest change nothing.
            for _ in 0..5 {
                assert_eq!(rt.block_on(london(srv.dns)), [EU], "{case}");
                std::thread::sleep(Duration::from_millis(60));
            }
            std::fs::write(&path, &good).unwrap();
        }
    }
    srv.stop();
}
