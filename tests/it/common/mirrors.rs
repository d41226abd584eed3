//! An origin and two loopback HTTP mirrors serving real release files, a server routing
//! between them, and ways to watch what it answers and what it thinks of each mirror.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::release;
use super::*;
use hickory_proto::op::ResponseCode;
use mirrordns::daemon::Server;
use mirrordns::demo::files::FileServer;
use mirrordns::load::Loaded;

pub const V1: &str = "tool/v1.8.2";

/// An origin and two mirrors: eu-west (nearest to London) and us-east.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub origin: FileServer,
    pub eu: FileServer,
    pub us: FileServer,
}

impl Setup {
    pub async fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        for d in ["origin", "eu", "us"] {
            release::write(&dir.path().join(d), V1, "v1.8.2");
        }
        let origin = FileServer::start(&dir.path().join("origin")).await.unwrap();
        let eu = FileServer::start(&dir.path().join("eu")).await.unwrap();
        let us = FileServer::start(&dir.path().join("us")).await.unwrap();
        Setup {
            dir,
            origin,
            eu,
            us,
        }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// A config with `extra` lines added to the service.
    pub fn config(&self, release: &str, service_extra: &str, health_extra: &str) -> String {
        format!(
            r#"[server]
dns-listen = ["127.0.0.1:0"]
http-listen = "127.0.0.1:0"
zones = ["example.com.zone"]

{LONDON_OVERRIDE}
[origin]
base-url = "{origin}"
ipv4 = ["192.0.2.1"]
ipv6 = ["2001:db8::1"]

[health]
interval = "100ms"
timeout = "1s"
rise = 2
fall = 2
{health_extra}

[[service]]
name = "downloads.example.com"
mirrors = ["eu-west", "us-east"]
releases = ["{release}"]
{service_extra}

[[mirror]]
name = "eu-west"
ipv4 = ["192.0.2.11"]
location = {{ lat = 50.1, lon = 8.7 }}
base-url = "http://eu.mirror.test:8000/"
probe-address = "{eu}"

[[mirror]]
name = "us-east"
ipv4 = ["192.0.2.10"]
location = {{ lat = 38.9, lon = -77.0 }}
base-url = "{us}"
"#,
            origin = self.origin.url(),
            eu = self.eu.addr(),
            us = self.us.url(),
        )
    }

    pub async fn start(&self, config: &str) -> (Server, std::net::SocketAddr) {
        let path = self.dir.path().join("mirrordns.toml");
        std::fs::write(self.dir.path().join("example.com.zone"), ZONE).unwrap();
        std::fs::write(&path, config).unwrap();
        let server = Server::start(Loaded::from_file(&path).unwrap_or_else(|p| panic!("{p}")))
            .await
            .unwrap();
        let addr = server.dns_addrs()[0];
        (server, addr)
    }
}

pub async fn london_answer(addr: std::net::SocketAddr) -> (ResponseCode, Vec<String>) {
    let m = udp(addr, &london_query()).await;
    (m.metadata.response_code, addrs(&m))
}

/// Polls until the London answer is `want`, or panics after `secs` with what it saw.
pub async fn wait_for(addr: std::net::SocketAddr, want: &[&str], secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut last = (ResponseCode::NoError, vec![]);
    while Instant::now() < deadline {
        last = london_answer(addr).await;
        if last.1 == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("waited {secs} s for {want:?}; last answer {last:?}");
}

pub async fn state_of(server: &Server, name: &str) -> String {
    server
        .with_health(|cfg, st| {
            let i = cfg.mirrors.iter().position(|m| m.name == name).unwrap();
            let h = &st.mirrors[i];
            format!(
                "{} {}",
                mirrordns::health::state::mirror_state(cfg, st, i).as_str(),
                h.reason()
            )
        })
        .await
        .unwrap()
}

/// Polls until a mirror's "state reason" satisfies `ok` (answers can move before the slower
/// mirror's verification has finished), or panics with what it saw.
pub async fn wait_state(server: &Server, name: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = state_of(server, name).await;
        if ok(&st) {
            return st;
        }
        assert!(Instant::now() < deadline, "{name}: {st}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub const MANIFEST: &str = "tool/v1.8.2/manifest.json";
pub const EU: &str = "192.0.2.11";
pub const US: &str = "192.0.2.10";
pub const ORIGIN: &str = "192.0.2.1";

/// GET `path` from the server's monitoring endpoint.
pub async fn monitoring(server: &Server, path: &str) -> String {
    mirrordns::health::http::install_crypto();
    let url = format!("http://{}{path}", server.http_addr().unwrap());
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    client.get(url).send().await.unwrap().text().await.unwrap()
}

/// A mirror's entry in `/status`, as the first service listing it shows it.
pub async fn mirror_status(server: &Server, name: &str) -> serde_json::Value {
    let st: serde_json::Value = serde_json::from_str(&monitoring(server, "/status").await).unwrap();
    st["services"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["mirrors"].as_array().into_iter().flatten())
        .find(|m| m["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} not in /status: {st}"))
}
