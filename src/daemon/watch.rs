//! The daemon's watchers: the admin-state file, applied without a reload, and the watched
//! zone and geo files, which trigger one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::{Daemon, load_admin, lock};

/// How often the admin-state file is looked at.
const ADMIN_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

fn fingerprint_of(p: &Path) -> Option<(u64, SystemTime, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).ok().map(|m| {
        (
            m.len(),
            m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            m.ino(),
        )
    })
}

/// Every watched file (the geo database unless `[geo] watch = false`; with `[server]
/// watch-zones`, the zone files) with its (size, modification time, inode).
type Fingerprint = Vec<(PathBuf, Option<(u64, SystemTime, u64)>)>;

fn fingerprint(cfg: &crate::config::Config) -> Fingerprint {
    let mut files: Vec<&Path> = Vec::new();
    if cfg.geo.watch
        && let Some((db, _)) = &cfg.geo.database
    {
        files.push(db);
    }
    if cfg.server.watch_zones {
        files.extend(cfg.server.zones.iter().map(|(p, _)| p.as_path()));
    }
    files
        .into_iter()
        .map(|p| (p.to_path_buf(), fingerprint_of(p)))
        .collect()
}

/// Applies the admin-state file within a second of a change or an entry's expiry, without a
/// reload. A task of its own, so that a drain written while a reload compiles is applied at
/// once rather than after it.
pub(super) async fn watch_admin(daemon: Arc<Daemon>, shutdown: CancellationToken) {
    let sh = &daemon.shared;
    let admin_print =
        |cfg: &crate::config::Config| cfg.server.admin_state.as_ref().map(|p| fingerprint_of(p));
    let mut last_admin = admin_print(&sh.table.load().config);
    let mut last_active = sh.admin.load().counts(SystemTime::now());
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(ADMIN_EVERY) => {}
        }
        let cfg = sh.table.load().config.clone();
        let now_admin = admin_print(&cfg);
        if now_admin != last_admin {
            last_admin = now_admin;
            let (state, err) = load_admin(&cfg, &sh.metrics);
            if let Some(a) = &state {
                info!(
                    entries = a.mirrors.len() + a.blocks.len(),
                    "admin state applied"
                );
            }
            sh.store_admin(state, None);
            sh.admin_error
                .store(err.map(|e| Arc::new((SystemTime::now(), e))));
            daemon.republish_admin().await;
            last_active = sh.admin.load().counts(SystemTime::now());
        } else {
            let active = sh.admin.load().counts(SystemTime::now());
            if active != last_active {
                info!("an admin entry expired");
                last_active = active;
                daemon.republish_admin().await;
            }
        }
    }
}

/// How often watched zone and geo files are looked at.
const FILES_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Reloads when a watched file changes: geoipupdate renames a new database into place, an
/// editor or deploy tool rewrites a zone. A change that does not load is rejected like any
/// reload (and not retried until the files change again).
pub(super) async fn watch_files(daemon: Arc<Daemon>, shutdown: CancellationToken) {
    let table = &daemon.shared.table;
    let mut last = fingerprint(&table.load().config);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(FILES_EVERY) => {}
        }
        let cfg = table.load().config.clone();
        let now = fingerprint(&cfg);
        if now == last {
            continue;
        }
        info!("a watched file changed: reloading");
        if let Err(p) = daemon.reload_and_notify().await {
            for problem in &p.0 {
                error!(%problem, "reload rejected; still serving the previous state");
            }
        }
        // What the reload saw is at least as new as `now`: keeping `now` means a file that
        // changed again while the reload ran is reloaded at the next look. Only when the
        // reload changed which files are watched is a new baseline taken.
        let after = fingerprint(&table.load().config);
        last = if after.iter().map(|f| &f.0).eq(now.iter().map(|f| &f.0)) {
            now
        } else {
            after
        };
    }
}

impl Daemon {
    /// Puts the admin state in force again (after the file or the cluster's entries changed,
    /// or an entry expired).
    pub(super) async fn republish_admin(&self) {
        let admin = self.shared.admin.load_full();
        if let Some(h) = self.shared.prober.lock().await.as_ref() {
            h.set_admin(admin);
            return;
        }
        let sp = lock(&self.static_publish).clone();
        if let Some((publish, snap)) = sp {
            publish(&snap);
        }
    }
}
