//! Mirrors that are behind: a new release they have not synced yet, and files a sync is still
//! writing in place. Real loopback HTTP mirrors, observed through real DNS answers.

use std::time::Duration;

use crate::common::config::{Config, strings};
use crate::common::mirrors::*;
use crate::common::release;
use mirrordns::daemon::Server;

/// A channel path: its content changes at each release.
const CHANNEL: &str = "tool/stable/manifest.json";

/// Origin and both mirrors on v1.8.2 of `tool/stable`, `service_extra` added to the service;
/// returns once London is answered with eu-west.
async fn on_channel(s: &Setup, service_extra: &str) -> (Server, std::net::SocketAddr) {
    for d in ["origin", "eu", "us"] {
        release::write(&s.path(d), "tool/stable", "v1.8.2");
    }
    let (server, addr) = s.start(&s.config(CHANNEL, service_extra, "")).await;
    wait_for(addr, &[EU], 10).await;
    (server, addr)
}

/// What rsync leaves for a moment: the new manifest in `dir`, the files still the old ones.
fn new_manifest_only(s: &Setup, dir: &str, version: &str) {
    let new = release::manifest_json(version, &release::files(version));
    std::fs::write(s.path(&format!("{dir}/tool/stable/manifest.json")), new).unwrap();
}

#[tokio::test]
async fn new_release_mid_test_mirrors_lag_then_follow() {
    let s = Setup::new().await;
    let (server, addr) = on_channel(&s, "").await;
    // The origin publishes v1.9.0 on the channel: every mirror lags, the origin answers.
    release::write(&s.path("origin"), "tool/stable", "v1.9.0");
    wait_for(addr, &[ORIGIN], 10).await;
    wait_state(&server, "eu-west", |st| {
        st == "lagging does not have v1.9.0 yet: its tool/stable/manifest.json is still v1.8.2's"
    })
    .await;
    // us-east syncs first: it alone is routable (strict consistency, lag-grace 0).
    release::write(&s.path("us"), "tool/stable", "v1.9.0");
    wait_for(addr, &[US], 10).await;
    release::write(&s.path("eu"), "tool/stable", "v1.9.0");
    wait_for(addr, &[EU], 10).await;
    // Global readiness was recorded.
    let ready = server
        .with_health(|_, st| st.releases.get(CHANNEL).and_then(|r| r.ready_at).is_some())
        .await
        .unwrap();
    assert!(ready);
    server.shutdown().await;
}

