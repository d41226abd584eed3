//! The download redirector's test lab, shared by tests/it/redirect.rs and
//! tests/it/redirect_tls.rs: an origin and real loopback mirrors holding chosen
//! releases, the server routing between them, and a raw HTTP/1.1 client to ask it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::release;
use crate::common::*;
use mirrordns::daemon::Server;
use mirrordns::demo::files::FileServer;
use mirrordns::load::Loaded;
use sha2::{Digest, Sha256};

pub const V1: &str = "tool/v1.0.0"; // archive, oldest
pub const V2: &str = "tool/v2.0.0"; // archive, the previous release
pub const V3: &str = "tool/v3.0.0"; // current
pub const TGZ: &str = "tool-linux-amd64.tar.gz";
pub const HOST: &str = "get.example.com";
pub const SERVICE: &str = "downloads.example.com";
/// Clients placed by `[[geo.override]]` near each mirror.
pub const GB: &str = "81.2.69.7";
pub const US: &str = "8.8.8.8";
pub const JP: &str = "1.0.16.9";
pub const BR: &str = "200.160.0.5";

pub fn manifest(dir: &str) -> String {
    format!("{dir}/manifest.json")
}

pub fn version(dir: &str) -> &str {
    dir.rsplit('/').next().unwrap()
}

/// Writes release `dir` into `root`, published at `day` of November 2026 (newer is later).
pub fn write_release(root: &Path, dir: &str, day: u32) {
    release::write(root, dir, version(dir));
    let m = root.join(dir).join("manifest.json");
    let text = std::fs::read_to_string(&m).unwrap();
    let text = text.replace(
        "2026-11-20T10:00:00Z",
        &format!("2026-11-{day:02}T10:00:00Z"),
    );
    release::replace(&m, text.as_bytes());
}

pub fn copy_release(from: &Path, to: &Path, dir: &str) {
    std::fs::create_dir_all(to.join(dir)).unwrap();
    let mut names: Vec<_> = std::fs::read_dir(from.join(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    // The manifest last, as a mirror sync would.
    names.sort_by_key(|n| n == "manifest.json");
    for n in names {
        let data = std::fs::read(from.join(dir).join(&n)).unwrap();
        release::replace(&to.join(dir).join(&n), &data);
    }
}

/// The files a manifest lists (not the manifest or SHA256SUMS).
pub fn files_of(dir: &str) -> Vec<String> {
    release::files(version(dir))
        .into_iter()
        .map(|(n, _)| format!("{dir}/{n}"))
        .collect()
}

pub fn sha256_hex(data: &[u8]) -> String {
    release::hex(&Sha256::digest(data))
}

/// An origin and probed mirrors, each holding some releases, and the server routing to them.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub origin: FileServer,
    /// (name, server, location line) in config order.
    pub mirrors: Vec<(String, FileServer, String)>,
}

impl Lab {
    /// `mirrors`: (name, `location = {..}` value, releases it holds).
    pub async fn new(releases: &[(&str, u32)], mirrors: &[(&str, &str, &[&str])]) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let o = dir.path().join("origin");
        for (r, day) in releases {
            write_release(&o, r, *day);
        }
        let origin = FileServer::start(&o).await.unwrap();
        let mut ms = Vec::new();
        for (name, loc, holds) in mirrors {
            let root = dir.path().join(name);
            std::fs::create_dir_all(&root).unwrap();
            for r in *holds {
                copy_release(&o, &root, r);
            }
            let fs = FileServer::start(&root).await.unwrap();
            ms.push((name.to_string(), fs, loc.to_string()));
        }
        Lab {
            dir,
            origin,
            mirrors: ms,
        }
    }

    pub fn mirror(&self, name: &str) -> &FileServer {
        &self.mirrors.iter().find(|m| m.0 == name).unwrap().1
    }

    /// Which mirror a URL points at.
    pub fn name_of(&self, url: &str) -> String {
        if url.starts_with(&self.origin.url()) {
            return "origin".into();
        }
        let m = self.mirrors.iter().find(|m| url.starts_with(&m.1.url()));
        m.map_or_else(|| panic!("{url} is no mirror's"), |m| m.0.clone())
    }

    pub fn origin_bytes(&self, path: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join("origin").join(path)).unwrap()
    }

    pub fn config(
        &self,
        current: &str,
        archive: &[&str],
        redirect_extra: &str,
        top: &str,
    ) -> String {
        let names: Vec<String> = self.mirrors.iter().map(|m| format!("{:?}", m.0)).collect();
        let archive: Vec<String> = archive
            .iter()
            .map(|a| format!("{:?}", manifest(a)))
            .collect();
        let mut c = format!(
            r#"{}{top}
[[geo.override]]
network = "81.2.69.0/24"
location = {{ lat = 51.5, lon = -0.13, country = "GB", continent = "EU" }}
[[geo.override]]
network = "8.8.8.0/24"
location = {{ lat = 37.4, lon = -122.1, country = "US", continent = "NA" }}
[[geo.override]]
network = "1.0.16.0/24"
location = {{ lat = 35.7, lon = 139.7, country = "JP", continent = "AS" }}
[[geo.override]]
network = "200.160.0.0/24"
location = {{ lat = -23.5, lon = -46.6, country = "BR", continent = "SA" }}

[origin]
base-url = "{}"
ipv4 = ["192.0.2.1"]

[health]
interval = "100ms"
timeout = "2s"

[[service]]
name = "{SERVICE}"
mirrors = [{}]
releases = ["{}"]
archive = [{}]

[[redirect]]
service = "{SERVICE}"
listen = ["127.0.0.1:0"]
latest = "tool/latest"
{redirect_extra}
"#,
            server_section(),
            self.origin.url(),
            names.join(", "),
            manifest(current),
            archive.join(", "),
        );
        for (i, (name, fs, loc)) in self.mirrors.iter().enumerate() {
            c.push_str(&format!(
                "\n[[mirror]]\nname = \"{name}\"\nipv4 = [\"192.0.2.{}\"]\nlocation = {loc}\nbase-url = \"{}\"\n",
                20 + i,
                fs.url()
            ));
        }
        c
    }

    pub async fn start(&self, config: &str) -> (Server, SocketAddr) {
        let path = write_files(&self.dir, config, ZONE, None);
        let loaded = Loaded::from_file(&path).unwrap_or_else(|p| panic!("{p}"));
        let server = Server::start(loaded).await.expect("server starts");
        let addr = server.redirect_addrs()[0].plain[0];
        (server, addr)
    }
}

