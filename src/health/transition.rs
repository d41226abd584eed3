//! How what a probe or a verification found moves a mirror's state: pure functions of the
//! state, the finding and the time, tested transition by transition without a network. The
//! tasks in `health` do the I/O around them and log and count what they return.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use super::http::{ProbeError, Validators};
use super::reason;
use super::state::{MirrorHealth, Mismatch, ShortFile, Verified, WrongFile};
use super::verify::ReleaseOutcome;
use crate::manifest::{Manifest, release_dir};

/// What a round does about a mirror that served wrong bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum MismatchStep<'a> {
    /// Verify it again now: the retry time has passed, or a repair is under way.
    Verify,
    /// HEAD this path (the wrong file) first; [`Mismatch::looked`] then decides.
    Look(&'a str),
    /// Nothing cheap to look at (the file is not known, or the server sends no validators):
    /// wait for the retry time.
    Wait,
}

/// What a HEAD of the wrong file showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Look {
    Sent(Validators),
    /// 404: the file was taken away, most likely to be replaced.
    Gone,
    /// No answer worth acting on (timeout, connection refused): liveness deals with those.
    Failed,
}

impl Mismatch {
    /// The retry time is the safety net: a full verification for servers whose validators
    /// say nothing (no ETag, Last-Modified or length). A cheap look each round catches the
    /// usual repair, the file replaced, in one interval.
    pub fn step(&self, now: SystemTime, retry: Duration) -> MismatchStep<'_> {
        if self.repairing || now.duration_since(self.at).unwrap_or_default() >= retry {
            return MismatchStep::Verify;
        }
        match &self.file {
            Some(f) if f.seen != Validators::default() => MismatchStep::Look(&f.path),
            _ => MismatchStep::Wait,
        }
    }

    /// Whether the wrong file was replaced or removed since it was read: then the mirror is
    /// verified at once, and every round after until it verifies or shows wrong bytes again
    /// (a repair by a sync tool passes through files cut short and missing).
    pub fn looked(&mut self, look: &Look) -> bool {
        let changed = match (look, &self.file) {
            (Look::Gone, _) => true,
            (Look::Sent(now), Some(f)) => now.differs_from(&f.seen),
            _ => false,
        };
        self.repairing |= changed;
        changed
    }
}

/// One verification of one release content on a mirror, with what deciding needs.
pub struct Checked<'a> {
    pub manifest: &'a Manifest,
    /// The content the release path had before, if it changed while we watched.
    pub previous: Option<&'a Manifest>,
    /// When the release's content changed at the origin: a lag is counted from then.
    pub changed_at: Option<SystemTime>,
    pub outcome: ReleaseOutcome,
    /// Wrong bytes were read, but the origin has published other content since: the mirror
    /// synced before we saw the change, which is not a mismatch.
    pub superseded: bool,
    /// Files that matched so far (kept, so that the next round fetches only the rest).
    pub done: HashMap<String, Validators>,
    /// The file found short last round, if any.
    pub short_before: Option<ShortFile>,
    /// Versions the mirror is known to hold, for the reason text.
    pub has: Vec<String>,
}

/// What [`MirrorHealth::apply`] decided, for the caller's logs and counters.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    Verified,
    /// Wrong bytes: out of every answer until it verifies.
    Mismatch,
    /// A file shorter than its manifest entry (`first`: not the same as last round's).
    Incomplete {
        first: bool,
    },
    /// Anything else that leaves the content unverified: behind, missing, unreachable.
    Unverified,
}

impl MirrorHealth {
    /// Applies one liveness probe at `now` (`error`: why it failed); true when the mirror came
    /// back after being down. What it serves then may be anything, so what it had verified is
    /// forgotten.
    pub fn probed(
        &mut self,
        error: Option<String>,
        latency: Duration,
        now: SystemTime,
        (rise, fall): (u32, u32),
    ) -> bool {
        self.last_probe = Some(now);
        self.last_latency = Some(latency);
        let ok = error.is_none();
        if error.is_some() {
            self.last_error = error;
        }
        let was = self.live;
        let came_back = self.record_probe(ok, rise, fall) == Some(true) && was == Some(false);
        if came_back {
            self.verified.clear();
            self.partial.clear();
            self.short.clear();
        }
        came_back
    }

