//! Health and integrity: only mirrors that are up and hold byte-exact copies of every required
//! release are routable.
//!
//! Three kinds of task share one [`HealthState`] behind a mutex (held only for short,
//! await-free updates):
//! - the **origin task** fetches every release manifest each interval (checking its minisign
//!   signature when configured) and notices when a release's content changes;
//! - one **mirror task** per probed mirror: a liveness probe each interval (with hysteresis), a
//!   spot check of one verified file, and a full streaming SHA-256 verification of any
//!   required release it has not verified (new release, back from down, or `reverify` due);
//! - the **coordinator** turns the state into a [`HealthSnapshot`] (debounced), hands it to
//!   the publisher (which builds and swaps the routing table), logs state changes, records
//!   global readiness, and writes the state file.
//!
//! What they decide is in [`transition`] (pure functions of the finding and the time), how
//! they word it for operators in [`reason`]. A reload does not start them over:
//! [`Health::reconfigure`] keeps the tasks whose inputs did not change.

mod counters;
pub mod files;
pub mod http;
mod integrity;
pub mod oneshot;
pub mod reason;
mod share;
pub mod state;
mod tasks;
pub mod transition;
pub mod verify;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::config::{Config, HealthConfig};
use crate::routing::HealthSnapshot;
pub use counters::{HealthCounters, MirrorCounters, PROBE_RESULTS};
use state::{HealthState, MirrorHealth, StateFile};

/// Receives every new snapshot; the daemon builds and publishes a routing table from it.
pub type Publisher = Arc<dyn Fn(&HealthSnapshot) + Send + Sync>;

/// The state and the config whose mirror order its per-mirror vector follows. A reload swaps
/// both at once under the lock, so nothing pairs one config's mirror index with the other's
/// state; a mirror task looks its index up by name each time it takes the lock.
struct View {
    cfg: Arc<Config>,
    st: HealthState,
}

impl View {
    fn position(&self, mirror: &str) -> Option<usize> {
        self.cfg.mirrors.iter().position(|m| m.name == mirror)
    }
}

struct Shared {
    view: Mutex<View>,
    /// Wakes the coordinator.
    notify: Notify,
    origin_fetched: Notify,
    /// Asks the origin task to fetch now rather than at the end of its pause.
    origin_nudge: Notify,
    downloads: Arc<Semaphore>,
    counters: Arc<HealthCounters>,
    /// With `[cluster]`: peers' results are asked for before downloading, ours published.
    cluster: arc_swap::ArcSwapOption<crate::cluster::Cluster>,
}

fn lock(m: &Mutex<View>) -> MutexGuard<'_, View> {
    // A panic while holding the lock leaves plain data behind; keep using it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A fresh state for `config`, seeded from a previous run's state (same mirror name and base
/// URL) or from the state file when it is recent enough.
pub fn initial_state(config: &Config, carried: Option<(&Config, &HealthState)>) -> HealthState {
    let mut st = HealthState {
        mirrors: vec![MirrorHealth::default(); config.mirrors.len()],
        ..HealthState::default()
    };
    if let Some((old_cfg, old)) = carried {
        for (i, m) in config.mirrors.iter().enumerate() {
            if let Some(j) = old_cfg
                .mirrors
                .iter()
                .position(|o| o.name == m.name && o.base_url == m.base_url)
            {
                st.mirrors[i] = old.mirrors[j].clone();
            }
        }
        st.releases = old.releases.clone();
        st.origin_done = old.origin_done;
        st.first_round_done = old.first_round_done;
        st.restored_written = old.restored_written;
        st.restored = true;
        return st;
    }
    if let Some(path) = &config.health.state_file {
        match StateFile::read(path, config.health.state_max_age, SystemTime::now()) {
            Ok(f) => {
                f.restore_into(config, &mut st);
                info!(file = %path.display(), "restored probe state from the previous run");
            }
            Err(e) => {
                info!(reason = %e, "not using a saved probe state; answering by fallback until the first probe round")
            }
        }
    }
    st
}

/// What a mirror task depends on besides `[health]`. While it stays the same across a
/// reload, the task goes on, and a verification in flight with it.
#[derive(Debug, PartialEq)]
struct MirrorKey {
    base_url: reqwest::Url,
    probe_address: Option<SocketAddr>,
    liveness: String,
    /// Sorted: the releases and archive of every service that lists the mirror.
    releases: Vec<String>,
}

