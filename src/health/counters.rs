//! Counters the prober keeps for `/metrics`. They live as long as the process: a reload hands
//! the same counters to the reconfigured prober, and a mirror's are found by its name, so they
//! follow it when mirrors are added, removed or reordered.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::Config;
use crate::metrics::{Histogram, PROBE_BUCKETS};

/// Results a liveness probe is counted under.
pub const PROBE_RESULTS: &[&str] = &[
    "ok",
    "timeout",
    "connect",
    "tls",
    "redirect",
    "missing",
    "http-status",
    "body",
];

/// One mirror's counters.
#[derive(Debug)]
pub struct MirrorCounters {
    /// By result, as in [`PROBE_RESULTS`].
    pub probes: Vec<AtomicU64>,
    pub probe_latency: Histogram,
    pub hash_mismatches: AtomicU64,
    /// Body bytes downloaded from the mirror to verify it (files and its manifest copies).
    pub verify_bytes: Arc<AtomicU64>,
}

impl MirrorCounters {
    fn new() -> Self {
        MirrorCounters {
            probes: PROBE_RESULTS.iter().map(|_| AtomicU64::new(0)).collect(),
            probe_latency: Histogram::new(PROBE_BUCKETS),
            hash_mismatches: AtomicU64::new(0),
            verify_bytes: Arc::new(AtomicU64::new(0)),
        }
    }

    pub(super) fn probe(&self, result: &str, latency: Duration) {
        let r = PROBE_RESULTS
            .iter()
            .position(|x| *x == result)
            .unwrap_or(PROBE_RESULTS.len() - 1);
        self.probes[r].fetch_add(1, Relaxed);
        self.probe_latency.observe(latency);
    }
}

#[derive(Debug, Default)]
pub struct HealthCounters {
    pub manifest_failures: AtomicU64,
    pub signature_failures: AtomicU64,
    /// Per mirror name. A task holds its mirror's entry; the lock is only taken to look one up
    /// or to follow a new config.
    mirrors: Mutex<HashMap<String, Arc<MirrorCounters>>>,
}

impl HealthCounters {
    /// The counters of the mirror called `name`, if the config in force has it.
    pub fn mirror(&self, name: &str) -> Option<Arc<MirrorCounters>> {
        self.map().get(name).cloned()
    }

    /// Follows `config`: every mirror in it has counters (static ones too, so that `/metrics`
    /// lists every mirror), kept ones go on counting, removed ones go.
    pub(super) fn follow(&self, config: &Config) {
        let mut map = self.map();
        map.retain(|name, _| config.mirrors.iter().any(|m| m.name == *name));
        for m in &config.mirrors {
            map.entry(m.name.clone())
                .or_insert_with(|| Arc::new(MirrorCounters::new()));
        }
    }

    /// The mirror's counters, created if `follow` has not seen it.
    pub(super) fn entry(&self, name: &str) -> Arc<MirrorCounters> {
        self.map()
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(MirrorCounters::new()))
            .clone()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<MirrorCounters>>> {
        // Plain counts: a panic elsewhere while this was held leaves nothing half-done.
        self.mirrors.lock().unwrap_or_else(|e| e.into_inner())
    }
}
