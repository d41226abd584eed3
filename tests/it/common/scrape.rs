//! How long the monitoring endpoint takes to answer while something else runs (a reload):
//! its read paths scraped one after another, each timed. Shared by `tests/it/reload_scrape.rs`
//! and `benches/reload.rs`.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What Prometheus, a load balancer and the on-call person poll.
pub const SCRAPES: [&str; 4] = ["/metrics", "/status", "/readyz", "/"];

/// `/lookup` re-reads the geo database file for every explanation (the server keeps only the
/// compiled tables in memory), so it is timed apart from the scrapes.
pub const LOOKUP: &str = "/lookup?ip=1.2.3.4";

/// Latencies by path, in the order taken.
#[derive(Debug, Default)]
pub struct Latencies(pub Vec<(&'static str, Duration)>);

impl Latencies {
    fn of(&self, lookup: bool) -> Vec<Duration> {
        let mut v: Vec<Duration> = self
            .0
            .iter()
            .filter(|(p, _)| (*p == LOOKUP) == lookup)
            .map(|e| e.1)
            .collect();
        v.sort();
        v
    }

    /// The worst scrape (every path but `/lookup`).
    pub fn worst(&self) -> Duration {
        self.of(false).last().copied().unwrap_or_default()
    }

    pub fn worst_lookup(&self) -> Duration {
        self.of(true).last().copied().unwrap_or_default()
    }

    pub fn scrapes(&self) -> usize {
        self.of(false).len()
    }

    pub fn summary(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let (s, l) = (self.of(false), self.of(true));
        let median = |v: &[Duration]| v.get(v.len() / 2).copied().unwrap_or_default();
        format!(
            "{} scrapes: median {:.2} ms, worst {:.2} ms; {} lookups: median {:.2} ms, worst {:.2} ms",
            s.len(),
            ms(median(&s)),
            ms(self.worst()),
            l.len(),
            ms(median(&l)),
            ms(self.worst_lookup())
        )
    }
}

/// One request for `path`; panics on anything but 200 or 503 (`/readyz` before readiness).
pub async fn scrape(client: &reqwest::Client, base: &str, path: &str) -> Duration {
    let t = Instant::now();
    let r = client
        .get(format!("{base}{path}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let code = r.status().as_u16();
    let _ = r.bytes().await;
    assert!(code == 200 || code == 503, "{path}: HTTP {code}");
    t.elapsed()
}

fn paths() -> impl Iterator<Item = &'static str> + Clone {
    SCRAPES.into_iter().chain([LOOKUP])
}

/// Runs `work` while requesting every path in turn (`gap` apart), and returns its output with
/// the latencies of the requests made while it ran.
pub async fn scrape_while<T>(
    base: &str,
    gap: Duration,
    work: impl Future<Output = T>,
) -> (T, Latencies) {
    let client = reqwest::Client::new();
    let done = AtomicBool::new(false);
    let work = async {
        let out = work.await;
        done.store(true, Ordering::Release);
        out
    };
    let scrapes = async {
        let mut lat = Latencies::default();
        for path in paths().cycle() {
            if done.load(Ordering::Acquire) {
                break;
            }
            lat.0.push((path, scrape(&client, base, path).await));
            tokio::time::sleep(gap).await;
        }
        lat
    };
    tokio::join!(work, scrapes)
}

/// `n` rounds of every path, with nothing else running.
pub async fn scrape_idle(base: &str, n: usize, gap: Duration) -> Latencies {
    let client = reqwest::Client::new();
    let mut lat = Latencies::default();
    for _ in 0..n {
        for path in paths() {
            lat.0.push((path, scrape(&client, base, path).await));
            tokio::time::sleep(gap).await;
        }
    }
    lat
}
