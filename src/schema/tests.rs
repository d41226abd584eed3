//! The schema read both ways: documents written by these types read back into them,
//! unknown fields are ignored, missing ones are errors, and what the server really serves
//! writes back to the same JSON.

use super::*;

#[test]
fn floats_are_rounded_when_serialised() {
    #[derive(Serialize)]
    struct T {
        #[serde(serialize_with = "ser_round3_opt")]
        latency_ms: Option<f64>,
        #[serde(serialize_with = "ser_round3_opt")]
        none: Option<f64>,
        #[serde(serialize_with = "ser_round3")]
        lag_seconds: f64,
    }
    let t = T {
        latency_ms: Some(0.583_577_999_999_999_9),
        none: None,
        lag_seconds: 12.000_499_9,
    };
    assert_eq!(
        serde_json::to_string(&t).unwrap(),
        r#"{"latency_ms":0.584,"none":null,"lag_seconds":12.0}"#
    );
}

/// Every kind of value a `/status` can hold: each mirror state, both admin actions,
/// present and absent optional fields.
fn status() -> Status {
    let states = MirrorState::ALL;
    let mirror = |i: usize, state: MirrorState| MirrorView {
        name: format!("m{i}"),
        ipv4: vec![format!("192.0.2.{i}")],
        ipv6: if i.is_multiple_of(2) {
            vec![format!("2001:db8::{i}")]
        } else {
            vec![]
        },
        state,
        routable: state == MirrorState::Ready,
        reason: if state == MirrorState::Ready {
            String::new()
        } else {
            "why".into()
        },
        base_url: i.is_multiple_of(2).then(|| format!("http://m{i}.test/")),
        last_probe: i
            .is_multiple_of(3)
            .then(|| "2026-12-01T10:00:00.123Z".into()),
        latency_ms: i.is_multiple_of(3).then_some(2.151),
        verified_versions: vec!["v1.0.0".into()],
        lag_seconds: if i == 3 { 12.5 } else { 0.0 },
        last_error: (i == 5).then(|| "unreachable: refused".into()),
    };
    Status {
        redirects: Vec::new(),
        cluster: Some(ClusterView {
            name: "ns1".into(),
            redis: "redis://:***@127.0.0.1:6379".into(),
            key_prefix: "mirrordns:".into(),
            connected: false,
            down_since: Some("2026-12-01T10:00:00Z".into()),
            last_error: Some(ReloadError {
                at: "2026-12-01T10:00:00Z".into(),
                error: "Connection refused".into(),
            }),
            peers: vec![PeerView {
                name: "ns2".into(),
                version: "0.1.0".into(),
                last_seen: "2026-12-01T09:59:58Z".into(),
            }],
            results_adopted: 3,
            results_not_adopted: 1,
            results_published: 2,
            lock_waits: 2,
            outages: 1,
            admin_errors: Vec::new(),
        }),
        dnssec: Some(SigningView {
            signatures_made: 40,
            signatures_reused: 7,
            failures: 0,
            last_error: None,
        }),
        version: "0.1.0".into(),
        started_at: "2026-12-01T10:00:00.000Z".into(),
        ready: false,
        waiting_for: vec!["the first probe round".into()],
        config: ConfigView {
            path: "mirrordns.toml".into(),
            generation: 3,
            loaded_at: "2026-12-01T10:00:00.000Z".into(),
            last_reload_error: Some(ReloadError {
                at: "2026-12-01T10:01:00.000Z".into(),
                error: "mirrordns.toml:3: `answers`: must be at least 1".into(),
            }),
        },
        routing: RoutingView {
            generation: 9,
            swapped_at: "2026-12-01T10:00:01.000Z".into(),
        },
        dns: DnsView {
            listen: vec!["127.0.0.1:5353".into()],
            queries: 42,
        },
        services: vec![ServiceView {
            name: "downloads.example.com".into(),
            policy: "nearest".into(),
            ttl: 30,
            answers: 1,
            required_releases: vec!["tool/v1.0.0/manifest.json".into()],
            fallback: "origin".into(),
            fallback_in_force: Some("origin".into()),
            fallthrough_lists: 2,
            fallthrough_answers: 7,
            releases: vec![
                ReleaseView {
                    path: "tool/v1.0.0/manifest.json".into(),
                    version: Some("v1.0.0".into()),
                    digest: Some("ab12".into()),
                    published: Some("2026-12-01T09:00:00.000Z".into()),
                    changed_at: Some("2026-12-01T09:00:00.000Z".into()),
                    ready_at: Some("2026-12-01T09:00:30.000Z".into()),
                    ready_after_seconds: Some(30.0),
                    waiting_seconds: None,
                    error: None,
                },
                ReleaseView {
                    path: "tool/v1.1.0/manifest.json".into(),
                    version: None,
                    digest: None,
                    published: None,
                    changed_at: None,
                    ready_at: None,
                    ready_after_seconds: None,
                    waiting_seconds: Some(0.25),
                    error: Some("HTTP 404".into()),
                },
            ],
            mirrors: states
                .iter()
                .enumerate()
                .map(|(i, &s)| mirror(i, s))
                .collect(),
            rollout: vec![RolloutView {
                release: "tool/v1.1.0/manifest.json".into(),
                mirrors: vec![RolloutMirrorView {
                    mirror: "m0".into(),
                    verified_at: None,
                    holding_up: true,
                }],
            }],
        }],
        zones: vec![ZoneView {
            origin: "example.com.".into(),
            serial: 2_026_112_701,
            file: "example.com.zone".into(),
            records: 20,
            dnssec: Some(ZoneSigningView {
                keys: vec![KeyView {
                    tag: 12345,
                    algorithm: 13,
                    role: "KSK".into(),
                    file: "keys/Kexample.com.+013+12345.private".into(),
                }],
                expires_at: "2026-12-17T00:00:00Z".into(),
                expires_in_seconds: 1_209_600.0,
                refresh_at: "2026-12-10T00:00:00Z".into(),
            }),
            notify: vec![NotifyView {
                address: "192.0.2.54:53".into(),
                serial: 2_026_112_701,
                at: Some("2026-12-01T10:00:00.000Z".into()),
                acknowledged: true,
                attempts: 1,
                last_result: Some("acked".into()),
            }],
            transfers: vec![TransferView {
                client: "192.0.2.54".into(),
                at: "2026-12-01T10:00:00.100Z".into(),
                kind: "AXFR".into(),
                from_serial: None,
                serial: 2_026_112_701,
            }],
        }],
        admin: AdminView {
            path: Some("admin.toml".into()),
            mirrors: vec![
                AdminMirrorView {
                    mirror: "m1".into(),
                    action: AdminAction::Drain,
                    until: Some("2026-12-02T00:00:00Z".into()),
                    reason: Some("disk".into()),
                    in_force: true,
                    source: AdminSourceView::Cluster {
                        by: "oncall@ns1".into(),
                        at: "2026-12-01T09:00:00Z".into(),
                    },
                },
                AdminMirrorView {
                    mirror: "m2".into(),
                    action: AdminAction::ForceUp,
                    until: None,
                    reason: None,
                    in_force: true,
                    source: AdminSourceView::File,
                },
            ],
            blocks: vec![AdminBlockView {
                version: "v1.1.0".into(),
                until: None,
                reason: Some("bad build".into()),
                in_force: true,
                source: AdminSourceView::File,
            }],
            pins: vec![AdminPinView {
                service: "downloads.example.com".into(),
                release: "tool/v1.0.0/manifest.json".into(),
                until: Some("2026-11-30T00:00:00Z".into()),
                reason: None,
                in_force: false,
                source: AdminSourceView::File,
            }],
            error: None,
        },
    }
}

