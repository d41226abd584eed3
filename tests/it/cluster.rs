//! Several instances, one cluster (`[cluster]`): a real redis-server, three mirrordns
//! instances, and mirrors served by a real nginx whose access logs count every download.

use std::time::{Duration, Instant};

use crate::common::cluster::*;
use crate::common::process::mirrordns;
use crate::common::release;

/// Bytes each instance downloaded to verify, summed over mirrors.
async fn verify_bytes(servers: &[mirrordns::daemon::Server]) -> Vec<f64> {
    let mut out = Vec::new();
    for s in servers {
        let mut total = 0.0;
        for m in MIRRORS {
            total += metric_of(
                s,
                &format!("mirrordns_verify_bytes_total{{mirror=\"{m}\"}}"),
            )
            .await;
        }
        out.push(total);
    }
    out
}

async fn all_ready(servers: &[mirrordns::daemon::Server], secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    for s in servers {
        loop {
            let st = states(s).await;
            if st.iter().all(|(_, state)| state == "ready") {
                break;
            }
            assert!(Instant::now() < deadline, "not all ready: {st:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs redis-server and nginx (redis-server, nginx-light); `cargo test -- --ignored` runs it, as CI does"]
async fn each_file_is_downloaded_once_per_cluster_and_a_corrupt_mirror_is_out_everywhere() {
    tools();
    let lab = Lab::new();
    release::corrupt(&lab.path(&format!("ap-south/{V1}/tool-windows-amd64.zip")));
    let servers = lab.start(3, true).await;
    // Every instance routes London to eu-west; the corrupt ap-south is out on all three.
    all_answer(&servers, &[EU], 20).await;
    for s in &servers {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let st = states(s).await;
            let want = [
                ("eu-west", "ready"),
                ("us-east", "ready"),
                ("ap-south", "mismatch"),
            ];
            if want
                .iter()
                .all(|(m, w)| st.iter().any(|(n, x)| n == m && x == w))
            {
                break;
            }
            assert!(Instant::now() < deadline, "states: {st:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Counted at the mirrors: each release file was sent once in all, not once per instance.
    for m in ["eu-west", "us-east"] {
        for (file, n) in lab.gets(m) {
            if file == "manifest.json" {
                // Each instance's liveness probe GETs it (reachability is per vantage point).
                continue;
            }
            assert_eq!(n, 1, "{m} sent {file} {n} times: {:?}", lab.gets(m));
        }
    }
    // The corrupt mirror: the files up to the wrong one were downloaded once (by the verifier),
    // the others adopted its finding after a HEAD.
    let ap = lab.gets("ap-south");
    assert!(
        ap.iter().all(|(f, n)| *n <= 1 || f == "manifest.json"),
        "ap-south sent a file more than once: {ap:?}"
    );
    assert_eq!(
        ap.iter()
            .find(|(f, _)| f == "tool-windows-amd64.zip")
            .map(|x| x.1),
        Some(1)
    );
    let mut adopted = 0.0;
    for s in &servers {
        adopted += metric_of(s, "mirrordns_cluster_results_adopted_total ").await;
        assert_eq!(
            metric_of(s, "mirrordns_cluster_redis_connected ").await,
            1.0
        );
        let st = status_of(s).await;
        let peers = st["cluster"]["peers"].as_array().unwrap().len();
        assert!(peers >= 1, "{}", st["cluster"]);
    }
    // Three mirrors, three instances: two of three instances adopt each mirror's result.
    assert!(adopted >= 6.0, "adopted {adopted}");
    let with = verify_bytes(&servers).await;
    eprintln!("cluster: bytes downloaded to verify, per instance: {with:?}");
    // Within two probe intervals (1 s) of each other, peers see the others in /status.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let st = status_of(&servers[0]).await;
    let names: Vec<&str> = st["cluster"]["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ns1", "ns2", "ns3"]);
    for s in servers {
        s.shutdown().await;
    }

    // The same release without [cluster], for comparison: every instance downloads all.
    let alone = Lab::new();
    release::corrupt(&alone.path(&format!("ap-south/{V1}/tool-windows-amd64.zip")));
    let servers = alone.start(3, false).await;
    all_answer(&servers, &[EU], 20).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while alone
        .gets("us-east")
        .iter()
        .any(|(f, n)| f != "manifest.json" && *n < 3)
    {
        assert!(Instant::now() < deadline, "{:?}", alone.gets("us-east"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (file, n) in alone.gets("eu-west") {
        if file != "manifest.json" {
            assert_eq!(n, 3, "alone: eu-west sent {file} {n} times");
        }
    }
    let without = verify_bytes(&servers).await;
    eprintln!("alone: bytes downloaded to verify, per instance: {without:?}");
    let (w, wo): (f64, f64) = (with.iter().sum(), without.iter().sum());
    assert!(
        w * 2.5 < wo,
        "with the cluster {w} bytes in all, without {wo}"
    );
    for s in servers {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs redis-server and nginx (redis-server, nginx-light); `cargo test -- --ignored` runs it, as CI does"]
async fn a_change_reaches_every_instance_within_two_probe_intervals() {
    tools();
    let lab = Lab::new();
    let servers = lab.start(3, true).await;
    all_answer(&servers, &[EU], 20).await;
    all_ready(&servers, 20).await;
    // A new release at the origin; eu-west syncs a copy with a wrong byte, the others good.
    for site in ["origin", "us-east", "ap-south", "eu-west"] {
        release::write(&lab.path(site), V1, "v1.8.3");
    }
    release::corrupt(&lab.path(&format!("eu-west/{V1}/tool-linux-amd64.tar.gz")));
    // Each instance notices at its own next origin fetch; from the first instance that
    // answers London with us-east, every other follows within two probe intervals (2 s).
    let started = Instant::now();
    let first = loop {
        let a = answers(&servers).await;
        if a.iter().any(|x| x == &[US]) {
            break started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{a:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let rest = all_answer(&servers, &[US], 20).await;
    eprintln!("first instance moved after {first:?}, all three {rest:?} later");
    assert!(rest <= Duration::from_secs(2), "spread {rest:?}");
    // And the corrupt copy was downloaded once in the whole cluster.
    assert_eq!(
        lab.nginx
            .count("eu-west", "GET", &format!("{V1}/tool-linux-amd64.tar.gz")),
        2,
        "once for v1.8.2, once for v1.8.3"
    );
    for s in servers {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs redis-server and nginx (redis-server, nginx-light); `cargo test -- --ignored` runs it, as CI does"]
async fn admin_drain_applies_everywhere_within_a_second_and_survives_redis_going_away() {
    tools();
    let mut lab = Lab::new();
    let servers = lab.start(3, true).await;
    all_answer(&servers, &[EU], 20).await;
    all_ready(&servers, 20).await;
    lab.admin(&["drain", "eu-west", "--until", "1h", "--reason", "disk swap"]);
    let took = all_answer(&servers, &[US], 5).await;
    eprintln!("drain applied on all three {took:?} after the command returned");
    assert!(took <= Duration::from_secs(1), "took {took:?}");
    for s in &servers {
        let st = status_of(s).await;
        let e = &st["admin"]["mirrors"][0];
        assert_eq!(e["mirror"], "eu-west");
        assert_eq!(e["action"], "drain");
        assert_eq!(e["reason"], "disk swap");
        assert_eq!(e["source"]["kind"], "cluster");
        assert!(e["source"]["by"].as_str().unwrap().ends_with("@ns1"), "{e}");
    }
    // The status page lists it, with who wrote it.
    let page = crate::common::mirrors::monitoring(&servers[2], "/").await;
    assert!(page.contains("On-call actions"), "{page}");
    assert!(
        page.contains("disk swap") && page.contains("cluster, by "),
        "{page}"
    );
    assert!(page.contains("Redis <code>redis://127.0.0.1:"), "{page}");
    let listed = lab.admin(&["list"]);
    assert!(
        listed.out.contains("\"target\":\"eu-west\""),
        "{}",
        listed.out
    );

    // Redis goes away while clients keep asking: every query is answered, the drain stays.
    let asking = {
        let addrs: Vec<_> = servers.iter().map(|s| s.dns_addrs()[0]).collect();
        tokio::spawn(async move {
            let q = crate::common::london_query();
            let mut answered = 0usize;
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(4) {
                for a in &addrs {
                    let r = crate::common::udp_raw(*a, &q).await;
                    assert!(r.is_some(), "a query to {a} went unanswered");
                    answered += 1;
                }
            }
            answered
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    lab.redis.stop();
    let answered = asking.await.unwrap();
    eprintln!("{answered} queries answered while Redis stopped");
    for s in &servers {
        let deadline = Instant::now() + Duration::from_secs(5);
        while metric_of(s, "mirrordns_cluster_redis_connected ").await != 0.0 {
            assert!(Instant::now() < deadline, "still shown connected");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let st = status_of(s).await;
        assert_eq!(st["cluster"]["connected"], false);
        assert!(st["cluster"]["down_since"].is_string());
        assert!(st["cluster"]["outages"].as_u64().unwrap() >= 1);
    }
    assert_eq!(answers(&servers).await, vec![vec![US.to_string()]; 3]);
    let page = crate::common::mirrors::monitoring(&servers[0], "/").await;
    assert!(
        page.contains("cannot be reached: this instance verifies mirrors alone"),
        "{page}"
    );
    // Each carries on alone: a new release is verified by every instance itself.
    let before = verify_bytes(&servers).await;
    for site in ["origin", "us-east", "ap-south", "eu-west"] {
        release::write(&lab.path(site), V1, "v1.8.4");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = verify_bytes(&servers).await;
        // us-east's and ap-south's copies, downloaded by each instance (eu-west is drained,
        // and still verified: its state is kept for when the drain ends).
        if now
            .iter()
            .zip(&before)
            .all(|(n, b)| n - b >= 2.0 * 150_000.0)
        {
            break;
        }
        assert!(Instant::now() < deadline, "before {before:?} now {now:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    all_answer(&servers, &[US], 10).await;

    // Redis back: sharing resumes, and clearing the drain applies everywhere.
    lab.redis.restart();
    // A restarted Redis without persistence has lost the entries: the instances follow it.
    for s in &servers {
        let deadline = Instant::now() + Duration::from_secs(5);
        while metric_of(s, "mirrordns_cluster_redis_connected ").await != 1.0 {
            assert!(Instant::now() < deadline, "not reconnected");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    all_answer(&servers, &[EU], 5).await;
    lab.admin(&["drain", "eu-west"]);
    all_answer(&servers, &[US], 2).await;
    lab.admin(&["clear", "mirror", "eu-west"]);
    let took = all_answer(&servers, &[EU], 5).await;
    assert!(took <= Duration::from_secs(1), "clear took {took:?}");
    for s in servers {
        s.shutdown().await;
    }
}

/// What a Redis writer can try: a result claiming a corrupt mirror verified.
/// - `exact = false`: with the validators a good copy has (us-east's): the HEAD of eu-west's
///   own files shows others, so it is not used.
/// - `exact = true`: with eu-west's very own validators, which anyone can read with a HEAD.
///   Only `[cluster] secret` stops that one (a writer without it cannot seal the record), so
///   the lab runs with a secret.
async fn forged_result_is_not_used(exact: bool) {
    use mirrordns::cluster::record::{FORMAT, FileRecord, Outcome, VerifyRecord};
    tools();
    let mut lab = Lab::new();
    if exact {
        lab.secret = Some("0123456789abcdef0123456789abcdef".into());
    }
    // eu-west, nearest to London, holds a wrong byte (written a second later than the good
    // copies, as a bad sync would).
    std::thread::sleep(Duration::from_millis(1100));
    release::corrupt(&lab.path(&format!("eu-west/{V1}/tool-linux-amd64.tar.gz")));
    let manifest = std::fs::read(lab.path(&format!("origin/{MANIFEST}"))).unwrap();
    let digest = release::hex(&<sha2::Sha256 as sha2::Digest>::digest(&manifest));
    let head = |site: &str, path: &str| -> (Option<String>, Option<String>, Option<u64>) {
        let out = std::process::Command::new("curl")
            .args(["-sI", &format!("{}{path}", lab.nginx.url(site))])
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let h = |k: &str| {
            text.lines().find_map(|l| {
                l.split_once(':')
                    .filter(|(n, _)| n.eq_ignore_ascii_case(k))
                    .map(|(_, v)| v.trim().to_string())
            })
        };
        (
            h("etag"),
            h("last-modified"),
            h("content-length").and_then(|v| v.parse().ok()),
        )
    };
    let from = if exact { "eu-west" } else { "us-east" };
    let files: Vec<FileRecord> = release::files("v1.8.2")
        .iter()
        .map(|(name, data)| {
            let (etag, last_modified, length) = head(from, &format!("{V1}/{name}"));
            FileRecord {
                path: name.clone(),
                sha256: release::hex(&<sha2::Sha256 as sha2::Digest>::digest(data)),
                ok: true,
                etag,
                last_modified,
                length,
            }
        })
        .collect();
    let (etag, last_modified, length) = head("eu-west", MANIFEST);
    let forged = VerifyRecord {
        format: FORMAT,
        mirror: "eu-west".into(),
        base_url: lab.nginx.url("eu-west"),
        release: MANIFEST.into(),
        manifest_sha256: digest.clone(),
        outcome: Outcome::Verified,
        verified_by: "intruder".into(),
        at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        manifest: FileRecord {
            path: MANIFEST.into(),
            sha256: digest.clone(),
            ok: true,
            etag,
            last_modified,
            length,
        },
        files,
        mac: None,
    };
    let key = format!("{}verify:eu-west:{digest}", lab.prefix);
    let json = serde_json::to_string(&forged).unwrap();
    assert_eq!(lab.redis.cmd(&["SET", &key, &json]).as_deref(), Some("OK"));
    let servers = lab.start(3, true).await;
    // London never gets eu-west: the forged result was looked at and not used.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut rejected = 0.0;
    while Instant::now() < deadline {
        for a in answers(&servers).await {
            assert!(
                !a.contains(&EU.to_string()),
                "the corrupt mirror was routed: {a:?}"
            );
        }
        rejected = 0.0;
        for s in &servers {
            rejected += metric_of(s, "mirrordns_cluster_results_rejected_total ").await;
        }
        let states = states(&servers[0]).await;
        if rejected >= 1.0
            && states
                .iter()
                .any(|(n, st)| n == "eu-west" && st == "mismatch")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(rejected >= 1.0, "the forged record was never looked at");
    all_answer(&servers, &[US], 10).await;
    for s in &servers {
        let st = states(s).await;
        assert!(
            st.contains(&("eu-west".into(), "mismatch".into())),
            "{st:?}"
        );
    }
    // The verifier's own finding replaced the forgery (sealed, with a secret).
    let now = lab.redis.cmd(&["GET", &key]).unwrap();
    assert!(now.contains("\"outcome\":\"mismatch\""), "{now}");
    assert_eq!(now.contains("\"mac\":"), exact, "{now}");
    for s in servers {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs redis-server and nginx (redis-server, nginx-light); `cargo test -- --ignored` runs it, as CI does"]
async fn a_forged_result_with_a_good_copys_validators_does_not_route_a_corrupt_mirror() {
    forged_result_is_not_used(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs redis-server and nginx (redis-server, nginx-light); `cargo test -- --ignored` runs it, as CI does"]
async fn with_a_secret_a_forged_result_with_the_mirrors_own_validators_is_not_used() {
    forged_result_is_not_used(true).await;
}

/// A cluster admin entry not sealed with the secret (written by hand into Redis) applies
/// nowhere, and `/status` says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs redis-server and nginx (redis-server, nginx-light); `cargo test -- --ignored` runs it, as CI does"]
async fn with_a_secret_an_unsealed_admin_entry_is_ignored() {
    tools();
    let mut lab = Lab::new();
    lab.secret = Some("0123456789abcdef0123456789abcdef".into());
    let servers = lab.start(2, true).await;
    all_answer(&servers, &[EU], 20).await;
    let entry =
        r#"{"action":"drain","target":"eu-west","by":"intruder@x","at":"2026-12-04T00:00:00Z"}"#;
    let admin = format!("{}admin", lab.prefix);
    assert_eq!(
        lab.redis
            .cmd(&["HSET", &admin, "mirror:eu-west", entry])
            .as_deref(),
        Some("1")
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let st = status_of(&servers[0]).await;
        let errors = st["cluster"]["admin_errors"].to_string();
        if errors.contains("mirror:eu-west: not sealed") {
            break;
        }
        assert!(Instant::now() < deadline, "{}", st["cluster"]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(answers(&servers).await, vec![vec![EU.to_string()]; 2]);
    // The same drain through `mirrordns admin` (which seals it) applies.
    lab.admin(&["drain", "eu-west"]);
    all_answer(&servers, &[US], 2).await;
    for s in servers {
        s.shutdown().await;
    }
}

/// `mirrordns admin` says what is wrong, without a Redis to talk to: no `[cluster]`, a mirror
/// or service the config does not have, a bad `--until`, and a Redis that does not answer.
#[test]
fn admin_command_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("example.com.zone"), crate::common::ZONE).unwrap();
    let closed = crate::common::free_port();
    let base = "[server]\ndns-listen = [\"127.0.0.1:0\"]\nzones = [\"example.com.zone\"]\n\n\
         [[service]]\nname = \"downloads.example.com\"\nmirrors = [\"eu-west\"]\n\n\
         [[mirror]]\nname = \"eu-west\"\nipv4 = [\"192.0.2.11\"]\nlocation = { lat = 50.1, lon = 8.7 }\n";
    let alone = dir.path().join("alone.toml");
    std::fs::write(&alone, base).unwrap();
    let clustered = dir.path().join("cluster.toml");
    std::fs::write(
        &clustered,
        format!("{base}\n[cluster]\nredis = \"redis://:pw@127.0.0.1:{closed}\"\nname = \"ns1\"\n"),
    )
    .unwrap();
    let (alone, clustered) = (alone.to_str().unwrap(), clustered.to_str().unwrap());
    let run = mirrordns(&["admin", "--config", alone, "drain", "eu-west"], 10);
    assert_eq!(run.code, Some(2));
    assert!(run.err.contains("no [cluster] section"), "{}", run.err);
    let run = mirrordns(&["admin", "--config", clustered, "drain", "nowhere"], 10);
    assert_eq!(run.code, Some(2));
    assert!(
        run.err.contains("mirror `nowhere` is not in"),
        "{}",
        run.err
    );
    let run = mirrordns(
        &[
            "admin",
            "--config",
            clustered,
            "pin",
            "other.example.com",
            "x/manifest.json",
        ],
        10,
    );
    assert_eq!(run.code, Some(2));
    assert!(
        run.err.contains("service `other.example.com` is not in"),
        "{}",
        run.err
    );
    let run = mirrordns(
        &[
            "admin", "--config", clustered, "drain", "eu-west", "--until", "tomorrow",
        ],
        10,
    );
    assert_eq!(run.code, Some(2));
    assert!(run.err.contains("--until `tomorrow`"), "{}", run.err);
    // Nothing listens there: a clear error within the time limit, the password not shown.
    let run = mirrordns(&["admin", "--config", clustered, "drain", "eu-west"], 10);
    assert_eq!(run.code, Some(1), "{}", run.err);
    assert!(
        run.err
            .contains(&format!("redis://:***@127.0.0.1:{closed}"))
            && !run.err.contains("pw@"),
        "{}",
        run.err
    );
    assert!(run.took < Duration::from_secs(5), "took {:?}", run.took);
}

/// A reload that adds `[cluster]` joins the cluster (and adopts the peers' results); one that
/// removes it takes the cluster's admin entries out of force; a bad Redis URL is rejected
/// whole and the instance keeps its cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs redis-server and nginx (redis-server, nginx-light); `cargo test -- --ignored` runs it, as CI does"]
async fn reloads_join_and_leave_the_cluster() {
    tools();
    let lab = Lab::new();
    let mut servers = lab.start(1, true).await;
    all_ready(&servers, 20).await;
    // ns2 starts alone (its own downloads), then joins by a reload.
    let p = lab.write_config("ns2", false);
    let ns2 = mirrordns::daemon::Server::start(
        mirrordns::load::Loaded::from_file(&p).unwrap_or_else(|e| panic!("{e}")),
    )
    .await
    .unwrap();
    servers.push(ns2);
    all_ready(&servers, 20).await;
    assert!(status_of(&servers[1]).await["cluster"].is_null());
    lab.write_config("ns2", true);
    servers[1].reload().await.expect("reload with [cluster]");
    let deadline = Instant::now() + Duration::from_secs(5);
    while status_of(&servers[1]).await["cluster"]["connected"] != true {
        assert!(Instant::now() < deadline, "ns2 did not join");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    lab.admin(&["drain", "eu-west"]);
    all_answer(&servers, &[US], 2).await;
    // A bad URL: rejected, the drain stays.
    let good = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, good.replace("redis://127.0.0.1", "http://127.0.0.1")).unwrap();
    let e = servers[1]
        .reload()
        .await
        .expect_err("a bad [cluster] is rejected");
    assert!(e.to_string().contains("cluster.redis"), "{e}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(answers(&servers).await, vec![vec![US.to_string()]; 2]);
    // Leaving: the cluster's drain no longer applies to ns2; ns1 keeps it.
    lab.write_config("ns2", false);
    servers[1].reload().await.expect("reload without [cluster]");
    assert!(status_of(&servers[1]).await["cluster"].is_null());
    let deadline = Instant::now() + Duration::from_secs(3);
    while answers(&servers).await != vec![vec![US.to_string()], vec![EU.to_string()]] {
        assert!(Instant::now() < deadline, "{:?}", answers(&servers).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for s in servers {
        s.shutdown().await;
    }
}
