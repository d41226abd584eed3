//! What a subsystem that reports on the running server may see of it: a [`Monitor`] handle
//! for the monitoring endpoint .
//!
//! The daemon builds and owns the shared state ([`Published`]) and writes through it. A
//! reader gets a [`Monitor`], which keeps that state private and only reads it, plus one way
//! to act: asking for a reload through [`Reload`]. So `http` depends on this module, not on
//! `daemon`, and cannot stop the prober, swap a table or take the reload lock; the daemon
//! decides what a reader sees by what it puts here.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::SystemTime;

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::admin::AdminState;
use crate::config::Config;
use crate::diag::Problems;
use crate::dns::{Guard, Stats};
use crate::geo::GeoSource;
use crate::health::state::HealthState;
use crate::health::{Health, HealthCounters};
use crate::metrics::Histogram;
use crate::routing::RoutingTable;

/// Counters about the server itself.
#[derive(Debug)]
pub struct ServerMetrics {
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    /// Admin-state files rejected (at start, on reload, or by the watcher).
    pub admin_rejected: AtomicU64,
    pub swaps: AtomicU64,
    pub build: Histogram,
}

/// The config currently in force, for `/status`.
#[derive(Debug, Clone)]
pub struct ConfigInfo {
    pub generation: u64,
    pub loaded_at: SystemTime,
    /// The last rejected reload, if it came after the config in force.
    pub last_error: Option<(SystemTime, String)>,
}

/// A rejected admin-state file: when, and why.
pub type AdminError = (SystemTime, String);

/// Everything the daemon shares with its listeners and readers. The daemon holds it to
/// write; readers see it only through a [`Monitor`]. Values a reader takes whole are behind
/// an `ArcSwap`, so that reading never waits for a writer.
pub struct Published {
    /// The addresses DNS is served on (with the real port when the config said port 0).
    pub dns_addrs: Vec<SocketAddr>,
    pub config_path: PathBuf,
    pub started_at: SystemTime,
    pub table: Arc<ArcSwap<RoutingTable>>,
    /// The routing table generation now in force (it moves on with every health change too;
    /// the config generation only with reloads).
    pub generation: Arc<AtomicU64>,
    pub stats: Arc<Stats>,
    pub metrics: Arc<ServerMetrics>,
    /// Abuse-protection state shared with the DNS listeners; a reload that changes
    /// `[rate-limit] table-size` swaps in a guard with a table of the new size.
    pub guard: Arc<ArcSwap<Guard>>,
    /// Replaced whole by reloads, which are serialised, so a read-modify-store loses nothing.
    pub config_info: ArcSwap<ConfigInfo>,
    /// On-call actions in force: the admin-state file's and the cluster's, merged by
    /// [`Published::store_admin`].
    pub admin: Arc<ArcSwap<AdminState>>,
    /// The admin-state file's entries alone.
    pub admin_file: ArcSwap<AdminState>,
    /// The cluster's entries alone, as last read from Redis (kept while it is unreachable).
    pub admin_cluster: ArcSwap<AdminState>,
    /// With `[cluster]`: the handle to Redis (replaced when a reload changes the section).
    pub cluster: ArcSwapOption<crate::cluster::Cluster>,
    /// The last rejected admin-state file (the previous one stays in force).
    pub admin_error: ArcSwapOption<AdminError>,
    /// Compiled tables only: explanations re-open the database file when they need it.
    pub geo: ArcSwap<GeoSource>,
    /// The prober, when the config has anything to probe. Held only to read it or to swap
    /// it, never while a reload loads files.
    pub prober: tokio::sync::Mutex<Option<Health>>,
    /// False once the DNS listeners have stopped.
    pub dns_running: AtomicBool,
    /// Where the download redirectors listen (real ports), and what they counted.
    pub redirect_addrs: Vec<crate::redirect::Addrs>,
    pub redirect_stats: Arc<crate::redirect::RedirectStats>,
    /// Signalled after every table store, so that the NOTIFY task looks for changed zones (a
    /// `watch` coalesces a burst of swaps into one wake-up).
    pub table_stored: Arc<tokio::sync::watch::Sender<()>>,
    /// What the NOTIFY task sent, and what came of it.
    pub notify: Arc<crate::dns::notify::NotifyStatus>,
}