    /// Applies one verification of one release content at `now`.
    pub fn apply(&mut self, c: Checked, now: SystemTime) -> Applied {
        let m = c.manifest;
        let lag_from = c.changed_at.unwrap_or(now);
        match c.outcome {
            ReleaseOutcome::Verified(files) => {
                self.verified.insert(m.digest, Verified { at: now, files });
                if let Some(p) = c.previous {
                    self.verified.remove(&p.digest);
                }
                Applied::Verified
            }
            ReleaseOutcome::Previous { file } => {
                // It does not hold this content (any more). With the new manifest over old
                // files it holds the previous content only in part: no lag grace on it.
                self.verified.remove(&m.digest);
                if let (Some(_), Some(p)) = (&file, c.previous) {
                    self.verified.remove(&p.digest);
                }
                self.lag_since.get_or_insert(lag_from);
                self.last_error = Some(reason::previous(m, c.previous, file.as_deref()));
                // The files that already match stay matched: the sync is under way.
                self.partial.insert(m.digest, c.done);
                Applied::Unverified
            }
            ReleaseOutcome::Failed { error, mismatch } => {
                let mismatch = mismatch && !c.superseded;
                let text = reason::failed(&error, m, &c.has, c.superseded);
                self.last_error = Some(text.clone());
                // Bytes other than the manifest's, even if not called a mismatch: this content
                // is not held; and a file cut short was overwritten in place, so the previous
                // content is not whole either (no lag grace on it).
                if error.is_mismatch() || error.is_syncing() {
                    self.verified.remove(&m.digest);
                }
                if let (ProbeError::Short { .. }, Some(p)) = (&error, c.previous) {
                    self.verified.remove(&p.digest);
                }
                if mismatch {
                    self.mismatch = Some(Mismatch {
                        digest: m.digest,
                        at: now,
                        reason: text,
                        file: wrong_file(m, &error),
                        repairing: false,
                    });
                    return Applied::Mismatch;
                }
                // A sync in progress: the mirror lags, and is looked at again next round
                // rather than kept out for the mismatch retry time. A short file is
                // remembered, so that a HEAD can tell next round whether it grew.
                let mut applied = Applied::Unverified;
                if let ProbeError::Short {
                    path,
                    expected,
                    got,
                } = &error
                {
                    let short = ShortFile {
                        path: path.clone(),
                        expected: *expected,
                        got: *got,
                    };
                    applied = Applied::Incomplete {
                        first: c.short_before.as_ref() != Some(&short),
                    };
                    self.short.insert(m.digest, short);
                }
                let missing = matches!(error, ProbeError::Status { status: 404, .. });
                if missing
                    || error.is_syncing()
                    || c.previous
                        .is_some_and(|p| self.verified.contains_key(&p.digest))
                {
                    self.lag_since.get_or_insert(lag_from);
                }
                // Keep what matched so far; only the rest is fetched next round.
                self.partial.insert(m.digest, c.done);
                applied
            }
        }
    }

    /// Ends a round of verifications; `clean` when every one verified.
    pub fn end_round(&mut self, clean: bool) {
        self.verifying = false;
        if clean {
            self.mismatch = None;
            self.lag_since = None;
            self.last_error = None;
        }
    }
}

