use std::path::Path;
use std::time::{Duration, SystemTime};

use super::*;
use crate::config::Config;

const CONFIG: &str = r#"
[server]
dns-listen = ["127.0.0.1:0"]
zones = ["z.zone"]
[origin]
base-url = "http://127.0.0.1:1/"
[[service]]
name = "dl.example.com"
policy = "nearest"
mirrors = ["a", "b", "c"]
releases = ["tool/v2/manifest.json"]
archive = ["tool/v1/manifest.json"]
[[redirect]]
service = "dl.example.com"
listen = ["127.0.0.1:0"]
latest = "tool/latest"
[[mirror]]
name = "a"
ipv4 = ["192.0.2.1"]
location = { lat = 50.0, lon = 8.0, country = "DE" }
base-url = "http://127.0.0.1:2/"
[[mirror]]
name = "b"
ipv4 = ["192.0.2.2"]
ipv6 = ["2001:db8::2"]
location = { lat = 40.0, lon = -75.0 }
base-url = "http://127.0.0.1:3/pub"
[[mirror]]
name = "c"
ipv4 = ["192.0.2.3"]
location = { lat = 35.0, lon = 139.0 }
base-url = "http://127.0.0.1:4/"
"#;

fn config() -> Config {
    match Config::parse(Path::new("/tmp/t.toml"), CONFIG) {
        Ok(c) => c,
        Err(p) => panic!("{p}"),
    }
}

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn release(
    name: &str,
    version: &str,
    published: u64,
    files: &[(&str, &[usize])],
    complete: &[usize],
) -> ReleaseFiles {
    ReleaseFiles {
        release: format!("tool/{name}/manifest.json"),
        version: version.into(),
        published: Some(at(published)),
        blocked: false,
        current: true,
        archive: name == "v1",
        files: files
            .iter()
            .map(|(p, on)| FileFacts {
                path: format!("tool/{name}/{p}"),
                size: Some(10),
                sha256: [version.len() as u8; 32],
                on: on.to_vec(),
            })
            .collect(),
        complete: complete.to_vec(),
    }
}

const ALL_LIVE: [Eligibility; 3] = [Eligibility::Routable; 3];

#[test]
fn a_file_goes_to_the_first_mirror_that_verified_it() {
    let c = config();
    // v2 is still syncing on c: it verified x but not y.
    let rs = vec![release(
        "v2",
        "v2",
        200,
        &[("x", &[0, 2]), ("y", &[0])],
        &[0],
    )];
    let d = build(&c, 0, &ALL_LIVE, &rs, None, at(1000));
    let x = &d.files["tool/v2/x"];
    let y = &d.files["tool/v2/y"];
    assert_eq!(d.pick(x, &[2, 1, 0], &c, false).as_slice(), [2, 0]);
    assert_eq!(d.pick(y, &[2, 1, 0], &c, false).as_slice(), [0]);
    // Down or mismatched: never picked, verified or not.
    let out = [
        Eligibility::Out,
        Eligibility::Routable,
        Eligibility::Routable,
    ];
    let d = build(&c, 0, &out, &rs, None, at(1000));
    assert_eq!(
        d.pick(&d.files["tool/v2/x"], &[0, 1, 2], &c, false)
            .as_slice(),
        [2]
    );
    assert!(
        d.pick(&d.files["tool/v2/y"], &[0, 1, 2], &c, false)
            .is_empty()
    );
    // A live mirror that lags (Live) still serves what it verified.
    let lag = [
        Eligibility::Live,
        Eligibility::Routable,
        Eligibility::Routable,
    ];
    let d = build(&c, 0, &lag, &rs, None, at(1000));
    assert_eq!(
        d.pick(&d.files["tool/v2/y"], &[1, 0], &c, false).as_slice(),
        [0]
    );
}

