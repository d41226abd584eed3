//! Metric primitives: lock-free histograms and per-label counter arrays the hot paths update,
//! and a writer for the Prometheus text exposition format.
//!
//! Labels are fixed at creation (transports, query types, mirrors, continents), so updating a
//! metric is an atomic add on a precomputed index and scraping never blocks the DNS path.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A cumulative histogram with fixed upper bounds (seconds).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: (0..bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        // Buckets are not cumulative in storage; rendering sums them.
        if let Some(i) = self.bounds.iter().position(|&b| secs <= b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.sum_nanos
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }
}

/// Latency buckets for DNS answers (the answer logic, not the network).
pub const DNS_BUCKETS: &[f64] = &[
    0.000_002, 0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.001, 0.01,
];
/// Latency buckets for HTTP probes.
pub const PROBE_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Routing table build times.
pub const BUILD_BUCKETS: &[f64] = &[0.000_1, 0.001, 0.005, 0.01, 0.05, 0.25, 1.0, 5.0];

/// Builds the text exposition: one HELP/TYPE header per family, then its samples.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

impl Exposition {
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    pub fn sample(&mut self, name: &str, pairs: &[(&str, &str)], value: f64) {
        let _ = writeln!(self.out, "{name}{} {value}", labels(pairs));
    }

    /// A histogram's samples (the family header must come first).
    pub fn histogram(&mut self, name: &str, pairs: &[(&str, &str)], h: &Histogram) {
        let mut cum = 0u64;
        for (b, c) in h.bounds.iter().zip(&h.buckets) {
            cum += c.load(Relaxed);
            let le = format!("{b}");
            let mut p = pairs.to_vec();
            p.push(("le", &le));
            let _ = writeln!(self.out, "{name}_bucket{} {cum}", labels(&p));
        }
        let mut p = pairs.to_vec();
        p.push(("le", "+Inf"));
        let count = h.count.load(Relaxed);
        let _ = writeln!(self.out, "{name}_bucket{} {count}", labels(&p));
        let sum = h.sum_nanos.load(Relaxed) as f64 / 1e9;
        let _ = writeln!(self.out, "{name}_sum{} {sum}", labels(pairs));
        let _ = writeln!(self.out, "{name}_count{} {count}", labels(pairs));
    }

    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_text_is_cumulative() {
        static B: &[f64] = &[0.001, 0.01];
        let h = Histogram::new(B);
        h.observe(std::time::Duration::from_micros(500));
        h.observe(std::time::Duration::from_millis(5));
        h.observe(std::time::Duration::from_secs(1));
        let mut e = Exposition::default();
        e.family("x_seconds", "histogram", "test");
        e.histogram("x_seconds", &[("a", "b\"c")], &h);
        let t = e.finish();
        assert!(
            t.contains("x_seconds_bucket{a=\"b\\\"c\",le=\"0.001\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("x_seconds_bucket{a=\"b\\\"c\",le=\"0.01\"} 2\n"),
            "{t}"
        );
        assert!(
            t.contains("x_seconds_bucket{a=\"b\\\"c\",le=\"+Inf\"} 3\n"),
            "{t}"
        );
        assert!(t.contains("x_seconds_count{a=\"b\\\"c\"} 3\n"), "{t}");
    }
}
