//! The download redirector with real clients: curl over HTTP and HTTPS (a test CA made with
//! openssl), and aria2c following the Metalink. Each needs its tool, so each is `#[ignore]`d
//! and run by `cargo test -- --ignored`, as CI does.

use std::path::Path;
use std::process::Command;

use crate::common::redirect::*;
use crate::common::require;
use crate::tls_server::Pki;

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
    let pki = Pki::new(lab.dir.path(), "pki");
    const SAN: &str = "IP:127.0.0.1,DNS:localhost";
    let first = pki.issue_for("first", "first", SAN);
    let rotated = pki.issue_for("rotated", "rotated", SAN);
    let (cert, key) = (
        lab.dir.path().join("tls.pem"),
        lab.dir.path().join("tls.key"),
    );
    let install = |(pem, k): &(std::path::PathBuf, std::path::PathBuf)| {
        std::fs::copy(pem, &cert).unwrap();
        std::fs::copy(k, &key).unwrap();
    };
    install(&first);
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
    let ca = pki.ca();
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
    std::fs::copy(&rotated.1, &key).unwrap();
    let e = server
        .reload()
        .await
        .expect_err("a key of another certificate")
        .to_string();
    assert!(e.contains("does not go with the certificate"), "{e}");
    assert!(download(&by_name).contains("CN=first"));
    // A good pair is taken on reload, for new connections.
    install(&rotated);
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