#[test]
fn ipv6_clients_prefer_mirrors_with_ipv6() {
    let c = config();
    let rs = vec![release("v2", "v2", 200, &[("x", &[0, 1])], &[0, 1])];
    let d = build(&c, 0, &ALL_LIVE, &rs, None, at(1000));
    let x = &d.files["tool/v2/x"];
    assert_eq!(d.pick(x, &[0, 1], &c, false).as_slice(), [0, 1]);
    assert_eq!(d.pick(x, &[0, 1], &c, true).as_slice(), [1, 0]);
    // None with IPv6 verified it: the IPv6 client is still served.
    let rs = vec![release("v2", "v2", 200, &[("x", &[0])], &[0])];
    let d = build(&c, 0, &ALL_LIVE, &rs, None, at(1000));
    assert_eq!(
        d.pick(&d.files["tool/v2/x"], &[0, 1], &c, true).as_slice(),
        [0]
    );
    // Base URLs get their slash.
    assert_eq!(d.bases[1].as_deref(), Some("http://127.0.0.1:3/pub/"));
}

#[test]
fn latest_moves_only_once_every_live_mirror_verified() {
    let c = config();
    let v1 = release("v1", "v1", 100, &[("x", &[0, 1, 2])], &[0, 1, 2]);
    let v2_partly = release("v2", "v2", 200, &[("x", &[0, 1])], &[0, 1]);
    let d = build(
        &c,
        0,
        &ALL_LIVE,
        &[v2_partly.clone(), v1.clone()],
        None,
        at(1000),
    );
    let l = d.latest.as_ref().map(|l| l.version.as_str());
    assert_eq!(l, Some("v1"));
    assert_eq!(d.resolve_latest("x").map(|(k, _)| k), Some("tool/v1/x"));
    assert!(d.resolve_latest("nope").is_none());
    // The one mirror missing it goes down: v2 is on every live one now.
    let down = [
        Eligibility::Routable,
        Eligibility::Routable,
        Eligibility::Out,
    ];
    let d2 = build(&c, 0, &down, &[v2_partly, v1.clone()], Some(&d), at(2000));
    let l = d2.latest.as_ref();
    assert_eq!(l.map(|l| l.version.as_str()), Some("v2"));
    assert_eq!(l.map(|l| l.since), Some(at(2000)));
    // Since when is carried while it stays.
    let d3 = build(
        &c,
        0,
        &down,
        &[release("v2", "v2", 200, &[("x", &[0, 1])], &[0, 1]), v1],
        Some(&d2),
        at(3000),
    );
    assert_eq!(d3.latest.as_ref().map(|l| l.since), Some(at(2000)));
}

#[test]
fn blocked_versions_are_withdrawn_and_never_latest() {
    let c = config();
    let mut v2 = release("v2", "v2", 200, &[("x", &[0, 1, 2])], &[0, 1, 2]);
    v2.blocked = true;
    let v1 = release("v1", "v1", 100, &[("x", &[0, 1, 2])], &[0, 1, 2]);
    let d = build(&c, 0, &ALL_LIVE, &[v2, v1], None, at(1000));
    assert!(!d.files.contains_key("tool/v2/x"));
    assert!(d.withdrawn.contains_key("tool/v2/x"));
    assert_eq!(d.latest.as_ref().map(|l| l.version.as_str()), Some("v1"));
}

#[test]
fn explanations_name_each_reason() {
    let c = config();
    let rs = vec![release("v2", "v2", 200, &[("x", &[1, 2])], &[1, 2])];
    let elig = [
        Eligibility::Routable,
        Eligibility::Routable,
        Eligibility::Out,
    ];
    let d = build(&c, 0, &elig, &rs, None, at(1000));
    let e = d.explain(&d.files["tool/v2/x"], &[0, 1, 2], &c, false);
    assert_eq!(
        e,
        vec![
            (0, Candidate::NotVerified),
            (1, Candidate::Used),
            (2, Candidate::Unusable)
        ]
    );
}

#[test]
fn url_paths_are_encoded() {
    assert_eq!(
        url_path("tool/v1/a b+c%.tar.gz"),
        "tool/v1/a%20b+c%25.tar.gz"
    );
    assert_eq!(url_path("tool/ü"), "tool/%C3%BC");
}
