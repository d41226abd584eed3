//! Integrity rounds for one mirror: verifying the releases it must hold against their
//! manifests, and cheap spot checks (HEAD) that a verified file has not changed since.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use super::state::{self, Mismatch, ShortFile, Verified};
use super::verify::{ReleaseOutcome, verify_release};
use super::{Shared, http, lock};
use crate::manifest::Manifest;

/// One verified file to spot-check.
#[derive(Clone)]
struct SpotTarget {
    path: String,
    size: u64,
    digest: state::Digest,
    seen: http::Validators,
}

/// HEAD one verified file (rotating) and drop the verification if it changed.
pub(super) async fn spot_check(sh: &Shared, i: usize, ep: &http::Endpoint, spot: &mut usize) {
    let target = {
        let st = lock(&sh.state);
        let h = &st.mirrors[i];
        let mut all: Vec<(&Manifest, &Verified)> = st
            .releases
            .values()
            .filter_map(|r| r.current.as_deref())
            .filter_map(|m| h.verified.get(&m.digest).map(|v| (m, v)))
            .collect();
        all.sort_by(|a, b| a.0.release.cmp(&b.0.release));
        let files: Vec<SpotTarget> = all
            .iter()
            .flat_map(|(m, v)| {
                m.files.iter().filter_map(move |f| {
                    Some(SpotTarget {
                        path: format!("{}{}", crate::manifest::release_dir(&m.release), f.path),
                        size: f.size?,
                        digest: m.digest,
                        seen: v.files.get(&f.path)?.clone(),
                    })
                })
            })
            .collect();
        if files.is_empty() {
            return;
        }
        *spot = (*spot + 1) % files.len();
        files[*spot].clone()
    };
    let Ok(url) = ep.url(&target.path) else {
        return;
    };
    let seen = &target.seen;
    let changed = match http::head(ep, &url, sh.config.health.timeout).await {
        Ok(v) => {
            let len_changed = v.length.is_some_and(|l| l != target.size);
            let etag_changed = seen.etag.is_some() && v.etag.is_some() && seen.etag != v.etag;
            let lm_changed = seen.last_modified.is_some()
                && v.last_modified.is_some()
                && seen.last_modified != v.last_modified;
            (len_changed || etag_changed || lm_changed)
                .then(|| format!("{}: changed since it was verified", target.path))
        }
        Err(e @ http::ProbeError::Status { status: 404, .. }) => Some(e.to_string()),
        Err(_) => None,
    };
    if let Some(why) = changed {
        info!(mirror = %sh.config.mirrors[i].name, reason = %why, "spot check: re-verifying");
        let mut st = lock(&sh.state);
        st.mirrors[i].verified.remove(&target.digest);
        st.mirrors[i].partial.remove(&target.digest);
    }
}