/// The four-mirror lab: good (a full copy), corrupt (a flipped byte in the current release),
/// lagging (only the previous release), archive-only (only the oldest).
pub async fn four_mirrors() -> Lab {
    Lab::new(
        &[(V1, 1), (V2, 10), (V3, 20)],
        &[
            (
                "good",
                "{ lat = 50.1, lon = 8.7, country = \"DE\" }",
                &[V1, V2, V3],
            ),
            (
                "corrupt",
                "{ lat = 38.9, lon = -77.0, country = \"US\" }",
                &[V1, V2, V3],
            ),
            (
                "lagging",
                "{ lat = 35.7, lon = 139.7, country = \"JP\" }",
                &[V2],
            ),
            (
                "archive",
                "{ lat = -23.5, lon = -46.6, country = \"BR\" }",
                &[V1],
            ),
        ],
    )
    .await
    .corrupted()
}

impl Lab {
    pub fn corrupted(self) -> Lab {
        release::corrupt(&self.dir.path().join("corrupt").join(V3).join(TGZ));
        self
    }

    pub fn four_config(&self, redirect_extra: &str, top: &str) -> String {
        self.config(V3, &[V2, V1], redirect_extra, top)
    }
}

/// Which mirrors may serve each file of the four-mirror lab.
pub fn expected(path: &str) -> BTreeSet<&'static str> {
    let v = |l: &[&'static str]| l.iter().copied().collect();
    match path.split('/').nth(1).unwrap() {
        "v3.0.0" => v(&["good"]),
        "v2.0.0" => v(&["good", "lagging"]),
        _ => v(&["good", "archive"]),
    }
}

/// An HTTP response as read off the socket.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    pub fn location(&self) -> &str {
        self.header("location")
            .unwrap_or_else(|| panic!("no Location: {self:?}"))
    }
}

/// Sends `raw` as it is and reads the response until the server closes.
pub fn raw(addr: SocketAddr, raw: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(buf.len());
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok());
    Resp {
        status: status.unwrap_or_else(|| panic!("no status line: {head:?}")),
        body: buf.get(split + 4..).unwrap_or_default().to_vec(),
        head,
    }
}

/// `method path` with Host get.example.com and `headers`, one request per connection.
pub fn req(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    raw(addr, r.as_bytes())
}

/// GET from `client` (a trusted proxy's X-Forwarded-For; the loopback peer itself if None).
pub fn get_from(addr: SocketAddr, path: &str, client: Option<&str>) -> Resp {
    let h: Vec<(&str, &str)> = client.map(|c| ("X-Forwarded-For", c)).into_iter().collect();
    req(addr, "GET", path, &h)
}

