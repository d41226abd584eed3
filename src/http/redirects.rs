//! The download redirectors in `/status` and `/metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

use crate::metrics::Exposition;
use crate::monitor::Monitor;
use crate::routing::RoutingTable;
use crate::routing::download_counts::NO_RELEASE;
use crate::schema::{DownloadCount, LatestView, RedirectView};

/// One view per `[[redirect]]`.
pub fn views(mon: &Monitor, table: &RoutingTable) -> Vec<RedirectView> {
    let cfg = &table.config;
    let counts = table.download_counts.downloads();
    cfg.redirects
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let service = &cfg.services[r.service];
            let dl = table.downloads.get(r.service).and_then(|d| d.as_deref());
            let addrs = mon.redirect_addrs().iter().find(|a| a.index == i);
            let mut by_release: BTreeMap<&str, u64> = service
                .releases
                .iter()
                .chain(&service.archive)
                .map(|r| (r.as_str(), 0))
                .collect();
            let mut by_mirror: BTreeMap<&str, u64> = BTreeMap::new();
            for c in counts.iter().filter(|c| c.service == service.name) {
                *by_release.entry(c.release).or_default() += c.value;
                *by_mirror.entry(c.mirror.unwrap_or("origin")).or_default() += c.value;
            }
            let list = |m: BTreeMap<&str, u64>| {
                m.into_iter()
                    .map(|(name, count)| DownloadCount {
                        name: name.to_string(),
                        count,
                    })
                    .collect()
            };
            let latest = r.latest.as_ref().map(|alias| {
                let l = dl.and_then(|d| d.latest.as_ref().map(|l| (l, &d.releases[l.release])));
                LatestView {
                    alias: alias.clone(),
                    release: l.map(|(_, rel)| rel.release.clone()),
                    version: l.map(|(l, _)| l.version.clone()),
                    since: l.map(|(l, _)| super::status::time(l.since)),
                }
            });
            let si = r.service;
            RedirectView {
                service: service.name.clone(),
                listen: addrs.map_or_else(Vec::new, |a| {
                    a.plain.iter().map(|x| x.to_string()).collect()
                }),
                tls_listen: addrs
                    .map_or_else(Vec::new, |a| a.tls.iter().map(|x| x.to_string()).collect()),
                latest,
                downloads_by_release: list(by_release),
                downloads_by_mirror: list(by_mirror),
                partial_requests: table.download_counts.partial(si),
                files: dl.map_or(0, |d| d.files.len()),
                withdrawn_files: dl.map_or(0, |d| d.withdrawn.len()),
            }
        })
        .collect()
}

/// The redirector's metric families (present, possibly empty, with or without redirectors).
pub fn metrics(e: &mut Exposition, mon: &Monitor, table: &RoutingTable) {
    e.family(
        "mirrordns_redirects_total",
        "counter",
        "Downloads redirected, by service, mirror (or origin), client continent and configured release (\"none\": a path in no manifest sent to the origin). GET requests only; range requests not starting at byte 0 are in mirrordns_redirect_partial_requests_total instead.",
    );
    for c in table.download_counts.downloads() {
        e.sample(
            "mirrordns_redirects_total",
            &[
                ("service", c.service),
                ("mirror", c.mirror.unwrap_or("origin")),
                ("continent", c.continent),
                ("release", c.release),
            ],
            c.value as f64,
        );
    }
    debug_assert_eq!(NO_RELEASE, "none");
    e.family(
        "mirrordns_redirect_partial_requests_total",
        "counter",
        "Range requests not starting at byte 0 (resumed or segmented downloads), by service: not counted as downloads.",
    );
    for (service, v) in table.download_counts.partials() {
        e.sample(
            "mirrordns_redirect_partial_requests_total",
            &[("service", service)],
            v as f64,
        );
    }
    let stats = mon.redirect_stats();
    e.family(
        "mirrordns_redirect_responses_total",
        "counter",
        "Redirector responses by HTTP status code.",
    );
    for (code, v) in stats.responses() {
        e.sample(
            "mirrordns_redirect_responses_total",
            &[("code", &code)],
            v as f64,
        );
    }
    e.family(
        "mirrordns_redirect_rejected_total",
        "counter",
        "Redirector requests refused or headers not believed, by reason.",
    );
    for (reason, v) in stats.rejected() {
        e.sample(
            "mirrordns_redirect_rejected_total",
            &[("reason", reason)],
            v as f64,
        );
    }
    e.family(
        "mirrordns_redirect_connections_closed_total",
        "counter",
        "Redirector connections closed by the server: at max-connections (the one idle longest), idle past idle-timeout, a request head incomplete at idle-timeout, or a head that could not be read (400, 431).",
    );
    e.sample(
        "mirrordns_redirect_connections_closed_total",
        &[("reason", "evicted")],
        stats.evictions.load(Relaxed) as f64,
    );
    e.sample(
        "mirrordns_redirect_connections_closed_total",
        &[("reason", "idle")],
        stats.idle_closed.load(Relaxed) as f64,
    );
    e.sample(
        "mirrordns_redirect_connections_closed_total",
        &[("reason", "header_timeout")],
        stats.header_timeouts.load(Relaxed) as f64,
    );
    e.sample(
        "mirrordns_redirect_connections_closed_total",
        &[("reason", "malformed")],
        stats.malformed.load(Relaxed) as f64,
    );
}
