//! Verifying once per cluster: before downloading a release from a mirror, a peer's result
//! for the same mirror and manifest is looked for and, if the mirror still serves the files
//! it was made against (HEAD each: same validators), used instead; otherwise one instance at
//! a time (a Redis lock) downloads and hashes and publishes what it found.
//!
//! Without `[cluster]`, or while Redis cannot be reached, this is plain [`verify_release`].
//! Liveness probes never come here: reachability differs by vantage point.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime};

use tracing::{debug, info};

use super::http::{self, ProbeError, Validators};
use super::tasks::MirrorTask;
use super::verify::{FileResult, ReleaseOutcome, Verifier, verify_release};
use crate::cluster::record::{self, Expected, FileRecord, Outcome, Plan, Seen, VerifyRecord};
use crate::cluster::{Cluster, Lock};
use crate::manifest::{Manifest, release_dir};

/// How often a result is looked for while a peer holds the lock.
const WAIT_STEP: Duration = Duration::from_millis(250);

/// Verifies `m` on the task's mirror as [`verify_release`] does, through the cluster when
/// there is one. `done` holds files already matched (skipped) and, after, every file matched.
pub(super) async fn verify(
    t: &MirrorTask,
    v: &Verifier<'_>,
    m: &Manifest,
    previous: Option<&Manifest>,
    done: &mut HashMap<String, Validators>,
    report: &mut Vec<FileResult>,
) -> ReleaseOutcome {
    let Some(cluster) = t.sh.cluster.load_full() else {
        return verify_release(v, m, previous, done, report).await;
    };
    let digest = record::hex(&m.digest);
    // A peer that holds the lock longer than a whole download could take has stalled (or a
    // Redis writer holds it): verify alone rather than wait without end.
    let files = m.files.len().max(1) as u32;
    let wait_limit = t.hc.timeout + t.hc.download_timeout.saturating_mul(files);
    let started = tokio::time::Instant::now();
    let mut tried: Option<(String, u64)> = None;
    let mut waited = false;
    loop {
        if let Some(rec) = cluster.result(&t.name, &digest).await {
            let key = (rec.verified_by.clone(), rec.at);
            if tried.as_ref() != Some(&key) {
                tried = Some(key);
                match adopt(t, &cluster, &rec, m).await {
                    Ok(outcome) => {
                        cluster.counters.adopted.fetch_add(1, Relaxed);
                        if let ReleaseOutcome::Verified(_) = &outcome {
                            // As after a download: the outcome holds every file now.
                            done.clear();
                        }
                        info!(mirror = %t.name, release = %m.release, by = %rec.verified_by, outcome = ?rec.outcome, "adopted a peer's verification: the mirror serves the files it checked");
                        return outcome;
                    }
                    Err(why) => {
                        cluster.counters.not_adopted.fetch_add(1, Relaxed);
                        info!(mirror = %t.name, release = %m.release, by = %rec.verified_by, %why, "a peer's verification does not apply: verifying");
                    }
                }
            }
        }
        match cluster.lock(&t.name, &digest).await {
            Lock::Acquired(guard) => {
                let outcome = verify_release(v, m, previous, done, report).await;
                if let Some(rec) = record_of(t, &cluster, m, &outcome, done).await {
                    cluster
                        .publish(&rec, t.hc.reverify + Duration::from_secs(3600))
                        .await;
                }
                drop(guard);
                return outcome;
            }
            Lock::Held { by } => {
                if !waited {
                    waited = true;
                    cluster.counters.waited.fetch_add(1, Relaxed);
                    debug!(mirror = %t.name, release = %m.release, %by, "a peer is verifying: waiting for its result");
                }
                if started.elapsed() >= wait_limit {
                    info!(mirror = %t.name, release = %m.release, %by, "a peer has held the verification lock too long: verifying alone");
                    break;
                }
                tokio::time::sleep(WAIT_STEP).await;
            }
            Lock::Unavailable => break,
        }
    }
    verify_release(v, m, previous, done, report).await
}

