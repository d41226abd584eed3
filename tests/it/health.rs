//! Health and integrity against real loopback HTTP mirrors, observed through real DNS answers.

use crate::common::config::{Config, strings};
use crate::common::mirrors::*;
use crate::common::release;
use crate::common::*;
use hickory_proto::op::ResponseCode;
use std::path::Path;
use std::time::{Duration, Instant};

#[tokio::test]
async fn good_mirrors_are_routed_and_a_corrupted_byte_never_is() {
    let s = Setup::new().await;
    release::corrupt(&s.path("eu/tool/v1.8.2/tool-linux-amd64.tar.gz"));
    let (server, addr) = s
        .start(&s.config(MANIFEST, "fallback = \"live\"", ""))
        .await;
    // eu-west is nearer but holds a wrong byte: London gets us-east.
    wait_for(addr, &[US], 10).await;
    wait_state(&server, "eu-west", |st| {
        st.starts_with(
            "mismatch wrong bytes in v1.8.2: tool-linux-amd64.tar.gz: sha256 mismatch: expected ",
        )
    })
    .await;
    assert!(server.with_health(|_, _| ()).await.is_some());
    // Even with fallback = "live" and us-east gone, the mismatched mirror is never served.
    s.us.set(|k| k.status = Some(503));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (rcode, a) = london_answer(addr).await;
        assert!(!a.contains(&EU.to_string()), "mismatched mirror served");
        if a.is_empty() {
            assert_eq!(rcode, ResponseCode::NoError);
            break;
        }
        assert!(Instant::now() < deadline, "us-east never went down");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn missing_sidecar_404_and_a_probe_address_with_host_header() {
    let s = Setup::new().await;
    std::fs::remove_file(s.path("eu/tool/v1.8.2/tool-linux-amd64.tar.gz.sig")).unwrap();
    let (server, addr) = s.start(&s.config(MANIFEST, "", "")).await;
    wait_for(addr, &[US], 10).await;
    wait_state(&server, "eu-west", |st| {
        st.starts_with("lagging a file of v1.8.2 is missing: ")
            && st.ends_with("tool-linux-amd64.tar.gz.sig: HTTP 404")
    })
    .await;
    // The sidecar arrives: eu-west (probed through its probe-address) becomes routable.
    std::fs::copy(
        s.path("origin/tool/v1.8.2/tool-linux-amd64.tar.gz.sig"),
        s.path("eu/tool/v1.8.2/tool-linux-amd64.tar.gz.sig"),
    )
    .unwrap();
    wait_for(addr, &[EU], 10).await;
    // Probes reached the probe-address with the URL's own Host header.
    assert_eq!(s.eu.last_host().as_deref(), Some("eu.mirror.test:8000"));
    server.shutdown().await;
}

#[tokio::test]
async fn slow_truncated_and_overlong_mirrors_are_not_routed() {
    for (what, knobs) in [
        (
            "slow",
            Box::new(|k: &mut mirrordns::demo::files::Knobs| k.delay = Some(Duration::from_secs(3)))
                as Box<dyn Fn(&mut _)>,
        ),
        (
            "truncated",
            Box::new(|k: &mut mirrordns::demo::files::Knobs| {
                k.only_path = Some(".tar.gz".into());
                k.truncate_after = Some(1000);
            }),
        ),
        (
            "longer than the manifest",
            Box::new(|k: &mut mirrordns::demo::files::Knobs| {
                k.only_path = Some(".zip".into());
                k.no_length = true;
                k.append = vec![0; 5000];
            }),
        ),
    ] {
        let s = Setup::new().await;
        s.eu.set(|k| knobs(k));
        let (server, addr) = s.start(&s.config(MANIFEST, "", "")).await;
        wait_for(addr, &[US], 10).await;
        // Stays out for a while.
        for _ in 0..10 {
            assert_eq!(london_answer(addr).await.1, [US], "{what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut st = state_of(&server, "eu-west").await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while st.starts_with("unknown") && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            st = state_of(&server, "eu-west").await;
        }
        match what {
            "slow" => assert!(st.contains("timed out"), "{what}: {st}"),
            "truncated" => assert!(
                !st.starts_with("mismatch"),
                "{what}: a cut connection is not wrong bytes: {st}"
            ),
            _ => assert!(
                st.starts_with("mismatch") && st.contains("size mismatch"),
                "{what}: {st}"
            ),
        }
        server.shutdown().await;
    }
}

#[tokio::test]
async fn redirects_within_the_mirror_are_followed_and_off_host_ones_refused() {
    let s = Setup::new().await;
    // eu-west moves its files under /pub/ and redirects; us-east redirects to another host.
    std::fs::create_dir_all(s.path("eu/pub")).unwrap();
    std::fs::rename(s.path("eu/tool"), s.path("eu/pub/tool")).unwrap();
    s.eu.set(|k| k.redirects = vec![("tool/".into(), "/pub/tool/".into())]);
    let other = format!("http://localhost:{}/tool/", s.us.addr().port());
    s.us.set(|k| k.redirects = vec![("tool/".into(), other)]);
    let (server, addr) = s
        .start(&s.config(MANIFEST, "fallback = \"servfail\"", ""))
        .await;
    wait_for(addr, &[EU], 10).await;
    // Take eu-west away: us-east is not verified (its redirect leaves the host), so SERVFAIL.
    s.eu.set(|k| k.status = Some(500));
    let deadline = Instant::now() + Duration::from_secs(10);
    while london_answer(addr).await.0 != ResponseCode::ServFail {
        assert!(
            Instant::now() < deadline,
            "no SERVFAIL; us-east: {}",
            state_of(&server, "us-east").await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let st = state_of(&server, "us-east").await;
    assert!(st.contains("redirect"), "{st}");
    server.shutdown().await;
}

#[tokio::test]
async fn hysteresis_then_reverification_after_coming_back() {
    let s = Setup::new().await;
    let (server, addr) = s.start(&s.config(MANIFEST, "", "")).await;
    wait_for(addr, &[EU], 10).await;
    // One failed probe is not enough (fall = 2): answers stay on eu-west.
    s.eu.set(|k| k.status = Some(500));
    let started = Instant::now();
    wait_for(addr, &[US], 10).await;
    let moved_after = started.elapsed();
    // Two failed probes are at least one interval apart (100 ms, less 10 % jitter).
    assert!(
        moved_after >= Duration::from_millis(85),
        "moved after {moved_after:?}: before 2 failed probes"
    );
    // Back: up after 2 good probes, then re-verified before it is routed again.
    s.eu.set(|k| k.status = None);
    wait_for(addr, &[EU], 10).await;
    server.shutdown().await;
}

#[tokio::test]
async fn fallback_modes() {
    for (fallback, want_rcode, want) in [
        ("origin", ResponseCode::NoError, vec![ORIGIN.to_string()]),
        ("live", ResponseCode::NoError, vec![EU.to_string()]),
        ("servfail", ResponseCode::ServFail, vec![]),
    ] {
        let s = Setup::new().await;
        // Neither mirror has the release's last file yet (lagging), both are up.
        for m in ["eu", "us"] {
            std::fs::remove_file(s.path(&format!("{m}/tool/v1.8.2/tool-windows-amd64.zip")))
                .unwrap();
        }
        let (server, addr) = s
            .start(&s.config(MANIFEST, &format!("fallback = \"{fallback}\""), ""))
            .await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = london_answer(addr).await;
            if got == (want_rcode, want.clone()) {
                break;
            }
            assert!(Instant::now() < deadline, "{fallback}: got {got:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server.shutdown().await;
    }
}

#[tokio::test]
async fn sha256sums_manifests_take_sizes_from_the_origin() {
    let s = Setup::new().await;
    release::corrupt(&s.path("eu/tool/v1.8.2/tool-windows-amd64.zip"));
    let (server, addr) = s.start(&s.config("tool/v1.8.2/SHA256SUMS", "", "")).await;
    wait_for(addr, &[US], 10).await;
    wait_state(&server, "eu-west", |st| {
        st.starts_with("mismatch wrong bytes in v1.8.2: tool-windows-amd64.zip: sha256 mismatch")
    })
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn state_file_carries_known_bad_mirrors_across_a_restart() {
    let s = Setup::new().await;
    release::corrupt(&s.path("eu/tool/v1.8.2/tool-linux-amd64.tar.gz"));
    let state = s.path("state.json");
    let health = format!("state-file = \"{}\"", state.display());
    let cfg = s.config(MANIFEST, "fallback = \"live\"", &health);
    let (server, addr) = s.start(&cfg).await;
    wait_for(addr, &[US], 10).await;
    server.shutdown().await;
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert!(
        saved["mirrors"]["eu-west"]["mismatch"].is_string(),
        "{saved}"
    );

    // Restart with every mirror slow to answer: until the first round ends, the saved state
    // routes (us-east), and the known-bad eu-west is never used, even by the "live" fallback.
    s.eu.set(|k| k.delay = Some(Duration::from_millis(800)));
    s.us.set(|k| k.delay = Some(Duration::from_millis(800)));
    let (server, addr) = s.start(&cfg).await;
    assert_eq!(
        london_answer(addr).await.1,
        [US],
        "the saved state routes before the first probe round"
    );
    server.shutdown().await;

    // A state file that is too old is ignored: fallback until the first round.
    let cfg = s.config(
        MANIFEST,
        "fallback = \"origin\"",
        &format!("{health}\nstate-max-age = \"0s\""),
    );
    std::thread::sleep(Duration::from_millis(1100));
    let (server, addr) = s.start(&cfg).await;
    assert_eq!(london_answer(addr).await.1, [ORIGIN]);
    server.shutdown().await;
}

/// Writes a signed manifest (minisign) next to the origin's manifest.
fn sign(path: &Path, sk: &minisign::SecretKey) {
    let data = std::fs::read(path).unwrap();
    let sig = minisign::sign(
        None,
        sk,
        std::io::Cursor::new(&data),
        Some("mirrordns test"),
        None,
    )
    .unwrap();
    std::fs::write(path.with_extension("json.minisig"), sig.to_string()).unwrap();
}

#[tokio::test]
async fn manifest_signatures_are_checked_and_a_bad_one_changes_nothing() {
    let s = Setup::new().await;
    let kp = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    let pk = kp.pk.to_base64();
    let channel = "tool/stable";
    for d in ["origin", "eu", "us"] {
        release::write(&s.path(d), channel, "v1.8.2");
    }
    sign(&s.path("origin/tool/stable/manifest.json"), &kp.sk);
    let mut cfg = Config::parse(&s.config("tool/stable/manifest.json", "", ""));
    cfg.table("origin").insert("minisign-key".into(), pk.into());
    let (server, addr) = s.start(&cfg.to_string()).await;
    wait_for(addr, &[EU], 10).await;

    // A compromised origin publishes v1.9.0 signed with another key; mirrors follow it.
    let evil = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    for d in ["origin", "us"] {
        release::write(&s.path(d), channel, "v1.9.0");
    }
    sign(&s.path("origin/tool/stable/manifest.json"), &evil.sk);
    // Nothing changes: eu-west (still on v1.8.2, the last good manifest) keeps answering.
    for _ in 0..30 {
        assert_eq!(london_answer(addr).await.1, [EU]);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let err = server
        .with_health(|_, st| {
            st.releases
                .get("tool/stable/manifest.json")
                .and_then(|r| r.last_error.clone())
        })
        .await
        .flatten()
        .unwrap_or_default();
    assert!(err.contains("signature check failed"), "{err}");
    server.shutdown().await;
}

#[test]
fn verify_exit_codes() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = rt.block_on(Setup::new());
    let cfg_path = s.path("mirrordns.toml");
    std::fs::write(s.path("example.com.zone"), ZONE).unwrap();
    std::fs::write(&cfg_path, s.config(MANIFEST, "", "")).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mirrordns"))
            .arg("verify")
            .arg("--config")
            .arg(&cfg_path)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    // The file servers run on `rt`'s worker threads while the binary talks to them.
    let (code, out) = run(&[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("ok: every mirror verified"), "{out}");

    release::corrupt(&s.path("us/tool/v1.8.2/tool-windows-amd64.zip"));
    let (code, out) = run(&[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("tool-windows-amd64.zip: sha256 mismatch"),
        "{out}"
    );
    // Only eu-west: fine.
    let (code, _) = run(&["--mirror", "eu-west"]);
    assert_eq!(code, Some(0));
    // JSON for pipelines.
    let (code, out) = run(&["--json"]);
    assert_eq!(code, Some(1));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], false);
    let us = v["mirrors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "us-east")
        .unwrap();
    assert_eq!(us["result"], "mismatch");
    let (code, _) = run(&["--mirror", "nope"]);
    assert_eq!(code, Some(2));
}

#[tokio::test]
async fn probe_state_survives_a_reload_and_removed_mirrors_leave_at_once() {
    let s = Setup::new().await;
    let cfg = s.config(MANIFEST, "", "");
    let (server, addr) = s.start(&cfg).await;
    wait_for(addr, &[EU], 10).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !state_of(&server, "us-east").await.starts_with("ready") {
        assert!(Instant::now() < deadline, "us-east never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // From now on every probe would take 3 s: after the reload, answers can only come from
    // the carried-over state.
    s.eu.set(|k| k.delay = Some(Duration::from_secs(3)));
    s.us.set(|k| k.delay = Some(Duration::from_secs(3)));
    server.reload().await.expect("same config reloads");
    assert_eq!(
        london_answer(addr).await.1,
        [EU],
        "verified state carried over"
    );
    // eu-west removed from the config: it leaves every answer at the swap.
    let path = s.path("mirrordns.toml");
    let mut without_eu = Config::parse(&cfg);
    without_eu
        .service("downloads.example.com")
        .insert("mirrors".into(), strings(["us-east"]));
    std::fs::write(&path, without_eu.to_string()).unwrap();
    server.reload().await.expect("reloads");
    assert_eq!(london_answer(addr).await.1, [US]);
    server.shutdown().await;
}
