//! The download redirector end to end: real loopback mirrors serving real files (one good,
//! one with a flipped byte, one lagging, one holding only an old release), the server started
//! as `mirrordns serve` starts it, and real clients: raw HTTP over TCP, curl, aria2c. What a
//! client is sent must be a mirror that verified that very file, and what it downloads must
//! be the origin's bytes.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::release;
use common::*;
use mirrordns::daemon::Server;
use mirrordns::demo::files::FileServer;
use mirrordns::load::Loaded;
use sha2::{Digest, Sha256};

const V1: &str = "tool/v1.0.0"; // archive, oldest
const V2: &str = "tool/v2.0.0"; // archive, the previous release
const V3: &str = "tool/v3.0.0"; // current
const TGZ: &str = "tool-linux-amd64.tar.gz";
const HOST: &str = "get.example.com";
const SERVICE: &str = "downloads.example.com";
/// Clients placed by `[[geo.override]]` near each mirror.
const GB: &str = "81.2.69.7";
const US: &str = "8.8.8.8";
const JP: &str = "1.0.16.9";
const BR: &str = "200.160.0.5";

fn manifest(dir: &str) -> String {
    format!("{dir}/manifest.json")
}

fn version(dir: &str) -> &str {
    dir.rsplit('/').next().unwrap()
}

/// Writes release `dir` into `root`, published at `day` of November 2026 (newer is later).
fn write_release(root: &Path, dir: &str, day: u32) {
    release::write(root, dir, version(dir));
    let m = root.join(dir).join("manifest.json");
    let text = std::fs::read_to_string(&m).unwrap();
    let text = text.replace(
        "2026-11-20T10:00:00Z",
        &format!("2026-11-{day:02}T10:00:00Z"),
    );
    release::replace(&m, text.as_bytes());
}