/// The JSON mirror list of `path` for `client`: mirror name -> state.
pub fn mirrorlist(addr: SocketAddr, path: &str, client: &str) -> BTreeMap<String, String> {
    let r = req(
        addr,
        "GET",
        &format!("/{path}?mirrorlist"),
        &[("Accept", "application/json"), ("X-Forwarded-For", client)],
    );
    if r.status != 200 {
        // Not in the table yet: the manifest is still being read.
        return BTreeMap::from([(String::new(), format!("HTTP {}", r.status))]);
    }
    let v: mirrordns::schema::MirrorList = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v.client, client);
    v.mirrors.into_iter().map(|m| (m.name, m.state)).collect()
}

/// The mirrors the mirror list offers for `path` (used or alternative).
pub fn offered(addr: SocketAddr, path: &str, client: &str) -> BTreeSet<String> {
    mirrorlist(addr, path, client)
        .into_iter()
        .filter(|(_, s)| s == "used" || s == "alternative")
        .map(|(n, _)| n)
        .collect()
}

/// Polls (bounded) until `ok` holds, then returns; panics with the last `what` otherwise.
pub fn wait<T: std::fmt::Debug>(
    secs: u64,
    what: &str,
    mut probe: impl FnMut() -> T,
    ok: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let v = probe();
        if ok(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "waited {secs} s for {what}; last {v:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until every file of the four-mirror lab is offered from exactly its verified mirrors.
pub fn wait_verified(addr: SocketAddr) {
    for path in [V1, V2, V3].iter().flat_map(|r| files_of(r)) {
        let want: BTreeSet<String> = expected(&path).iter().map(|s| s.to_string()).collect();
        wait(20, &path, || offered(addr, &path, GB), |got| *got == want);
    }
}

/// The samples of one `/metrics` family: label text (`code="302"`) -> value.
pub fn samples(server: &Server, family: &str) -> BTreeMap<String, f64> {
    let port = server.http_addr().unwrap().port();
    let (code, body) = crate::common::process::http(port, "GET", "/metrics");
    assert_eq!(code, 200);
    body.lines()
        .filter_map(|l| l.strip_prefix(family))
        .filter(|l| l.starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(k, v)| (k.trim_matches(['{', '}']).to_string(), v.parse().unwrap()))
        .collect()
}

pub fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, key: &str) -> f64 {
    after.get(key).copied().unwrap_or(0.0) - before.get(key).copied().unwrap_or(0.0)
}

pub fn redirect_status(server: &Server) -> mirrordns::schema::RedirectView {
    let st = crate::common::process::status(server.http_addr().unwrap().port());
    serde_json::from_value(st["redirects"][0].clone()).unwrap()
}

/// The `<url>`s of a Metalink.
pub fn metalink_urls(xml: &str) -> Vec<String> {
    xml.split("<url")
        .skip(1)
        .map(|s| {
            s.split_once('>')
                .unwrap()
                .1
                .split("</url>")
                .next()
                .unwrap()
                .to_string()
        })
        .collect()
}

pub fn curl(args: &[&str]) -> std::process::Output {
    let out = Command::new("curl")
        .args(["-sS", "--noproxy", "*", "--max-time", "30"])
        .args(args)
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A lab of three mirrors holding v1 and v2, except `jp`, which holds `jp_holds`.
pub async fn three_mirrors(jp_holds: &[&str]) -> Lab {
    Lab::new(
        &[(V1, 1), (V2, 10)],
        &[
            (
                "de",
                "{ lat = 50.1, lon = 8.7, country = \"DE\" }",
                &[V1, V2],
            ),
            (
                "us",
                "{ lat = 38.9, lon = -77.0, country = \"US\" }",
                &[V1, V2],
            ),
            (
                "jp",
                "{ lat = 35.7, lon = 139.7, country = \"JP\" }",
                jp_holds,
            ),
        ],
    )
    .await
}

/// A lab of one mirror holding v3, and the server, with `redirect_extra` in the redirect.
pub async fn one_mirror(redirect_extra: &str) -> (Lab, Server, SocketAddr) {
    let lab = Lab::new(
        &[(V3, 20)],
        &[("good", "{ lat = 50.1, lon = 8.7, country = \"DE\" }", &[V3])],
    )
    .await;
    let (server, addr) = lab.start(&lab.config(V3, &[], redirect_extra, "")).await;
    let path = format!("/{V3}/{TGZ}");
    wait(
        20,
        "good verified",
        || {
            req(addr, "HEAD", &path, &[])
                .header("location")
                .map(str::to_string)
        },
        |l| {
            l.as_deref()
                .is_some_and(|l| l.starts_with(&lab.mirror("good").url()))
        },
    );
    (lab, server, addr)
}
