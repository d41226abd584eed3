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

/// The samples of one `/metrics` family: label text (`code="302"`) -> value.
fn samples(server: &Server, family: &str) -> BTreeMap<String, f64> {
    let port = server.http_addr().unwrap().port();
    let (code, body) = common::process::http(port, "GET", "/metrics");
    assert_eq!(code, 200);
    body.lines()
        .filter_map(|l| l.strip_prefix(family))
        .filter(|l| l.starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(k, v)| (k.trim_matches(['{', '}']).to_string(), v.parse().unwrap()))
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
    let m = samples(&server, "mirrordns_redirect_rejected_total");
    assert_eq!(m["reason=\"traversal\""], 2.0);
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

/// A lab of three mirrors holding v1 and v2, except `jp`, which holds `jp_holds`.
async fn three_mirrors(jp_holds: &[&str]) -> Lab {
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

fn latest_version(server: &Server) -> Option<String> {
    redirect_status(server).latest.and_then(|l| l.version)
}

/// HEAD of the `latest` tarball from a client in Japan: (mirror, release dir) it is sent to.
fn latest_from_jp(lab: &Lab, addr: SocketAddr) -> (String, String) {
    let h = [("X-Forwarded-For", JP)];
    let r = req(addr, "HEAD", &format!("/tool/latest/{TGZ}"), &h);
    assert_eq!(r.status, 302, "{r:?}");
    let loc = r.location();
    let dir = loc.split('/').rev().nth(1).unwrap();
    (lab.name_of(loc), dir.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn latest_moves_only_once_the_last_live_mirror_verified() {
    let lab = three_mirrors(&[V1]).await;
    let cfg = lab.config(V2, &[V1], "trusted-proxies = [\"127.0.0.0/8\"]", "");
    let (server, addr) = lab.start(&cfg).await;
    wait(
        20,
        "latest v1",
        || latest_version(&server),
        |v| v.as_deref() == Some("v1.0.0"),
    );
    wait(
        20,
        "v2 on de and us",
        || offered(addr, &format!("{V2}/{TGZ}"), JP),
        |o| o.len() == 2,
    );
    // jp lags: for many probe rounds, latest stays on v1 (and sends Japan to jp).
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        assert_eq!(latest_from_jp(&lab, addr), ("jp".into(), "v1.0.0".into()));
        assert_eq!(latest_version(&server).as_deref(), Some("v1.0.0"));
        std::thread::sleep(Duration::from_millis(100));
    }
    let v1 = redirect_status(&server).latest.unwrap();
    assert_eq!(v1.release.as_deref(), Some(manifest(V1).as_str()));

    // jp syncs v2. Until it has verified every file, latest must not move; once it moves,
    // Japan is sent to jp for v2 (jp verified it), never elsewhere.
    let jp = server
        .table()
        .load()
        .config
        .mirrors
        .iter()
        .position(|m| m.name == "jp")
        .unwrap();
    copy_release(
        &lab.dir.path().join("origin"),
        &lab.dir.path().join("jp"),
        V2,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut polls = 0;
    loop {
        polls += 1;
        // One table snapshot: latest and who verified what, as the redirector reads them.
        let table = server.table().load();
        let dl = table.downloads[0].as_ref().unwrap();
        if let Some(l) = &dl.latest
            && l.version == "v2.0.0"
        {
            for f in files_of(V2) {
                assert!(
                    dl.files[&f].on.contains(&jp),
                    "latest is v2 but jp has not verified {f}"
                );
            }
        }
        let (mirror, dir) = latest_from_jp(&lab, addr);
        if dir == "v2.0.0" {
            assert_eq!(mirror, "jp", "latest moved to v2 before jp verified it");
            let states = mirrorlist(addr, &format!("{V2}/{TGZ}"), JP);
            assert_eq!(states["jp"], "used", "{states:?}");
            if latest_version(&server).as_deref() == Some("v2.0.0") {
                break;
            }
        } else {
            assert_eq!((mirror.as_str(), dir.as_str()), ("jp", "v1.0.0"));
        }
        assert!(
            Instant::now() < deadline,
            "latest did not move to v2 within 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let v2 = redirect_status(&server).latest.unwrap();
    assert_eq!(v2.release.as_deref(), Some(manifest(V2).as_str()));
    assert_ne!(v2.since, v1.since);
    eprintln!("latest moved after {polls} polls");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blocked_version_is_gone_and_latest_falls_back() {
    let lab = three_mirrors(&[V1, V2]).await;
    let top = "admin-state = \"admin.toml\"\n";
    let (server, addr) = lab.start(&lab.config(V2, &[V1], "", top)).await;
    let admin = lab.dir.path().join("admin.toml");
    let v2 = format!("/{V2}/{TGZ}");
    wait(
        20,
        "latest v2",
        || latest_version(&server),
        |v| v.as_deref() == Some("v2.0.0"),
    );
    assert_eq!(req(addr, "GET", &v2, &[]).status, 302);
    let before = samples(&server, "mirrordns_redirect_responses_total");
    std::fs::write(
        &admin,
        "[[block]]\nversion = \"v2.0.0\"\nreason = \"bad build\"\n",
    )
    .unwrap();
    wait(
        10,
        "410 for v2",
        || req(addr, "GET", &v2, &[]).status,
        |s| *s == 410,
    );
    let mut gone = 1;
    for f in files_of(V2) {
        for (method, path) in [
            ("GET", format!("/{f}")),
            ("HEAD", format!("/{f}")),
            ("GET", format!("/{f}.meta4")),
        ] {
            let r = req(addr, method, &path, &[]);
            assert_eq!(r.status, 410, "{method} {path}: {r:?}");
            gone += 1;
        }
    }
    let after = samples(&server, "mirrordns_redirect_responses_total");
    assert_eq!(delta(&before, &after, "code=\"410\""), gone as f64);
    for f in files_of(V1) {
        assert_eq!(req(addr, "GET", &format!("/{f}"), &[]).status, 302, "{f}");
    }
    wait(
        10,
        "latest back on v1",
        || latest_version(&server),
        |v| v.as_deref() == Some("v1.0.0"),
    );
    let r = req(addr, "HEAD", &format!("/tool/latest/{TGZ}"), &[]);
    assert!(r.location().ends_with(&format!("/{V1}/{TGZ}")), "{r:?}");
    assert_eq!(redirect_status(&server).withdrawn_files, 3);
    // Unblocked: served again.
    std::fs::write(&admin, "").unwrap();
    wait(
        10,
        "302 for v2",
        || req(addr, "GET", &v2, &[]).status,
        |s| *s == 302,
    );
    wait(
        10,
        "latest v2 again",
        || latest_version(&server),
        |v| v.as_deref() == Some("v2.0.0"),
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forwarded_addresses_are_believed_from_trusted_proxies_only() {
    let lab = four_mirrors().await;
    let trusting = lab.four_config("trusted-proxies = [\"127.0.0.0/8\"]", "");
    let (server, addr) = lab.start(&trusting).await;
    wait_verified(addr);
    let v1 = format!("/{V1}/{TGZ}");
    let sent_to = |h: &[(&str, &str)]| lab.name_of(req(addr, "GET", &v1, h).location());
    let untrusted = |s: &Server| samples(s, "mirrordns_redirect_rejected_total")["reason=\"untrusted_forwarded\""];
    let brazil: [&[(&str, &str)]; 3] = [
        &[("X-Forwarded-For", BR)],
        // The rightmost address a trusted proxy did not add itself.
        &[("X-Forwarded-For", "81.2.69.7, 200.160.0.5, 127.0.0.9")],
        &[("Forwarded", "for=200.160.0.5;proto=https")],
    ];
    // Loopback itself has no location: the service's order, good first.
    assert_eq!(sent_to(&[]), "good");
    for h in brazil {
        assert_eq!(sent_to(h), "archive", "{h:?}");
    }
    assert_eq!(untrusted(&server), 0.0);

    // No trusted proxies: the same headers from loopback are not believed, and counted.
    std::fs::write(
        lab.dir.path().join("mirrordns.toml"),
        lab.four_config("", ""),
    )
    .unwrap();
    server.reload().await.unwrap_or_else(|p| panic!("{p}"));
    wait(
        10,
        "archive verified",
        || req(addr, "GET", &format!("/{V1}/{TGZ}?mirrorlist"), &[]).body,
        |b| String::from_utf8_lossy(b).contains("<td>archive</td><td>BR</td><td>alternative</td>"),
    );
    for h in brazil {
        assert_eq!(sent_to(h), "good", "{h:?}");
    }
    assert_eq!(untrusted(&server), 3.0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn downloads_are_counted_by_mirror_and_release() {
    let lab = four_mirrors().await;
    let (server, addr) = lab
        .start(&lab.four_config("trusted-proxies = [\"127.0.0.0/8\"]", ""))
        .await;
    wait_verified(addr);
    let responses = samples(&server, "mirrordns_redirect_responses_total");
    let (v3, v2, v1) = (
        format!("/{V3}/{TGZ}"),
        format!("/{V2}/{TGZ}"),
        format!("/{V1}/{TGZ}"),
    );
    let from = |c: &'static str| ("X-Forwarded-For", c);
    let mut plan: Vec<(&str, &str, Vec<(&str, &str)>, u16)> = Vec::new();
    plan.extend((0..5).map(|_| ("GET", v3.as_str(), vec![from(GB)], 302)));
    plan.extend((0..3).map(|_| ("GET", v1.as_str(), vec![from(BR)], 302)));
    plan.extend((0..2).map(|_| ("GET", v2.as_str(), vec![from(JP)], 302)));
    // Not downloads: HEADs, a resumed download, a Metalink, a path in no manifest.
    plan.extend((0..4).map(|_| ("HEAD", v3.as_str(), vec![from(GB)], 302)));
    plan.push(("GET", &v3, vec![from(GB), ("Range", "bytes=100-")], 302));
    // A range from byte 0 is a download.
    plan.push(("GET", &v3, vec![from(GB), ("Range", "bytes=0-99")], 302));
    let meta = format!("{v3}.meta4");
    plan.push(("GET", &meta, vec![from(GB)], 200));
    plan.push(("GET", "/tool/v9/none.tar.gz", vec![], 404));
    for (method, path, headers, code) in &plan {
        assert_eq!(
            req(addr, method, path, headers).status,
            *code,
            "{method} {path}"
        );
    }
    let got = samples(&server, "mirrordns_redirects_total");
    let key = |m: &str, cont: &str, r: &str| {
        format!(
            "service=\"{SERVICE}\",mirror=\"{m}\",continent=\"{cont}\",release=\"{}\"",
            manifest(r)
        )
    };
    let want = BTreeMap::from([
        (key("good", "EU", V3), 6.0),
        (key("archive", "SA", V1), 3.0),
        (key("lagging", "AS", V2), 2.0),
    ]);
    let nonzero: BTreeMap<String, f64> = got.into_iter().filter(|(_, v)| *v > 0.0).collect();
    assert_eq!(nonzero, want);
    let partial = samples(&server, "mirrordns_redirect_partial_requests_total");
    assert_eq!(partial[&format!("service=\"{SERVICE}\"")], 1.0);
    let after = samples(&server, "mirrordns_redirect_responses_total");
    for (code, n) in [("302", 16.0), ("200", 1.0), ("404", 1.0), ("410", 0.0)] {
        assert_eq!(
            delta(&responses, &after, &format!("code=\"{code}\"")),
            n,
            "{code}"
        );
    }
    // /status tells the same story.
    let st = redirect_status(&server);
    let counts = |v: &[mirrordns::schema::DownloadCount]| -> BTreeMap<String, u64> {
        v.iter().map(|c| (c.name.clone(), c.count)).collect()
    };
    let by_release = BTreeMap::from([(manifest(V3), 6), (manifest(V2), 2), (manifest(V1), 3)]);
    assert_eq!(counts(&st.downloads_by_release), by_release);
    let by_mirror: BTreeMap<String, u64> = [("good", 6), ("lagging", 2), ("archive", 3)]
        .map(|(k, v)| (k.to_string(), v))
        .into();
    assert_eq!(counts(&st.downloads_by_mirror), by_mirror);
    assert_eq!(st.partial_requests, 1);
    server.shutdown().await;
}

/// A lab of one mirror holding v3, and the server, with `redirect_extra` in the redirect.
async fn one_mirror(redirect_extra: &str) -> (Lab, Server, SocketAddr) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_are_refused_counted_and_harmless() {
    let (_lab, server, addr) =
        one_mirror("hosts = [\"get.example.com\", \"dl.example.com\"]").await;
    let rejected = samples(&server, "mirrordns_redirect_rejected_total");
    let responses = samples(&server, "mirrordns_redirect_responses_total");
    let long = format!("/tool/{}", "a".repeat(1100));
    let cases: Vec<(String, u16, &str)> = [
        (
            "GET /../etc/passwd HTTP/1.1\r\nHost: get.example.com\r\n",
            400,
            "traversal",
        ),
        (
            "GET /tool/%2e%2e/%2E%2E/etc/passwd HTTP/1.1\r\nHost: get.example.com\r\n",
            400,
            "traversal",
        ),
        (
            "GET /tool//v3.0.0/x HTTP/1.1\r\nHost: get.example.com\r\n",
            400,
            "traversal",
        ),
        (
            "GET /tool/x%00.tar.gz HTTP/1.1\r\nHost: get.example.com\r\n",
            400,
            "traversal",
        ),
        (
            &format!("GET {long} HTTP/1.1\r\nHost: get.example.com\r\n"),
            414,
            "too_long",
        ),
        (
            "GET /tool/%zz HTTP/1.1\r\nHost: get.example.com\r\n",
            400,
            "bad_encoding",
        ),
        (
            "GET /tool/%ff%fe HTTP/1.1\r\nHost: get.example.com\r\n",
            400,
            "bad_encoding",
        ),
        ("GET /tool/v3.0.0/x HTTP/1.0\r\n", 400, "no_host"),
        (
            "GET /tool/v3.0.0/x HTTP/1.1\r\nHost: evil.example.net\r\n",
            421,
            "foreign_host",
        ),
        (
            "POST /tool/v3.0.0/x HTTP/1.1\r\nHost: get.example.com\r\nContent-Length: 2\r\n\r\nhi",
            405,
            "method",
        ),
        (
            "PUT /tool/v3.0.0/x HTTP/1.1\r\nHost: get.example.com\r\nContent-Length: 0\r\n",
            405,
            "method",
        ),
        (
            "DELETE /tool/v3.0.0/x HTTP/1.1\r\nHost: get.example.com\r\n",
            405,
            "method",
        ),
    ]
    .into_iter()
    .map(|(r, c, why)| (r.to_string(), c, why))
    .collect();
    let mut by_reason: BTreeMap<&str, f64> = BTreeMap::new();
    let mut by_code: BTreeMap<u16, f64> = BTreeMap::new();
    for (r, code, why) in &cases {
        let text = if r.ends_with("hi") {
            r.clone()
        } else {
            format!("{r}Connection: close\r\n\r\n")
        };
        let resp = raw(addr, text.as_bytes());
        assert_eq!(resp.status, *code, "{}: {resp:?}", &r[..r.len().min(60)]);
        if *code == 405 {
            assert_eq!(resp.header("allow"), Some("GET, HEAD"));
        }
        *by_reason.entry(why).or_default() += 1.0;
        *by_code.entry(*code).or_default() += 1.0;
    }
    let rejected_after = samples(&server, "mirrordns_redirect_rejected_total");
    for (why, n) in &by_reason {
        assert_eq!(
            delta(&rejected, &rejected_after, &format!("reason=\"{why}\"")),
            *n,
            "{why}"
        );
    }
    assert_eq!(
        delta(&rejected, &rejected_after, "reason=\"untrusted_forwarded\""),
        0.0
    );
    let responses_after = samples(&server, "mirrordns_redirect_responses_total");
    for (code, n) in &by_code {
        assert_eq!(
            delta(&responses, &responses_after, &format!("code=\"{code}\"")),
            *n,
            "{code}"
        );
    }
    // Still answering, for either configured host in any spelling.
    for host in ["get.example.com", "DL.Example.COM.:8080"] {
        let r = raw(
            addr,
            format!("GET /{V3}/{TGZ} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(r.status, 302, "{host}: {r:?}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_and_idle_clients_cannot_starve_the_redirector() {
    // Two redirectors of one service: one closing idle connections after 1 s, one keeping
    // them for a minute, so that what closes connections there is the cap alone.
    let extra = format!(
        "idle-timeout = \"1s\"\nmax-connections = 5\n\n[[redirect]]\nservice = \"{SERVICE}\"\nlisten = [\"127.0.0.1:0\"]\nidle-timeout = \"60s\"\nmax-connections = 5\n"
    );
    let (lab, server, quick) = one_mirror(&extra).await;
    let patient = server.redirect_addrs()[1].plain[0];
    let path = format!("/{V3}/{TGZ}");

    // Half a request head, then nothing: closed after the idle timeout, not kept forever.
    let mut s = TcpStream::connect(quick).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: get.exa").as_bytes())
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf); // EOF, a reset, or a 408 then EOF
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "closed after {took:?}"
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(buf.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");

    // Twenty idle connections against a cap of five: a new client still gets its redirect,
    // at once, because the connections idle longest make room.
    let closed = samples(&server, "mirrordns_redirect_connections_closed_total");
    let idle: Vec<TcpStream> = (0..20)
        .map(|i| {
            let mut c = TcpStream::connect(patient).unwrap();
            if i % 2 == 0 {
                c.write_all(b"GET /tool/v3.0.0/").unwrap();
            }
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let r = req(patient, "GET", &path, &[]);
    assert_eq!(r.status, 302, "{r:?}");
    assert!(r.location().starts_with(&lab.mirror("good").url()));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let after = samples(&server, "mirrordns_redirect_connections_closed_total");
    assert!(
        delta(&closed, &after, "reason=\"evicted\"") >= 16.0,
        "{after:?}"
    );
    assert_eq!(delta(&closed, &after, "reason=\"idle\""), 0.0, "{after:?}");
    // The evicted ones were really closed.
    let mut shut = 0;
    for mut c in idle {
        c.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut b = [0u8; 64];
        // Closed: end of stream, or a reset where the half-sent head was left unread.
        match c.read(&mut b) {
            Ok(0) => shut += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => shut += 1,
            _ => {}
        }
    }
    assert!(shut >= 16, "{shut} of 20 idle connections closed");
    server.shutdown().await;
}