/// Whether the mirror still serves what `rec` checked: a HEAD of each file (and of the
/// mirror's copy of the manifest) must show the validators the record has.
async fn adopt(
    t: &MirrorTask,
    cluster: &Cluster,
    rec: &VerifyRecord,
    m: &Manifest,
) -> Result<ReleaseOutcome, String> {
    if !cluster.trusts(rec) {
        return Err("not sealed with [cluster] secret".into());
    }
    let expected: Vec<Expected<'_>> = m
        .files
        .iter()
        .map(|f| Expected {
            path: &f.path,
            sha256: &f.sha256,
            size: f.size,
        })
        .collect();
    let now = crate::cluster::unix(SystemTime::now());
    let base = t.ep.url("").map(|u| u.to_string()).unwrap_or_default();
    let plan = record::plan(
        rec,
        &t.name,
        &base,
        &m.digest,
        &expected,
        now,
        t.hc.reverify.as_secs(),
    )
    .map_err(|e| e.to_string())?;
    let dir = release_dir(&m.release);
    let heads: Vec<(&FileRecord, String)> = match &plan {
        Plan::Verified(files) => files
            .iter()
            .map(|f| {
                let path = if std::ptr::eq(*f, &rec.manifest) {
                    m.release.clone()
                } else {
                    format!("{dir}{}", f.path)
                };
                (*f, path)
            })
            .collect(),
        Plan::Mismatch(f) => vec![(*f, format!("{dir}{}", f.path))],
    };
    let mut confirmed = HashMap::new();
    for (f, path) in heads {
        let url = t.ep.url(&path).map_err(|e| e.to_string())?;
        let seen = http::head(&t.ep, &url, t.hc.timeout)
            .await
            .map_err(|e| e.to_string())?;
        let as_seen = Seen {
            etag: seen.etag.clone(),
            last_modified: seen.last_modified.clone(),
            length: seen.length,
        };
        if !f.confirmed_by(&as_seen) {
            return Err(format!(
                "{path}: the mirror's validators differ from the record's"
            ));
        }
        if !std::ptr::eq(f, &rec.manifest) {
            confirmed.insert(f.path.clone(), seen);
        }
    }
    Ok(match plan {
        Plan::Verified(_) => ReleaseOutcome::Verified(confirmed),
        Plan::Mismatch(f) => {
            let seen = confirmed.remove(&f.path).unwrap_or_default();
            let expected = m
                .files
                .iter()
                .find(|x| x.path == f.path)
                .map(|x| record::hex(&x.sha256))
                .unwrap_or_default();
            ReleaseOutcome::Failed {
                error: ProbeError::Hash {
                    path: f.path.clone(),
                    expected,
                    actual: f.sha256.clone(),
                    seen: Box::new(seen),
                },
                mismatch: true,
            }
        }
    })
}

fn file_record(path: &str, sha256: String, ok: bool, v: &Validators) -> FileRecord {
    FileRecord {
        path: path.to_string(),
        sha256,
        ok,
        etag: v.etag.clone(),
        last_modified: v.last_modified.clone(),
        length: v.length,
    }
}

/// What this instance found, for the peers: a full verification, or wrong bytes in a file.
/// Anything else (unreachable, short, the previous release still there) depends on the
/// moment or the vantage point, and each instance finds it for itself.
async fn record_of(
    t: &MirrorTask,
    cluster: &Cluster,
    m: &Manifest,
    outcome: &ReleaseOutcome,
    done: &HashMap<String, Validators>,
) -> Option<VerifyRecord> {
    let (outcome, files) = match outcome {
        ReleaseOutcome::Verified(files) => {
            let list = m
                .files
                .iter()
                .map(|f| {
                    files
                        .get(&f.path)
                        .map(|v| file_record(&f.path, record::hex(&f.sha256), true, v))
                })
                .collect::<Option<Vec<_>>>()?;
            (Outcome::Verified, list)
        }
        // Wrong bytes in a file the manifest lists, not in the mirror's manifest copy.
        ReleaseOutcome::Failed {
            error: ProbeError::Hash {
                path, actual, seen, ..
            },
            mismatch: true,
        } if m.files.iter().any(|f| &f.path == path) => {
            let mut list: Vec<FileRecord> = m
                .files
                .iter()
                .filter_map(|f| {
                    done.get(&f.path)
                        .map(|v| file_record(&f.path, record::hex(&f.sha256), true, v))
                })
                .collect();
            list.push(file_record(path, actual.clone(), false, seen));
            (Outcome::Mismatch, list)
        }
        _ => return None,
    };
    // The mirror's copy of the manifest was fetched and hashed by `verify_release`; its
    // validators come from a HEAD, so that a peer can confirm it without a download.
    let murl = t.ep.url(&m.release).ok()?;
    let mv = http::head(&t.ep, &murl, t.hc.timeout).await.ok()?;
    Some(VerifyRecord {
        format: record::FORMAT,
        mirror: t.name.clone(),
        base_url: t.ep.url("").ok()?.to_string(),
        release: m.release.clone(),
        manifest_sha256: record::hex(&m.digest),
        outcome,
        verified_by: cluster.name().to_string(),
        at: crate::cluster::unix(SystemTime::now()),
        manifest: file_record(&m.release, record::hex(&m.digest), true, &mv),
        files,
        mac: None,
    })
}
