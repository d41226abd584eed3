//! `/status` and `/lookup`: what the server believes, as JSON. The schema is documented in
//! docs/monitoring.md; fields are only ever added, never renamed.

use std::net::IpAddr;
use std::time::SystemTime;

use serde::Serialize;

use crate::config::Config;
use crate::daemon::Core;
use crate::health::state::{self, HealthState, MirrorState};
use crate::manifest::hex;
use crate::routing::{Eligibility, Mode, RoutingTable};

fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn since(t: SystemTime, now: SystemTime) -> f64 {
    now.duration_since(t).unwrap_or_default().as_secs_f64()
}

/// To 3 decimals: a millisecond of a duration in seconds, a microsecond of a latency in
/// milliseconds. Anything finer is clock noise, and binary fractions print as
/// `0.5835779999999999` otherwise. Still a JSON number.
fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn ser_round3<S: serde::Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(round3(*x))
}

fn ser_round3_opt<S: serde::Serializer>(x: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match x {
        Some(x) => s.serialize_some(&round3(*x)),
        None => s.serialize_none(),
    }
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub version: &'static str,
    pub started_at: String,
    pub ready: bool,
    /// What `/readyz` still waits for (empty when ready).
    pub waiting_for: Vec<String>,
    pub config: ConfigView,
    pub routing: RoutingView,
    pub dns: DnsView,
    pub services: Vec<ServiceView>,
    pub zones: Vec<ZoneView>,
    pub admin: AdminView,
}

#[derive(Debug, Serialize)]
pub struct AdminView {
    pub path: Option<String>,
    /// Every entry in the file, with its expiry; `in_force` tells which apply now.
    pub mirrors: Vec<AdminMirrorView>,
    pub blocks: Vec<AdminBlockView>,
    pub pins: Vec<AdminPinView>,
    /// The last rejected admin-state file (the previous one stays in force).
    pub error: Option<ReloadError>,
}

#[derive(Debug, Serialize)]
pub struct AdminMirrorView {
    #[serde(flatten)]
    pub entry: crate::admin::MirrorEntry,
    pub in_force: bool,
}

#[derive(Debug, Serialize)]
pub struct AdminPinView {
    #[serde(flatten)]
    pub entry: crate::admin::PinEntry,
    pub in_force: bool,
}

#[derive(Debug, Serialize)]
pub struct AdminBlockView {
    #[serde(flatten)]
    pub entry: crate::admin::BlockEntry,
    pub in_force: bool,
}

#[derive(Debug, Serialize)]
pub struct ZoneView {
    pub origin: String,
    pub serial: u32,
    pub file: String,
    pub records: usize,
}

#[derive(Debug, Serialize)]
pub struct ConfigView {
    pub path: String,
    pub generation: u64,
    pub loaded_at: String,
    /// The last rejected reload since this config was loaded: when and why.
    pub last_reload_error: Option<ReloadError>,
}

#[derive(Debug, Serialize)]
pub struct ReloadError {
    pub at: String,
    pub error: String,
}

#[derive(Debug, Serialize)]
pub struct RoutingView {
    pub generation: u64,
    pub swapped_at: String,
}

#[derive(Debug, Serialize)]
pub struct DnsView {
    pub listen: Vec<String>,
    pub queries: u64,
}

#[derive(Debug, Serialize)]
pub struct ServiceView {
    pub name: String,
    pub policy: &'static str,
    pub ttl: u32,
    pub answers: usize,
    /// Manifest paths every routable mirror must hold.
    pub required_releases: Vec<String>,
    pub fallback: &'static str,
    /// The fallback answering now because no mirror is routable, else null.
    pub fallback_in_force: Option<&'static str>,
    /// Client groups (candidate lists) whose every listed mirror is out, answered now from
    /// past their own list (`regions.default`, then by distance, then configured order).
    pub fallthrough_lists: usize,
    /// Answers served from past the client's own list since the server started
    /// (`mirrordns_dns_fallthrough_total`).
    pub fallthrough_answers: u64,
    pub releases: Vec<ReleaseView>,
    pub mirrors: Vec<MirrorView>,
}

