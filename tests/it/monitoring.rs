//! The monitoring endpoint as an operator and Prometheus see it, while real loopback mirrors
//! change state and real DNS queries flow.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::common::config::Config;
use crate::common::release;
use crate::common::*;
use hickory_proto::rr::RecordType;
use mirrordns::daemon::Server;
use mirrordns::demo::files::FileServer;
use mirrordns::load::Loaded;

struct Setup {
    dir: tempfile::TempDir,
    origin: FileServer,
    eu: FileServer,
    us: FileServer,
}

const V: &str = "tool/v2.0.0";

impl Setup {
    async fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        for d in ["origin", "eu", "us"] {
            release::write(&dir.path().join(d), V, "v2.0.0");
        }
        Setup {
            origin: FileServer::start(&dir.path().join("origin")).await.unwrap(),
            eu: FileServer::start(&dir.path().join("eu")).await.unwrap(),
            us: FileServer::start(&dir.path().join("us")).await.unwrap(),
            dir,
        }
    }

    async fn start(&self, fallback: &str) -> (Server, String) {
        let cfg = format!(
            r#"{}
{LONDON_OVERRIDE}[origin]
base-url = "{}"
ipv4 = ["192.0.2.1"]
[health]
interval = "100ms"
timeout = "1s"
fall = 2
[[service]]
name = "downloads.example.com"
mirrors = ["eu-west", "us-east"]
releases = ["{V}/manifest.json"]
fallback = "{fallback}"
[[mirror]]
name = "eu-west"
ipv4 = ["192.0.2.11"]
location = {{ lat = 50.1, lon = 8.7 }}
base-url = "{}"
[[mirror]]
name = "us-east"
ipv4 = ["192.0.2.10"]
location = {{ lat = 38.9, lon = -77.0 }}
base-url = "{}"
"#,
            server_section(),
            self.origin.url(),
            self.eu.url(),
            self.us.url()
        );
        let path = write_files(&self.dir, &cfg, ZONE, None);
        let server = Server::start(Loaded::from_file(&path).unwrap_or_else(|p| panic!("{p}")))
            .await
            .unwrap();
        let base = format!("http://{}", server.http_addr().expect("http endpoint"));
        (server, base)
    }
}

async fn get(url: &str) -> (u16, String) {
    mirrordns::health::http::install_crypto();
    let r = reqwest::get(url).await.expect("endpoint answers");
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn status(base: &str) -> serde_json::Value {
    let (code, body) = get(&format!("{base}/status")).await;
    assert_eq!(code, 200);
    serde_json::from_str(&body).expect("status is JSON")
}

fn mirror<'a>(s: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    s["services"][0]["mirrors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap()
}

async fn wait_status(
    base: &str,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = status(base).await;
        if ok(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "waited for {what}; status: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Parses Prometheus text: "name{labels}" -> value.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (key, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line: {line}"));
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        out.insert(key.to_string(), v);
    }
    out
}

async fn metrics(base: &str) -> HashMap<String, f64> {
    let (code, body) = get(&format!("{base}/metrics")).await;
    assert_eq!(code, 200);
    // Every sample belongs to a family declared with HELP and TYPE, and names are prefixed.
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        assert!(line.starts_with("mirrordns_"), "{line}");
    }
    parse_metrics(&body)
}

