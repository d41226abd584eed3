//! Live admin state: on-call actions applied without a reload, from a TOML file named by
//! `[server] admin-state` and watched for changes.
//!
//! ```toml
//! [[mirror]]
//! name = "eu-west"
//! action = "drain"                 # "drain" (out of every answer) | "force-up" (routable whatever probes say)
//! until = "2026-11-28T12:00:00Z"   # optional expiry
//! reason = "disk replacement"      # optional, shown in /status
//!
//! [[block]]
//! version = "v1.9.0"               # a release version: mirrors need not hold it, no readiness waited for
//! until = "2026-11-28T12:00:00Z"
//! reason = "bad build"
//!
//! [[pin]]
//! service = "downloads.example.com"
//! release = "tool/v1.8.2/manifest.json"   # require this manifest instead of the service's `releases`
//! until = "2026-11-28T12:00:00Z"
//! ```
//!
//! A file with any problem is rejected whole (every problem named with its line) and the
//! previous admin state stays in force.

use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::config::Config;
use crate::diag::{Problem, Problems, line_of};
use crate::routing::{Eligibility, HealthSnapshot};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Drain,
    ForceUp,
}

/// Where an entry comes from: the admin-state file, or `mirrordns admin` through the
/// cluster's Redis (with who wrote it and when).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "source")]
pub enum Source {
    #[default]
    File,
    Cluster {
        by: String,
        at: String,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct MirrorEntry {
    pub mirror: String,
    pub action: Action,
    #[serde(serialize_with = "ser_time")]
    pub until: Option<SystemTime>,
    pub reason: Option<String>,
    pub source: Source,
}

#[derive(Debug, Clone, Serialize)]
pub struct BlockEntry {
    pub version: String,
    #[serde(serialize_with = "ser_time")]
    pub until: Option<SystemTime>,
    pub reason: Option<String>,
    pub source: Source,
}

fn ser_time<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_some(&humantime::format_rfc3339_seconds(*t).to_string()),
        None => s.serialize_none(),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PinEntry {
    pub service: String,
    pub release: String,
    #[serde(serialize_with = "ser_time")]
    pub until: Option<SystemTime>,
    pub reason: Option<String>,
    pub source: Source,
}

/// The admin state in force.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AdminState {
    pub mirrors: Vec<MirrorEntry>,
    pub blocks: Vec<BlockEntry>,
    pub pins: Vec<PinEntry>,
}

fn live(until: Option<SystemTime>, now: SystemTime) -> bool {
    until.is_none_or(|u| now < u)
}

impl AdminState {
    /// The action in force for a mirror now, if any.
    pub fn mirror_action(&self, name: &str, now: SystemTime) -> Option<Action> {
        self.mirrors
            .iter()
            .rev()
            .find(|e| e.mirror == name && live(e.until, now))
            .map(|e| e.action)
    }

    /// Whether a release version is blocked now.
    pub fn is_blocked(&self, version: &str, now: SystemTime) -> bool {
        self.blocks
            .iter()
            .any(|b| b.version == version && live(b.until, now))
    }

    /// The manifest a service is pinned to now, if any.
    pub fn pinned(&self, service: &str, now: SystemTime) -> Option<&str> {
        self.pins
            .iter()
            .rev()
            .find(|p| p.service == service && live(p.until, now))
            .map(|p| p.release.as_str())
    }

    /// Entries in force now, by kind: (drain, force-up, block, pin).
    pub fn counts(&self, now: SystemTime) -> (usize, usize, usize, usize) {
        let m = |a| {
            self.mirrors
                .iter()
                .filter(|e| e.action == a && live(e.until, now))
                .count()
        };
        (
            m(Action::Drain),
            m(Action::ForceUp),
            self.blocks.iter().filter(|b| live(b.until, now)).count(),
            self.pins.iter().filter(|p| live(p.until, now)).count(),
        )
    }

