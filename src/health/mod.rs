//! Health and integrity: only mirrors that are up and hold byte-exact copies of every required
//! release are routable.
//!
//! Three kinds of task share one [`HealthState`] behind a mutex (held only for short,
//! await-free updates):
//! - the **origin task** fetches every release manifest each interval (checking its minisign
//!   signature when configured) and notices when a release's content changes;
//! - one **mirror task** per probed mirror: a liveness probe each interval (with hysteresis), a
//!   spot check of one verified file, and a full streaming SHA-256 verification of any
//!   required release it has not verified (new release, back from down, or `reverify` due);
//! - the **coordinator** turns the state into a [`HealthSnapshot`] (debounced), hands it to
//!   the publisher (which builds and swaps the routing table), logs state changes, records
//!   global readiness, and writes the state file.

pub mod http;
mod integrity;
pub mod oneshot;
pub mod reason;
pub mod state;
pub mod transition;
pub mod verify;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::Config;
use crate::metrics::{Histogram, PROBE_BUCKETS};
use crate::routing::HealthSnapshot;
use state::{HealthState, MirrorHealth, MirrorState, StateFile};
use verify::fetch_manifest;

/// Receives every new snapshot; the daemon builds and publishes a routing table from it.
pub type Publisher = Arc<dyn Fn(&HealthSnapshot) + Send + Sync>;

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

/// Counters the prober keeps (read by the monitoring endpoint). Per-mirror vectors follow the
/// config's mirror order.
#[derive(Debug)]
pub struct HealthCounters {
    pub manifest_failures: AtomicU64,
    pub signature_failures: AtomicU64,
    /// [mirror][result] with results as in [`PROBE_RESULTS`].
    pub probes: Vec<Vec<AtomicU64>>,
    pub probe_latency: Vec<Histogram>,
    pub hash_mismatches: Vec<AtomicU64>,
}