/// Verifies every required release the mirror has not verified (or whose `reverify` is due).
pub(super) async fn run(sh: &Shared, i: usize, ep: &http::Endpoint) {
    let cfg = &sh.config;
    let hc = &cfg.health;
    let mirror = &cfg.mirrors[i];
    let now = SystemTime::now();
    // Wrong bytes are retried, but not every round: a full download each interval would be
    // a heavy price for a mirror that stays broken.
    let mismatch_retry = hc.reverify.min(Duration::from_secs(300)).max(hc.interval);
    let todo: Vec<(Arc<Manifest>, Option<Arc<Manifest>>)> = {
        let st = lock(&sh.state);
        let h = &st.mirrors[i];
        if let Some(mm) = &h.mismatch
            && now.duration_since(mm.at).unwrap_or_default() < mismatch_retry
        {
            return;
        }
        let mut v = Vec::new();
        for (r, _) in state::required_digests(cfg, &st, i) {
            let Some(rel) = st.releases.get(&r) else {
                continue;
            };
            let Some(cur) = rel.current.clone() else {
                continue;
            };
            let due = match h.verified.get(&cur.digest) {
                None => true,
                Some(ver) => now.duration_since(ver.at).unwrap_or_default() >= hc.reverify,
            };
            if due {
                v.push((cur, rel.previous.clone()));
            }
        }
        v
    };
    if todo.is_empty() {
        let mut st = lock(&sh.state);
        st.mirrors[i].lag_since = None;
        if st.mirrors[i].mismatch.is_some() && !state::required_digests(cfg, &st, i).is_empty() {
            // Everything required verified since the mismatch: the mirror is clean again.
            st.mirrors[i].mismatch = None;
        }
        return;
    }
    lock(&sh.state).mirrors[i].verifying = true;
    sh.notify.notify_one();
    let mut clean = true;
    for (m, previous) in todo {
        let mut done = lock(&sh.state).mirrors[i]
            .partial
            .remove(&m.digest)
            .unwrap_or_default();
        let mut report = Vec::new();
        let short = lock(&sh.state).mirrors[i].short.remove(&m.digest);
        let outcome = tokio::select! {
            _ = sh.token.cancelled() => break,
            o = async {
                match &short {
                    Some(s) if still_short(ep, hc.timeout, &m, s).await => ReleaseOutcome::Failed {
                        error: http::ProbeError::Short {
                            path: s.path.clone(),
                            expected: s.expected,
                            got: s.got,
                        },
                        mismatch: false,
                    },
                    _ => verify_release(ep, hc, &m, previous.as_deref(), &mut done, &sh.downloads, false, &mut report).await,
                }
            } => o,
        };
        let mut st = lock(&sh.state);
        let changed_at = st.releases.get(&m.release).and_then(|r| r.changed_at);
        let origin_fetched = st.releases.get(&m.release).and_then(|r| r.fetched_at);
        let h = &mut st.mirrors[i];
        match outcome {
            ReleaseOutcome::Verified(files) => {
                h.doubt.remove(&m.digest);
                info!(mirror = %mirror.name, release = %m.release, version = %m.version, "verified");
                h.verified.insert(
                    m.digest,
                    Verified {
                        at: SystemTime::now(),
                        files,
                    },
                );
                if let Some(p) = &previous {
                    h.verified.remove(&p.digest);
                }
            }
            ReleaseOutcome::Previous { file } => {
                clean = false;
                h.lag_since.get_or_insert(changed_at.unwrap_or(now));
                h.last_error = Some(match file {
                    None => format!("{}: still the previous release", m.release),
                    Some(f) => format!(
                        "{}: the new manifest is there, but {f} is still the previous release's",
                        m.release
                    ),
                });
                // The files that already match stay matched: the sync is under way.
                h.partial.insert(m.digest, done);
            }
            ReleaseOutcome::Failed {
                error,
                mut mismatch,
            } => {
                clean = false;
                h.last_error = Some(error.to_string());
                // Wrong bytes against the origin's manifest as we last fetched it: the origin
                // may have published since, and the mirror synced first (wholly, or the files
                // before the manifest). Look at the origin again before calling it wrong.
                if mismatch {
                    let since = *h.doubt.entry(m.digest).or_insert(now);
                    if origin_fetched.is_none_or(|f| f <= since) {
                        mismatch = false;
                        h.last_error = Some(format!(
                            "{error}; fetching the origin's manifest again before calling it a mismatch"
                        ));
                        sh.origin_nudge.notify_one();
                    }
                }
                if mismatch {
                    sh.counters.hash_mismatches[i].fetch_add(1, Relaxed);
                    warn!(mirror = %mirror.name, release = %m.release, error = %error, "integrity check failed: never routed until it verifies");
                    h.mismatch = Some(Mismatch {
                        digest: m.digest,
                        at: SystemTime::now(),
                        reason: error.to_string(),
                    });
                    h.verified.remove(&m.digest);
                } else {
                    let missing = matches!(error, http::ProbeError::Status { status: 404, .. });
                    // A short file is a sync in progress: the mirror lags, and is looked at
                    // again next round rather than kept out for the mismatch retry time.
                    let syncing = match &error {
                        http::ProbeError::Short {
                            path,
                            expected,
                            got,
                        } => {
                            let now_short = ShortFile {
                                path: path.clone(),
                                expected: *expected,
                                got: *got,
                            };
                            if short.as_ref() != Some(&now_short) {
                                info!(mirror = %mirror.name, release = %m.release, %error, "a file is incomplete: waiting for its sync");
                            }
                            h.short.insert(m.digest, now_short);
                            true
                        }
                        _ => false,
                    };
                    if missing
                        || syncing
                        || previous
                            .as_ref()
                            .is_some_and(|p| h.verified.contains_key(&p.digest))
                    {
                        h.lag_since.get_or_insert(changed_at.unwrap_or(now));
                    }
                    // Keep what matched so far; only the rest is fetched next round.
                    h.partial.insert(m.digest, done);
                }
            }
        }
    }
    let mut st = lock(&sh.state);
    let h = &mut st.mirrors[i];
    h.verifying = false;
    if clean {
        h.doubt.clear();
        h.mismatch = None;
        h.lag_since = None;
        h.last_error = None;
    }
}

/// Whether a file found short last round is still the same length (a HEAD, not a download):
/// a sync that stalled, or a mirror that keeps a cut copy, costs one request per round.
async fn still_short(ep: &http::Endpoint, timeout: Duration, m: &Manifest, s: &ShortFile) -> bool {
    let Ok(url) = ep.url(&format!(
        "{}{}",
        crate::manifest::release_dir(&m.release),
        s.path
    )) else {
        return false;
    };
    matches!(http::head(ep, &url, timeout).await, Ok(v) if v.length == Some(s.got))
}
