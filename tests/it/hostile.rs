//! Hostile mirrors beyond those of health.rs: huge response headers, invalid TLS
//! certificates, slow-drip bodies and redirects to another scheme. Every mirror is a real
//! server on loopback serving real files; what a user sees is checked through `/status` and
//! real UDP DNS answers.
//!
//! The test CA and the TLS front of the HTTPS mirrors are in tls_server/.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::mirrors::monitoring;
use crate::common::release;
use crate::common::*;
use crate::tls_server::{Pki, TlsFront};
use mirrordns::daemon::Server;
use mirrordns::demo::files::{FileServer, Knobs};
use mirrordns::load::Loaded;

const V1: &str = "tool/v1.8.2";
const MANIFEST: &str = "tool/v1.8.2/manifest.json";

/// One mirror of the test: its name, address, base URL, probe address and expectation.
struct Mirror {
    name: &'static str,
    ipv4: &'static str,
    base_url: String,
    probe_address: Option<SocketAddr>,
    /// None: routable. Else what `/status` must show: the state, words the reason must
    /// contain, words it must not contain.
    expect: Option<Expect>,
}

struct Expect {
    state: &'static str,
    has: Vec<&'static str>,
    lacks: Vec<&'static str>,
}

fn expect(state: &'static str, has: &[&'static str]) -> Option<Expect> {
    Some(Expect {
        state,
        has: has.to_vec(),
        lacks: Vec::new(),
    })
}

fn config(origin: &str, ca: Option<&Path>, mirrors: &[Mirror]) -> String {
    let names: Vec<String> = mirrors.iter().map(|m| format!("\"{}\"", m.name)).collect();
    let mut c = format!(
        r#"{}
{LONDON_OVERRIDE}
[origin]
base-url = "{origin}"
ipv4 = ["192.0.2.1"]

[health]
interval = "200ms"
timeout = "1s"
download-timeout = "2s"
rise = 2
fall = 2
{}

[[service]]
name = "downloads.example.com"
# Every routable mirror is in each answer, so an answer lists exactly the routable ones.
answers = {}
mirrors = [{}]
releases = ["{MANIFEST}"]
"#,
        server_section(),
        ca.map(|c| format!("ca-file = \"{}\"", c.display()))
            .unwrap_or_default(),
        mirrors.len(),
        names.join(", "),
    );
    for m in mirrors {
        c.push_str(&format!(
            "\n[[mirror]]\nname = \"{}\"\nipv4 = [\"{}\"]\nlocation = {{ lat = 50.0, lon = 8.0 }}\nbase-url = \"{}\"\n",
            m.name, m.ipv4, m.base_url
        ));
        if let Some(p) = m.probe_address {
            c.push_str(&format!("probe-address = \"{p}\"\n"));
        }
    }
    c
}

async fn start(dir: &Path, config: &str) -> Server {
    std::fs::write(dir.join("example.com.zone"), ZONE).unwrap();
    let path = dir.join("mirrordns.toml");
    std::fs::write(&path, config).unwrap();
    Server::start(Loaded::from_file(&path).unwrap_or_else(|p| panic!("{p}")))
        .await
        .unwrap()
}

async fn status(server: &Server) -> serde_json::Value {
    serde_json::from_str(&monitoring(server, "/status").await).unwrap()
}

/// (state, routable, reason, last_probe) of a mirror in `/status`.
fn mirror_view(st: &serde_json::Value, name: &str) -> (String, bool, String, String) {
    let m = st["services"][0]["mirrors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in /status"));
    (
        m["state"].as_str().unwrap_or_default().to_string(),
        m["routable"].as_bool().unwrap_or(false),
        m["reason"].as_str().unwrap_or_default().to_string(),
        m["last_probe"].as_str().unwrap_or_default().to_string(),
    )
}

/// The London client's A answer, sorted, and how long it took.
async fn london_sorted(addr: SocketAddr) -> (Vec<String>, Duration) {
    let started = Instant::now();
    let m = udp(addr, &london_query()).await;
    let took = started.elapsed();
    let mut a = addrs(&m);
    a.sort();
    (a, took)
}

/// A plain mirror holding the release, misbehaving as `knobs` says.
async fn plain(dir: &Path, name: &str, knobs: impl FnOnce(&mut Knobs)) -> FileServer {
    release::write(&dir.join(name), V1, "v1.8.2");
    let fs = FileServer::start(&dir.join(name)).await.unwrap();
    fs.set(knobs);
    fs
}