#[derive(Debug, Serialize)]
pub struct ReleaseView {
    pub path: String,
    pub version: Option<String>,
    pub digest: Option<String>,
    pub published: Option<String>,
    /// When we saw the origin's content change to this version.
    pub changed_at: Option<String>,
    /// When every mirror that must hold it had verified it.
    pub ready_at: Option<String>,
    /// Seconds from publication (or change) to global readiness.
    #[serde(serialize_with = "ser_round3_opt")]
    pub ready_after_seconds: Option<f64>,
    /// Seconds waited so far for global readiness, while not ready.
    #[serde(serialize_with = "ser_round3_opt")]
    pub waiting_seconds: Option<f64>,
    /// The last manifest fetch or signature error (the last good manifest stays in force).
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct MirrorView {
    pub name: String,
    pub ipv4: Vec<String>,
    pub ipv6: Vec<String>,
    pub state: &'static str,
    /// Whether this service routes to it now.
    pub routable: bool,
    /// Why it is in this state (mismatch detail, last error), empty when ready.
    pub reason: String,
    pub base_url: Option<String>,
    pub last_probe: Option<String>,
    #[serde(serialize_with = "ser_round3_opt")]
    pub latency_ms: Option<f64>,
    pub verified_versions: Vec<String>,
    /// Seconds this mirror has lacked the current release (0 when it holds it).
    #[serde(serialize_with = "ser_round3")]
    pub lag_seconds: f64,
    pub last_error: Option<String>,
}

/// Mirror display state and reason; static configs have no prober.
pub fn mirror_state(cfg: &Config, st: Option<&HealthState>, i: usize) -> (MirrorState, String) {
    let m = &cfg.mirrors[i];
    match st {
        None if m.drained => (MirrorState::Drained, "drained in config".into()),
        None => (MirrorState::Ready, "static (not probed)".into()),
        Some(st) => {
            let s = state::mirror_state(cfg, st, i);
            let h = &st.mirrors[i];
            let reason = match s {
                MirrorState::Ready if m.base_url.is_none() => "static (not probed)".into(),
                MirrorState::Ready => String::new(),
                MirrorState::Drained => "drained in config".into(),
                MirrorState::Unknown => "not probed yet".into(),
                _ => h.reason(),
            };
            (s, reason)
        }
    }
}

/// Seconds mirror `i` has lacked the current content of `release`.
pub fn lag_seconds(st: &HealthState, i: usize, release: &str, now: SystemTime) -> f64 {
    let Some(rel) = st.releases.get(release) else {
        return 0.0;
    };
    let Some(cur) = rel.current_digest() else {
        return 0.0;
    };
    if st.mirrors[i].verified.contains_key(&cur) {
        return 0.0;
    }
    rel.changed_at.map(|t| since(t, now)).unwrap_or(0.0)
}

/// What `/readyz` waits for.
pub fn waiting_for(cfg: &Config, st: Option<&HealthState>) -> Vec<String> {
    let Some(st) = st else { return Vec::new() };
    if st.first_round_done || st.restored {
        return Vec::new();
    }
    let mut w = Vec::new();
    if !st.origin_done {
        w.push("the origin's release manifests".to_string());
    }
    let pending: Vec<&str> = cfg
        .mirrors
        .iter()
        .zip(&st.mirrors)
        .filter(|(m, h)| m.base_url.is_some() && (h.last_probe.is_none() || h.verifying))
        .map(|(m, _)| m.name.as_str())
        .collect();
    if !pending.is_empty() {
        w.push(format!("the first probe round of: {}", pending.join(", ")));
    }
    if w.is_empty() {
        w.push("the first probe round".into());
    }
    w
}

fn release_view(st: Option<&HealthState>, path: &str, now: SystemTime) -> ReleaseView {
    let rel = st.and_then(|s| s.releases.get(path));
    let cur = rel.and_then(|r| r.current.as_ref());
    let ready_at = rel.and_then(|r| r.ready_at);
    let changed = rel.and_then(|r| r.changed_at);
    ReleaseView {
        path: path.to_string(),
        version: cur.map(|m| m.version.clone()),
        digest: rel.and_then(|r| r.current_digest()).map(|d| hex(&d)),
        published: cur.and_then(|m| m.published).map(time),
        changed_at: changed.map(time),
        ready_at: ready_at.map(time),
        ready_after_seconds: match (ready_at, changed) {
            (Some(r), Some(c)) => Some(r.duration_since(c).unwrap_or_default().as_secs_f64()),
            _ => None,
        },
        waiting_seconds: match (ready_at, changed) {
            (None, Some(c)) => Some(since(c, now)),
            _ => None,
        },
        error: rel.and_then(|r| r.last_error.clone()),
    }
}

/// Builds the status document.
pub fn build(core: &Core, table: &RoutingTable, st: Option<&HealthState>) -> Status {
    let cfg = &table.config;
    let now = SystemTime::now();
    let ci = core.config_info();
    let waiting = waiting_for(cfg, st);
    let services = cfg
        .services
        .iter()
        .enumerate()
        .map(|(si, s)| {
            let route = &table.services[si];
            // The releases required now: an on-call pin replaces the configured ones.
            let effective = st
                .map(|st| st.releases_of(s, now))
                .unwrap_or_else(|| s.releases.clone());
            let mirrors = s
                .mirrors
                .iter()
                .map(|&i| {
                    let m = &cfg.mirrors[i];
                    let (state, reason) = mirror_state(cfg, st, i);
                    let h = st.map(|st| &st.mirrors[i]);
                    let verified_versions = st
                        .map(|st| {
                            let mut v: Vec<String> = st
                                .releases
                                .values()
                                .flat_map(|r| r.current.iter().chain(r.previous.iter()))
                                .filter(|man| st.mirrors[i].verified.contains_key(&man.digest))
                                .map(|man| man.version.clone())
                                .collect();
                            v.sort();
                            v.dedup();
                            v
                        })
                        .unwrap_or_default();
                    let lag = st
                        .map(|st| {
                            effective
                                .iter()
                                .map(|r| lag_seconds(st, i, r, now))
                                .fold(0.0, f64::max)
                        })
                        .unwrap_or(0.0);
                    MirrorView {
                        name: m.name.clone(),
                        ipv4: m.ipv4.iter().map(|a| a.to_string()).collect(),
                        ipv6: m.ipv6.iter().map(|a| a.to_string()).collect(),
                        state: state.as_str(),
                        routable: route.eligibility.get(i) == Some(&Eligibility::Routable),
                        reason,
                        base_url: m.base_url.as_ref().map(|u| u.to_string()),
                        last_probe: h.and_then(|h| h.last_probe).map(time),
                        latency_ms: h
                            .and_then(|h| h.last_latency)
                            .map(|d| d.as_secs_f64() * 1000.0),
                        verified_versions,
                        lag_seconds: if m.base_url.is_none()
                            || m.drained
                            || state == MirrorState::Down
                        {
                            0.0
                        } else {
                            lag
                        },
                        last_error: h.and_then(|h| h.last_error.clone()),
                    }
                })
                .collect();
            ServiceView {
                name: s.name.clone(),
                policy: match s.policy {
                    crate::config::Policy::Nearest => "nearest",
                    crate::config::Policy::Regions => "regions",
                },
                ttl: s.ttl,
                answers: s.answers,
                required_releases: effective.clone(),
                fallback: s.fallback.as_str(),
                fallback_in_force: match route.mode {
                    Mode::Mirrors => None,
                    Mode::Fallback(f) => Some(f.as_str()),
                },
                fallthrough_lists: route
                    .answers
                    .iter()
                    .filter(|a| a.a_fallthrough || a.aaaa_fallthrough)
                    .count(),
                fallthrough_answers: table.answer_counts.fallthrough(si),
                releases: effective.iter().map(|r| release_view(st, r, now)).collect(),
                mirrors,
            }
        })
        .collect();
    let admin = core.admin.load();
    let admin_view = AdminView {
        path: cfg
            .server
            .admin_state
            .as_ref()
            .map(|p| p.display().to_string()),
        mirrors: admin
            .mirrors
            .iter()
            .map(|e| AdminMirrorView {
                in_force: e.until.is_none_or(|u| now < u),
                entry: e.clone(),
            })
            .collect(),
        blocks: admin
            .blocks
            .iter()
            .map(|e| AdminBlockView {
                in_force: e.until.is_none_or(|u| now < u),
                entry: e.clone(),
            })
            .collect(),
        pins: admin
            .pins
            .iter()
            .map(|e| AdminPinView {
                in_force: e.until.is_none_or(|u| now < u),
                entry: e.clone(),
            })
            .collect(),
        error: core.admin_error().map(|(at, error)| ReloadError {
            at: time(at),
            error,
        }),
    };
    Status {
        admin: admin_view,
        version: env!("CARGO_PKG_VERSION"),
        started_at: time(core.started_at),
        ready: waiting.is_empty(),
        waiting_for: waiting,
        config: ConfigView {
            path: core.config_path.display().to_string(),
            generation: ci.generation,
            loaded_at: time(ci.loaded_at),
            last_reload_error: ci.last_error.map(|(at, error)| ReloadError {
                at: time(at),
                error,
            }),
        },
        routing: RoutingView {
            generation: table.generation,
            swapped_at: time(table.built_at),
        },
        dns: DnsView {
            listen: core.dns_addrs.iter().map(|a| a.to_string()).collect(),
            queries: core.stats.total(),
        },
        services,
        zones: table
            .zones
            .zones()
            .iter()
            .map(|z| ZoneView {
                origin: z.origin.to_string(),
                serial: z.serial,
                file: z.file.display().to_string(),
                records: z.record_count(),
            })
            .collect(),
    }
}

/// A candidate in a `/lookup` answer, with why it was or was not used.
#[derive(Debug, Serialize)]
pub struct LookupCandidate {
    pub mirror: String,
    pub distance_km: Option<f64>,
    pub state: &'static str,
    /// "answer" if in the A or AAAA answer; else why not: "down", "lagging", "mismatch",
    /// "drained", "unknown", "verifying", "no IPv4 address", "beyond `answers`".
    pub used: String,
}

#[derive(Debug, Serialize)]
pub struct Lookup {
    #[serde(flatten)]
    pub explanation: crate::explain::Explanation,
    pub mode: String,
    pub routing_generation: u64,
    pub decisions: Vec<LookupCandidate>,
}

/// Every mirror's display state and reason, taken under the health lock.
pub fn mirror_states(cfg: &Config, st: Option<&HealthState>) -> Vec<(MirrorState, String)> {
    (0..cfg.mirrors.len())
        .map(|i| mirror_state(cfg, st, i))
        .collect()
}

/// `/lookup`: the explanation against the live table, with skip reasons.
pub fn lookup(
    core: &Core,
    table: &RoutingTable,
    states: &[(MirrorState, String)],
    ip: IpAddr,
    name: Option<&str>,
) -> Result<Lookup, String> {
    let e = crate::explain::explain(table, &core.geo(), name, ip)?;
    let cfg = &table.config;
    let si = cfg
        .services
        .iter()
        .position(|s| s.name == e.service)
        .unwrap_or(0);
    let route = &table.services[si];
    let decisions = e
        .candidates
        .iter()
        .map(|c| {
            let i = cfg
                .mirrors
                .iter()
                .position(|m| m.name == c.mirror)
                .unwrap_or(0);
            let m = &cfg.mirrors[i];
            let state = states.get(i).map(|s| s.0).unwrap_or(MirrorState::Unknown);
            let addrs: Vec<String> = m
                .ipv4
                .iter()
                .map(|a| a.to_string())
                .chain(m.ipv6.iter().map(|a| a.to_string()))
                .collect();
            let in_answer = addrs.iter().any(|a| e.answer.contains(a));
            let used = if in_answer {
                "answer".to_string()
            } else if route.mode == Mode::Mirrors
                && route.eligibility.get(i) == Some(&Eligibility::Routable)
            {
                if m.ipv4.is_empty() && m.ipv6.is_empty() {
                    "no address".into()
                } else if m.ipv4.is_empty() {
                    "no IPv4 address (AAAA only)".into()
                } else {
                    "beyond `answers`".into()
                }
            } else {
                state.as_str().to_string()
            };
            LookupCandidate {
                mirror: c.mirror.clone(),
                distance_km: c.distance_km,
                state: state.as_str(),
                used,
            }
        })
        .collect::<Vec<_>>();
    // Mirrors answering from past the client's own list are not among its candidates.
    let hit = route.map.lookup(ip);
    let ans = &route.answers[hit.list as usize];
    let mut past: Vec<usize> = Vec::new();
    for (mirrors, fell) in [
        (&ans.a_mirrors, ans.a_fallthrough),
        (&ans.aaaa_mirrors, ans.aaaa_fallthrough),
    ] {
        for &i in mirrors.iter().filter(|_| fell) {
            let listed = decisions.iter().any(|d| d.mirror == cfg.mirrors[i].name);
            if !listed && !past.contains(&i) {
                past.push(i);
            }
        }
    }
    let mut decisions = decisions;
    decisions.extend(past.into_iter().map(|i| {
        let m = &cfg.mirrors[i];
        LookupCandidate {
            mirror: m.name.clone(),
            distance_km: match (e.location.lat.zip(e.location.lon), m.location) {
                (Some(a), Some(b)) => Some((crate::geo::distance_km(a, b) * 10.0).round() / 10.0),
                _ => None,
            },
            state: states
                .get(i)
                .map(|s| s.0)
                .unwrap_or(MirrorState::Unknown)
                .as_str(),
            used: "answer, past this client's list (every mirror in it is out)".into(),
        }
    }));
    Ok(Lookup {
        mode: match route.mode {
            Mode::Mirrors => "mirrors".into(),
            Mode::Fallback(f) => format!("fallback: {}", f.as_str()),
        },
        routing_generation: table.generation,
        explanation: e,
        decisions,
    })
}

#[cfg(test)]
mod tests {
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
}