impl MirrorKey {
    /// None for a static mirror (no base URL: never probed).
    fn of(cfg: &Config, i: usize) -> Option<MirrorKey> {
        let m = &cfg.mirrors[i];
        let mut releases: Vec<String> = cfg
            .services
            .iter()
            .filter(|s| s.mirrors.contains(&i))
            .flat_map(|s| s.releases.iter().chain(&s.archive).cloned())
            .collect();
        releases.sort();
        releases.dedup();
        Some(MirrorKey {
            base_url: m.base_url.clone()?,
            probe_address: m.probe_address,
            liveness: tasks::liveness_path(cfg, i),
            releases,
        })
    }
}

/// What the origin task depends on besides `[health]` (it reads the releases to fetch from the
/// config in force at each round).
fn origin_key(cfg: &Config) -> Option<(&reqwest::Url, Option<&str>)> {
    cfg.origin
        .as_ref()
        .map(|o| (&o.base_url, o.minisign_key.as_deref()))
}

/// Every release and archive path of every service, sorted.
fn all_releases(cfg: &Config) -> Vec<&str> {
    let mut r: Vec<&str> = cfg
        .services
        .iter()
        .flat_map(|s| s.releases.iter().chain(&s.archive).map(String::as_str))
        .collect();
    r.sort_unstable();
    r.dedup();
    r
}

/// Whether two `[health]` sections probe alike (same timings, limits and TLS roots), so that
/// running tasks can go on. Destructured without `..`: a new setting must be placed here.
fn same_probing(a: &HealthConfig, b: &HealthConfig) -> bool {
    let HealthConfig {
        interval,
        timeout,
        rise,
        fall,
        reverify,
        download_timeout,
        max_downloads,
        ca_file,
        // Read from the config in force by the coordinator, which starts again at each
        // reconfigure, or only at start.
        state_file: _,
        state_max_age: _,
    } = a;
    *interval == b.interval
        && *timeout == b.timeout
        && *rise == b.rise
        && *fall == b.fall
        && *reverify == b.reverify
        && *download_timeout == b.download_timeout
        && *max_downloads == b.max_downloads
        && *ca_file == b.ca_file
}

/// The CA file's contents: a file rewritten in place under the same name changes the
/// clients as much as another name does.
fn ca_contents(hc: &HealthConfig) -> Option<Vec<u8>> {
    hc.ca_file.as_ref().and_then(|p| std::fs::read(p).ok())
}

/// HTTP clients for the origin (if any) and for probed mirrors by index, built before
/// anything starts or stops.
type Clients = (Option<http::Endpoint>, Vec<(usize, http::Endpoint)>);

/// Why the prober cannot start or take a new config: a client that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientsError {
    #[error(transparent)]
    Origin(#[from] http::ClientError),
    #[error("mirror `{name}`: {error}")]
    Mirror {
        name: String,
        error: http::ClientError,
    },
}

fn origin_client(cfg: &Config) -> Result<Option<http::Endpoint>, ClientsError> {
    cfg.origin
        .as_ref()
        .map(|o| http::Endpoint::new(&cfg.health, &o.base_url, None))
        .transpose()
        .map_err(ClientsError::Origin)
}

/// Clients for the probed mirrors among `which`, all or none.
fn mirror_clients(
    cfg: &Config,
    which: impl Iterator<Item = usize>,
) -> Result<Vec<(usize, http::Endpoint)>, ClientsError> {
    which
        .filter_map(|i| {
            let m = &cfg.mirrors[i];
            let base = m.base_url.as_ref()?;
            Some(
                http::Endpoint::new(&cfg.health, base, m.probe_address)
                    .map(|ep| (i, ep))
                    .map_err(|error| ClientsError::Mirror {
                        name: m.name.clone(),
                        error,
                    }),
            )
        })
        .collect()
}

/// A running task and how to stop it alone.
struct Running<K> {
    key: K,
    token: CancellationToken,
    handle: JoinHandle<()>,
}

impl<K> Running<K> {
    async fn stop(self) {
        self.token.cancel();
        // A task that panicked is stopped all the same.
        let _ = self.handle.await;
    }
}

/// The running prober.
pub struct Health {
    shared: Arc<Shared>,
    pub counters: Arc<HealthCounters>,
    /// Parent of every task's own token: cancelling it stops them all.
    token: CancellationToken,
    tasks: TaskTracker,
    origin: Option<Running<()>>,
    /// Per mirror name.
    mirrors: HashMap<String, Running<MirrorKey>>,
    coordinator: Option<Running<()>>,
    /// The CA file's contents the clients were built with.
    ca: Option<Vec<u8>>,
}

