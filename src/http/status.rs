//! Builds `/status` and `/lookup` (the types are in [`crate::schema`]) from the routing table
//! in force, the prober's state for the same config, and what the [`Monitor`] reads.

use std::net::IpAddr;
use std::time::SystemTime;

use crate::admin;
use crate::config::Config;
use crate::geo::GeoSource;
use crate::health::state::{self, HealthState, MirrorState};
use crate::manifest::hex;
use crate::monitor::Monitor;
use crate::routing::{Eligibility, Mode, RoutingTable};
use crate::schema::{
    AdminAction, AdminBlockView, AdminMirrorView, AdminPinView, AdminView, ConfigView, Decision,
    DnsView, Lookup, MirrorView, ReleaseView, ReloadError, RolloutMirrorView, RolloutView,
    RoutingView, ServiceView, Status, ZoneView,
};

pub(super) fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn since(t: SystemTime, now: SystemTime) -> f64 {
    now.duration_since(t).unwrap_or_default().as_secs_f64()
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

/// Who verified release `path` and who holds it up, by the rule the prober's readiness
/// check applies (`health::tasks`): every probed mirror not drained in the config counts.
fn rollout_view(
    cfg: &Config,
    st: Option<&HealthState>,
    mirrors: &[usize],
    path: &str,
) -> RolloutView {
    let rel = st.and_then(|s| s.releases.get(path));
    let cur = rel.and_then(|r| r.current.as_ref()).map(|m| m.digest);
    let waiting = rel.is_some_and(|r| r.ready_at.is_none()) && cur.is_some();
    RolloutView {
        release: path.to_string(),
        mirrors: mirrors
            .iter()
            .map(|&i| {
                let m = &cfg.mirrors[i];
                let at = st
                    .zip(cur)
                    .and_then(|(st, d)| st.mirrors.get(i)?.verified.get(&d))
                    .map(|v| v.at);
                RolloutMirrorView {
                    mirror: m.name.clone(),
                    verified_at: at.map(time),
                    holding_up: waiting && at.is_none() && !m.drained && m.base_url.is_some(),
                }
            })
            .collect(),
    }
}

/// Builds the status document.
pub fn build(m: &Monitor, table: &RoutingTable, st: Option<&HealthState>) -> Status {
    let cfg = &table.config;
    let now = SystemTime::now();
    let ci = m.config_info();
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
                        state,
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
                policy: s.policy.as_str().to_string(),
                ttl: s.ttl,
                answers: s.answers,
                required_releases: effective.clone(),
                fallback: s.fallback.as_str().to_string(),
                fallback_in_force: match route.mode {
                    Mode::Mirrors => None,
                    Mode::Fallback(f) => Some(f.as_str().to_string()),
                },
                fallthrough_lists: route
                    .answers
                    .iter()
                    .filter(|a| a.a_fallthrough || a.aaaa_fallthrough)
                    .count(),
                fallthrough_answers: table.answer_counts.fallthrough(si),
                releases: effective.iter().map(|r| release_view(st, r, now)).collect(),
                rollout: effective
                    .iter()
                    .map(|r| rollout_view(cfg, st, &s.mirrors, r))
                    .collect(),
                mirrors,
            }
        })
        .collect();
    let admin_view = admin_view(m, cfg, now);
    Status {
        redirects: super::redirects::views(m, table),
        dnssec: super::dnssec::view(table),
        cluster: super::cluster::view(m),
        admin: admin_view,
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: time(m.started_at()),
        ready: waiting.is_empty(),
        waiting_for: waiting,
        config: ConfigView {
            path: m.config_path().display().to_string(),
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
            listen: m.dns_addrs().iter().map(|a| a.to_string()).collect(),
            queries: m.stats().total(),
        },
        services,
        zones: table
            .zones
            .zones()
            .iter()
            .map(|z| ZoneView {
                origin: z.origin.to_string(),
                serial: crate::dns::transfer::served_serial(table, z),
                file: z.file.display().to_string(),
                records: z.record_count(),
                dnssec: super::dnssec::zone_view(table, z),
                notify: super::notify::views(m, z),
                transfers: super::notify::transfers(m, z),
            })
            .collect(),
    }
}

/// The admin state in force, every entry with whether it applies now.
fn admin_view(m: &Monitor, cfg: &Config, now: SystemTime) -> AdminView {
    let admin = m.admin();
    let in_force = |until: Option<SystemTime>| until.is_none_or(|u| now < u);
    // To the second, as the admin-state file gives them.
    let until =
        |until: Option<SystemTime>| until.map(|t| humantime::format_rfc3339_seconds(t).to_string());
    AdminView {
        path: cfg
            .server
            .admin_state
            .as_ref()
            .map(|p| p.display().to_string()),
        mirrors: admin
            .mirrors
            .iter()
            .map(|e| AdminMirrorView {
                mirror: e.mirror.clone(),
                action: match e.action {
                    admin::Action::Drain => AdminAction::Drain,
                    admin::Action::ForceUp => AdminAction::ForceUp,
                },
                until: until(e.until),
                reason: e.reason.clone(),
                in_force: in_force(e.until),
                source: super::cluster::source(&e.source),
            })
            .collect(),
        blocks: admin
            .blocks
            .iter()
            .map(|e| AdminBlockView {
                version: e.version.clone(),
                until: until(e.until),
                reason: e.reason.clone(),
                in_force: in_force(e.until),
                source: super::cluster::source(&e.source),
            })
            .collect(),
        pins: admin
            .pins
            .iter()
            .map(|e| AdminPinView {
                service: e.service.clone(),
                release: e.release.clone(),
                until: until(e.until),
                reason: e.reason.clone(),
                in_force: in_force(e.until),
                source: super::cluster::source(&e.source),
            })
            .collect(),
        error: m.admin_error().map(|(at, error)| ReloadError {
            at: time(at),
            error,
        }),
    }
}

/// Every mirror's display state and reason, taken under the health lock.
pub fn mirror_states(cfg: &Config, st: Option<&HealthState>) -> Vec<(MirrorState, String)> {
    (0..cfg.mirrors.len())
        .map(|i| mirror_state(cfg, st, i))
        .collect()
}

/// `/lookup`: the explanation against the live table, with skip reasons. `config_file` and
/// `config_loaded_at` are the caller's to fill in.
pub fn lookup(
    geo: &GeoSource,
    table: &RoutingTable,
    states: &[(MirrorState, String)],
    ip: IpAddr,
    name: Option<&str>,
) -> Result<Lookup, crate::explain::ExplainError> {
    let e = crate::explain::explain(table, geo, name, ip)?;
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
            Decision {
                mirror: c.mirror.clone(),
                distance_km: c.distance_km,
                state,
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
        Decision {
            mirror: m.name.clone(),
            distance_km: crate::explain::shown_distance(
                e.location.lat.zip(e.location.lon),
                m.location,
            ),
            state: states.get(i).map(|s| s.0).unwrap_or(MirrorState::Unknown),
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
        config_file: None,
        config_loaded_at: None,
    })
}
