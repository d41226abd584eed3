//! `[cluster]` in `/status` and `/metrics`: Redis, the peers, what was shared.

use std::sync::atomic::Ordering::Relaxed;

use crate::admin::Source;
use crate::metrics::Exposition;
use crate::monitor::Monitor;
use crate::schema::{AdminSourceView, ClusterView, PeerView, ReloadError};

use super::status::time;

pub fn source(s: &Source) -> AdminSourceView {
    match s {
        Source::File => AdminSourceView::File,
        Source::Cluster { by, at } => AdminSourceView::Cluster {
            by: by.clone(),
            at: at.clone(),
        },
    }
}

pub fn view(m: &Monitor) -> Option<ClusterView> {
    let c = m.cluster()?;
    let st = c.state();
    let n = &c.counters;
    Some(ClusterView {
        name: c.name().to_string(),
        redis: c.config.redis_shown(),
        key_prefix: c.config.key_prefix.clone(),
        connected: c.connected(),
        down_since: st.down_since.map(time),
        last_error: st.last_error.map(|(at, error)| ReloadError {
            at: time(at),
            error,
        }),
        peers: st
            .peers
            .iter()
            .map(|p| PeerView {
                name: p.name.clone(),
                version: p.version.clone(),
                last_seen: time(p.last_seen),
            })
            .collect(),
        results_adopted: n.adopted.load(Relaxed),
        results_not_adopted: n.not_adopted.load(Relaxed),
        results_published: n.published.load(Relaxed),
        lock_waits: n.waited.load(Relaxed),
        outages: n.outages.load(Relaxed),
        admin_errors: st.admin_errors,
    })
}

pub fn metrics(e: &mut Exposition, m: &Monitor) {
    let Some(c) = m.cluster() else {
        return;
    };
    let n = &c.counters;
    e.family(
        "mirrordns_cluster_redis_connected",
        "gauge",
        "1 while the cluster's Redis answers, 0 while this instance verifies alone.",
    );
    e.sample(
        "mirrordns_cluster_redis_connected",
        &[],
        if c.connected() { 1.0 } else { 0.0 },
    );
    let counters = [
        (
            "mirrordns_cluster_results_adopted_total",
            "Peers' verification results used instead of a download, after a HEAD of each file showed the same validators.",
            &n.adopted,
        ),
        (
            "mirrordns_cluster_results_rejected_total",
            "Peers' verification results found but not used (stale, another manifest, or the mirror's validators differ).",
            &n.not_adopted,
        ),
        (
            "mirrordns_cluster_results_published_total",
            "This instance's verification results written for the peers.",
            &n.published,
        ),
        (
            "mirrordns_cluster_lock_waits_total",
            "Verifications that waited for a peer holding the lock instead of downloading.",
            &n.waited,
        ),
        (
            "mirrordns_cluster_redis_outages_total",
            "Times Redis became unreachable (this instance then verifies alone).",
            &n.outages,
        ),
    ];
    for (name, help, v) in counters {
        e.family(name, "counter", help);
        e.sample(name, &[], v.load(Relaxed) as f64);
    }
    e.family(
        "mirrordns_cluster_peers",
        "gauge",
        "Instances heard from in the last 30 seconds, this one included.",
    );
    e.sample("mirrordns_cluster_peers", &[], c.state().peers.len() as f64);
}
