//! `/metrics`: Prometheus text format. Names are prefixed `mirrordns_`, units are in the
//! names, and labels are bounded (transports, query types, rcodes, configured services,
//! mirrors and releases, continents): never client addresses or query names.

use std::sync::atomic::Ordering::Relaxed;
use std::time::SystemTime;

use crate::dns::Event;
use crate::health::state::{HealthState, MirrorState};
use crate::health::{HealthCounters, PROBE_RESULTS};
use crate::metrics::Exposition;
use crate::monitor::Monitor;
use crate::routing::RoutingTable;

pub fn render(
    mon: &Monitor,
    table: &RoutingTable,
    st: Option<&HealthState>,
    hc: Option<&HealthCounters>,
) -> String {
    let cfg = &table.config;
    let s = mon.stats();
    let mut e = Exposition::default();
    let now = SystemTime::now();

    e.family(
        "mirrordns_build_info",
        "gauge",
        "Build information; always 1.",
    );
    e.sample(
        "mirrordns_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );

    e.family(
        "mirrordns_dns_queries_total",
        "counter",
        "DNS queries answered, by transport, query type and response code.",
    );
    for (t, q, r, v) in s.queries() {
        e.sample(
            "mirrordns_dns_queries_total",
            &[("transport", t), ("qtype", q), ("rcode", r)],
            v as f64,
        );
    }
    super::redirects::metrics(&mut e, mon, table);
    super::dnssec::metrics(&mut e, table);
    super::notify::metrics(&mut e, mon);
    super::cluster::metrics(&mut e, mon);
    e.family(
        "mirrordns_dns_answers_total",
        "counter",
        "Geo answers served, by service, mirror (or origin) and client continent.",
    );
    for (si, m, cont, v) in table.answer_counts.snapshot() {
        let service = cfg.services.get(si).map(|x| x.name.as_str()).unwrap_or("?");
        let mirror = m
            .and_then(|m| cfg.mirrors.get(m))
            .map(|x| x.name.as_str())
            .unwrap_or("origin");
        e.sample(
            "mirrordns_dns_answers_total",
            &[
                ("service", service),
                ("mirror", mirror),
                ("continent", crate::routing::CONTINENTS[cont]),
            ],
            v as f64,
        );
    }
    e.family(
        "mirrordns_dns_fallthrough_total",
        "counter",
        "Geo answers from past the client's own mirror list (every mirror in it was out), by service.",
    );
    for (si, s) in cfg.services.iter().enumerate() {
        e.sample(
            "mirrordns_dns_fallthrough_total",
            &[("service", s.name.as_str())],
            table.answer_counts.fallthrough(si) as f64,
        );
    }
    for (name, help, v) in [
        (
            "mirrordns_dns_ecs_queries_total",
            "Queries carrying an EDNS Client Subnet option.",
            Event::Ecs,
        ),
        (
            "mirrordns_dns_unknown_location_total",
            "Geo lookups whose client location was unknown (default order used).",
            Event::UnknownLocation,
        ),
        (
            "mirrordns_dns_truncated_total",
            "UDP responses truncated (TC set).",
            Event::Truncated,
        ),
        (
            "mirrordns_dns_malformed_total",
            "Queries answered FORMERR.",
            Event::Malformed,
        ),
        (
            "mirrordns_dns_dropped_total",
            "Packets not answered (too short, or responses).",
            Event::Dropped,
        ),
        (
            "mirrordns_dns_cookies_valid_total",
            "Queries with a valid server cookie (exempt from rate limiting).",
            Event::CookiesValid,
        ),
        (
            "mirrordns_dns_cookies_new_total",
            "Queries with a client cookie only, or a stale or foreign server cookie.",
            Event::CookiesNew,
        ),
        (
            "mirrordns_dns_transfers_total",
            "Zone transfers sent.",
            Event::Transfers,
        ),
        (
            "mirrordns_dns_transfers_refused_total",
            "Zone transfer requests refused (not allowed, unsigned or wrongly signed).",
            Event::TransfersRefused,
        ),
        (
            "mirrordns_dns_transfers_incremental_total",
            "Zone transfers sent as the differences since the secondary's serial (IXFR).",
            Event::TransfersIncremental,
        ),
    ] {
        e.family(name, "counter", help);
        e.sample(name, &[], s.get(v) as f64);
    }
    e.family(
        "mirrordns_dns_rrl_total",
        "counter",
        "UDP responses withheld by response rate limiting: dropped, or sent truncated (slipped).",
    );
    for (action, v) in [
        ("dropped", Event::RrlDropped),
        ("slipped", Event::RrlSlipped),
    ] {
        e.sample(
            "mirrordns_dns_rrl_total",
            &[("action", action)],
            s.get(v) as f64,
        );
    }
    e.family(
        "mirrordns_dns_tcp_evictions_total",
        "counter",
        "Idle TCP connections closed to admit a new one, by the limit that was reached.",
    );
    for (reason, v) in [
        ("max-connections", Event::TcpEvictedMaxConnections),
        ("max-per-client", Event::TcpEvictedPerClient),
    ] {
        e.sample(
            "mirrordns_dns_tcp_evictions_total",
            &[("reason", reason)],
            s.get(v) as f64,
        );
    }
    e.family(
        "mirrordns_dns_rrl_table_cells",
        "gauge",
        "Flow cells in the response rate limiter's table ([rate-limit] table-size).",
    );
    e.sample("mirrordns_dns_rrl_table_cells", &[], mon.rrl_cells() as f64);
    e.family(
        "mirrordns_dns_query_duration_seconds",
        "histogram",
        "Time spent answering one query (the answer logic, not the network).",
    );
    e.histogram("mirrordns_dns_query_duration_seconds", &[], &s.latency);

    // Health.
    if let Some(hc) = hc {
        e.family(
            "mirrordns_probes_total",
            "counter",
            "Liveness probes by mirror and result.",
        );
        for m in &cfg.mirrors {
            if let Some(mc) = hc.mirror(&m.name) {
                for (r, c) in PROBE_RESULTS.iter().zip(&mc.probes) {
                    e.sample(
                        "mirrordns_probes_total",
                        &[("mirror", &m.name), ("result", r)],
                        c.load(Relaxed) as f64,
                    );
                }
            }
        }
        e.family(
            "mirrordns_probe_duration_seconds",
            "histogram",
            "Liveness probe latency by mirror.",
        );
        for m in &cfg.mirrors {
            if let Some(mc) = hc.mirror(&m.name)
                && m.base_url.is_some()
            {
                e.histogram(
                    "mirrordns_probe_duration_seconds",
                    &[("mirror", &m.name)],
                    &mc.probe_latency,
                );
            }
        }
        e.family(
            "mirrordns_hash_mismatches_total",
            "counter",
            "Verifications that found wrong bytes (size or SHA-256), by mirror.",
        );
        for m in &cfg.mirrors {
            if let Some(mc) = hc.mirror(&m.name) {
                e.sample(
                    "mirrordns_hash_mismatches_total",
                    &[("mirror", &m.name)],
                    mc.hash_mismatches.load(Relaxed) as f64,
                );
            }
        }
        e.family(
            "mirrordns_verify_bytes_total",
            "counter",
            "Bytes this instance downloaded from each mirror to verify it (files and the mirror's manifest copies); with [cluster], peers' results save downloads.",
        );
        for m in &cfg.mirrors {
            if let Some(mc) = hc.mirror(&m.name) {
                e.sample(
                    "mirrordns_verify_bytes_total",
                    &[("mirror", &m.name)],
                    mc.verify_bytes.load(Relaxed) as f64,
                );
            }
        }
        e.family(
            "mirrordns_manifest_failures_total",
            "counter",
            "Origin manifest fetches that failed or were rejected.",
        );
        e.sample(
            "mirrordns_manifest_failures_total",
            &[],
            hc.manifest_failures.load(Relaxed) as f64,
        );
        e.family(
            "mirrordns_manifest_signature_failures_total",
            "counter",
            "Manifests rejected for a missing or invalid signature.",
        );
        e.sample(
            "mirrordns_manifest_signature_failures_total",
            &[],
            hc.signature_failures.load(Relaxed) as f64,
        );
    }
    e.family(
        "mirrordns_mirror_state",
        "gauge",
        "1 for each mirror's current state, 0 for the others.",
    );
    for i in 0..cfg.mirrors.len() {
        let (cur, _) = super::status::mirror_state(cfg, st, i);
        for s in MirrorState::ALL {
            e.sample(
                "mirrordns_mirror_state",
                &[("mirror", &cfg.mirrors[i].name), ("state", s.as_str())],
                if s == cur { 1.0 } else { 0.0 },
            );
        }
    }
    // What an on-call person is woken for: a service answering from its fallback because no
    // mirror is routable. /status has it per service; alerts need it as a series, and it
    // cannot be derived from mirror_state (routability also depends on lag-grace, admin
    // actions and which mirrors the service lists).
    e.family(
        "mirrordns_service_fallback_in_force",
        "gauge",
        "1 while no mirror of the service is routable and its fallback (origin, live, servfail) answers, else 0.",
    );
    for (s, route) in cfg.services.iter().zip(&table.services) {
        e.sample(
            "mirrordns_service_fallback_in_force",
            &[
                ("service", s.name.as_str()),
                ("fallback", s.fallback.as_str()),
            ],
            match route.mode {
                crate::routing::Mode::Mirrors => 0.0,
                crate::routing::Mode::Fallback(_) => 1.0,
            },
        );
    }
    if let Some(st) = st {
        e.family(
            "mirrordns_replication_lag_seconds",
            "gauge",
            "Seconds a mirror has lacked the current content of a release (0 once verified).",
        );
        for (i, m) in cfg.mirrors.iter().enumerate() {
            if m.base_url.is_none() || m.drained {
                continue;
            }
            let mut releases: Vec<&String> = cfg
                .services
                .iter()
                .filter(|s| s.mirrors.contains(&i))
                .flat_map(|s| &s.releases)
                .collect();
            releases.sort();
            releases.dedup();
            for r in releases {
                e.sample(
                    "mirrordns_replication_lag_seconds",
                    &[("mirror", &m.name), ("release", r)],
                    super::status::lag_seconds(st, i, r, now),
                );
            }
        }
        e.family(
            "mirrordns_release_ready_seconds",
            "gauge",
            "Seconds from a release's publication (or change) to verified on every mirror.",
        );
        let mut paths: Vec<&String> = st.releases.keys().collect();
        paths.sort();
        for p in &paths {
            let r = &st.releases[*p];
            if let (Some(ready), Some(changed)) = (r.ready_at, r.changed_at) {
                e.sample(
                    "mirrordns_release_ready_seconds",
                    &[("release", p)],
                    ready
                        .duration_since(changed)
                        .unwrap_or_default()
                        .as_secs_f64(),
                );
            }
        }
        e.family(
            "mirrordns_release_waiting_seconds",
            "gauge",
            "Seconds a release has waited so far to be verified on every mirror.",
        );
        for p in &paths {
            let r = &st.releases[*p];
            if let (None, Some(changed)) = (r.ready_at, r.changed_at) {
                e.sample(
                    "mirrordns_release_waiting_seconds",
                    &[("release", p)],
                    now.duration_since(changed)
                        .unwrap_or_default()
                        .as_secs_f64(),
                );
            }
        }
    }
    // Routing and config.
    let sm = mon.metrics();
    e.family(
        "mirrordns_routing_table_generation",
        "gauge",
        "Generation number of the routing table in use.",
    );
    e.sample(
        "mirrordns_routing_table_generation",
        &[],
        table.generation as f64,
    );
    e.family(
        "mirrordns_routing_table_swaps_total",
        "counter",
        "Routing tables built and swapped in.",
    );
    e.sample(
        "mirrordns_routing_table_swaps_total",
        &[],
        sm.swaps.load(Relaxed) as f64,
    );
    e.family(
        "mirrordns_routing_table_build_duration_seconds",
        "histogram",
        "Time to build a routing table from a health snapshot.",
    );
    e.histogram(
        "mirrordns_routing_table_build_duration_seconds",
        &[],
        &sm.build,
    );
    e.family(
        "mirrordns_config_reloads_total",
        "counter",
        "Reloads of config, zones and geo data, by result.",
    );
    e.sample(
        "mirrordns_config_reloads_total",
        &[("result", "ok")],
        sm.reloads_ok.load(Relaxed) as f64,
    );
    e.sample(
        "mirrordns_config_reloads_total",
        &[("result", "error")],
        sm.reloads_failed.load(Relaxed) as f64,
    );
    e.family(
        "mirrordns_admin_state_rejected_total",
        "counter",
        "Admin-state files rejected (the previous admin state stays in force).",
    );
    e.sample(
        "mirrordns_admin_state_rejected_total",
        &[],
        sm.admin_rejected.load(Relaxed) as f64,
    );
    // A geo database that stopped being updated (geoipupdate broken) places clients worse
    // and worse without any error: its age is only visible from its build time.
    if let Some(built) = mon.geo().built() {
        e.family(
            "mirrordns_geo_database_build_timestamp_seconds",
            "gauge",
            "Build time of the geo database in force (its metadata's build_epoch), Unix seconds.",
        );
        e.sample(
            "mirrordns_geo_database_build_timestamp_seconds",
            &[],
            built as f64,
        );
    }
    e.family(
        "mirrordns_config_generation",
        "gauge",
        "Generation of the config in force (1 at start, +1 per successful reload).",
    );
    e.sample(
        "mirrordns_config_generation",
        &[],
        mon.config_info().generation as f64,
    );
    e.finish()
}