/// `status()` as the server writes it, as a JSON value to edit.
fn status_json() -> serde_json::Value {
    serde_json::to_value(status()).unwrap()
}

fn read(v: serde_json::Value) -> Result<Status, String> {
    serde_json::from_value(v).map_err(|e| e.to_string())
}

#[test]
fn a_status_document_reads_back_into_the_same_types() {
    let text = serde_json::to_string(&status()).unwrap();
    let back: Status = serde_json::from_str(&text).unwrap();
    assert_eq!(back, status());
    // The words as operators and scripts know them.
    for word in [
        r#""state":"mismatch""#,
        r#""action":"force-up""#,
        r#""action":"drain""#,
        r#""fallback_in_force":"origin""#,
        r#""error":null"#,
    ] {
        assert!(text.contains(word), "{word} in {text}");
    }
}

/// A newer server's additions are ignored, wherever they are.
#[test]
fn unknown_fields_are_ignored() {
    let mut v = status_json();
    v["uptime_seconds"] = 5.into();
    v["services"][0]["weight"] = 1.into();
    v["services"][0]["mirrors"][0]["country"] = "DE".into();
    v["admin"]["mirrors"][0]["by"] = "on-call".into();
    assert_eq!(read(v), Ok(status()));
}

/// A renamed or missing field is an error naming it, `Option` fields included: never an
/// empty value that a diff would report as a change.
#[test]
fn a_missing_field_is_an_error_naming_it() {
    for (path, key) in [
        ("/services/0", "policy"),
        ("/services/0/mirrors/0", "base_url"),
        ("/services/0/mirrors/1", "state"),
        ("/services/0/releases/1", "version"),
        ("/services/0", "fallback_in_force"),
        ("/zones/0", "serial"),
        ("/zones/0/notify/0", "last_result"),
        ("/config", "last_reload_error"),
        ("/admin/mirrors/1", "until"),
        ("", "admin"),
    ] {
        let mut v = status_json();
        let obj = v.pointer_mut(path).and_then(|o| o.as_object_mut()).unwrap();
        let value = obj.remove(key).unwrap();
        obj.insert(format!("{key}_renamed"), value);
        let err = read(v).expect_err(key);
        assert!(
            err.contains(&format!("missing field `{key}`")),
            "{key}: {err}"
        );
    }
}

