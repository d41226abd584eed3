//! The cluster's background task: this instance's heartbeat, the peers, and the cluster-wide
//! admin entries, read every [`POLL_EVERY`](super::POLL_EVERY).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{
    AdminRecord, Cluster, HEARTBEAT_EVERY, PEER_GONE_AFTER, POLL_EVERY, Peer, PeerRecord, unix,
};

/// Runs until `token` is cancelled. Every change of the admin entries Redis holds is sent on
/// `admin` (and nothing while Redis is unreachable: the last entries stay in force).
pub async fn run(
    cluster: Arc<Cluster>,
    token: CancellationToken,
    admin: Arc<watch::Sender<Arc<Vec<AdminRecord>>>>,
) {
    let mut last_beat: Option<tokio::time::Instant> = None;
    loop {
        if last_beat.is_none_or(|t| t.elapsed() >= HEARTBEAT_EVERY) {
            last_beat = Some(tokio::time::Instant::now());
            heartbeat(&cluster).await;
        }
        if let Some(entries) = read_admin(&cluster).await {
            let entries = Arc::new(entries);
            admin.send_if_modified(|cur| {
                if **cur == *entries {
                    return false;
                }
                info!(entries = entries.len(), "cluster admin entries changed");
                *cur = entries.clone();
                true
            });
        }
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(POLL_EVERY) => {}
        }
    }
}

async fn heartbeat(c: &Cluster) {
    let now = SystemTime::now();
    let me = PeerRecord {
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: unix(c.started),
        at: unix(now),
    };
    let Ok(json) = serde_json::to_string(&me) else {
        return;
    };
    let key = c.keys.peers();
    let _: Option<i64> = c
        .query(redis::cmd("HSET").arg(&key).arg(c.name()).arg(json))
        .await;
    let Some(all) = c
        .query::<BTreeMap<String, String>>(redis::cmd("HGETALL").arg(&key))
        .await
    else {
        return;
    };
    let mut peers = Vec::new();
    let mut gone = Vec::new();
    for (name, raw) in all {
        let Ok(p) = serde_json::from_str::<PeerRecord>(&raw) else {
            continue;
        };
        let seen = SystemTime::UNIX_EPOCH + Duration::from_secs(p.at);
        let age = now.duration_since(seen).unwrap_or_default();
        if age < PEER_GONE_AFTER {
            peers.push(Peer {
                name,
                version: p.version,
                last_seen: seen,
            });
        } else if age > PEER_GONE_AFTER * 2880 {
            // A day unheard of: an instance taken out of service, not a pause.
            gone.push(name);
        }
    }
    if !gone.is_empty() {
        let _: Option<i64> = c.query(redis::cmd("HDEL").arg(&key).arg(gone)).await;
    }
    c.with_state(|s| s.peers = peers);
}

/// The entries Redis holds now; None when it cannot be reached.
async fn read_admin(c: &Cluster) -> Option<Vec<AdminRecord>> {
    let all: BTreeMap<String, String> = c.query(redis::cmd("HGETALL").arg(c.keys.admin())).await?;
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for (field, raw) in all {
        match serde_json::from_str::<AdminRecord>(&raw) {
            Ok(e) if !c.trusts(&e) => errors.push(format!(
                "{field}: not sealed with [cluster] secret (written without it, or not by mirrordns)"
            )),
            Ok(e) if e.action.field(&e.target) == field => entries.push(e),
            Ok(_) => errors.push(format!("{field}: its entry is for another target")),
            Err(e) => errors.push(format!("{field}: {e}")),
        }
    }
    let before = c.state().admin_errors;
    if errors != before {
        for e in &errors {
            warn!(error = %e, "cluster admin entry ignored");
        }
    }
    c.with_state(|s| {
        s.admin = entries.clone();
        s.admin_errors = errors;
    });
    Some(entries)
}