fn copy_release(from: &Path, to: &Path, dir: &str) {
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
fn files_of(dir: &str) -> Vec<String> {
    release::files(version(dir))
        .into_iter()
        .map(|(n, _)| format!("{dir}/{n}"))
        .collect()
}

fn sha256_hex(data: &[u8]) -> String {
    release::hex(&Sha256::digest(data))
}

/// An origin and probed mirrors, each holding some releases, and the server routing to them.
struct Lab {
    dir: tempfile::TempDir,
    origin: FileServer,
    /// (name, server, location line) in config order.
    mirrors: Vec<(String, FileServer, String)>,
}

impl Lab {
    /// `mirrors`: (name, `location = {..}` value, releases it holds).
    async fn new(releases: &[(&str, u32)], mirrors: &[(&str, &str, &[&str])]) -> Lab {
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

    fn mirror(&self, name: &str) -> &FileServer {
        &self.mirrors.iter().find(|m| m.0 == name).unwrap().1
    }

    /// Which mirror a URL points at.
    fn name_of(&self, url: &str) -> String {
        if url.starts_with(&self.origin.url()) {
            return "origin".into();
        }
        let m = self.mirrors.iter().find(|m| url.starts_with(&m.1.url()));
        m.map_or_else(|| panic!("{url} is no mirror's"), |m| m.0.clone())
    }

    fn origin_bytes(&self, path: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join("origin").join(path)).unwrap()
    }

    fn config(&self, current: &str, archive: &[&str], redirect_extra: &str, top: &str) -> String {
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

    async fn start(&self, config: &str) -> (Server, SocketAddr) {
        let path = write_files(&self.dir, config, ZONE, None);
        let loaded = Loaded::from_file(&path).unwrap_or_else(|p| panic!("{p}"));
        let server = Server::start(loaded).await.expect("server starts");
        let addr = server.redirect_addrs()[0].plain[0];
        (server, addr)
    }
}

/// The four-mirror lab: good (a full copy), corrupt (a flipped byte in the current release),
/// lagging (only the previous release), archive-only (only the oldest).
async fn four_mirrors() -> Lab {
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
    fn corrupted(self) -> Lab {
        release::corrupt(&self.dir.path().join("corrupt").join(V3).join(TGZ));
        self
    }

    fn four_config(&self, redirect_extra: &str, top: &str) -> String {
        self.config(V3, &[V2, V1], redirect_extra, top)
    }
}

/// Which mirrors may serve each file of the four-mirror lab.
fn expected(path: &str) -> BTreeSet<&'static str> {
    let v = |l: &[&'static str]| l.iter().copied().collect();
    match path.split('/').nth(1).unwrap() {
        "v3.0.0" => v(&["good"]),
        "v2.0.0" => v(&["good", "lagging"]),
        _ => v(&["good", "archive"]),
    }
}

/// An HTTP response as read off the socket.
#[derive(Debug)]
struct Resp {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn location(&self) -> &str {
        self.header("location")
            .unwrap_or_else(|| panic!("no Location: {self:?}"))
    }
}

/// Sends `raw` as it is and reads the response until the server closes.
fn raw(addr: SocketAddr, raw: &[u8]) -> Resp {
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
fn req(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    raw(addr, r.as_bytes())
}

/// GET from `client` (a trusted proxy's X-Forwarded-For; the loopback peer itself if None).
fn get_from(addr: SocketAddr, path: &str, client: Option<&str>) -> Resp {
    let h: Vec<(&str, &str)> = client.map(|c| ("X-Forwarded-For", c)).into_iter().collect();
    req(addr, "GET", path, &h)
}

/// The JSON mirror list of `path` for `client`: mirror name -> state.
fn mirrorlist(addr: SocketAddr, path: &str, client: &str) -> BTreeMap<String, String> {
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
fn offered(addr: SocketAddr, path: &str, client: &str) -> BTreeSet<String> {
    mirrorlist(addr, path, client)
        .into_iter()
        .filter(|(_, s)| s == "used" || s == "alternative")
        .map(|(n, _)| n)
        .collect()
}

/// Polls (bounded) until `ok` holds, then returns; panics with the last `what` otherwise.
fn wait<T: std::fmt::Debug>(
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
fn wait_verified(addr: SocketAddr) {
    for path in [V1, V2, V3].iter().flat_map(|r| files_of(r)) {
        let want: BTreeSet<String> = expected(&path).iter().map(|s| s.to_string()).collect();
        wait(20, &path, || offered(addr, &path, GB), |got| *got == want);
    }
}

/// The `/metrics` samples of the families starting `prefix`: sample text -> value.
fn metrics(server: &Server, prefix: &str) -> BTreeMap<String, f64> {
    let (code, body) = common::process::http(server.http_addr().unwrap().port(), "GET", "/metrics");
    assert_eq!(code, 200);
    body.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        .collect()
}

fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, key: &str) -> f64 {
    after.get(key).copied().unwrap_or(0.0) - before.get(key).copied().unwrap_or(0.0)
}

fn redirect_status(server: &Server) -> mirrordns::schema::RedirectView {
    let st = common::process::status(server.http_addr().unwrap().port());
    serde_json::from_value(st["redirects"][0].clone()).unwrap()
}

/// The `<url>`s of a Metalink.
fn metalink_urls(xml: &str) -> Vec<String> {
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

fn curl(args: &[&str]) -> std::process::Output {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_answer_names_only_mirrors_that_verified_the_file() {
    let lab = four_mirrors().await;
    let (server, addr) = lab
        .start(&lab.four_config("trusted-proxies = [\"127.0.0.0/8\"]", ""))
        .await;
    wait_verified(addr);
    let mut chosen: BTreeMap<(String, &str), String> = BTreeMap::new();
    for path in [V1, V2, V3].iter().flat_map(|r| files_of(r)) {
        let want = expected(&path);
        let digest = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .encode(Sha256::digest(lab.origin_bytes(&path)))
        };
        for client in [Some(GB), Some(US), Some(JP), Some(BR), None] {
            let r = get_from(addr, &format!("/{path}"), client);
            assert_eq!(r.status, 302, "{path} {client:?}: {r:?}");
            let loc = r.location();
            let first = lab.name_of(loc);
            assert!(want.contains(first.as_str()), "{path} {client:?} -> {loc}");
            assert!(loc.ends_with(&format!("/{path}")), "{loc}");
            assert_eq!(
                r.header("cache-control"),
                Some("private, max-age=30"),
                "{r:?}"
            );
            assert_eq!(
                r.header("repr-digest"),
                Some(format!("sha-256=:{digest}:").as_str())
            );
            assert_eq!(
                r.header("digest"),
                Some(format!("SHA-256={digest}").as_str())
            );
            // Link: every other verified mirror, none else.
            let links: BTreeSet<String> = r
                .header("link")
                .map(|l| {
                    l.split(", ")
                        .map(|e| lab.name_of(e.trim_start_matches('<').split('>').next().unwrap()))
                        .collect()
                })
                .unwrap_or_default();
            let mut all = links.clone();
            all.insert(first.clone());
            assert_eq!(all.len(), links.len() + 1, "{r:?}");
            assert_eq!(
                all.iter().map(String::as_str).collect::<BTreeSet<_>>(),
                want,
                "{path} {client:?}: {r:?}"
            );
            // The Metalink names the same mirrors, nearest first.
            let m = get_from(addr, &format!("/{path}.meta4"), client);
            assert_eq!(m.status, 200);
            assert_eq!(m.header("content-type"), Some("application/metalink4+xml"));
            let xml = String::from_utf8(m.body).unwrap();
            let urls = metalink_urls(&xml);
            assert_eq!(lab.name_of(&urls[0]), first, "{xml}");
            let names: BTreeSet<String> = urls.iter().map(|u| lab.name_of(u)).collect();
            assert_eq!(names, all, "{xml}");
            assert!(xml.contains(&format!(
                "<hash type=\"sha-256\">{}</hash>",
                sha256_hex(&lab.origin_bytes(&path))
            )));
            if let Some(c) = client {
                chosen.insert((path.clone(), c), first);
            }
        }
    }
    // Each client gets the nearest mirror holding the file.
    let tgz = |v: &str, c| chosen[&(format!("{v}/{TGZ}"), c)].as_str();
    for c in [GB, US, JP, BR] {
        assert_eq!(tgz(V3, c), "good");
    }
    assert_eq!(tgz(V2, JP), "lagging");
    assert_eq!(tgz(V2, GB), "good");
    assert_eq!(tgz(V1, BR), "archive");
    assert_eq!(tgz(V1, GB), "good");
    // The mirror list says why the corrupt mirror is out; the lagging one has not verified.
    let states = mirrorlist(addr, &format!("{V3}/{TGZ}"), US);
    assert_eq!(states["corrupt"], "down, drained or serving wrong bytes");
    assert_eq!(states["lagging"], "has not verified this file");
    // No release is on every mirror: latest has nowhere to point.
    assert_eq!(
        get_from(addr, &format!("/tool/latest/{TGZ}"), None).status,
        503
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs curl (curl); `cargo test -- --ignored` runs it, as CI does"]
async fn curl_follows_the_redirect_to_the_right_bytes() {
    require("curl", "--version", "curl");
    let lab = four_mirrors().await;
    let (server, addr) = lab
        .start(&lab.four_config("trusted-proxies = [\"127.0.0.0/8\"]", ""))
        .await;
    wait_verified(addr);
    let out = tempfile::tempdir().unwrap();
    for (path, client, mirror) in [
        (format!("{V3}/{TGZ}"), US, "good"),
        (format!("{V2}/{TGZ}"), JP, "lagging"),
        (format!("{V1}/{TGZ}"), BR, "archive"),
        (format!("{V1}/tool-windows-amd64.zip"), GB, "good"),
    ] {
        let file = out.path().join("dl");
        let o = curl(&[
            "-L",
            "-f",
            "-H",
            &format!("X-Forwarded-For: {client}"),
            "-o",
            file.to_str().unwrap(),
            "-w",
            "%{url_effective}",
            &format!("http://{addr}/{path}"),
        ]);
        let effective = String::from_utf8(o.stdout).unwrap();
        assert_eq!(lab.name_of(&effective), mirror, "{path}: {effective}");
        assert_eq!(
            sha256_hex(&std::fs::read(&file).unwrap()),
            sha256_hex(&lab.origin_bytes(&path)),
            "{path}"
        );
    }
    // curl sends dot segments as they are only when told: refused, and counted.
    for p in ["/../etc/passwd", "/tool/%2e%2e/x"] {
        let o = curl(&[
            "--path-as-is",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://{addr}{p}"),
        ]);
        assert_eq!(String::from_utf8(o.stdout).unwrap(), "400", "{p}");
    }
    let m = metrics(&server, "mirrordns_redirect_rejected_total");
    assert_eq!(
        m["mirrordns_redirect_rejected_total{reason=\"traversal\"}"],
        2.0
    );
    server.shutdown().await;
}

/// Runs the openssl CLI in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const EC: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// A test CA in `dir`: ca.pem, ca.key.
fn test_ca(dir: &Path) {
    let mut a = vec!["req", "-x509"];
    a.extend(EC);
    a.extend(["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"]);
    openssl(
        dir,
        &[&a[..], &["-subj", "/CN=mirrordns redirect test CA"]].concat(),
    );
}

/// `<name>.pem` and `<name>.key` for 127.0.0.1 and localhost, signed by the test CA.
fn issue(dir: &Path, name: &str) {
    let ext = format!("{name}.ext");
    std::fs::write(
        dir.join(&ext),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let (key, csr, pem) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
    );
    let mut a = vec!["req"];
    a.extend(EC);
    a.extend(["-keyout", &key, "-out", &csr]);
    openssl(dir, &[&a[..], &["-subj", &format!("/CN={name}")]].concat());
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs curl (curl) and openssl (openssl); `cargo test -- --ignored` runs it, as CI does"]
async fn https_redirects_and_a_bad_key_on_reload_keeps_the_old_one() {
    require("curl", "--version", "curl");
    require("openssl", "version", "openssl");
    let lab = Lab::new(
        &[(V3, 20)],
        &[("good", "{ lat = 50.1, lon = 8.7, country = \"DE\" }", &[V3])],
    )
    .await;
    let pki = lab.dir.path().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    test_ca(&pki);
    issue(&pki, "first");
    issue(&pki, "rotated");
    let (cert, key) = (
        lab.dir.path().join("tls.pem"),
        lab.dir.path().join("tls.key"),
    );
    let install = |name: &str| {
        std::fs::copy(pki.join(format!("{name}.pem")), &cert).unwrap();
        std::fs::copy(pki.join(format!("{name}.key")), &key).unwrap();
    };
    install("first");
    let extra = format!(
        "trusted-proxies = [\"127.0.0.0/8\"]\ntls-listen = [\"127.0.0.1:0\"]\ntls-cert = {:?}\ntls-key = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    let (server, addr) = lab.start(&lab.config(V3, &[], &extra, "")).await;
    let tls = server.redirect_addrs()[0].tls[0];
    let path = format!("{V3}/{TGZ}");
    wait(
        20,
        "good verified",
        || offered(addr, &path, GB),
        |o| o.contains("good"),
    );
    let ca = pki.join("ca.pem");
    let ca = ca.to_str().unwrap();
    let out = lab.dir.path().join("dl");
    // Downloads over HTTPS, by address and by name; returns the certificate's subject line.
    let download = |url: &str| -> String {
        let _ = std::fs::remove_file(&out);
        let o = curl(&[
            "-v",
            "-L",
            "-f",
            "--cacert",
            ca,
            "--resolve",
            &format!("localhost:{}:127.0.0.1", tls.port()),
            "-o",
            out.to_str().unwrap(),
            "-w",
            "%{url_effective}",
            url,
        ]);
        assert_eq!(lab.name_of(&String::from_utf8(o.stdout).unwrap()), "good");
        assert_eq!(
            sha256_hex(&std::fs::read(&out).unwrap()),
            sha256_hex(&lab.origin_bytes(&path))
        );
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        err.lines()
            .find(|l| l.contains("subject:"))
            .unwrap_or_else(|| panic!("no subject in {err}"))
            .to_string()
    };
    let by_ip = format!("https://127.0.0.1:{}/{path}", tls.port());
    let by_name = format!("https://localhost:{}/{path}", tls.port());
    assert!(download(&by_ip).contains("CN=first"));
    assert!(download(&by_name).contains("CN=first"));
    // Without the test CA, curl refuses the certificate: this is real TLS.
    let o = Command::new("curl")
        .args([
            "-sS",
            "--noproxy",
            "*",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            &by_ip,
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(60), "{o:?}");

    // A key that is no key, then one that does not go with the certificate: both rejected,
    // and HTTPS keeps serving with the certificate loaded before.
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let e = server
        .reload()
        .await
        .expect_err("a bad key is rejected")
        .to_string();
    assert!(e.contains("tls-key"), "{e}");
    assert!(download(&by_ip).contains("CN=first"));
    std::fs::copy(pki.join("rotated.key"), &key).unwrap();
    let e = server
        .reload()
        .await
        .expect_err("a key of another certificate")
        .to_string();
    assert!(e.contains("does not go with the certificate"), "{e}");
    assert!(download(&by_name).contains("CN=first"));
    // A good pair is taken on reload, for new connections.
    install("rotated");
    server.reload().await.unwrap_or_else(|p| panic!("{p}"));
    assert!(download(&by_ip).contains("CN=rotated"));
    server.shutdown().await;
}

fn aria2c(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("aria2c")
        .args([
            "--no-conf",
            "--dir",
            dir.to_str().unwrap(),
            "--allow-overwrite=true",
            "--auto-file-renaming=false",
            "--max-tries=2",
            "--connect-timeout=5",
            "--timeout=10",
            "--summary-interval=0",
            "--split=1",
            "--max-connection-per-server=1",
            "--async-dns=false",
        ])
        .args(args)
        .output()
        .expect("aria2c runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs aria2c (aria2); `cargo test -- --ignored` runs it, as CI does"]
async fn aria2c_follows_the_metalink_and_checks_the_hash() {
    require("aria2c", "--version", "aria2");
    let lab = four_mirrors().await;
    let (server, addr) = lab
        .start(&lab.four_config("trusted-proxies = [\"127.0.0.0/8\"]", ""))
        .await;
    wait_verified(addr);
    for (path, client, mirrors) in [
        (format!("{V3}/{TGZ}"), US, vec!["good"]),
        (format!("{V2}/{TGZ}"), JP, vec!["lagging", "good"]),
        (
            format!("{V1}/tool-windows-amd64.zip"),
            BR,
            vec!["archive", "good"],
        ),
    ] {
        let url = format!("http://{addr}/{path}.meta4");
        let xml = String::from_utf8(get_from(addr, &format!("/{path}.meta4"), Some(client)).body)
            .unwrap();
        let names: Vec<String> = metalink_urls(&xml).iter().map(|u| lab.name_of(u)).collect();
        assert_eq!(names, mirrors, "{xml}");
        for (m, cc) in [("good", "de"), ("lagging", "jp"), ("archive", "br")] {
            if mirrors.contains(&m) {
                assert!(
                    xml.contains(&format!("<url location=\"{cc}\" priority=")),
                    "{xml}"
                );
            }
        }
        let out = tempfile::tempdir().unwrap();
        let o = aria2c(
            out.path(),
            &[
                "--follow-metalink=mem",
                "--header",
                &format!("X-Forwarded-For: {client}"),
                &url,
            ],
        );
        assert!(
            o.status.success(),
            "aria2c {url}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        let name = path.rsplit('/').next().unwrap();
        let got = std::fs::read(out.path().join(name)).unwrap();
        assert_eq!(
            sha256_hex(&got),
            sha256_hex(&lab.origin_bytes(&path)),
            "{path}"
        );
        // The same Metalink with one hash digit changed: aria2c refuses the download, so the
        // run above did check the hash it was given.
        let want = sha256_hex(&lab.origin_bytes(&path));
        let wrong = format!(
            "{}{}",
            if want.starts_with('0') { "1" } else { "0" },
            &want[1..]
        );
        let bad = out.path().join("bad.meta4");
        std::fs::write(&bad, xml.replace(&want, &wrong)).unwrap();
        let bad_out = out.path().join("bad");
        let o = aria2c(&bad_out, &["--metalink-file", bad.to_str().unwrap()]);
        assert!(
            !o.status.success(),
            "{}",
            String::from_utf8_lossy(&o.stdout)
        );
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("hecksum"),
            "{}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
    server.shutdown().await;
}
