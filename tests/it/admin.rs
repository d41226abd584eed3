//! Live admin state: drain, force-up and block, with expiry, applied without a reload.

use std::time::{Duration, Instant, SystemTime};

use crate::common::config::{Config, strings};
use crate::common::release;
use crate::common::*;
use mirrordns::demo::files::FileServer;

fn config(extra_service: &str, origin_and_health: &str) -> String {
    format!(
        r#"{}admin-state = "admin.toml"
{LONDON_OVERRIDE}{origin_and_health}
[[service]]
name = "downloads.example.com"
mirrors = ["us-east", "eu-west", "ap-northeast"]
{extra_service}
{MIRRORS}"#,
        server_section()
    )
}

async fn wait_for(addr: std::net::SocketAddr, want: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let got = london(addr).await;
        if got == [want] {
            return;
        }
        assert!(Instant::now() < deadline, "waited for {want}, got {got:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn status(ts: &TestServer) -> serde_json::Value {
    mirrordns::health::http::install_crypto();
    let url = format!("http://{}/status", ts.server.http_addr().unwrap());
    serde_json::from_str(&reqwest::get(url).await.unwrap().text().await.unwrap()).unwrap()
}

#[tokio::test]
async fn drain_with_expiry_and_a_bad_file_that_changes_nothing() {
    let ts = start(&config("", ""), ZONE, None).await;
    let admin = ts.dir.path().join("admin.toml");
    wait_for(ts.addr, "192.0.2.11", 5).await;

    std::fs::write(
        &admin,
        "[[mirror]]\nname = \"eu-west\"\naction = \"drain\"\nreason = \"disk swap\"\n",
    )
    .unwrap();
    let started = Instant::now();
    wait_for(ts.addr, "192.0.2.10", 5).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "applied within seconds"
    );
    let st = status(&ts).await;
    assert_eq!(st["admin"]["mirrors"][0]["mirror"], "eu-west");
    assert_eq!(st["admin"]["mirrors"][0]["action"], "drain");
    assert_eq!(st["admin"]["mirrors"][0]["in_force"], true);

    // A bad file is rejected whole: the drain stays, the error names the line.
    std::fs::write(&admin, "[[mirror]]\nname = \"eu-west\"\naction = \"drain\"\n[[mirror]]\nname = \"nope\"\naction = \"melt\"\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let st = status(&ts).await;
        if let Some(e) = st["admin"]["error"]["error"].as_str() {
            assert!(
                e.contains("admin.toml:5") && e.contains("mirror `nope`"),
                "{e}"
            );
            assert!(e.contains("`melt` is not an action"), "{e}");
            break;
        }
        assert!(Instant::now() < deadline, "bad admin file not reported");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(london(ts.addr).await, ["192.0.2.10"]);

    // A drain that expires in two seconds: answers come back by themselves.
    let until = humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(2));
    std::fs::write(
        &admin,
        format!("[[mirror]]\nname = \"eu-west\"\naction = \"drain\"\nuntil = \"{until}\"\n"),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    wait_for(ts.addr, "192.0.2.11", 6).await;
    ts.server.shutdown().await;
}

#[tokio::test]
async fn block_withdraws_a_release_and_force_up_overrides_probes() {
    let dir = tempfile::tempdir().unwrap();
    // The origin publishes v2.0.0; no mirror has it yet.
    release::write(&dir.path().join("origin"), "tool/v2.0.0", "v2.0.0");
    std::fs::create_dir_all(dir.path().join("eu")).unwrap();
    std::fs::create_dir_all(dir.path().join("us")).unwrap();
    let origin = FileServer::start(&dir.path().join("origin")).await.unwrap();
    let eu = FileServer::start(&dir.path().join("eu")).await.unwrap();
    let us = FileServer::start(&dir.path().join("us")).await.unwrap();
    let mut cfg = Config::parse(&config(
        "releases = [\"tool/v2.0.0/manifest.json\"]\nfallback = \"origin\"",
        &format!(
            "[origin]\nbase-url = \"{}\"\nipv4 = [\"192.0.2.1\"]\n[health]\ninterval = \"100ms\"\nfall = 2\n",
            origin.url()
        ),
    ));
    cfg.mirror("eu-west")
        .insert("base-url".into(), eu.url().into());
    cfg.mirror("us-east")
        .insert("base-url".into(), us.url().into());
    // Only probed mirrors: a static one would always be routable.
    cfg.service("downloads.example.com")
        .insert("mirrors".into(), strings(["us-east", "eu-west"]));
    let ts = start(&cfg.to_string(), ZONE, None).await;
    let admin = ts.dir.path().join("admin.toml");
    // No mirror holds v2.0.0: the origin answers.
    wait_for(ts.addr, "192.0.2.1", 10).await;
    // Rollback: block v2.0.0. Mirrors need not hold it; answers stop depending on it.
    std::fs::write(
        &admin,
        "[[block]]\nversion = \"v2.0.0\"\nreason = \"bad build\"\n",
    )
    .unwrap();
    wait_for(ts.addr, "192.0.2.11", 10).await;
    let st = status(&ts).await;
    assert_eq!(st["admin"]["blocks"][0]["version"], "v2.0.0");
    // eu-west goes down; force-up keeps it in the answers anyway.
    eu.set(|k| k.status = Some(503));
    wait_for(ts.addr, "192.0.2.10", 10).await;
    std::fs::write(
        &admin,
        "[[block]]\nversion = \"v2.0.0\"\n[[mirror]]\nname = \"eu-west\"\naction = \"force-up\"\n",
    )
    .unwrap();
    wait_for(ts.addr, "192.0.2.11", 10).await;
    // Unblock and un-force: back to the origin (no mirror holds v2.0.0).
    std::fs::write(&admin, "").unwrap();
    wait_for(ts.addr, "192.0.2.1", 10).await;
    ts.server.shutdown().await;
}

#[tokio::test]
async fn pin_keeps_a_service_on_a_release_while_mirrors_sync() {
    let dir = tempfile::tempdir().unwrap();
    release::write(&dir.path().join("origin"), "tool/v1.9.0", "v1.9.0");
    release::write(&dir.path().join("origin"), "tool/v2.0.0", "v2.0.0");
    // eu-west has only the previous release so far.
    release::write(&dir.path().join("eu"), "tool/v1.9.0", "v1.9.0");
    let origin = FileServer::start(&dir.path().join("origin")).await.unwrap();
    let eu = FileServer::start(&dir.path().join("eu")).await.unwrap();
    let mut cfg = Config::parse(&config(
        "releases = [\"tool/v2.0.0/manifest.json\"]\nfallback = \"origin\"",
        &format!(
            "[origin]\nbase-url = \"{}\"\nipv4 = [\"192.0.2.1\"]\n[health]\ninterval = \"100ms\"\n",
            origin.url()
        ),
    ));
    cfg.mirror("eu-west")
        .insert("base-url".into(), eu.url().into());
    cfg.service("downloads.example.com")
        .insert("mirrors".into(), strings(["eu-west"]));
    let ts = start(&cfg.to_string(), ZONE, None).await;
    wait_for(ts.addr, "192.0.2.1", 10).await;
    // Pin the service to v1.9.0: eu-west holds it, so it serves again.
    std::fs::write(
        ts.dir.path().join("admin.toml"),
        "[[pin]]\nservice = \"downloads.example.com\"\nrelease = \"tool/v1.9.0/manifest.json\"\n",
    )
    .unwrap();
    wait_for(ts.addr, "192.0.2.11", 10).await;
    let st = status(&ts).await;
    assert_eq!(
        st["services"][0]["required_releases"],
        serde_json::json!(["tool/v1.9.0/manifest.json"])
    );
    // Unpinned: v2.0.0 is required again and eu-west lacks it.
    std::fs::write(ts.dir.path().join("admin.toml"), "").unwrap();
    wait_for(ts.addr, "192.0.2.1", 10).await;
    ts.server.shutdown().await;
}