#[tokio::test]
async fn lag_grace_keeps_the_previous_release_routable() {
    let s = Setup::new().await;
    let (server, addr) = on_channel(&s, "lag-grace = \"1h\"").await;
    release::write(&s.path("origin"), "tool/stable", "v1.9.0");
    // Give the prober time to notice; eu-west keeps answering throughout.
    for _ in 0..20 {
        assert_eq!(london_answer(addr).await.1, [EU]);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(state_of(&server, "eu-west").await.starts_with("lagging"));
    server.shutdown().await;
}

/// rsync without a temporary file (`--inplace`), and many other sync tools, leave a file
/// shorter than the manifest says while they copy it. That mirror is behind, not wrong: it
/// must come back as soon as the file is complete, not after the minutes a mismatch waits.
/// A file that stops growing is looked at with a HEAD, not downloaded again every round.
#[tokio::test]
async fn a_file_being_synced_in_place_is_waited_for_not_called_a_mismatch() {
    let s = Setup::new().await;
    let file = s.path("eu/tool/v1.8.2/tool-linux-amd64.tar.gz");
    let full = std::fs::read(&file).unwrap();
    assert_eq!(full.len(), 96 * 1024);
    std::fs::write(&file, &full[..40 * 1024]).unwrap();
    let (server, addr) = s.start(&s.config(MANIFEST, "", "")).await;
    wait_for(addr, &[US], 10).await;
    wait_state(&server, "eu-west", |st| {
        st == "lagging still syncing v1.8.2: tool-linux-amd64.tar.gz: incomplete: 40960 of 98304 bytes (still being synced?)"
    })
    .await;

    // While it stays that length, rounds (every 100 ms) cost a HEAD, not the 40 KiB again.
    let before = s.eu.bytes_sent();
    for _ in 0..30 {
        assert_eq!(london_answer(addr).await.1, [US]);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let spent = s.eu.bytes_sent() - before;
    assert!(spent < 40 * 1024, "{spent} bytes sent in 1.5 s");
    assert!(state_of(&server, "eu-west").await.starts_with("lagging"));

    // It grows: downloaded again, still incomplete.
    std::fs::write(&file, &full[..80 * 1024]).unwrap();
    wait_state(&server, "eu-west", |st| {
        st.starts_with("lagging") && st.contains("incomplete: 81920 of 98304 bytes")
    })
    .await;
    // Complete: routed within seconds.
    std::fs::write(&file, &full).unwrap();
    wait_for(addr, &[EU], 5).await;
    assert_eq!(state_of(&server, "eu-west").await, "ready ");
    server.shutdown().await;
}

/// rsync sends files in name order, so on a channel path (`tool/stable`) a mirror has the new
/// `manifest.json` a moment before the new `tool-*` files it lists. A file that is exactly the
/// previous release's is a sync under way: the mirror lags, it is not called wrong (a mismatch
/// would keep it out for minutes, and page someone, at every release).
#[tokio::test]
async fn the_new_manifest_before_its_files_is_a_sync_under_way_not_a_mismatch() {
    let s = Setup::new().await;
    let (server, addr) = on_channel(&s, "").await;
    release::write(&s.path("origin"), "tool/stable", "v1.9.0");
    release::write(&s.path("us"), "tool/stable", "v1.9.0");
    // eu-west: the new manifest only, its files still v1.8.2's.
    new_manifest_only(&s, "eu", "v1.9.0");
    wait_for(addr, &[US], 10).await;
    wait_state(&server, "eu-west", |st| {
        st == "lagging still syncing v1.9.0: the new manifest is there, but \
               tool-linux-amd64.tar.gz is still v1.8.2's"
    })
    .await;
    // The files arrive: routed again at once.
    release::write(&s.path("eu"), "tool/stable", "v1.9.0");
    wait_for(addr, &[EU], 5).await;
    assert_eq!(state_of(&server, "eu-west").await, "ready ");
    server.shutdown().await;
}

/// Mirrors sync from the origin as soon as it publishes, and can be quicker than our next look
/// at the origin. Until we look again, the mirror's manifest differs from the one we know:
/// that is not wrong bytes. (The origin answers every request slowly here, so our view of it
/// always trails the mirror's.)
#[tokio::test]
async fn a_mirror_that_syncs_before_we_see_the_origin_change_is_not_wrong() {
    let s = Setup::new().await;
    s.origin.set(|k| {
        k.only_path = Some("manifest.json".into());
        k.delay = Some(Duration::from_millis(600));
    });
    let (server, addr) = on_channel(&s, "").await;
    for d in ["origin", "eu", "us"] {
        release::write(&s.path(d), "tool/stable", "v1.9.0");
    }
    for _ in 0..40 {
        for m in ["eu-west", "us-east"] {
            let st = state_of(&server, m).await;
            assert!(!st.starts_with("mismatch"), "{m}: {st}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_for(addr, &[EU], 5).await;
    let version = server
        .with_health(|_, st| {
            st.releases[CHANNEL]
                .current
                .as_ref()
                .map(|m| m.version.clone())
        })
        .await
        .unwrap();
    assert_eq!(version.as_deref(), Some("v1.9.0"));
    server.shutdown().await;
}

/// Lag grace keeps a mirror on the previous content only while that content is whole. A sync
/// that has put the new manifest over it, or cut a file short in place, has broken it: the
/// mirror is out until it verifies the new release.
#[tokio::test]
async fn lag_grace_ends_once_a_sync_has_started_overwriting_the_previous_content() {
    for cut_short in [false, true] {
        let s = Setup::new().await;
        let (server, addr) = on_channel(&s, "lag-grace = \"1h\"").await;
        release::write(&s.path("origin"), "tool/stable", "v1.9.0");
        new_manifest_only(&s, "eu", "v1.9.0");
        let files = release::files("v1.9.0");
        if cut_short {
            std::fs::write(
                s.path("eu/tool/stable/tool-linux-amd64.tar.gz"),
                &files[0].1[..1000],
            )
            .unwrap();
        }
        // us-east still holds v1.8.2 whole: the grace keeps it.
        wait_for(addr, &[US], 10).await;
        let want = if cut_short {
            "incomplete: 1000 of 98304 bytes"
        } else {
            "is still v1.8.2's"
        };
        let st = wait_state(&server, "eu-west", |st| st.contains(want)).await;
        assert!(st.starts_with("lagging"), "{st}");
        for _ in 0..10 {
            assert_eq!(london_answer(addr).await.1, [US], "cut short: {cut_short}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server.shutdown().await;
    }
}

/// A file rewritten in place at the same size while we download it (rsync `--inplace` over an
/// older copy): the bytes read are neither the old file nor the new, but the file changed
/// under the download (a HEAD afterwards shows another ETag). That is a sync at work, looked
/// at again next round, not wrong bytes kept out for minutes.
#[tokio::test]
async fn a_file_rewritten_while_we_read_it_is_read_again_not_called_wrong() {
    let s = Setup::new().await;
    let file = s.path("eu/tool/v1.8.2/tool-linux-amd64.tar.gz");
    let good = std::fs::read(&file).unwrap();
    release::corrupt(&file);
    // About 1.2 s per download of this file.
    s.eu.set(|k| {
        k.only_path = Some(".tar.gz".into());
        k.drip = Some((8192, Duration::from_millis(100)));
    });
    let (server, addr) = s.start(&s.config(MANIFEST, "", "")).await;
    // Once the download is under way, the sync writes the right bytes over the file.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s.eu.bytes_sent() < 20_000 {
        assert!(std::time::Instant::now() < deadline, "no download began");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    std::fs::write(&file, &good).unwrap();
    wait_state(&server, "eu-west", |st| {
        st == "lagging still syncing v1.8.2: tool-linux-amd64.tar.gz: changed while being read \
               (still being synced?)"
    })
    .await;
    wait_for(addr, &[EU], 10).await;
    server.shutdown().await;
}

/// A new versioned release (a new path in `releases`) that a mirror has not synced yet: the
/// reason says so, and what it has instead, before the 404 that shows it.
#[tokio::test]
async fn a_release_not_on_a_mirror_yet_is_named_with_what_it_has() {
    let s = Setup::new().await;
    let cfg = s.config(MANIFEST, "", "");
    let (server, addr) = s.start(&cfg).await;
    wait_for(addr, &[EU], 10).await;
    for d in ["origin", "us"] {
        release::write(&s.path(d), "tool/v1.9.0", "v1.9.0");
    }
    let mut next = Config::parse(&cfg);
    next.service("downloads.example.com")
        .insert("releases".into(), strings(["tool/v1.9.0/manifest.json"]));
    std::fs::write(s.path("mirrordns.toml"), next.to_string()).unwrap();
    server.reload().await.expect("reloads");
    wait_for(addr, &[US], 10).await;
    let st = wait_state(&server, "eu-west", |st| st.contains("HTTP 404")).await;
    assert!(
        st.starts_with("lagging does not have v1.9.0 yet (has only v1.8.2): http://")
            && st.ends_with("/tool/v1.9.0/manifest.json: HTTP 404"),
        "{st}"
    );
    server.shutdown().await;
}