    /// Applies mirror actions to a snapshot: drained mirrors leave every service, forced ones
    /// are routable in every service that lists them.
    pub fn apply(&self, config: &Config, snap: &mut HealthSnapshot, now: SystemTime) {
        for (m, mirror) in config.mirrors.iter().enumerate() {
            let Some(action) = self.mirror_action(&mirror.name, now) else {
                continue;
            };
            for (s, row) in snap.services.iter_mut().enumerate() {
                if let Some(e) = row.get_mut(m) {
                    *e = match action {
                        Action::Drain => Eligibility::Out,
                        Action::ForceUp if config.services[s].mirrors.contains(&m) => {
                            Eligibility::Routable
                        }
                        Action::ForceUp => *e,
                    };
                }
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    #[serde(default)]
    mirror: Vec<Spanned<RawMirror>>,
    #[serde(default)]
    block: Vec<Spanned<RawBlock>>,
    #[serde(default)]
    pin: Vec<Spanned<RawPin>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPin {
    service: Spanned<String>,
    release: Spanned<String>,
    #[serde(default)]
    until: Option<Spanned<String>>,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMirror {
    name: Spanned<String>,
    action: Spanned<String>,
    #[serde(default)]
    until: Option<Spanned<String>>,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBlock {
    version: Spanned<String>,
    #[serde(default)]
    until: Option<Spanned<String>>,
    #[serde(default)]
    reason: Option<String>,
}

/// Largest admin-state file read. Hundreds of entries take a few KB; a bigger file is not an
/// on-call edit (a log written to the wrong path, say), and the watcher would read it whole
/// at every change.
pub const MAX_SIZE: u64 = 1 << 20;

/// The file's text, refusing more than [`MAX_SIZE`] bytes; None when there is no file.
fn read_capped(path: &Path) -> std::io::Result<Option<String>> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.take(MAX_SIZE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_SIZE {
        return Err(std::io::Error::other(format!(
            "larger than the {MAX_SIZE} bytes an admin-state file may have"
        )));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()))
}

/// Reads and checks an admin-state file against the config in force. A missing file is an
/// empty admin state.
pub fn load(path: &Path, config: &Config) -> Result<AdminState, Problems> {
    let src = match read_capped(path) {
        Ok(Some(s)) => s,
        Ok(None) => return Ok(AdminState::default()),
        Err(e) => {
            return Err(
                Problem::new(path, None, None, format!("cannot read admin state: {e}")).into(),
            );
        }
    };
    let raw: RawAdmin = toml::from_str(&src).map_err(|e| {
        let line = e.span().map(|s| line_of(&src, s.start));
        Problem::new(path, line, None, e.message().trim_end().to_string())
    })?;
    let mut problems = Vec::new();
    let err = |problems: &mut Vec<Problem>, at: std::ops::Range<usize>, key: &str, msg: String| {
        problems.push(Problem::new(
            path,
            Some(line_of(&src, at.start)),
            Some(key),
            msg,
        ));
    };
    let until = |problems: &mut Vec<Problem>,
                 u: &Option<Spanned<String>>,
                 key: &str|
     -> Option<SystemTime> {
        let u = u.as_ref()?;
        match humantime::parse_rfc3339_weak(u.get_ref()) {
            Ok(t) => Some(t),
            Err(e) => {
                problems.push(Problem::new(
                    path,
                    Some(line_of(&src, u.span().start)),
                    Some(key),
                    format!(
                        "`{}` is not an RFC 3339 time such as \"2026-11-28T12:00:00Z\": {e}",
                        u.get_ref()
                    ),
                ));
                None
            }
        }
    };
    let mut state = AdminState::default();
    for m in &raw.mirror {
        let m = m.get_ref();
        let name = m.name.get_ref();
        if !config.mirrors.iter().any(|x| &x.name == name) {
            err(
                &mut problems,
                m.name.span(),
                "mirror.name",
                format!("mirror `{name}` is not in the config"),
            );
        }
        let action = match m.action.get_ref().as_str() {
            "drain" => Some(Action::Drain),
            "force-up" => Some(Action::ForceUp),
            other => {
                err(
                    &mut problems,
                    m.action.span(),
                    "mirror.action",
                    format!("`{other}` is not an action: expected \"drain\" or \"force-up\""),
                );
                None
            }
        };
        let u = until(&mut problems, &m.until, "mirror.until");
        if let Some(action) = action {
            state.mirrors.push(MirrorEntry {
                mirror: name.clone(),
                action,
                until: u,
                reason: m.reason.clone(),
                source: Source::File,
            });
        }
    }
    for b in &raw.block {
        let b = b.get_ref();
        if b.version.get_ref().trim().is_empty() {
            err(
                &mut problems,
                b.version.span(),
                "block.version",
                "must not be empty".into(),
            );
        }
        let u = until(&mut problems, &b.until, "block.until");
        state.blocks.push(BlockEntry {
            version: b.version.get_ref().clone(),
            until: u,
            reason: b.reason.clone(),
            source: Source::File,
        });
    }
    for p in &raw.pin {
        let p = p.get_ref();
        let service = p
            .service
            .get_ref()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if !config.services.iter().any(|s| s.name == service) {
            err(
                &mut problems,
                p.service.span(),
                "pin.service",
                format!("service `{service}` is not in the config"),
            );
        }
        if !crate::config::is_safe_relative_path(p.release.get_ref()) {
            err(
                &mut problems,
                p.release.span(),
                "pin.release",
                format!(
                    "`{}` is not a manifest path relative to [origin] base-url",
                    p.release.get_ref()
                ),
            );
        }
        let u = until(&mut problems, &p.until, "pin.until");
        state.pins.push(PinEntry {
            service,
            release: p.release.get_ref().clone(),
            until: u,
            reason: p.reason.clone(),
            source: Source::File,
        });
    }
    if problems.is_empty() {
        Ok(state)
    } else {
        Err(Problems(problems))
    }
}
