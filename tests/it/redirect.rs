//! The download redirector end to end: real loopback mirrors serving real files (one good,
//! one with a flipped byte, one lagging, one holding only an old release), the server started
//! as `mirrordns serve` starts it, and real HTTP requests over TCP. What a client is sent must
//! be a mirror that verified that very file. Clients that need outside tools (curl, openssl,
//! aria2c) are in tests/it/redirect_tls.rs.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::common::redirect::*;
use mirrordns::daemon::Server;
use sha2::{Digest, Sha256};

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
    type Step<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, u16);
    let mut plan: Vec<Step> = Vec::new();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_are_refused_counted_and_harmless() {
    let (_lab, server, addr) =
        one_mirror("hosts = [\"get.example.com\", \"dl.example.com\"]").await;
    let rejected = samples(&server, "mirrordns_redirect_rejected_total");
    let responses = samples(&server, "mirrordns_redirect_responses_total");
    let long = format!("/tool/{}", "a".repeat(1100));
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\n");
    let cases: Vec<(String, u16, &str)> = vec![
        (get("/../etc/passwd"), 400, "traversal"),
        (get("/tool/%2e%2e/%2E%2E/etc/passwd"), 400, "traversal"),
        (get("/tool//v3.0.0/x"), 400, "traversal"),
        (get("/tool/x%00.tar.gz"), 400, "traversal"),
        (get(&long), 414, "too_long"),
        (get("/tool/%zz"), 400, "bad_encoding"),
        (get("/tool/%ff%fe"), 400, "bad_encoding"),
        ("GET /tool/v3.0.0/x HTTP/1.0\r\n".into(), 400, "no_host"),
        (
            get("/x").replace(HOST, "evil.example.net"),
            421,
            "foreign_host",
        ),
        (
            get("/x").replace("GET", "POST") + "Content-Length: 2\r\n\r\nhi",
            405,
            "method",
        ),
        (
            get("/x").replace("GET", "PUT") + "Content-Length: 0\r\n",
            405,
            "method",
        ),
        (get("/x").replace("GET", "DELETE"), 405, "method"),
    ];
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