/// The HTTPS mirrors: eu-west with a certificate from the test CA (trusted through
/// `ca-file`), and three whose certificates must be refused.
struct Tls {
    ca: PathBuf,
    /// (mirror name, IPv4 address, host name, front).
    fronts: Vec<(&'static str, &'static str, &'static str, TlsFront)>,
    /// The plain servers behind the fronts.
    _backends: Vec<FileServer>,
}

impl Tls {
    async fn start(dir: &Path, eu: &FileServer) -> Tls {
        let pki = Pki::new(dir, "pki");
        let mut fronts = Vec::new();
        let mut backends = Vec::new();
        let (cert, key) = pki.issue("eu", "eu.mirror.test");
        let front = TlsFront::start(&cert, &key, eu.addr());
        fronts.push(("eu-west", "192.0.2.11", "eu.mirror.test", front));
        for (name, ipv4, host, cert) in [
            // Self-signed, as `openssl req -x509` makes it (marked as a CA).
            (
                "tls-self-signed",
                "192.0.2.21",
                "self.mirror.test",
                pki.self_signed("self", "self.mirror.test"),
            ),
            // From a CA nobody trusts.
            (
                "tls-unknown-ca",
                "192.0.2.31",
                "rogue.mirror.test",
                Pki::new(dir, "rogue-ca").issue("rogue", "rogue.mirror.test"),
            ),
            // From the trusted CA, for another name.
            (
                "tls-wrong-name",
                "192.0.2.22",
                "wrong.mirror.test",
                pki.issue("wrong", "other.mirror.test"),
            ),
        ] {
            let backend = plain(dir, name, |_| {}).await;
            fronts.push((
                name,
                ipv4,
                host,
                TlsFront::start(&cert.0, &cert.1, backend.addr()),
            ));
            backends.push(backend);
        }
        Tls {
            ca: pki.ca(),
            fronts,
            _backends: backends,
        }
    }

