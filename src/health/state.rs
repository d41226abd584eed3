//! What the prober knows, as plain data, and the pure functions over it: liveness hysteresis,
//! per-service routability (the health snapshot the routing table is built from), each
//! mirror's displayed state, and the state file that carries all of it across restarts.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::http::Validators;
use crate::config::Config;
use crate::manifest::{Manifest, hex};
use crate::routing::{Eligibility, HealthSnapshot};

pub type Digest = [u8; 32];

/// A mirror's state as shown to operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MirrorState {
    Unknown,
    Verifying,
    Ready,
    Lagging,
    Mismatch,
    Down,
    Drained,
}

impl MirrorState {
    /// Every state, in the order `/metrics` lists them.
    pub const ALL: [MirrorState; 7] = [
        MirrorState::Unknown,
        MirrorState::Verifying,
        MirrorState::Ready,
        MirrorState::Lagging,
        MirrorState::Mismatch,
        MirrorState::Down,
        MirrorState::Drained,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MirrorState::Unknown => "unknown",
            MirrorState::Verifying => "verifying",
            MirrorState::Ready => "ready",
            MirrorState::Lagging => "lagging",
            MirrorState::Mismatch => "mismatch",
            MirrorState::Down => "down",
            MirrorState::Drained => "drained",
        }
    }
}

/// One release content verified on a mirror.
#[derive(Debug, Clone)]
pub struct Verified {
    pub at: SystemTime,
    /// Per file path: what the mirror sent with it, for spot checks.
    pub files: HashMap<String, Validators>,
}

/// Wrong bytes found on a mirror.
#[derive(Debug, Clone)]
pub struct Mismatch {
    pub digest: Digest,
    pub at: SystemTime,
    pub reason: String,
    /// The file that was wrong, when known: each round a HEAD of it shows whether someone has
    /// replaced it since, so that a repair is seen at once rather than at the retry time.
    pub file: Option<WrongFile>,
    /// The wrong file was replaced (or removed) since: the mirror is verified every round, as
    /// a lagging one is, until it verifies or shows wrong bytes again (a sync repairing it
    /// passes through files cut short or missing).
    pub repairing: bool,
}

/// A file found with wrong bytes, and what the mirror sent with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WrongFile {
    /// Under the mirror's base URL.
    pub path: String,
    pub seen: Validators,
}

/// A file found shorter than its manifest entry: most likely a sync writing it in place.
#[derive(Debug, Clone, PartialEq)]
pub struct ShortFile {
    pub path: String,
    pub expected: u64,
    pub got: u64,
}

#[derive(Debug, Clone, Default)]
pub struct MirrorHealth {
    /// None until the first liveness probe.
    pub live: Option<bool>,
    pub successes: u32,
    pub failures: u32,
    pub last_probe: Option<SystemTime>,
    pub last_latency: Option<Duration>,
    pub last_error: Option<String>,
    pub verified: HashMap<Digest, Verified>,
    pub mismatch: Option<Mismatch>,
    pub verifying: bool,
    /// Files of a release in progress that already matched (so a lagging mirror's retries
    /// download only what is still missing).
    pub partial: HashMap<Digest, HashMap<String, Validators>>,
    /// Per release content: the file found short last round, so the next round can see with
    /// a HEAD whether it grew before downloading it again.
    pub short: HashMap<Digest, ShortFile>,
    /// When this mirror's lag began (it lacked a current release), if it is lagging.
    pub lag_since: Option<SystemTime>,
    /// Archive contents this mirror did not wholly verify: when the files matched so far (in
    /// `partial`) were first checked, and when it was last tried. A mirror without them is
    /// not penalised, only tried again at the mismatch retry time; what matched is checked
    /// again from scratch once it is `reverify` old, as a verified release is.
    pub archive_tried: HashMap<Digest, (SystemTime, SystemTime)>,
}

impl MirrorHealth {
    /// Why the mirror is not ready, as an operator reads it: the mismatch found (and how its
    /// repair is going), else the last error (empty when there is none).
    pub fn reason(&self) -> String {
        match (&self.mismatch, &self.last_error) {
            (Some(m), Some(now)) if m.repairing && *now != m.reason => {
                format!("{}; being repaired: {now}", m.reason)
            }
            (Some(m), _) => m.reason.clone(),
            (None, e) => e.clone().unwrap_or_default(),
        }
    }