#[tokio::test]
async fn readiness_then_status_follows_mirror_states() {
    let s = Setup::new().await;
    s.eu.set(|k| k.delay = Some(Duration::from_millis(700)));
    s.us.set(|k| k.delay = Some(Duration::from_millis(700)));
    let (server, base) = s.start("origin").await;
    assert_eq!(get(&format!("{base}/healthz")).await.0, 200);
    let (code, body) = get(&format!("{base}/readyz")).await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("first probe round"), "{body}");
    s.eu.set(|k| k.delay = None);
    s.us.set(|k| k.delay = None);
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&format!("{base}/readyz")).await.0 != 200 {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Health moves first and the routing table follows a moment later: /status shows both
    // as they are, so wait for the table too.
    let st = wait_status(&base, "both ready and routed", |s| {
        ["eu-west", "us-east"]
            .iter()
            .all(|m| mirror(s, m)["state"] == "ready" && mirror(s, m)["routable"] == true)
    })
    .await;
    assert_eq!(st["ready"], true);
    assert_eq!(st["services"][0]["releases"][0]["version"], "v2.0.0");
    assert_eq!(
        mirror(&st, "eu-west")["verified_versions"],
        serde_json::json!(["v2.0.0"])
    );
    assert_eq!(mirror(&st, "eu-west")["routable"], true);
    assert!(st["services"][0]["fallback_in_force"].is_null());
    assert!(st["services"][0]["releases"][0]["ready_at"].is_string());
    assert!(st["routing"]["generation"].as_u64().unwrap() > 1);

    // eu-west goes down: state, reason and routability follow.
    s.eu.set(|k| k.status = Some(503));
    let st = wait_status(&base, "eu-west down and unrouted", |s| {
        mirror(s, "eu-west")["state"] == "down" && mirror(s, "eu-west")["routable"] == false
    })
    .await;
    assert!(
        mirror(&st, "eu-west")["reason"]
            .as_str()
            .unwrap()
            .contains("HTTP 503"),
        "{st:#}"
    );
    assert_eq!(mirror(&st, "eu-west")["routable"], false);
    // Then us-east too: the fallback is in force.
    s.us.set(|k| k.status = Some(503));
    let st = wait_status(&base, "fallback", |s| {
        s["services"][0]["fallback_in_force"] == "origin"
    })
    .await;
    assert_eq!(mirror(&st, "us-east")["state"], "down");
    server.shutdown().await;
}

#[tokio::test]
async fn lookup_explains_skipped_mirrors() {
    let s = Setup::new().await;
    release::corrupt(&s.dir.path().join("eu/tool/v2.0.0/tool-linux-amd64.tar.gz"));
    let (server, base) = s.start("origin").await;
    wait_status(&base, "eu-west mismatch, us-east ready", |s| {
        mirror(s, "eu-west")["state"] == "mismatch" && mirror(s, "us-east")["state"] == "ready"
    })
    .await;
    let (code, body) = get(&format!("{base}/lookup?ip=81.2.69.7")).await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["location"]["source"], "override");
    assert_eq!(v["answer"], serde_json::json!(["192.0.2.10"]));
    let d = v["decisions"].as_array().unwrap();
    assert_eq!(d[0]["mirror"], "eu-west");
    assert_eq!(d[0]["used"], "mismatch");
    assert_eq!(d[1]["mirror"], "us-east");
    assert_eq!(d[1]["used"], "answer");
    assert_eq!(get(&format!("{base}/lookup?ip=nope")).await.0, 400);
    assert_eq!(
        get(&format!("{base}/lookup?ip=1.2.3.4&name=nope.example.com"))
            .await
            .0,
        404
    );
    server.shutdown().await;
}

