//! The daemon's side of `[cluster]`: the Redis handle (made again when a reload changes the
//! section), its background task, and the cluster's admin entries put in force beside the
//! admin-state file's.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::Daemon;
use crate::cluster::{self, AdminRecord, Cluster};
use crate::config::Config;
use crate::monitor::Published;

/// The handle for `cfg`'s `[cluster]`, if any. Making it does not connect: an instance
/// starts and answers whether Redis is up or not.
pub(super) fn start(cfg: &Config) -> Option<Arc<Cluster>> {
    let c = cfg.cluster.as_ref()?;
    match Cluster::new(c) {
        Ok(c) => Some(Arc::new(c)),
        Err(e) => {
            // `check` validated the URL; this is a client the crate still refused.
            error!(error = %e, "cannot use [cluster]: verifying alone");
            None
        }
    }
}

/// After a reload: a changed `[cluster]` gets a new handle (the task follows it), a removed
/// one takes the cluster's admin entries out of force.
pub(super) fn reconfigure(sh: &Published, cfg: &Config) {
    let now = sh.cluster.load_full();
    if now.as_ref().map(|c| &c.config) == cfg.cluster.as_ref() {
        return;
    }
    let next = start(cfg);
    info!(
        cluster = next.is_some(),
        "[cluster] changed: sharing with the new settings"
    );
    if next.is_none() {
        sh.store_admin(None, Some(Default::default()));
    }
    sh.cluster.store(next);
}

/// Runs the cluster task for the handle in force and applies the admin entries it reads.
pub(super) async fn follow(daemon: Arc<Daemon>, shutdown: CancellationToken) {
    let sh = &daemon.shared;
    let mut running: Option<(Arc<Cluster>, CancellationToken)> = None;
    let (tx, mut rx) = watch::channel::<Arc<Vec<AdminRecord>>>(Arc::default());
    let tx = Arc::new(tx);
    loop {
        let want = sh.cluster.load_full();
        let same = match (&running, &want) {
            (Some((r, _)), Some(w)) => Arc::ptr_eq(r, w),
            (None, None) => true,
            _ => false,
        };
        if !same {
            let had = running.take().map(|(_, token)| token.cancel()).is_some();
            match want {
                Some(c) => {
                    let token = shutdown.child_token();
                    tokio::spawn(cluster::run(c.clone(), token.clone(), tx.clone()));
                    running = Some((c, token));
                }
                // Its entries were taken out of force by `reconfigure`.
                None if had => daemon.republish_admin().await,
                None => {}
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => {
                if let Some((_, token)) = running.take() {
                    token.cancel();
                }
                return;
            }
            changed = rx.changed() => {
                if changed.is_ok() {
                    let entries = rx.borrow_and_update().clone();
                    sh.store_admin(None, Some(cluster::admin::to_state(&entries)));
                    daemon.republish_admin().await;
                }
            }
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