impl HealthCounters {
    pub fn new(mirrors: usize) -> Self {
        HealthCounters {
            manifest_failures: AtomicU64::new(0),
            signature_failures: AtomicU64::new(0),
            probes: (0..mirrors)
                .map(|_| PROBE_RESULTS.iter().map(|_| AtomicU64::new(0)).collect())
                .collect(),
            probe_latency: (0..mirrors)
                .map(|_| Histogram::new(PROBE_BUCKETS))
                .collect(),
            hash_mismatches: (0..mirrors).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn probe(&self, mirror: usize, result: &str, latency: Duration) {
        let r = PROBE_RESULTS
            .iter()
            .position(|x| *x == result)
            .unwrap_or(PROBE_RESULTS.len() - 1);
        self.probes[mirror][r].fetch_add(1, Relaxed);
        self.probe_latency[mirror].observe(latency);
    }
}

/// The running prober.
pub struct Health {
    config: Arc<Config>,
    state: Arc<Mutex<HealthState>>,
    /// Wakes the coordinator (shared with the tasks).
    nudge: Arc<Notify>,
    pub counters: Arc<HealthCounters>,
    token: CancellationToken,
    tasks: TaskTracker,
}

struct Shared {
    config: Arc<Config>,
    state: Arc<Mutex<HealthState>>,
    notify: Arc<Notify>,
    origin_fetched: Notify,
    /// Asks the origin task to fetch now rather than at the end of its pause.
    origin_nudge: Notify,
    downloads: Arc<Semaphore>,
    counters: Arc<HealthCounters>,
    token: CancellationToken,
}

fn lock(m: &Mutex<HealthState>) -> std::sync::MutexGuard<'_, HealthState> {
    // A panic while holding the lock leaves plain data behind; keep using it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A fresh state for `config`, seeded from a previous run's state (same mirror name and base
/// URL) or from the state file when it is recent enough.
pub fn initial_state(config: &Config, carried: Option<(&Config, &HealthState)>) -> HealthState {
    let mut st = HealthState {
        mirrors: vec![MirrorHealth::default(); config.mirrors.len()],
        ..HealthState::default()
    };
    if let Some((old_cfg, old)) = carried {
        for (i, m) in config.mirrors.iter().enumerate() {
            if let Some(j) = old_cfg
                .mirrors
                .iter()
                .position(|o| o.name == m.name && o.base_url == m.base_url)
            {
                st.mirrors[i] = old.mirrors[j].clone();
            }
        }
        st.releases = old.releases.clone();
        st.origin_done = old.origin_done;
        st.first_round_done = old.first_round_done;
        st.restored_written = old.restored_written;
        st.restored = true;
        return st;
    }
    if let Some(path) = &config.health.state_file {
        match StateFile::read(path, config.health.state_max_age, SystemTime::now()) {
            Ok(f) => {
                f.restore_into(config, &mut st);
                info!(file = %path.display(), "restored probe state from the previous run");
            }
            Err(e) => {
                info!(reason = %e, "not using a saved probe state; answering by fallback until the first probe round")
            }
        }
    }
    st
}

impl Health {
    /// Starts the prober. `publish` is called with the first snapshot before this returns.
    pub fn start(
        config: Arc<Config>,
        state: HealthState,
        publish: Publisher,
    ) -> Result<Health, String> {
        let token = CancellationToken::new();
        let tasks = TaskTracker::new();
        let counters = Arc::new(HealthCounters::new(config.mirrors.len()));
        let shared = Arc::new(Shared {
            config: config.clone(),
            state: Arc::new(Mutex::new(state)),
            notify: Arc::new(Notify::new()),
            origin_fetched: Notify::new(),
            origin_nudge: Notify::new(),
            downloads: Arc::new(Semaphore::new(config.health.max_downloads)),
            counters: counters.clone(),
            token: token.clone(),
        });
        publish(&state::snapshot(
            &config,
            &lock(&shared.state),
            SystemTime::now(),
        ));
        if let Some(origin) = &config.origin {
            let client = http::Endpoint::new(&config.health, &origin.base_url, None)?;
            tasks.spawn(origin_task(shared.clone(), client));
        } else {
            lock(&shared.state).origin_done = true;
        }
        let probed: Vec<usize> = (0..config.mirrors.len())
            .filter(|&i| config.mirrors[i].base_url.is_some())
            .collect();
        for (k, &i) in probed.iter().enumerate() {
            let m = &config.mirrors[i];
            let Some(base) = &m.base_url else { continue };
            let client = http::Endpoint::new(&config.health, base, m.probe_address)
                .map_err(|e| format!("mirror `{}`: {e}", m.name))?;
            // Spread first probes over up to a second so a restart is not a probe storm.
            let stagger = config.health.interval.min(Duration::from_secs(1)) * k as u32
                / probed.len().max(1) as u32;
            tasks.spawn(mirror_task(shared.clone(), i, client, stagger));
        }
        tasks.spawn(coordinator(shared.clone(), publish));
        shared.notify.notify_one();
        Ok(Health {
            config,
            state: shared.state.clone(),
            nudge: shared.notify.clone(),
            counters,
            token,
            tasks,
        })
    }

    /// Stops every task and returns the state, to seed the next prober after a reload.
    pub async fn stop(self) -> (Arc<Config>, HealthState) {
        self.token.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        let st = std::mem::take(&mut *lock(&self.state));
        (self.config, st)
    }

    /// Puts new admin state in force (from the watched file, or on expiry).
    pub fn set_admin(&self, admin: Arc<crate::admin::AdminState>) {
        lock(&self.state).admin = admin;
        self.nudge.notify_one();
    }

    /// Reads the state under the lock.
    pub fn with_state<T>(&self, f: impl FnOnce(&Config, &HealthState) -> T) -> T {
        f(&self.config, &lock(&self.state))
    }
}

/// Sleeps `d` with up to ±10 % jitter, or until shutdown. False on shutdown.
async fn pause(token: &CancellationToken, d: Duration) -> bool {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    let d = d.mul_f64(0.9 + (nanos % 2001) as f64 / 10000.0);
    tokio::select! {
        _ = token.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

async fn origin_task(sh: Arc<Shared>, client: http::Endpoint) {
    let cfg = &sh.config;
    loop {
        // Configured releases plus any on-call pins, looked at again every round.
        let mut releases: Vec<String> = {
            let st = lock(&sh.state);
            let now = SystemTime::now();
            cfg.services
                .iter()
                .flat_map(|s| st.releases_of(s, now).into_iter().chain(s.releases.clone()))
                .collect()
        };
        releases.sort();
        releases.dedup();
        for r in &releases {
            let started = SystemTime::now();
            let res = tokio::select! {
                _ = sh.token.cancelled() => return,
                r = fetch_manifest(&client, cfg, r) => r,
            };
            let mut st = lock(&sh.state);
            let rel = st.releases.entry((*r).clone()).or_default();
            match res {
                Ok(m) => {
                    rel.last_error = None;
                    rel.fetched_at = Some(started);
                    if rel.current.as_ref().map(|c| c.digest) != Some(m.digest) {
                        let now = SystemTime::now();
                        let first = rel.current.is_none();
                        if !first || rel.restored.is_some_and(|d| d != m.digest) {
                            info!(release = %r, version = %m.version, "release content changed at the origin; mirrors lag until verified");
                            rel.previous = rel.current.take();
                            rel.changed_at = Some(now);
                            rel.ready_at = None;
                        } else {
                            info!(release = %r, version = %m.version, files = m.files.len(), "release manifest fetched");
                        }
                        if rel.changed_at.is_none() {
                            rel.changed_at = Some(m.published.unwrap_or(now).min(now));
                        }
                        rel.current = Some(Arc::new(m));
                        rel.restored = None;
                        rel.restored_version = None;
                    }
                }
                Err(e) => {
                    if e.is_signature() {
                        sh.counters
                            .signature_failures
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    sh.counters
                        .manifest_failures
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let msg = e.to_string();
                    if rel.last_error.as_deref() != Some(&msg) {
                        warn!(release = %r, error = %msg, "manifest rejected; the last good one stays in force");
                    }
                    rel.last_error = Some(msg);
                }
            }
        }
        lock(&sh.state).origin_done = true;
        sh.origin_fetched.notify_waiters();
        sh.notify.notify_one();
        let nudged = sh.origin_nudge.notified();
        tokio::select! {
            _ = nudged => {},
            go_on = pause(&sh.token, cfg.health.interval) => if !go_on {
                return;
            },
        }
    }
}

/// The path a liveness probe fetches: the first required manifest, else the base URL.
fn liveness_path(cfg: &Config, mirror: usize) -> String {
    cfg.services
        .iter()
        .filter(|s| s.mirrors.contains(&mirror))
        .flat_map(|s| s.releases.first())
        .next()
        .cloned()
        .unwrap_or_default()
}

async fn mirror_task(sh: Arc<Shared>, i: usize, ep: http::Endpoint, stagger: Duration) {
    let cfg = &sh.config;
    let hc = &cfg.health;
    let m = &cfg.mirrors[i];
    if !pause(&sh.token, stagger).await {
        return;
    }
    let Ok(probe_url) = ep.url(&liveness_path(cfg, i)) else {
        warn!(mirror = %m.name, "cannot form the liveness URL; not probing");
        return;
    };
    let mut spot = 0usize;
    loop {
        // Liveness.
        let started = std::time::Instant::now();
        let outcome = tokio::select! {
            _ = sh.token.cancelled() => return,
            r = ep.alive(&probe_url, hc.timeout) => r,
        };
        sh.counters.probe(
            i,
            outcome
                .as_ref()
                .map(|_| "ok")
                .unwrap_or_else(|e| e.reason()),
            started.elapsed(),
        );
        let error = outcome.err().map(|e| reason::unreachable(&e));
        let came_back = lock(&sh.state).mirrors[i].probed(
            error,
            started.elapsed(),
            SystemTime::now(),
            (hc.rise, hc.fall),
        );
        if came_back {
            info!(mirror = %m.name, "back up; re-verifying its releases");
        }
        sh.notify.notify_one();
        let live = lock(&sh.state).mirrors[i].live == Some(true);
        if live {
            // Wait (bounded) for the origin's first manifests so there is something to verify.
            if !lock(&sh.state).origin_done {
                let wait = sh.origin_fetched.notified();
                tokio::select! {
                    _ = sh.token.cancelled() => return,
                    _ = wait => {},
                    _ = tokio::time::sleep(hc.interval) => {},
                }
            }
            integrity::spot_check(&sh, i, &ep, &mut spot).await;
            integrity::run(&sh, i, &ep).await;
        }
        {
            let mut st = lock(&sh.state);
            rounds_done(&mut st, cfg);
        }
        sh.notify.notify_one();
        if !pause(&sh.token, hc.interval).await {
            return;
        }
    }
}

/// Marks the mirror's first cycle done; the first round is done when every probed mirror's is.
fn rounds_done(st: &mut HealthState, cfg: &Config) {
    if st.first_round_done {
        return;
    }
    let all = cfg
        .mirrors
        .iter()
        .zip(&st.mirrors)
        .filter(|(m, _)| m.base_url.is_some())
        .all(|(_, h)| h.last_probe.is_some() && !h.verifying);
    if all && st.origin_done {
        st.first_round_done = true;
    }
}

async fn coordinator(sh: Arc<Shared>, publish: Publisher) {
    let cfg = &sh.config;
    let mut last: Option<HealthSnapshot> = None;
    let mut last_admin: Option<Arc<crate::admin::AdminState>> = None;
    let mut shown: HashMap<usize, MirrorState> = HashMap::new();
    loop {
        tokio::select! {
            _ = sh.token.cancelled() => break,
            _ = sh.notify.notified() => {},
        }
        // Debounce: a burst of changes becomes one swap.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = SystemTime::now();
        let (snap, file, admin) = {
            let mut st = lock(&sh.state);
            for i in 0..cfg.mirrors.len() {
                let s = state::mirror_state(cfg, &st, i);
                if shown.get(&i) != Some(&s) {
                    let h = &st.mirrors[i];
                    let reason = h.reason();
                    info!(mirror = %cfg.mirrors[i].name, state = s.as_str(), %reason, "mirror state");
                    shown.insert(i, s);
                }
            }
            readiness(cfg, &mut st, now);
            let snap = state::snapshot(cfg, &st, now);
            let file = cfg
                .health
                .state_file
                .as_ref()
                .map(|p| (p.clone(), StateFile::from_state(cfg, &st, now)));
            (snap, file, st.admin.clone())
        };
        // A new admin state changes answers (the publisher applies drains and force-ups)
        // even when the probes' view did not change.
        let admin_changed = !last_admin.as_ref().is_some_and(|a| Arc::ptr_eq(a, &admin));
        if last.as_ref() != Some(&snap) || admin_changed {
            publish(&snap);
            last = Some(snap);
            last_admin = Some(admin);
        }
        if let Some((path, f)) = file
            && let Err(e) = f.write(&path)
        {
            warn!(file = %path.display(), error = %e, "cannot write the state file");
        }
    }
    // Shutdown: one last write so the next start knows what we knew.
    if let Some(path) = &cfg.health.state_file {
        let f = StateFile::from_state(cfg, &lock(&sh.state), SystemTime::now());
        if let Err(e) = f.write(path) {
            warn!(file = %path.display(), error = %e, "cannot write the state file");
        }
    }
}

/// Records when each release became verified on every non-drained probed mirror that needs it.
fn readiness(cfg: &Config, st: &mut HealthState, now: SystemTime) {
    let paths: Vec<String> = st.releases.keys().cloned().collect();
    for r in paths {
        let Some(rel) = st.releases.get(&r) else {
            continue;
        };
        if rel.ready_at.is_some() {
            continue;
        }
        let Some(cur) = rel.current.as_ref().map(|m| m.digest) else {
            continue;
        };
        let needed: Vec<usize> = (0..cfg.mirrors.len())
            .filter(|&i| {
                let m = &cfg.mirrors[i];
                !m.drained
                    && m.base_url.is_some()
                    && cfg
                        .services
                        .iter()
                        .any(|s| s.mirrors.contains(&i) && st.releases_of(s, now).contains(&r))
            })
            .collect();
        if needed
            .iter()
            .all(|&i| st.mirrors[i].verified.contains_key(&cur))
        {
            let since = rel.changed_at.unwrap_or(now);
            let took = now.duration_since(since).unwrap_or_default();
            info!(release = %r, seconds = took.as_secs_f64(), "release verified on every mirror");
            if let Some(rel) = st.releases.get_mut(&r) {
                rel.ready_at = Some(now);
            }
        }
    }
}