    fn mirrors(&self) -> Vec<Mirror> {
        self.fronts
            .iter()
            .map(|(name, ipv4, host, front)| Mirror {
                name,
                ipv4,
                base_url: format!("https://{host}/"),
                probe_address: Some(front.addr),
                expect: match *name {
                    "eu-west" => None,
                    "tls-unknown-ca" => expect(
                        "down",
                        &["TLS failed", "invalid peer certificate: UnknownIssuer"],
                    ),
                    "tls-wrong-name" => expect("down", &["TLS failed", "not valid for name"]),
                    _ => expect("down", &["TLS failed", "invalid peer certificate"]),
                },
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_mirrors_are_shown_with_their_reason_and_never_answered() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    release::write(&dir.join("origin"), V1, "v1.8.2");
    let origin = FileServer::start(&dir.join("origin")).await.unwrap();

    // Two good mirrors: plain HTTP, and HTTPS with a certificate from the test CA (plain
    // HTTP too where openssl, which makes the certificates, is missing).
    let us = plain(dir, "us", |_| {}).await;
    let eu = plain(dir, "eu", |_| {}).await;
    let tls = if installed("openssl", "version", "openssl") {
        Some(Tls::start(dir, &eu).await)
    } else {
        None
    };
    // Headers: 400 of 512 bytes (hundreds of KB), one line of 1 MB, and 64 MB in 16 KB lines.
    let many = plain(dir, "many", |k| k.pad_headers = Some((400, 512))).await;
    let line = plain(dir, "line", |k| k.pad_headers = Some((1, 1 << 20))).await;
    let endless = plain(dir, "endless", |k| k.pad_headers = Some((4096, 16 << 10))).await;
    // Redirects to another scheme on the same host and port, to file: and to ftp:.
    let https = plain(dir, "https", |_| {}).await;
    let to = format!("https://{}/tool/", https.addr());
    https.set(|k| k.redirects = vec![("tool/".into(), to)]);
    let file = plain(dir, "file", |k| {
        k.redirects = vec![("tool/".into(), "file:///etc/".into())]
    })
    .await;
    let ftp = plain(dir, "ftp", |_| {}).await;
    let to = format!("ftp://{}/tool/", ftp.addr());
    ftp.set(|k| k.redirects = vec![("tool/".into(), to)]);
    // 16 bytes every 50 ms of the largest file: 96 KB would take 5 minutes.
    let drip = plain(dir, "drip", |k| {
        k.only_path = Some(".tar.gz".into());
        k.drip = Some((16, Duration::from_millis(50)));
    })
    .await;

    // Nothing listens here; its path holds words a classifier must not read as TLS.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();

    let http = |name: &'static str, ipv4, base_url: String, expect| Mirror {
        name,
        ipv4,
        base_url,
        probe_address: None,
        expect,
    };
    let headers = ["response headers too large"];
    let mut mirrors = vec![http("us-east", "192.0.2.10", us.url(), None)];
    match &tls {
        Some(t) => mirrors.extend(t.mirrors()),
        None => mirrors.push(http("eu-west", "192.0.2.11", eu.url(), None)),
    }
    mirrors.extend([
        http(
            "headers-many",
            "192.0.2.23",
            many.url(),
            expect("down", &headers),
        ),
        http(
            "headers-line",
            "192.0.2.24",
            line.url(),
            expect("down", &headers),
        ),
        http(
            "headers-endless",
            "192.0.2.25",
            endless.url(),
            expect("down", &headers),
        ),
        http(
            "redirect-https",
            "192.0.2.26",
            https.url(),
            expect("down", &["redirect refused", "to https://"]),
        ),
        http(
            "redirect-file",
            "192.0.2.27",
            file.url(),
            expect("down", &["redirect refused", "to file:///etc/"]),
        ),
        http(
            "redirect-ftp",
            "192.0.2.28",
            ftp.url(),
            expect("down", &["redirect refused", "to ftp://"]),
        ),
        http(
            "slow-drip",
            "192.0.2.29",
            drip.url(),
            // Live, so shown as verifying; the reason says which limit and how far it got.
            expect(
                "verifying",
                &[
                    "tool-linux-amd64.tar.gz: timed out: download-timeout of 2.0 s reached with ",
                    " of 98304 bytes received",
                ],
            ),
        ),
        http(
            "refused",
            "192.0.2.30",
            format!("http://{closed}/tls/certificates/"),
            Some(Expect {
                state: "down",
                has: vec!["connection failed"],
                lacks: vec!["TLS"],
            }),
        ),
    ]);
    let ca = tls.as_ref().map(|t| t.ca.clone());
    let server = start(dir, &config(&origin.url(), ca.as_deref(), &mirrors)).await;
    let addr = server.dns_addrs()[0];

    let good = vec!["192.0.2.10".to_string(), "192.0.2.11".to_string()];
    let started = Instant::now();
    let deadline = started + Duration::from_secs(20);
    let mut good_at = None;
    let mut drip_timed_out_at = None;
    let mut us_probes_before_drip_timeout = std::collections::HashSet::new();
    let mut slowest_answer = Duration::ZERO;
    let mut pending = Vec::new();
    loop {
        let st = status(&server).await;
        let (answer, took) = london_sorted(addr).await;
        slowest_answer = slowest_answer.max(took);
        // Before the first probe round ends the origin (192.0.2.1) answers; a hostile mirror
        // never does.
        for a in &answer {
            assert!(
                good.contains(a) || a == "192.0.2.1",
                "a hostile mirror answered: {answer:?}"
            );
        }
        if answer == good {
            good_at.get_or_insert(started.elapsed());
        }
        pending.clear();
        for m in &mirrors {
            let (state, routable, reason, _) = mirror_view(&st, m.name);
            let Some(e) = &m.expect else {
                if !routable {
                    pending.push(format!("{}: {state} {reason}", m.name));
                }
                continue;
            };
            assert!(!routable, "{}: routable ({state}: {reason})", m.name);
            for w in &e.lacks {
                assert!(!reason.contains(w), "{}: {reason}", m.name);
            }
            if state != e.state || !e.has.iter().all(|w| reason.contains(w)) {
                pending.push(format!("{}: {state} {reason}", m.name));
            } else if m.name == "slow-drip" {
                drip_timed_out_at.get_or_insert(started.elapsed());
            }
        }
        if drip_timed_out_at.is_none() {
            us_probes_before_drip_timeout.insert(mirror_view(&st, "us-east").3);
        }
        if pending.is_empty() && answer == good {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still waiting for {pending:#?}; answer {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The slow drip held a download for its whole download-timeout; meanwhile the good
    // mirrors were probed, verified and answered, and DNS never waited.
    let (good_at, drip_at) = (good_at.unwrap(), drip_timed_out_at.unwrap());
    assert!(
        good_at < drip_at,
        "good mirrors answered at {good_at:?}, the drip timed out at {drip_at:?}"
    );
    assert!(
        us_probes_before_drip_timeout.len() >= 4,
        "us-east probed only {} times while the drip ran",
        us_probes_before_drip_timeout.len()
    );
    assert!(
        slowest_answer < Duration::from_millis(500),
        "a DNS answer took {slowest_answer:?}"
    );
    let st = status(&server).await;
    let reason = mirror_view(&st, "slow-drip").2;
    let got: u64 = reason
        .split("reached with ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no byte count in {reason}"));
    assert!(got > 0, "every read made progress, yet: {reason}");

    // Each response of the endless-headers mirror offers 64 MB of headers; the prober reads a
    // bounded head and hangs up, so what the server could push per connection is the
    // client's limit plus socket buffers.
    let per_conn = endless.bytes_sent() / endless.requests().max(1);
    assert!(
        endless.requests() >= 2,
        "probed {} times",
        endless.requests()
    );
    assert!(
        per_conn < 24 << 20,
        "{per_conn} bytes taken per connection: header reading is not bounded"
    );

    // Metrics count each failure under its own kind.
    let metrics = monitoring(&server, "/metrics").await;
    let tls_counted = [
        ("tls-self-signed", "tls"),
        ("tls-wrong-name", "tls"),
        ("tls-unknown-ca", "tls"),
    ];
    for (mirror, result) in tls_counted.into_iter().filter(|_| tls.is_some()).chain([
        ("redirect-file", "redirect"),
        ("redirect-https", "redirect"),
        ("refused", "connect"),
        ("headers-line", "body"),
    ]) {
        let key = format!("mirrordns_probes_total{{mirror=\"{mirror}\",result=\"{result}\"}} ");
        let n: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0);
        assert!(n >= 1.0, "no {result} probe counted for {mirror}");
    }
    server.shutdown().await;
}