    /// Applies one liveness result with hysteresis; returns the new liveness if it changed.
    /// The very first result decides at once, so a cold start does not wait `rise` rounds.
    pub fn record_probe(&mut self, ok: bool, rise: u32, fall: u32) -> Option<bool> {
        if ok {
            self.successes += 1;
            self.failures = 0;
        } else {
            self.failures += 1;
            self.successes = 0;
        }
        let new = match (self.live, ok) {
            (None, x) => Some(x),
            (Some(false), true) if self.successes >= rise => Some(true),
            (Some(true), false) if self.failures >= fall => Some(false),
            _ => None,
        };
        if let Some(n) = new {
            self.live = Some(n);
        }
        new
    }
}

/// A release path as the origin publishes it.
#[derive(Debug, Clone, Default)]
pub struct ReleaseState {
    pub current: Option<Arc<Manifest>>,
    pub previous: Option<Arc<Manifest>>,
    /// When `current` replaced `previous` (as we saw it).
    pub changed_at: Option<SystemTime>,
    /// When every mirror that must hold it had verified `current`.
    pub ready_at: Option<SystemTime>,
    pub last_error: Option<String>,
    /// Digest restored from the state file before the first fetch.
    pub restored: Option<Digest>,
    /// The version that came with `restored`, to write it back unchanged.
    pub restored_version: Option<String>,
    /// When the last successful fetch from the origin began: its content is at least that
    /// recent.
    pub fetched_at: Option<SystemTime>,
}

impl ReleaseState {
    pub fn current_digest(&self) -> Option<Digest> {
        self.current.as_ref().map(|m| m.digest).or(self.restored)
    }
}

/// Everything the prober knows.
#[derive(Debug, Default)]
pub struct HealthState {
    pub mirrors: Vec<MirrorHealth>,
    pub releases: HashMap<String, ReleaseState>,
    /// The origin was fetched and every probed mirror probed at least once.
    pub first_round_done: bool,
    pub origin_done: bool,
    /// Seeded from a state file or a previous prober (so routing is meaningful at once).
    pub restored: bool,
    /// When the state file this was seeded from was written: until the first probe round,
    /// what we know is no fresher, and saving it again must not make it look so.
    pub restored_written: Option<SystemTime>,
    /// On-call actions in force (blocked versions are not required).
    pub admin: Arc<crate::admin::AdminState>,
}

impl HealthState {
    /// The manifests a service requires now: its pin if on-call set one, else `releases`.
    pub fn releases_of(&self, service: &crate::config::Service, now: SystemTime) -> Vec<String> {
        match self.admin.pinned(&service.name, now) {
            Some(p) => vec![p.to_string()],
            None => service.releases.clone(),
        }
    }

    /// Whether the current content of `release` is blocked by the admin state.
    pub fn blocked(&self, release: &str, now: SystemTime) -> bool {
        self.releases
            .get(release)
            .and_then(|r| r.current.as_ref())
            .is_some_and(|m| self.admin.is_blocked(&m.version, now))
    }
}

/// The versions mirror `m` is known to hold (verified), sorted, for the reasons operators read.
pub fn verified_versions(state: &HealthState, m: usize) -> Vec<String> {
    let Some(h) = state.mirrors.get(m) else {
        return Vec::new();
    };
    let mut v: Vec<String> = state
        .releases
        .values()
        .flat_map(|r| r.current.iter().chain(r.previous.iter()))
        .filter(|man| h.verified.contains_key(&man.digest))
        .map(|man| man.version.clone())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Digests a mirror must hold: the current content of every release of every service that
/// lists it.
pub fn required_digests(
    config: &Config,
    state: &HealthState,
    mirror: usize,
) -> Vec<(String, Option<Digest>)> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let now = SystemTime::now();
    for s in config
        .services
        .iter()
        .filter(|s| s.mirrors.contains(&mirror))
    {
        // On-call pins replace a service's releases; blocked versions are not required.
        for r in state.releases_of(s, now) {
            if state.blocked(&r, now) || !seen.insert(r.clone()) {
                continue;
            }
            let digest = state.releases.get(&r).and_then(|x| x.current_digest());
            out.push((r, digest));
        }
    }
    out
}