#[tokio::test]
async fn metrics_move_with_real_queries_and_probes() {
    let s = Setup::new().await;
    release::corrupt(&s.dir.path().join("eu/tool/v2.0.0/tool-linux-amd64.tar.gz"));
    let (server, base) = s.start("origin").await;
    wait_status(&base, "eu-west mismatch", |s| {
        mirror(s, "eu-west")["state"] == "mismatch" && mirror(s, "us-east")["state"] == "ready"
    })
    .await;
    let before = metrics(&base).await;
    let addr = server.dns_addrs()[0];
    for _ in 0..5 {
        let m = udp(
            addr,
            &query(
                "downloads.example.com.",
                RecordType::A,
                Some(1232),
                Some(("81.2.69.0", 24)),
            ),
        )
        .await;
        assert_eq!(addrs(&m), ["192.0.2.10"]);
    }
    tcp(
        addr,
        &query("www.example.com.", RecordType::AAAA, None, None),
    )
    .await;
    udp_raw(
        addr,
        &raw_query(
            "downloads.example.com",
            1,
            &[(8, vec![0, 9, 24, 0, 1, 2, 3])],
        ),
    )
    .await
    .unwrap();
    let after = metrics(&base).await;
    let delta =
        |k: &str| after.get(k).copied().unwrap_or(0.0) - before.get(k).copied().unwrap_or(0.0);
    assert_eq!(
        delta("mirrordns_dns_queries_total{transport=\"udp\",qtype=\"A\",rcode=\"NOERROR\"}"),
        5.0
    );
    assert_eq!(
        delta("mirrordns_dns_queries_total{transport=\"tcp\",qtype=\"AAAA\",rcode=\"NOERROR\"}"),
        1.0
    );
    assert_eq!(
        delta("mirrordns_dns_queries_total{transport=\"udp\",qtype=\"none\",rcode=\"FORMERR\"}"),
        1.0
    );
    assert_eq!(delta("mirrordns_dns_malformed_total"), 1.0);
    assert_eq!(delta("mirrordns_dns_ecs_queries_total"), 5.0);
    assert_eq!(
        delta(
            "mirrordns_dns_answers_total{service=\"downloads.example.com\",mirror=\"us-east\",continent=\"EU\"}"
        ),
        5.0
    );
    // UDP times one query in 16, TCP every query.
    assert!(delta("mirrordns_dns_query_duration_seconds_count") >= 1.0);
    assert_eq!(
        after["mirrordns_mirror_state{mirror=\"eu-west\",state=\"mismatch\"}"],
        1.0
    );
    assert_eq!(
        after["mirrordns_mirror_state{mirror=\"eu-west\",state=\"ready\"}"],
        0.0
    );
    assert_eq!(
        after["mirrordns_mirror_state{mirror=\"us-east\",state=\"ready\"}"],
        1.0
    );
    assert!(after["mirrordns_hash_mismatches_total{mirror=\"eu-west\"}"] >= 1.0);
    assert!(after["mirrordns_probes_total{mirror=\"us-east\",result=\"ok\"}"] >= 1.0);
    assert!(after["mirrordns_probe_duration_seconds_count{mirror=\"us-east\"}"] >= 1.0);
    assert_eq!(
        after["mirrordns_replication_lag_seconds{mirror=\"us-east\",release=\"tool/v2.0.0/manifest.json\"}"],
        0.0
    );
    assert!(after["mirrordns_routing_table_swaps_total"] >= 1.0);
    assert!(after["mirrordns_routing_table_build_duration_seconds_count"] >= 1.0);
    assert_eq!(after["mirrordns_build_info{version=\"0.1.0\"}"], 1.0);
    assert_eq!(after["mirrordns_config_generation"], 1.0);

    // A rejected reload is counted and shown.
    let cfg_path = s.dir.path().join("mirrordns.toml");
    let good = std::fs::read_to_string(&cfg_path).unwrap();
    let mut bad = Config::parse(&good);
    bad.table("health").insert("fall".into(), 0.into());
    std::fs::write(&cfg_path, bad.to_string()).unwrap();
    assert!(server.reload().await.is_err());
    let m = metrics(&base).await;
    assert_eq!(m["mirrordns_config_reloads_total{result=\"error\"}"], 1.0);
    let st = status(&base).await;
    assert!(
        st["config"]["last_reload_error"]["error"]
            .as_str()
            .unwrap()
            .contains("health.fall"),
        "{st:#}"
    );
    server.shutdown().await;
}

/// The status page in a real browser: headless Chromium renders it and every mirror's state
/// is on the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium (chromium); `cargo test -- --ignored` runs it, as CI does"]
async fn status_page_renders_in_headless_chromium() {
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| {
            std::process::Command::new(c)
                .arg("--version")
                .output()
                .is_ok()
        })
        .unwrap_or_else(|| panic!("{}", missing("chromium", "chromium")));
    let s = Setup::new().await;
    release::corrupt(&s.dir.path().join("eu/tool/v2.0.0/tool-linux-amd64.tar.gz"));
    let (server, base) = s.start("origin").await;
    wait_status(&base, "states", |s| {
        mirror(s, "eu-west")["state"] == "mismatch" && mirror(s, "us-east")["state"] == "ready"
    })
    .await;
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(chromium);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .arg("--dump-dom")
    .arg(format!("{base}/"));
    // Chromium blocks; the server keeps answering on the runtime's other thread.
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || cmd.output()),
    )
    .await
    .expect("chromium finished")
    .unwrap()
    .expect("chromium ran");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(dom.contains("downloads.example.com"), "{dom}");
    assert!(
        dom.contains(">mismatch<"),
        "eu-west's state on the page: {dom}"
    );
    assert!(
        dom.contains(">ready<"),
        "us-east's state on the page: {dom}"
    );
    assert!(
        dom.contains("sha256 mismatch"),
        "the reason on the page: {dom}"
    );
    server.shutdown().await;
}
