//! Metric primitives: lock-free histograms and per-label counter arrays the hot paths update,
//! and a writer for the Prometheus text exposition format.
//!
//! Labels are fixed at creation (transports, query types, mirrors, continents), so updating a
//! metric is an atomic add on a precomputed index and scraping never blocks the DNS path.

use std::cell::Cell;
use std::fmt::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// Counters that several threads add to at once, summed when read.
///
/// Every thread adds to its own shard: a copy of all the counters, on cache lines no other
/// shard touches. A plain shared atomic makes each add on one core steal the cache line from
/// the other cores: two UDP workers counting every query into the same words answered fewer
/// queries together than one alone (`cargo bench`: "two threads at once"). Reads (a scrape)
/// walk all shards; the counts are exact, only not one atomic snapshot across counters.
#[derive(Debug)]
pub struct Counters {
    len: usize,
    /// Cache lines per shard.
    stride: usize,
    lines: Box<[Line]>,
}

const PER_LINE: usize = 8;

#[derive(Debug, Default)]
#[repr(align(64))]
struct Line([AtomicU64; PER_LINE]);

/// How many shards every [`Counters`] has: a few per core, so that threads taking shards in
/// turn (UDP workers, runtime workers) rarely share one, and a power of two.
fn shards() -> usize {
    static SHARDS: OnceLock<usize> = OnceLock::new();
    *SHARDS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (4 * cores).next_power_of_two().clamp(4, 64)
    })
}

/// This thread's shard: taken in turn the first time the thread counts anything.
#[inline]
fn my_shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    SHARD.with(|s| {
        let mut v = s.get();
        if v == usize::MAX {
            v = NEXT.fetch_add(1, Relaxed) & (shards() - 1);
            s.set(v);
        }
        v
    })
}

impl Counters {
    pub fn new(len: usize) -> Self {
        let stride = len.div_ceil(PER_LINE).max(1);
        Counters {
            len,
            stride,
            lines: (0..stride * shards()).map(|_| Line::default()).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `n` to counter `i`; an index past the end is ignored.
    #[inline]
    pub fn add(&self, i: usize, n: u64) {
        if i < self.len {
            let line = &self.lines[my_shard() * self.stride + i / PER_LINE];
            line.0[i % PER_LINE].fetch_add(n, Relaxed);
        }
    }

    /// Counter `i`, summed over all threads (0 past the end).
    pub fn get(&self, i: usize) -> u64 {
        if i >= self.len {
            return 0;
        }
        self.lines
            .chunks(self.stride)
            .map(|shard| shard[i / PER_LINE].0[i % PER_LINE].load(Relaxed))
            .fold(0u64, u64::wrapping_add)
    }
}

/// A cumulative histogram with fixed upper bounds (seconds).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One counter per bound (not cumulative in storage; rendering sums them), then the sum
    /// in nanoseconds, then the count.
    counts: Counters,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: Counters::new(bounds.len() + 2),
        }
    }

    pub fn observe(&self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|&b| secs <= b) {
            self.counts.add(i, 1);
        }
        let nanos = d.as_nanos().min(u64::MAX as u128) as u64;
        self.counts.add(self.bounds.len(), nanos);
        self.counts.add(self.bounds.len() + 1, 1);
    }

    pub fn count(&self) -> u64 {
        self.counts.get(self.bounds.len() + 1)
    }

    fn sum_nanos(&self) -> u64 {
        self.counts.get(self.bounds.len())
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
        for (i, b) in h.bounds.iter().enumerate() {
            cum += h.counts.get(i);
            let le = format!("{b}");
            let mut p = pairs.to_vec();
            p.push(("le", &le));
            let _ = writeln!(self.out, "{name}_bucket{} {cum}", labels(&p));
        }
        let mut p = pairs.to_vec();
        p.push(("le", "+Inf"));
        // Read after the buckets, and never below them: an observation landing between the
        // reads must not make the +Inf bucket smaller than the last finite one.
        let count = h.count().max(cum);
        let _ = writeln!(self.out, "{name}_bucket{} {count}", labels(&p));
        let sum = h.sum_nanos() as f64 / 1e9;
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

    #[test]
    fn counters_sum_every_thread_exactly() {
        let c = Counters::new(20);
        std::thread::scope(|s| {
            for t in 0..24u64 {
                let c = &c;
                s.spawn(move || {
                    for _ in 0..1000 {
                        c.add(3, 1);
                        c.add(19, t);
                    }
                });
            }
        });
        c.add(20, 1); // past the end: ignored, not a panic
        assert_eq!(c.get(3), 24_000);
        assert_eq!(c.get(19), 1000 * (0..24).sum::<u64>());
        assert_eq!(c.get(0), 0);
        assert_eq!(c.get(20), 0);
    }
}
