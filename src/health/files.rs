//! Release contents file by file, for the download redirector: which archive releases a
//! mirror is verified for, and which mirrors verified each file of each release.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::SystemTime;

use super::state::{HealthState, required_digests};
use crate::config::Config;
use crate::manifest::Manifest;
use crate::routing::files::{FileFacts, ReleaseFiles};

/// Archive contents mirror `m` is verified for, for the redirector only: the current content
/// of each `archive` path of every service that lists it, except those also required.
pub fn archive_manifests(
    config: &Config,
    state: &HealthState,
    m: usize,
    now: SystemTime,
) -> Vec<Arc<Manifest>> {
    let required: HashSet<String> = required_digests(config, state, m)
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for s in config.services.iter().filter(|s| s.mirrors.contains(&m)) {
        for r in &s.archive {
            if required.contains(r) || state.blocked(r, now) || !seen.insert(r.clone()) {
                continue;
            }
            if let Some(cur) = state.releases.get(r).and_then(|x| x.current.clone()) {
                out.push(cur);
            }
        }
    }
    out
}

/// Per release content of every service (its requirements now, `releases` and `archive`),
/// which mirrors verified each file: what the redirector routes by.
pub fn release_files(config: &Config, state: &HealthState, now: SystemTime) -> Vec<ReleaseFiles> {
    let mut paths: Vec<(&str, bool)> = Vec::new();
    let mut pins = Vec::new();
    for s in &config.services {
        pins.extend(state.releases_of(s, now));
    }
    for s in &config.services {
        for r in &s.releases {
            paths.push((r, false));
        }
        for r in &s.archive {
            paths.push((r, true));
        }
    }
    for p in &pins {
        paths.push((p, false));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (r, archive) in paths {
        if !seen.insert(r) {
            continue;
        }
        let Some(rel) = state.releases.get(r) else {
            continue;
        };
        let contents = rel.current.iter().map(|m| (m, true));
        for (man, current) in contents.chain(rel.previous.iter().map(|m| (m, false))) {
            out.push(files_of(state, r, man, current, archive, now));
        }
    }
    out
}

fn files_of(
    state: &HealthState,
    release: &str,
    man: &Manifest,
    current: bool,
    archive: bool,
    now: SystemTime,
) -> ReleaseFiles {
    let dir = crate::manifest::release_dir(&man.release);
    let verified_on = |path: &str| -> Vec<usize> {
        state
            .mirrors
            .iter()
            .enumerate()
            .filter(|(_, h)| {
                // A verified content had every file match (restored from the state file,
                // its per-file validators are not known, and not needed here).
                h.verified.contains_key(&man.digest)
                    || h.partial
                        .get(&man.digest)
                        .is_some_and(|p| p.contains_key(path))
            })
            .map(|(i, _)| i)
            .collect()
    };
    ReleaseFiles {
        release: release.to_string(),
        version: man.version.clone(),
        published: man.published,
        blocked: state.admin.is_blocked(&man.version, now),
        current,
        archive,
        files: man
            .files
            .iter()
            .map(|f| FileFacts {
                path: format!("{dir}{}", f.path),
                size: f.size,
                sha256: f.sha256,
                on: verified_on(&f.path),
            })
            .collect(),
        complete: state
            .mirrors
            .iter()
            .enumerate()
            .filter(|(_, h)| h.verified.contains_key(&man.digest))
            .map(|(i, _)| i)
            .collect(),
    }
}
