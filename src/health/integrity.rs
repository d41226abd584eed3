//! Integrity rounds for one mirror: verifying the releases it must hold against their
//! manifests, and cheap spot checks (HEAD) that a verified file has not changed since.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use super::state::{self, ShortFile, Verified};
use super::tasks::MirrorTask;
use super::transition::{Applied, Checked, Look, MismatchStep};
use super::verify::{ReleaseOutcome, Verifier};
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
pub(super) async fn spot_check(t: &MirrorTask, spot: &mut usize) {
    let target = {
        let Some((v, i)) = t.view() else { return };
        let h = &v.st.mirrors[i];
        let mut all: Vec<(&Manifest, &Verified)> =
            v.st.releases
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
    let Ok(url) = t.ep.url(&target.path) else {
        return;
    };
    let Some(head) = t
        .unless_stopped(http::head(&t.ep, &url, t.hc.timeout))
        .await
    else {
        return;
    };
    let changed = match head {
        Ok(v) => (v.length.is_some_and(|l| l != target.size) || v.differs_from(&target.seen))
            .then(|| format!("{}: changed since it was verified", target.path)),
        Err(e @ http::ProbeError::Status { status: 404, .. }) => Some(e.to_string()),
        Err(_) => None,
    };
    if let Some(why) = changed {
        info!(mirror = %t.name, reason = %why, "spot check: re-verifying");
        let Some((mut v, i)) = t.view() else { return };
        v.st.mirrors[i].verified.remove(&target.digest);
        v.st.mirrors[i].partial.remove(&target.digest);
    }
}

/// Whether a mirror found with wrong bytes is verified this round (true when it has none):
/// at once when a HEAD shows the wrong file was replaced, else at the retry time.
async fn recheck_mismatch(t: &MirrorTask, retry: Duration) -> bool {
    let path = {
        let Some((v, i)) = t.view() else { return false };
        let Some(mm) = &v.st.mirrors[i].mismatch else {
            return true;
        };
        match mm.step(SystemTime::now(), retry) {
            MismatchStep::Verify => return true,
            MismatchStep::Wait => return false,
            MismatchStep::Look(path) => path.to_string(),
        }
    };
    let Ok(url) = t.ep.url(&path) else {
        return false;
    };
    let Some(head) = t
        .unless_stopped(http::head(&t.ep, &url, t.hc.timeout))
        .await
    else {
        return false;
    };
    let look = match head {
        Ok(v) => Look::Sent(v),
        Err(http::ProbeError::Status { status: 404, .. }) => Look::Gone,
        Err(_) => Look::Failed,
    };
    let Some((mut v, i)) = t.view() else {
        return false;
    };
    let Some(mm) = &mut v.st.mirrors[i].mismatch else {
        return true;
    };
    let changed = mm.looked(&look);
    if changed {
        info!(mirror = %t.name, file = %path, "the file with wrong bytes was replaced: verifying again");
    }
    changed
}

/// Verifies every required release the mirror has not verified (or whose `reverify` is due),
/// then, if it is clean, the archive releases it has not.
pub(super) async fn run(t: &MirrorTask) {
    let hc = &t.hc;
    // A full download each round would be a heavy price for a mirror that stays wrong: it
    // costs a HEAD per round, and a full verification at this retry time only.
    let mismatch_retry = hc.reverify.min(Duration::from_secs(300)).max(hc.interval);
    if !recheck_mismatch(t, mismatch_retry).await {
        return;
    }
    if required(t).await {
        archive(t, mismatch_retry).await;
    }
}

/// The required releases; whether the mirror is clean and the task goes on.
async fn required(t: &MirrorTask) -> bool {
    let hc = &t.hc;
    let now = SystemTime::now();
    let todo: Vec<(Arc<Manifest>, Option<Arc<Manifest>>)> = {
        let Some((mut v, i)) = t.view() else {
            return false;
        };
        let mut todo = Vec::new();
        for (r, _) in state::required_digests(&v.cfg, &v.st, i) {
            let Some(rel) = v.st.releases.get(&r) else {
                continue;
            };
            let Some(cur) = rel.current.clone() else {
                continue;
            };
            let due = match v.st.mirrors[i].verified.get(&cur.digest) {
                None => true,
                Some(ver) => now.duration_since(ver.at).unwrap_or_default() >= hc.reverify,
            };
            if due {
                todo.push((cur, rel.previous.clone()));
            }
        }
        // What was kept for content no longer required (replaced at the origin) goes.
        let required = !state::required_digests(&v.cfg, &v.st, i).is_empty();
        let archive: Vec<state::Digest> = super::files::archive_manifests(&v.cfg, &v.st, i, now)
            .iter()
            .map(|m| m.digest)
            .collect();
        let h = &mut v.st.mirrors[i];
        h.short
            .retain(|d, _| todo.iter().any(|(m, _)| m.digest == *d));
        h.partial
            .retain(|d, _| todo.iter().any(|(m, _)| m.digest == *d) || archive.contains(d));
        h.archive_tried.retain(|d, _| archive.contains(d));
        if todo.is_empty() {
            h.lag_since = None;
            if required {
                // Everything required verified since the mismatch: the mirror is clean again.
                h.mismatch = None;
            }
            return h.mismatch.is_none();
        }
        h.verifying = true;
        todo
    };
    t.sh.notify.notify_one();
    let mut clean = true;
    for (m, previous) in todo {
        let Some(clean_so_far) = verify_one(t, &m, previous).await else {
            // Stopped: what was found so far stands; the next task (or start) goes on.
            if let Some((mut v, i)) = t.view() {
                v.st.mirrors[i].verifying = false;
            }
            return false;
        };
        clean &= clean_so_far;
    }
    if let Some((mut v, i)) = t.view() {
        v.st.mirrors[i].end_round(clean);
        return v.st.mirrors[i].mismatch.is_none();
    }
    false
}

/// Archive releases: verified file by file for the redirector, never required. Every file
/// is tried (a mirror may hold some), what matched is kept, and what did not is tried again
/// at `retry`, not each round. Wrong bytes here keep that file from being redirected to;
/// they do not take the mirror out of DNS answers, which never serve archive releases.
async fn archive(t: &MirrorTask, retry: Duration) {
    let now = SystemTime::now();
    let todo: Vec<Arc<Manifest>> = {
        let Some((v, i)) = t.view() else { return };
        let h = &v.st.mirrors[i];
        super::files::archive_manifests(&v.cfg, &v.st, i, now)
            .into_iter()
            .filter(|m| match h.verified.get(&m.digest) {
                Some(ver) => now.duration_since(ver.at).unwrap_or_default() >= t.hc.reverify,
                None => h
                    .archive_tried
                    .get(&m.digest)
                    .is_none_or(|(_, last)| now.duration_since(*last).unwrap_or_default() >= retry),
            })
            .collect()
    };
    for m in todo {
        let (mut done, since) = {
            let Some((mut v, i)) = t.view() else { return };
            let h = &mut v.st.mirrors[i];
            let kept = h.partial.remove(&m.digest).unwrap_or_default();
            match h.archive_tried.get(&m.digest) {
                // Files matched long ago are checked again, as a verified release would be.
                Some((first, _))
                    if now.duration_since(*first).unwrap_or_default() < t.hc.reverify =>
                {
                    (kept, *first)
                }
                _ => (Default::default(), now),
            }
        };
        let verifier = Verifier {
            ep: &t.ep,
            hc: &t.hc,
            downloads: &t.sh.downloads,
            keep_going: true,
        };
        let mut report = Vec::new();
        let Some(outcome) = t
            .unless_stopped(super::share::verify(
                t,
                &verifier,
                &m,
                None,
                &mut done,
                &mut report,
            ))
            .await
        else {
            return;
        };
        let Some((mut v, i)) = t.view() else { return };
        let h = &mut v.st.mirrors[i];
        let at = SystemTime::now();
        match outcome {
            ReleaseOutcome::Verified(files) => {
                h.verified.insert(m.digest, Verified { at, files });
                h.archive_tried.remove(&m.digest);
                drop(v);
                info!(mirror = %t.name, release = %m.release, version = %m.version, "archive release verified");
            }
            _ => {
                let matched = done.len();
                h.verified.remove(&m.digest);
                if !done.is_empty() {
                    h.partial.insert(m.digest, done);
                }
                h.archive_tried.insert(m.digest, (since, at));
                drop(v);
                info!(mirror = %t.name, release = %m.release, matched, files = m.files.len(), "archive release partly held");
            }
        }
        t.sh.notify.notify_one();
    }
}

/// Verifies one release content and applies what was found: whether it verified, or None if
/// the task was stopped first.
async fn verify_one(
    t: &MirrorTask,
    m: &Arc<Manifest>,
    previous: Option<Arc<Manifest>>,
) -> Option<bool> {
    let hc = &t.hc;
    let (mut done, short) = {
        let (mut v, i) = t.view()?;
        let h = &mut v.st.mirrors[i];
        (
            h.partial.remove(&m.digest).unwrap_or_default(),
            h.short.remove(&m.digest),
        )
    };
    let mut report = Vec::new();
    let checked = SystemTime::now();
    let outcome = t
        .unless_stopped(async {
            match &short {
                Some(s) if still_short(&t.ep, hc.timeout, m, s).await => ReleaseOutcome::Failed {
                    error: http::ProbeError::Short {
                        path: s.path.clone(),
                        expected: s.expected,
                        got: s.got,
                    },
                    mismatch: false,
                },
                _ => {
                    let v = Verifier {
                        ep: &t.ep,
                        hc,
                        downloads: &t.sh.downloads,
                        keep_going: false,
                    };
                    super::share::verify(t, &v, m, previous.as_deref(), &mut done, &mut report)
                        .await
                }
            }
        })
        .await?;
    // Wrong bytes against the origin's manifest as we last fetched it: the origin may have
    // published since, and the mirror synced first (wholly, or files before manifest). Only
    // if the origin still has this content after the check are they wrong. When the origin
    // cannot be fetched, the last good manifest stays in force.
    let superseded = match &outcome {
        ReleaseOutcome::Failed { mismatch: true, .. } => {
            t.unless_stopped(origin_still(&t.sh, m, checked, hc.timeout))
                .await?
                == Some(false)
        }
        _ => false,
    };
    let (mut v, i) = t.view()?;
    let changed_at = v.st.releases.get(&m.release).and_then(|r| r.changed_at);
    let has = state::verified_versions(&v.st, i);
    let h = &mut v.st.mirrors[i];
    let applied = h.apply(
        Checked {
            manifest: m,
            previous: previous.as_deref(),
            changed_at,
            outcome,
            superseded,
            done,
            short_before: short,
            has,
        },
        SystemTime::now(),
    );
    let reason = h.reason();
    drop(v);
    match applied {
        Applied::Verified => {
            info!(mirror = %t.name, release = %m.release, version = %m.version, "verified")
        }
        Applied::Mismatch => {
            t.counters.hash_mismatches.fetch_add(1, Relaxed);
            warn!(mirror = %t.name, release = %m.release, %reason, "integrity check failed: never routed until it verifies");
        }
        Applied::Incomplete { first: true } => {
            info!(mirror = %t.name, release = %m.release, %reason, "a file is incomplete: waiting for its sync");
        }
        Applied::Incomplete { first: false } | Applied::Unverified => {}
    }
    Some(applied == Applied::Verified)
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

/// Whether `m` is still the origin's content of its release as fetched after `since`: asks
/// the origin task for a fetch and waits for it (at most 4 x `timeout`). None when no fetch
/// succeeds in time (origin down, manifest rejected).
async fn origin_still(
    sh: &Shared,
    m: &Manifest,
    since: SystemTime,
    timeout: Duration,
) -> Option<bool> {
    let deadline = tokio::time::Instant::now() + timeout * 4;
    sh.origin_nudge.notify_one();
    loop {
        {
            let v = lock(&sh.view);
            if let Some(rel) = v.st.releases.get(&m.release)
                && rel.fetched_at.is_some_and(|f| f > since)
            {
                return Some(rel.current.as_ref().map(|c| c.digest) == Some(m.digest));
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        // A rare path (wrong bytes found): polling keeps it simple.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