/// Whether mirror `m` may serve service `s` now.
pub fn eligibility(
    config: &Config,
    state: &HealthState,
    s: usize,
    m: usize,
    now: SystemTime,
) -> Eligibility {
    let mirror = &config.mirrors[m];
    let service = &config.services[s];
    if mirror.drained {
        return Eligibility::Out;
    }
    if mirror.base_url.is_none() {
        // Static mirror: never probed, always live, trusted as configured.
        return Eligibility::Routable;
    }
    let Some(h) = state.mirrors.get(m) else {
        return Eligibility::Out;
    };
    if h.live != Some(true) {
        return Eligibility::Out;
    }
    if h.mismatch.is_some() {
        return Eligibility::Out;
    }
    for r in &state.releases_of(service, now) {
        if state.blocked(r, now) {
            // Withdrawn by on-call: mirrors need not hold it.
            continue;
        }
        let Some(rel) = state.releases.get(r) else {
            return Eligibility::Live;
        };
        let Some(cur) = rel.current_digest() else {
            return Eligibility::Live;
        };
        if h.verified.contains_key(&cur) {
            continue;
        }
        let in_grace = match (&rel.previous, rel.changed_at) {
            (Some(prev), Some(at)) => {
                h.verified.contains_key(&prev.digest)
                    && now.duration_since(at).unwrap_or_default() < service.lag_grace
            }
            _ => false,
        };
        if !in_grace {
            return Eligibility::Live;
        }
    }
    Eligibility::Routable
}

/// The health snapshot routing is built from.
pub fn snapshot(config: &Config, state: &HealthState, now: SystemTime) -> HealthSnapshot {
    HealthSnapshot {
        files: Arc::new(if config.redirects.is_empty() {
            Vec::new()
        } else {
            super::files::release_files(config, state, now)
        }),
        services: (0..config.services.len())
            .map(|s| {
                (0..config.mirrors.len())
                    .map(|m| eligibility(config, state, s, m, now))
                    .collect()
            })
            .collect(),
    }
}

/// The state shown for mirror `m`.
pub fn mirror_state(config: &Config, state: &HealthState, m: usize) -> MirrorState {
    let mirror = &config.mirrors[m];
    if mirror.drained {
        return MirrorState::Drained;
    }
    if mirror.base_url.is_none() {
        return MirrorState::Ready;
    }
    let Some(h) = state.mirrors.get(m) else {
        return MirrorState::Unknown;
    };
    match h.live {
        None => return MirrorState::Unknown,
        Some(false) => return MirrorState::Down,
        Some(true) => {}
    }
    if h.mismatch.is_some() {
        return MirrorState::Mismatch;
    }
    let required = required_digests(config, state, m);
    let missing: Vec<_> = required
        .iter()
        .filter(|(_, d)| d.is_none_or(|d| !h.verified.contains_key(&d)))
        .collect();
    if missing.is_empty() {
        return MirrorState::Ready;
    }
    // Lagging (even while it is being checked again): it holds an earlier content of a
    // release it now lacks, or it was found without the current one.
    let lagging = missing.iter().any(|(r, _)| {
        state
            .releases
            .get(r)
            .and_then(|x| x.previous.as_ref())
            .is_some_and(|p| h.verified.contains_key(&p.digest))
    });
    if lagging || h.lag_since.is_some() {
        MirrorState::Lagging
    } else {
        MirrorState::Verifying
    }
}

/// Why a saved state file is not used.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("{path}: {1}", path = .0.display())]
    Read(PathBuf, std::io::Error),
    #[error("{path}: {1}", path = .0.display())]
    Json(PathBuf, serde_json::Error),
    #[error("{path}: `written`: {1}", path = .0.display())]
    Written(PathBuf, humantime::TimestampError),
    #[error(
        "{}: written {} ago, older than state-max-age {}",
        .path.display(),
        humantime::format_duration(*.age),
        humantime::format_duration(*.max_age)
    )]
    TooOld {
        path: PathBuf,
        age: Duration,
        max_age: Duration,
    },
}

