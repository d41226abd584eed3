//! Cluster-wide admin entries: written by `mirrordns admin`, applied by every instance beside
//! its own admin-state file.

use std::time::SystemTime;

use super::{AdminKind, AdminRecord, Cluster};
use crate::admin::{Action, AdminState, BlockEntry, MirrorEntry, PinEntry, Source};

/// The entries as admin state, each marked as coming from the cluster. An entry whose `until`
/// cannot be read is left out (and shown in `/status` by the task that read it).
pub fn to_state(entries: &[AdminRecord]) -> AdminState {
    let mut st = AdminState::default();
    for e in entries {
        let until = match e.until.as_deref().map(humantime::parse_rfc3339_weak) {
            None => None,
            Some(Ok(t)) => Some(t),
            Some(Err(_)) => continue,
        };
        let source = Source::Cluster {
            by: e.by.clone(),
            at: e.at.clone(),
        };
        match e.action {
            AdminKind::Drain | AdminKind::ForceUp => st.mirrors.push(MirrorEntry {
                mirror: e.target.clone(),
                action: if e.action == AdminKind::Drain {
                    Action::Drain
                } else {
                    Action::ForceUp
                },
                until,
                reason: e.reason.clone(),
                source,
            }),
            AdminKind::Block => st.blocks.push(BlockEntry {
                version: e.target.clone(),
                until,
                reason: e.reason.clone(),
                source,
            }),
            AdminKind::Pin => {
                let Some(release) = e.release.clone() else {
                    continue;
                };
                st.pins.push(PinEntry {
                    service: e.target.clone(),
                    release,
                    until,
                    reason: e.reason.clone(),
                    source,
                })
            }
        }
    }
    st
}

/// The file's entries, then the cluster's: for a mirror or service named in both, the
/// cluster's entry is the one in force (the last one wins), since it is the more recent
/// on-call action as a rule and the one every instance shares.
pub fn merge(file: &AdminState, cluster: &AdminState) -> AdminState {
    let mut st = file.clone();
    st.mirrors.extend(cluster.mirrors.iter().cloned());
    st.blocks.extend(cluster.blocks.iter().cloned());
    st.pins.extend(cluster.pins.iter().cloned());
    st
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("Redis at {0} cannot be reached (see the log for why)")]
    Unreachable(String),
    #[error("{0}")]
    Invalid(String),
}

/// Writes (replaces) one entry.
pub async fn put(c: &Cluster, e: &AdminRecord) -> Result<(), WriteError> {
    let mut e = e.clone();
    c.seal(&mut e);
    let json = serde_json::to_string(&e).map_err(|x| WriteError::Invalid(x.to_string()))?;
    let done: Option<i64> = c
        .query(
            redis::cmd("HSET")
                .arg(c.keys.admin())
                .arg(e.action.field(&e.target))
                .arg(json),
        )
        .await;
    done.map(|_| ())
        .ok_or_else(|| WriteError::Unreachable(c.config.redis_shown()))
}

/// Removes the entries for these fields; how many there were.
pub async fn clear(c: &Cluster, fields: &[String]) -> Result<i64, WriteError> {
    c.query(redis::cmd("HDEL").arg(c.keys.admin()).arg(fields))
        .await
        .ok_or_else(|| WriteError::Unreachable(c.config.redis_shown()))
}

/// Every entry Redis holds now, by field.
pub async fn list(c: &Cluster) -> Result<Vec<(String, String)>, WriteError> {
    let all: Option<std::collections::BTreeMap<String, String>> =
        c.query(redis::cmd("HGETALL").arg(c.keys.admin())).await;
    all.map(|m| m.into_iter().collect())
        .ok_or_else(|| WriteError::Unreachable(c.config.redis_shown()))
}

/// `user@host` for an entry's `by`.
pub fn author(instance: &str) -> String {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into());
    format!("{user}@{instance}")
}

/// Now, as entries write times.
pub fn now_text() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}