impl Health {
    /// Starts the prober. `publish` is called with the first snapshot before this returns.
    pub fn start(
        config: Arc<Config>,
        state: HealthState,
        publish: Publisher,
        cluster: Option<Arc<crate::cluster::Cluster>>,
    ) -> Result<Health, ClientsError> {
        // Every client first: a config whose client cannot be built starts nothing.
        let origin = origin_client(&config)?;
        let mirrors = mirror_clients(&config, 0..config.mirrors.len())?;
        Ok(Health::launch(
            config,
            state,
            publish,
            Arc::new(HealthCounters::default()),
            (origin, mirrors),
            cluster,
        ))
    }

    fn launch(
        config: Arc<Config>,
        mut state: HealthState,
        publish: Publisher,
        counters: Arc<HealthCounters>,
        (origin, mirrors): Clients,
        cluster: Option<Arc<crate::cluster::Cluster>>,
    ) -> Health {
        if config.origin.is_none() {
            state.origin_done = true;
        }
        counters.follow(&config);
        publish(&state::snapshot(&config, &state, SystemTime::now()));
        let shared = Arc::new(Shared {
            view: Mutex::new(View {
                cfg: config.clone(),
                st: state,
            }),
            notify: Notify::new(),
            origin_fetched: Notify::new(),
            origin_nudge: Notify::new(),
            downloads: Arc::new(Semaphore::new(config.health.max_downloads)),
            counters: counters.clone(),
            cluster: arc_swap::ArcSwapOption::new(cluster),
        });
        let mut h = Health {
            shared,
            counters,
            token: CancellationToken::new(),
            tasks: TaskTracker::new(),
            origin: None,
            mirrors: HashMap::new(),
            coordinator: None,
            ca: ca_contents(&config.health),
        };
        if let Some(ep) = origin {
            h.spawn_origin(ep);
        }
        h.spawn_mirrors(&config, mirrors);
        h.spawn_coordinator(publish);
        h
    }

    fn spawn_origin(&mut self, ep: http::Endpoint) {
        let token = self.token.child_token();
        let handle = self
            .tasks
            .spawn(tasks::origin_task(self.shared.clone(), ep, token.clone()));
        self.origin = Some(Running {
            key: (),
            token,
            handle,
        });
    }

    fn spawn_mirrors(&mut self, cfg: &Config, clients: Vec<(usize, http::Endpoint)>) {
        let n = clients.len().max(1) as u32;
        for (k, (i, ep)) in clients.into_iter().enumerate() {
            let Some(key) = MirrorKey::of(cfg, i) else {
                continue;
            };
            let name = cfg.mirrors[i].name.clone();
            let token = self.token.child_token();
            // Spread first probes over up to a second so a restart is not a probe storm.
            let stagger = cfg.health.interval.min(Duration::from_secs(1)) * k as u32 / n;
            let counters = self.counters.entry(&name);
            let task = tasks::MirrorTask {
                sh: self.shared.clone(),
                name: name.clone(),
                hc: cfg.health.clone(),
                probe_path: key.liveness.clone(),
                ep: ep.counting(counters.verify_bytes.clone()),
                token: token.clone(),
                counters,
            };
            let handle = self.tasks.spawn(tasks::mirror_task(task, stagger));
            self.mirrors.insert(name, Running { key, token, handle });
        }
    }

    fn spawn_coordinator(&mut self, publish: Publisher) {
        let token = self.token.child_token();
        let handle = self.tasks.spawn(tasks::coordinator(
            self.shared.clone(),
            publish,
            token.clone(),
        ));
        self.coordinator = Some(Running {
            key: (),
            token,
            handle,
        });
        self.shared.notify.notify_one();
    }

