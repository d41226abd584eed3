//! The prober's tasks: the origin task, one task per probed mirror, and the coordinator. Each
//! reads the config in force from the shared view when it takes the lock, so that a reload
//! can keep it running (see [`super::Health::reconfigure`]).

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::state::{self, HealthState, MirrorState, StateFile};
use super::verify::fetch_manifest;
use super::{MirrorCounters, Publisher, Shared, View, http, integrity, lock, reason};
use crate::config::{Config, HealthConfig};
use crate::routing::HealthSnapshot;

/// Sleeps `d` with up to ±10 % jitter, or until `token` is cancelled. False when cancelled.
pub(super) async fn pause(token: &CancellationToken, d: Duration) -> bool {
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

pub(super) async fn origin_task(sh: Arc<Shared>, client: http::Endpoint, token: CancellationToken) {
    loop {
        // Configured releases plus any on-call pins, looked at again every round, from the
        // config in force (a reload keeps this task when only the releases change).
        let (cfg, mut releases) = {
            let v = lock(&sh.view);
            let now = SystemTime::now();
            let releases: Vec<String> = v
                .cfg
                .services
                .iter()
                .flat_map(|s| {
                    v.st.releases_of(s, now)
                        .into_iter()
                        .chain(s.releases.clone())
                        .chain(s.archive.clone())
                })
                .collect();
            (v.cfg.clone(), releases)
        };
        releases.sort();
        releases.dedup();
        for r in &releases {
            let started = SystemTime::now();
            let res = tokio::select! {
                _ = token.cancelled() => return,
                r = fetch_manifest(&client, &cfg, r) => r,
            };
            let mut v = lock(&sh.view);
            let rel = v.st.releases.entry((*r).clone()).or_default();
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
                        sh.counters.signature_failures.fetch_add(1, Relaxed);
                    }
                    sh.counters.manifest_failures.fetch_add(1, Relaxed);
                    let msg = e.to_string();
                    if rel.last_error.as_deref() != Some(&msg) {
                        warn!(release = %r, error = %msg, "manifest rejected; the last good one stays in force");
                    }
                    rel.last_error = Some(msg);
                }
            }
        }
        lock(&sh.view).st.origin_done = true;
        sh.origin_fetched.notify_waiters();
        sh.notify.notify_one();
        let nudged = sh.origin_nudge.notified();
        tokio::select! {
            _ = nudged => {},
            go_on = pause(&token, cfg.health.interval) => if !go_on {
                return;
            },
        }
    }
}

/// The path a liveness probe fetches: the first required manifest, else the base URL.
pub(super) fn liveness_path(cfg: &Config, mirror: usize) -> String {
    cfg.services
        .iter()
        .filter(|s| s.mirrors.contains(&mirror))
        .flat_map(|s| s.releases.first())
        .next()
        .cloned()
        .unwrap_or_default()
}

/// One probed mirror's task and what it works with.
pub(super) struct MirrorTask {
    pub sh: Arc<Shared>,
    /// The mirror's name: its index in the config in force is looked up by it.
    pub name: String,
    /// `[health]` as the task started (a change starts every task again).
    pub hc: HealthConfig,
    pub probe_path: String,
    pub ep: http::Endpoint,
    /// Cancelled when this task alone is stopped (a reload that changed or removed the
    /// mirror), or with every other task.
    pub token: CancellationToken,
    pub counters: Arc<MirrorCounters>,
}

impl MirrorTask {
    /// The shared view and this mirror's index in it; None once its mirror has left the
    /// config (the task is being stopped).
    pub(super) fn view(&self) -> Option<(MutexGuard<'_, View>, usize)> {
        let v = lock(&self.sh.view);
        let i = v.position(&self.name)?;
        Some((v, i))
    }

    /// Runs `f` until it completes or the task is stopped (None).
    pub(super) async fn unless_stopped<T>(&self, f: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            _ = self.token.cancelled() => None,
            r = f => Some(r),
        }
    }
}

pub(super) async fn mirror_task(t: MirrorTask, stagger: Duration) {
    let hc = &t.hc;
    if !pause(&t.token, stagger).await {
        return;
    }
    let Ok(probe_url) = t.ep.url(&t.probe_path) else {
        warn!(mirror = %t.name, "cannot form the liveness URL; not probing");
        return;
    };
    let mut spot = 0usize;
    loop {
        // Liveness.
        let started = std::time::Instant::now();
        let Some(outcome) = t.unless_stopped(t.ep.alive(&probe_url, hc.timeout)).await else {
            return;
        };
        let result = outcome
            .as_ref()
            .map(|_| "ok")
            .unwrap_or_else(|e| e.reason());
        t.counters.probe(result, started.elapsed());
        let error = outcome.err().map(|e| reason::unreachable(&e));
        let (came_back, live, origin_done) = {
            let Some((mut v, i)) = t.view() else { return };
            let h = &mut v.st.mirrors[i];
            let came_back = h.probed(
                error,
                started.elapsed(),
                SystemTime::now(),
                (hc.rise, hc.fall),
            );
            (came_back, h.live == Some(true), v.st.origin_done)
        };
        if came_back {
            info!(mirror = %t.name, "back up; re-verifying its releases");
        }
        t.sh.notify.notify_one();
        if live {
            // Wait (bounded) for the origin's first manifests so there is something to verify.
            if !origin_done {
                let wait = t.sh.origin_fetched.notified();
                let bounded = tokio::time::timeout(hc.interval, wait);
                if t.unless_stopped(bounded).await.is_none() {
                    return;
                }
            }
            integrity::spot_check(&t, &mut spot).await;
            integrity::run(&t).await;
        }
        {
            let Some((mut v, _)) = t.view() else { return };
            let v = &mut *v;
            rounds_done(&mut v.st, &v.cfg);
        }
        t.sh.notify.notify_one();
        if !pause(&t.token, hc.interval).await {
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

pub(super) async fn coordinator(sh: Arc<Shared>, publish: Publisher, token: CancellationToken) {
    let mut last: Option<HealthSnapshot> = None;
    let mut last_admin: Option<Arc<crate::admin::AdminState>> = None;
    let mut shown: HashMap<String, MirrorState> = HashMap::new();
    loop {
        tokio::select! {
            _ = token.cancelled() => break,
            _ = sh.notify.notified() => {},
        }
        // Debounce: a burst of changes becomes one swap.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = SystemTime::now();
        let (snap, file, admin) = {
            let mut v = lock(&sh.view);
            let View { cfg, st } = &mut *v;
            for (i, m) in cfg.mirrors.iter().enumerate() {
                let s = state::mirror_state(cfg, st, i);
                if shown.get(&m.name) != Some(&s) {
                    let reason = st.mirrors[i].reason();
                    info!(mirror = %m.name, state = %s.as_str(), %reason, "mirror state");
                    shown.insert(m.name.clone(), s);
                }
            }
            readiness(cfg, st, now);
            let snap = state::snapshot(cfg, st, now);
            let file = cfg
                .health
                .state_file
                .as_ref()
                .map(|p| (p.clone(), StateFile::from_state(cfg, st, now)));
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
    // Stopped: one last write so that the next start knows what we knew.
    let file = {
        let v = lock(&sh.view);
        v.cfg.health.state_file.as_ref().map(|p| {
            (
                p.clone(),
                StateFile::from_state(&v.cfg, &v.st, SystemTime::now()),
            )
        })
    };
    if let Some((path, f)) = file
        && let Err(e) = f.write(&path)
    {
        warn!(file = %path.display(), error = %e, "cannot write the state file");
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