/// Words this build does not know are errors too (a typed field, not a free string).
#[test]
fn an_unknown_state_or_action_is_an_error() {
    let mut v = status_json();
    v["services"][0]["mirrors"][0]["state"] = "syncing".into();
    assert!(read(v).unwrap_err().contains("unknown variant `syncing`"));
    let mut v = status_json();
    v["admin"]["mirrors"][0]["action"] = "pause".into();
    assert!(read(v).unwrap_err().contains("unknown variant `pause`"));
}

fn lookup() -> Lookup {
    Lookup {
        explanation: Explanation {
            client: "8.8.8.8".into(),
            service: "downloads.example.com".into(),
            policy: "nearest".into(),
            location: LocationView {
                source: "override".into(),
                network: Some("8.8.8.0/24".into()),
                country: Some("US".into()),
                continent: Some("NA".into()),
                lat: Some(37.39),
                lon: Some(-122.08),
            },
            unknown_location: false,
            candidates: vec![CandidateView {
                mirror: "us-east".into(),
                distance_km: Some(3905.3),
                ipv4: vec!["192.0.2.10".into()],
                ipv6: vec![],
            }],
            answer: vec!["192.0.2.11".into()],
            a: vec!["192.0.2.11".into()],
            aaaa: vec![],
            ttl: 30,
            scope: 24,
            fallthrough: vec!["A".into()],
        },
        mode: "mirrors".into(),
        routing_generation: 7,
        decisions: vec![
            Decision {
                mirror: "us-east".into(),
                distance_km: Some(3905.3),
                state: MirrorState::Mismatch,
                used: "mismatch".into(),
            },
            Decision {
                mirror: "eu-west".into(),
                distance_km: None,
                state: MirrorState::Ready,
                used: "answer, past this client's list (every mirror in it is out)".into(),
            },
        ],
        config_file: Some("/etc/mirrordns/mirrordns.toml".into()),
        config_loaded_at: Some("2026-12-01T10:00:00.000Z".into()),
    }
}