/// The wrong file of a mismatch, with what the mirror sent with it.
fn wrong_file(m: &Manifest, e: &ProbeError) -> Option<WrongFile> {
    let (ProbeError::Hash { path, seen, .. } | ProbeError::Size { path, seen, .. }) = e else {
        return None;
    };
    // The manifest's own path is the release path; files are named relative to its directory.
    let path = if *path == m.release {
        path.clone()
    } else {
        format!("{}{path}", release_dir(&m.release))
    };
    Some(WrongFile {
        path,
        seen: (**seen).clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: SystemTime = SystemTime::UNIX_EPOCH;
    const RETRY: Duration = Duration::from_secs(300);

    fn at(secs: u64) -> SystemTime {
        T0 + Duration::from_secs(secs)
    }

    fn manifest(version: &str, digest: u8) -> Manifest {
        Manifest {
            release: "tool/stable/manifest.json".into(),
            version: version.into(),
            published: None,
            files: Vec::new(),
            digest: [digest; 32],
        }
    }

    fn etag(tag: &str) -> Validators {
        Validators {
            etag: Some(tag.into()),
            last_modified: None,
            length: Some(100),
        }
    }

    fn hash_error(seen: Validators) -> ProbeError {
        ProbeError::Hash {
            path: "tool.tar.gz".into(),
            expected: "ab".into(),
            actual: "cd".into(),
            seen: Box::new(seen),
        }
    }

    fn checked<'a>(m: &'a Manifest, outcome: ReleaseOutcome) -> Checked<'a> {
        Checked {
            manifest: m,
            previous: None,
            changed_at: None,
            outcome,
            superseded: false,
            done: HashMap::new(),
            short_before: None,
            has: Vec::new(),
        }
    }

    fn failed(error: ProbeError, mismatch: bool) -> ReleaseOutcome {
        ReleaseOutcome::Failed { error, mismatch }
    }

    /// A live mirror found with wrong bytes in `tool.tar.gz` (ETag "a") at T0.
    fn mismatched(m: &Manifest) -> MirrorHealth {
        let mut h = MirrorHealth {
            live: Some(true),
            ..MirrorHealth::default()
        };
        let applied = h.apply(checked(m, failed(hash_error(etag("a")), true)), T0);
        assert_eq!(applied, Applied::Mismatch);
        h
    }

    #[test]
    fn wrong_bytes_are_a_mismatch_with_the_file_to_watch() {
        let m = manifest("v1", 1);
        let h = mismatched(&m);
        let mm = h.mismatch.as_ref().unwrap();
        assert_eq!(
            mm.file,
            Some(WrongFile {
                path: "tool/stable/tool.tar.gz".into(),
                seen: etag("a"),
            })
        );
        assert!(
            mm.reason
                .starts_with("wrong bytes in v1: tool.tar.gz: sha256 mismatch")
        );
        assert!(!mm.repairing);
    }

    #[test]
    fn a_mismatch_that_stays_costs_a_look_per_round_until_the_retry_time() {
        let m = manifest("v1", 1);
        let mut h = mismatched(&m);
        let mm = h.mismatch.as_mut().unwrap();
        assert_eq!(
            mm.step(at(10), RETRY),
            MismatchStep::Look("tool/stable/tool.tar.gz")
        );
        assert!(!mm.looked(&Look::Sent(etag("a"))), "same file");
        assert!(!mm.looked(&Look::Failed), "no answer says nothing");
        assert_eq!(
            mm.step(at(299), RETRY),
            MismatchStep::Look("tool/stable/tool.tar.gz")
        );
        assert_eq!(mm.step(at(300), RETRY), MismatchStep::Verify, "safety net");
    }

    #[test]
    fn a_replaced_or_removed_wrong_file_is_verified_at_once() {
        let m = manifest("v1", 1);
        for look in [Look::Sent(etag("b")), Look::Gone] {
            let mut h = mismatched(&m);
            let mm = h.mismatch.as_mut().unwrap();
            assert!(mm.looked(&look), "{look:?}");
            assert_eq!(mm.step(at(10), RETRY), MismatchStep::Verify);
        }
    }

    #[test]
    fn without_validators_only_the_retry_time_rechecks() {
        let m = manifest("v1", 1);
        let mut h = MirrorHealth::default();
        h.apply(
            checked(&m, failed(hash_error(Validators::default()), true)),
            T0,
        );
        let mm = h.mismatch.as_ref().unwrap();
        assert_eq!(mm.step(at(10), RETRY), MismatchStep::Wait);
        assert_eq!(mm.step(at(300), RETRY), MismatchStep::Verify);
        // Restored from a state file of an older version: no file known.
        let restored = Mismatch {
            file: None,
            ..mm.clone()
        };
        assert_eq!(restored.step(at(10), RETRY), MismatchStep::Wait);
    }

    #[test]
    fn a_repair_verifies_every_round_until_clean() {
        let m = manifest("v1", 1);
        let mut h = mismatched(&m);
        h.mismatch.as_mut().unwrap().looked(&Look::Sent(etag("b")));
        // The sync is still writing the file: still out, verified again next round.
        let short = ProbeError::Short {
            path: "tool.tar.gz".into(),
            expected: 100,
            got: 10,
        };
        let applied = h.apply(checked(&m, failed(short, false)), at(1));
        assert_eq!(applied, Applied::Incomplete { first: true });
        h.end_round(false);
        let mm = h.mismatch.as_ref().unwrap();
        assert!(mm.repairing);
        assert_eq!(mm.step(at(2), RETRY), MismatchStep::Verify);
        // Done: everything verifies, the mismatch goes.
        let applied = h.apply(checked(&m, ReleaseOutcome::Verified(HashMap::new())), at(3));
        assert_eq!(applied, Applied::Verified);
        h.end_round(true);
        assert!(h.mismatch.is_none() && h.last_error.is_none());
        assert!(h.verified.contains_key(&m.digest));
    }

    #[test]
    fn a_repair_that_shows_wrong_bytes_again_is_a_new_mismatch() {
        let m = manifest("v1", 1);
        let mut h = mismatched(&m);
        h.mismatch.as_mut().unwrap().looked(&Look::Sent(etag("b")));
        h.apply(checked(&m, failed(hash_error(etag("b")), true)), at(5));
        let mm = h.mismatch.as_ref().unwrap();
        assert!(!mm.repairing, "back to a look per round");
        assert_eq!(mm.at, at(5), "the retry time counts from the new finding");
        assert_eq!(mm.file.as_ref().unwrap().seen, etag("b"));
    }

    #[test]
    fn wrong_bytes_the_origin_has_replaced_since_are_a_sync_not_a_mismatch() {
        let m = manifest("v1", 1);
        let mut h = MirrorHealth::default();
        let mut c = checked(&m, failed(hash_error(etag("a")), true));
        c.superseded = true;
        assert_eq!(h.apply(c, T0), Applied::Unverified);
        assert!(h.mismatch.is_none());
        assert!(h.partial.contains_key(&m.digest));
    }

    #[test]
    fn a_short_file_lags_and_is_remembered() {
        let m = manifest("v2", 2);
        let p = manifest("v1", 1);
        let mut h = MirrorHealth::default();
        h.verified.insert(
            p.digest,
            Verified {
                at: T0,
                files: HashMap::new(),
            },
        );
        let short = ProbeError::Short {
            path: "tool.tar.gz".into(),
            expected: 100,
            got: 10,
        };
        let mut c = checked(&m, failed(short.clone(), false));
        c.previous = Some(&p);
        c.changed_at = Some(at(1));
        assert_eq!(h.apply(c, at(2)), Applied::Incomplete { first: true });
        assert_eq!(h.lag_since, Some(at(1)), "lag counts from the change");
        assert!(
            !h.verified.contains_key(&p.digest),
            "cut in place: the previous content is not whole"
        );
        let before = h.short.get(&m.digest).cloned();
        let mut c = checked(&m, failed(short, false));
        c.short_before = before;
        assert_eq!(h.apply(c, at(3)), Applied::Incomplete { first: false });
    }

    #[test]
    fn the_previous_release_lags_and_keeps_what_matched() {
        let m = manifest("v2", 2);
        let p = manifest("v1", 1);
        let mut h = MirrorHealth::default();
        let mut c = checked(&m, ReleaseOutcome::Previous { file: None });
        c.previous = Some(&p);
        c.done.insert("a".into(), Validators::default());
        assert_eq!(h.apply(c, at(2)), Applied::Unverified);
        assert_eq!(h.lag_since, Some(at(2)));
        assert_eq!(h.partial[&m.digest].len(), 1);
        assert_eq!(
            h.last_error.as_deref(),
            Some("does not have v2 yet: its tool/stable/manifest.json is still v1's")
        );
    }

    #[test]
    fn unreachable_during_verification_is_not_lag() {
        let m = manifest("v1", 1);
        let mut h = MirrorHealth::default();
        let e = ProbeError::Connect {
            url: "u".into(),
            detail: "refused".into(),
        };
        assert_eq!(
            h.apply(checked(&m, failed(e, false)), T0),
            Applied::Unverified
        );
        assert!(h.lag_since.is_none() && h.mismatch.is_none());
        h.end_round(false);
        assert!(
            h.last_error
                .as_deref()
                .unwrap()
                .starts_with("unreachable: ")
        );
    }

    #[test]
    fn coming_back_after_being_down_forgets_what_was_verified() {
        let m = manifest("v1", 1);
        let ms = Duration::from_millis(5);
        let mut h = MirrorHealth::default();
        assert!(!h.probed(None, ms, T0, (2, 2)));
        h.verified.insert(
            m.digest,
            Verified {
                at: T0,
                files: HashMap::new(),
            },
        );
        assert!(!h.probed(Some("down".into()), ms, at(1), (2, 2)));
        assert!(!h.probed(Some("down".into()), ms, at(2), (2, 2)));
        assert_eq!(h.live, Some(false));
        assert!(h.verified.contains_key(&m.digest), "kept while down");
        assert!(!h.probed(None, ms, at(3), (2, 2)));
        assert!(h.probed(None, ms, at(4), (2, 2)));
        assert!(h.verified.is_empty());
        assert_eq!(h.last_probe, Some(at(4)));
    }
}