/// The state file: enough to route sensibly before the first probe round after a restart.
#[derive(Debug, Serialize, Deserialize)]
pub struct StateFile {
    pub written: String,
    pub releases: HashMap<String, StateRelease>,
    pub mirrors: HashMap<String, StateMirror>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct StateRelease {
    pub digest: String,
    pub version: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct StateMirror {
    pub base_url: String,
    pub live: Option<bool>,
    pub verified: Vec<String>,
    pub mismatch: Option<String>,
    /// The wrong file behind `mismatch`, so that a repair made while we were stopped is seen
    /// at the first round. Absent in files written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mismatch_file: Option<WrongFile>,
}

impl StateFile {
    pub fn from_state(config: &Config, state: &HealthState, now: SystemTime) -> StateFile {
        let releases = state
            .releases
            .iter()
            .filter_map(|(path, r)| {
                // Not fetched yet in this run: what the last run knew must outlive a stop
                // before the first fetch, or the next start cannot use the mirrors' state.
                let (digest, version) = match (&r.current, r.restored) {
                    (Some(m), _) => (m.digest, m.version.clone()),
                    (None, Some(d)) => (d, r.restored_version.clone().unwrap_or_default()),
                    (None, None) => return None,
                };
                Some((
                    path.clone(),
                    StateRelease {
                        digest: hex(&digest),
                        version,
                    },
                ))
            })
            .collect();
        let mirrors = config
            .mirrors
            .iter()
            .zip(&state.mirrors)
            .filter_map(|(m, h)| {
                let url = m.base_url.as_ref()?;
                Some((
                    m.name.clone(),
                    StateMirror {
                        base_url: url.to_string(),
                        live: h.live,
                        verified: h.verified.keys().map(|d| hex(d)).collect(),
                        mismatch: h.mismatch.as_ref().map(|x| x.reason.clone()),
                        mismatch_file: h.mismatch.as_ref().and_then(|x| x.file.clone()),
                    },
                ))
            })
            .collect();
        let written = match state.restored_written {
            Some(t) if !state.first_round_done => t,
            _ => now,
        };
        StateFile {
            written: humantime::format_rfc3339_seconds(written).to_string(),
            releases,
            mirrors,
        }
    }

    /// Writes atomically: a temporary file beside the target, then a rename.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        let body = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, body)?;
        std::fs::rename(&tmp, path)
    }

    /// Reads a state file; the error says why it is not used (missing, unreadable, too old).
    pub fn read(
        path: &Path,
        max_age: Duration,
        now: SystemTime,
    ) -> Result<StateFile, StateFileError> {
        let at = || path.to_path_buf();
        let bytes = std::fs::read(path).map_err(|e| StateFileError::Read(at(), e))?;
        let f: StateFile =
            serde_json::from_slice(&bytes).map_err(|e| StateFileError::Json(at(), e))?;
        let written =
            humantime::parse_rfc3339(&f.written).map_err(|e| StateFileError::Written(at(), e))?;
        let age = now.duration_since(written).unwrap_or_default();
        if age > max_age {
            return Err(StateFileError::TooOld {
                path: at(),
                // Whole seconds: the text is read by people, in logs.
                age: Duration::from_secs(age.as_secs()),
                max_age,
            });
        }
        Ok(f)
    }

    /// Seeds a fresh state with what this file says, for mirrors whose base URL is unchanged.
    pub fn restore_into(&self, config: &Config, state: &mut HealthState) {
        state.restored = true;
        state.restored_written = humantime::parse_rfc3339(&self.written).ok();
        for (path, r) in &self.releases {
            if let Some(d) = crate::manifest::parse_sha256(&r.digest) {
                let rel = state.releases.entry(path.clone()).or_default();
                rel.restored = Some(d);
                rel.restored_version = Some(r.version.clone());
            }
        }
        let now = SystemTime::now();
        for (i, m) in config.mirrors.iter().enumerate() {
            let (Some(url), Some(saved)) = (&m.base_url, self.mirrors.get(&m.name)) else {
                continue;
            };
            if url.as_str() != saved.base_url {
                continue;
            }
            let h = &mut state.mirrors[i];
            h.live = saved.live;
            for d in saved
                .verified
                .iter()
                .filter_map(|d| crate::manifest::parse_sha256(d))
            {
                h.verified.insert(
                    d,
                    Verified {
                        at: now,
                        files: HashMap::new(),
                    },
                );
            }
            h.mismatch = saved.mismatch.as_ref().map(|reason| Mismatch {
                digest: [0; 32],
                at: now,
                reason: reason.clone(),
                file: saved.mismatch_file.clone(),
                repairing: false,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hysteresis() {
        let mut h = MirrorHealth::default();
        assert_eq!(
            h.record_probe(true, 2, 3),
            Some(true),
            "first result decides"
        );
        assert_eq!(h.record_probe(false, 2, 3), None);
        assert_eq!(h.record_probe(false, 2, 3), None);
        assert_eq!(
            h.record_probe(true, 2, 3),
            None,
            "a success resets the failure count"
        );
        assert_eq!(h.record_probe(false, 2, 3), None);
        assert_eq!(h.record_probe(false, 2, 3), None);
        assert_eq!(
            h.record_probe(false, 2, 3),
            Some(false),
            "down after 3 in a row"
        );
        assert_eq!(h.record_probe(true, 2, 3), None);
        assert_eq!(
            h.record_probe(true, 2, 3),
            Some(true),
            "up after 2 in a row"
        );
    }
}