#[test]
fn a_lookup_document_reads_back_into_the_same_types() {
    let text = serde_json::to_string(&lookup()).unwrap();
    // The explanation's fields are at the top level, as before the types were shared.
    assert!(
        text.starts_with(r#"{"client":"8.8.8.8","service":"#),
        "{text}"
    );
    assert_eq!(serde_json::from_str::<Lookup>(&text).unwrap(), lookup());
}

/// The fields added after the first `/lookup` read as empty from an older server; the
/// others, in the flattened explanation too, are required.
#[test]
fn lookup_fields_added_later_default_and_the_rest_are_required() {
    let mut v = serde_json::to_value(lookup()).unwrap();
    let obj = v.as_object_mut().unwrap();
    for key in ["config_file", "config_loaded_at", "fallthrough"] {
        obj.remove(key);
    }
    let old: Lookup = serde_json::from_value(v).unwrap();
    assert_eq!(old.config_file, None);
    assert_eq!(old.config_loaded_at, None);
    assert!(old.explanation.fallthrough.is_empty());
    for (path, key) in [
        ("", "decisions"),
        ("", "scope"),
        ("/location", "network"),
        ("/decisions/1", "distance_km"),
    ] {
        let mut v = serde_json::to_value(lookup()).unwrap();
        v.pointer_mut(path)
            .and_then(|o| o.as_object_mut())
            .unwrap()
            .remove(key);
        let err = serde_json::from_value::<Lookup>(v).unwrap_err().to_string();
        assert!(
            err.contains(&format!("missing field `{key}`")),
            "{key}: {err}"
        );
    }
}

/// What the server really serves reads back into these types and writes back to the
/// same JSON: no field it writes is unknown here, dropped or renamed. A probed mirror
/// that cannot be reached, a static one, and an admin file with every kind of entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_served_read_back_to_the_same_json() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("example.com.zone"),
        "$ORIGIN example.com.\n$TTL 3600\n@ SOA ns1 hostmaster 1 3600 600 604800 300\n  NS ns1\nns1 A 192.0.2.53\n",
    )
    .unwrap();
    std::fs::write(
        d.join("admin.toml"),
        "[[mirror]]\nname = \"eu-west\"\naction = \"force-up\"\nuntil = \"2099-01-01T00:00:00Z\"\nreason = \"test\"\n\
         [[mirror]]\nname = \"us-east\"\naction = \"drain\"\n\
         [[block]]\nversion = \"v0.9\"\n\
         [[pin]]\nservice = \"downloads.example.com\"\nrelease = \"tool/v1/manifest.json\"\nuntil = \"2020-01-01T00:00:00Z\"\n",
    )
    .unwrap();
    let path = d.join("mirrordns.toml");
    std::fs::write(
        &path,
        r#"[server]
dns-listen = ["127.0.0.1:0"]
http-listen = "127.0.0.1:0"
zones = ["example.com.zone"]
admin-state = "admin.toml"

[origin]
base-url = "http://127.0.0.1:1/"
ipv4 = ["192.0.2.1"]

[health]
interval = "100ms"
timeout = "1s"

[[service]]
name = "downloads.example.com"
mirrors = ["eu-west", "us-east"]
releases = ["tool/v1/manifest.json"]

[[mirror]]
name = "eu-west"
ipv4 = ["192.0.2.11"]
location = { lat = 50.1, lon = 8.7 }
base-url = "http://127.0.0.1:1/"

[[mirror]]
name = "us-east"
ipv4 = ["192.0.2.10"]
ipv6 = ["2001:db8::10"]
location = { lat = 38.9, lon = -77.0 }
"#,
    )
    .unwrap();
    crate::health::http::install_crypto();
    let loaded = crate::load::Loaded::from_file(&path).unwrap_or_else(|p| panic!("{p}"));
    let server = crate::daemon::Server::start(loaded).await.unwrap();
    let http = server.http_addr().unwrap();
    let running = crate::running::Running::new(http, std::time::Duration::from_secs(5)).unwrap();
    // Until the prober has written what it writes: a probe, an error, a release error.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        let v: serde_json::Value = running.get("/status", &[]).await.unwrap();
        let probed = v["services"][0]["mirrors"][0]["last_probe"].is_string()
            && v["services"][0]["releases"][0]["error"].is_string();
        if probed {
            break v;
        }
        assert!(std::time::Instant::now() < deadline, "not probed yet: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let typed: Status = serde_json::from_value(status.clone()).unwrap();
    assert_eq!(serde_json::to_value(&typed).unwrap(), status);
    assert_eq!(typed.admin.mirrors[0].action, AdminAction::ForceUp);
    assert!(typed.admin.pins[0].until.is_some() && !typed.admin.pins[0].in_force);
    assert!(
        typed.services[0].mirrors[0].last_error.is_some(),
        "{status}"
    );
    // Through the client the command line uses, too.
    running.get::<Status>("/status", &[]).await.unwrap();

    for ip in ["192.0.2.200", "2001:db8::1"] {
        let v: serde_json::Value = running.get("/lookup", &[("ip", ip)]).await.unwrap();
        let typed: Lookup = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(serde_json::to_value(&typed).unwrap(), v);
        assert!(typed.config_file.is_some() && typed.config_loaded_at.is_some());
        assert_eq!(typed.decisions.len(), 2, "{v}");
    }
    server.shutdown().await;
}