impl Published {
    /// Puts new file or cluster admin entries in force, merged with the other source's.
    pub fn store_admin(&self, file: Option<AdminState>, cluster: Option<AdminState>) {
        if let Some(f) = file {
            self.admin_file.store(Arc::new(f));
        }
        if let Some(c) = cluster {
            self.admin_cluster.store(Arc::new(c));
        }
        let merged =
            crate::cluster::admin::merge(&self.admin_file.load(), &self.admin_cluster.load());
        self.admin.store(Arc::new(merged));
    }

    /// Reads the prober's state with the config it is indexed by, if there is a prober.
    pub async fn with_health<T>(&self, f: impl FnOnce(&Config, &HealthState) -> T) -> Option<T> {
        self.prober.lock().await.as_ref().map(|h| h.with_state(f))
    }
}

/// A reload, as a reader may ask for one.
pub type ReloadFuture = Pin<Box<dyn Future<Output = Result<u64, Problems>> + Send>>;

/// Asks the daemon to reload config, zones and geo data. The answer is the new config
/// generation, or every problem (then nothing changed).
pub trait Reload: Send + Sync {
    fn reload(self: Arc<Self>) -> ReloadFuture;
}

/// The monitoring endpoint's read-mostly view of the running server.
#[derive(Clone)]
pub struct Monitor {
    shared: Arc<Published>,
    reloader: Arc<dyn Reload>,
}

impl Monitor {
    pub fn new(shared: Arc<Published>, reloader: Arc<dyn Reload>) -> Monitor {
        Monitor { shared, reloader }
    }

    pub fn dns_addrs(&self) -> &[SocketAddr] {
        &self.shared.dns_addrs
    }

    /// The config file as the server was started with it (relative paths stay relative).
    pub fn config_path(&self) -> &Path {
        &self.shared.config_path
    }

    pub fn started_at(&self) -> SystemTime {
        self.shared.started_at
    }

    /// The routing table in force.
    pub fn table(&self) -> Arc<RoutingTable> {
        self.shared.table.load_full()
    }

    /// The routing table generation in force now (it may already be past `table()`'s).
    pub fn routing_generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    pub fn metrics(&self) -> &ServerMetrics {
        &self.shared.metrics
    }

    /// Flow cells in the rate limiter's table now.
    pub fn rrl_cells(&self) -> usize {
        self.shared.guard.load().rrl.cells()
    }

    pub fn config_info(&self) -> ConfigInfo {
        ConfigInfo::clone(&self.shared.config_info.load())
    }

    pub fn admin(&self) -> Arc<AdminState> {
        self.shared.admin.load_full()
    }

    /// The last rejected admin-state file: when, and why.
    pub fn cluster(&self) -> Option<Arc<crate::cluster::Cluster>> {
        self.shared.cluster.load_full()
    }

    pub fn admin_error(&self) -> Option<AdminError> {
        self.shared
            .admin_error
            .load_full()
            .map(|e| AdminError::clone(&e))
    }

    pub fn geo(&self) -> Arc<GeoSource> {
        self.shared.geo.load_full()
    }

    pub fn redirect_addrs(&self) -> &[crate::redirect::Addrs] {
        &self.shared.redirect_addrs
    }

    pub fn redirect_stats(&self) -> &crate::redirect::RedirectStats {
        &self.shared.redirect_stats
    }

    /// NOTIFYs to secondaries and their results.
    pub fn notify(&self) -> &crate::dns::notify::NotifyStatus {
        &self.shared.notify
    }

    pub fn dns_running(&self) -> bool {
        self.shared.dns_running.load(Ordering::Relaxed)
    }

    /// Reads the prober's state with the config it is indexed by, if there is a prober.
    pub async fn with_health<T>(&self, f: impl FnOnce(&Config, &HealthState) -> T) -> Option<T> {
        self.shared.with_health(f).await
    }

    /// The prober's counters, if there is a prober.
    pub async fn health_counters(&self) -> Option<Arc<HealthCounters>> {
        self.shared
            .prober
            .lock()
            .await
            .as_ref()
            .map(|h| h.counters.clone())
    }

    /// Asks for a reload (`POST /reload`), as SIGHUP does.
    pub async fn reload(&self) -> Result<u64, Problems> {
        self.reloader.clone().reload().await
    }
}