    /// Puts a reloaded config in force without starting over. Mirror tasks whose base URL,
    /// probe address, liveness URL and required releases are unchanged go on (a verification
    /// in flight finishes instead of starting again); tasks of removed or changed mirrors are
    /// stopped, new ones started, and the origin task kept unless the origin changed.
    ///
    /// The design: the state and the config it is indexed by are swapped together under the
    /// state lock (see `View`), and tasks find their mirror by name at each lock, so a kept
    /// task follows its mirror to a new index. Stopped tasks are awaited before the swap, so
    /// only one task per mirror name ever writes. The coordinator always starts again (it
    /// publishes through the new publisher). When `[health]` itself changes (timings,
    /// limits, TLS roots), every task starts again, with what is known carried over. The
    /// counters are the same throughout.
    ///
    /// On an error (a client that cannot be built), nothing has changed.
    pub async fn reconfigure(
        &mut self,
        config: Arc<Config>,
        admin: Arc<crate::admin::AdminState>,
        publish: Publisher,
    ) -> Result<(), ClientsError> {
        let old = lock(&self.shared.view).cfg.clone();
        if !same_probing(&old.health, &config.health) || ca_contents(&config.health) != self.ca {
            let clients: Clients = (
                origin_client(&config)?,
                mirror_clients(&config, 0..config.mirrors.len())?,
            );
            self.token.cancel();
            self.tasks.close();
            self.tasks.wait().await;
            let mut st = {
                let v = lock(&self.shared.view);
                initial_state(&config, Some((&v.cfg, &v.st)))
            };
            st.admin = admin;
            info!("[health] changed: every probe starts again");
            let cluster = self.shared.cluster.load_full();
            *self = Health::launch(config, st, publish, self.counters.clone(), clients, cluster);
            return Ok(());
        }
        // A task goes on when it still runs (one that ended, by a panic, starts again) and
        // what it depends on did not change.
        let origin_changed = origin_key(&old) != origin_key(&config)
            || self.origin.as_ref().is_some_and(|r| r.handle.is_finished());
        let origin = match origin_changed {
            true => origin_client(&config)?,
            false => None,
        };
        let goes_on = |name: &str| {
            let i = config.mirrors.iter().position(|m| m.name == name);
            self.mirrors.get(name).is_some_and(|r| {
                !r.handle.is_finished()
                    && i.and_then(|i| MirrorKey::of(&config, i)).as_ref() == Some(&r.key)
            })
        };
        let changed = (0..config.mirrors.len()).filter(|&i| !goes_on(&config.mirrors[i].name));
        let clients = mirror_clients(&config, changed)?;
        let gone: Vec<String> = self
            .mirrors
            .keys()
            .filter(|n| !goes_on(n))
            .cloned()
            .collect();
        // Stop what goes, and wait for it: after the swap no task of the old config writes.
        let mut stopping: Vec<Running<()>> = self.coordinator.take().into_iter().collect();
        if origin_changed {
            stopping.extend(self.origin.take());
        }
        let stopped = gone.len();
        let gone: Vec<Running<MirrorKey>> =
            gone.iter().filter_map(|n| self.mirrors.remove(n)).collect();
        for t in gone
            .iter()
            .map(|r| &r.token)
            .chain(stopping.iter().map(|r| &r.token))
        {
            t.cancel();
        }
        for r in gone {
            r.stop().await;
        }
        for r in stopping {
            r.stop().await;
        }
        let snapshot = {
            let mut v = lock(&self.shared.view);
            let mut st = initial_state(&config, Some((&v.cfg, &v.st)));
            st.admin = admin;
            if config.origin.is_none() {
                st.origin_done = true;
            }
            v.cfg = config.clone();
            v.st = st;
            state::snapshot(&v.cfg, &v.st, SystemTime::now())
        };
        publish(&snapshot);
        self.counters.follow(&config);
        info!(
            kept = self.mirrors.len(),
            started = clients.len(),
            stopped,
            origin_changed,
            "prober reconfigured"
        );
        if let Some(ep) = origin {
            self.spawn_origin(ep);
        } else if all_releases(&old) != all_releases(&config) {
            // The kept origin task would fetch a new release only after its pause.
            self.shared.origin_nudge.notify_one();
        }
        self.spawn_mirrors(&config, clients);
        self.spawn_coordinator(publish);
        Ok(())
    }

    /// Stops every task (the coordinator writes the state file one last time).
    pub async fn stop(self) {
        self.token.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Shares verification with the cluster from now on (None: verify alone). Kept across
    /// reconfigures; a `[health]` change that starts every task again keeps it too.
    pub fn set_cluster(&self, cluster: Option<Arc<crate::cluster::Cluster>>) {
        self.shared.cluster.store(cluster);
    }

    /// Puts new admin state in force (from the watched file, or on expiry).
    pub fn set_admin(&self, admin: Arc<crate::admin::AdminState>) {
        lock(&self.shared.view).st.admin = admin;
        self.shared.notify.notify_one();
    }

    /// Reads the state under the lock, with the config it is indexed by.
    pub fn with_state<T>(&self, f: impl FnOnce(&Config, &HealthState) -> T) -> T {
        let v = lock(&self.shared.view);
        f(&v.cfg, &v.st)
    }
}
