//! The running server: loaded state, the published routing table, listeners, the monitoring
//! endpoint, reload and shutdown. `mirrordns serve` and the integration tests start it through
//! the same [`Server::start`].
//!
//! The daemon owns and wires everything; it alone writes the shared state ([`Published`]).
//! The monitoring endpoint gets a [`Monitor`]: reads, and a way to ask for a reload.

mod cluster;
mod watch;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::admin::AdminState;
use crate::diag::{Problem, Problems};
use crate::dns::server::{self, Listeners, TcpLimits};
use crate::dns::{Guard, Stats};
use crate::health::{self, Health, Publisher};
use crate::load::Loaded;
use crate::metrics::{BUILD_BUCKETS, Histogram};
use crate::monitor::{ConfigInfo, Monitor, Published, Reload, ReloadFuture, ServerMetrics};
use crate::notify::{self, Notifier};
use crate::routing::{self, Inputs, RoutingTable};

/// The daemon's own side of the running server: what it shares ([`Published`]) and what
/// only it uses to change it. Readers get a [`Monitor`] instead.
struct Daemon {
    shared: Arc<Published>,
    /// systemd's notification socket, when started by systemd.
    notifier: Option<Notifier>,
    /// Serialises reloads (SIGHUP, `POST /reload`, a watched file) for their whole length, the
    /// geo compile included. Nothing the monitoring endpoint or the admin-state watcher
    /// needs waits on it.
    reload_lock: Mutex<()>,
    /// For configs without probes: how to publish again when the admin state changes.
    static_publish: std::sync::Mutex<StaticPublish>,
}

/// A server that is answering queries.
pub struct Server {
    daemon: Arc<Daemon>,
    http_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    http_shutdown: CancellationToken,
    dns: Mutex<Option<JoinHandle<std::io::Result<()>>>>,
    http: Mutex<Option<JoinHandle<()>>>,
    /// The download redirectors' accept loops.
    redirect: Mutex<Vec<JoinHandle<()>>>,
}

impl Server {
    /// Binds every listener and starts answering from `loaded`.
    pub async fn start(mut loaded: Loaded) -> std::io::Result<Server> {
        let cfg = loaded.config.clone();
        let listeners = Listeners::bind(
            &cfg.server.dns_listen,
            cfg.server.udp_recv_buffer,
            cfg.server.udp_workers,
        )?;
        let http_listener = match cfg.server.http_listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| std::io::Error::new(e.kind(), format!("HTTP {addr}: {e}")))?,
            ),
            None => None,
        };
        let http_addr = http_listener.as_ref().and_then(|l| l.local_addr().ok());
        let redirect_bound = crate::redirect::bind(&cfg).await?;
        let redirect_addrs: Vec<crate::redirect::Addrs> =
            redirect_bound.iter().map(|b| b.addrs()).collect();
        let redirect_stats = Arc::new(crate::redirect::RedirectStats::default());
        let dns_addrs = listeners.local_addrs().to_vec();
        let table = Arc::new(ArcSwap::from_pointee(loaded.table(1)));
        let stats = Arc::new(Stats::default());
        let metrics = Arc::new(ServerMetrics {
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            admin_rejected: AtomicU64::new(0),
            swaps: AtomicU64::new(0),
            build: Histogram::new(BUILD_BUCKETS),
        });
        let shutdown = CancellationToken::new();
        let limits = TcpLimits {
            idle_timeout: cfg.server.tcp_idle_timeout,
            max_connections: cfg.server.tcp_max_connections,
            max_per_client: cfg.server.tcp_max_per_client,
        };
        let (admin_state, admin_err) = load_admin(&cfg, &metrics);
        let admin_state = admin_state.unwrap_or_default();
        let admin = Arc::new(ArcSwap::from_pointee(admin_state.clone()));
        let cluster = cluster::start(&cfg);
        // The compiled tables are all the DNS path needs; explanations re-open the database.
        loaded.geo.release_database();
        let Loaded { inputs, geo, .. } = loaded;
        let guard = Arc::new(ArcSwap::from_pointee(Guard::new(cfg.rate_limit.table_size)));
        let shared = Arc::new(Published {
            dns_addrs: dns_addrs.clone(),
            config_path: cfg.path.clone(),
            started_at: SystemTime::now(),
            table: table.clone(),
            generation: Arc::new(AtomicU64::new(1)),
            stats: stats.clone(),
            metrics,
            guard: guard.clone(),
            config_info: ArcSwap::from_pointee(ConfigInfo {
                generation: 1,
                loaded_at: SystemTime::now(),
                last_error: None,
            }),
            admin,
            admin_file: ArcSwap::from_pointee(admin_state),
            admin_cluster: ArcSwap::default(),
            cluster: ArcSwapOption::new(cluster),
            admin_error: ArcSwapOption::from_pointee(admin_err.map(|e| (SystemTime::now(), e))),
            geo: ArcSwap::from_pointee(geo),
            prober: Mutex::new(None),
            dns_running: AtomicBool::new(true),
            redirect_addrs,
            redirect_stats: redirect_stats.clone(),
            table_stored: Arc::new(tokio::sync::watch::Sender::new(())),
            notify: Arc::default(),
        });
        // Subscribed before the first publish below, so that no change goes unseen.
        let table_stored = shared.table_stored.subscribe();
        let static_publish = start_health(&inputs, &mut *shared.prober.lock().await, &shared)
            .await
            .map_err(std::io::Error::other)?;
        release_free_memory();
        let daemon = Arc::new(Daemon {
            shared: shared.clone(),
            notifier: Notifier::from_env(),
            reload_lock: Mutex::new(()),
            static_publish: std::sync::Mutex::new(static_publish),
        });
        let dns_shared = server::Shared {
            table,
            stats,
            guard,
        };
        let dns_run = server::run(listeners, dns_shared, limits, shutdown.clone());
        let running = shared.clone();
        let dns = tokio::spawn(async move {
            let r = dns_run.await;
            running.dns_running.store(false, Ordering::Relaxed);
            r
        });
        let redirect_tasks = crate::redirect::run(
            redirect_bound,
            crate::redirect::Shared {
                table: shared.table.clone(),
                stats: redirect_stats,
            },
            shutdown.clone(),
        );
        tokio::spawn(watch::watch_admin(daemon.clone(), shutdown.clone()));
        tokio::spawn(cluster::follow(daemon.clone(), shutdown.clone()));
        tokio::spawn(refresh_signatures(shared.clone(), shutdown.clone()));
        tokio::spawn(crate::dns::notify::run(
            shared.table.clone(),
            table_stored,
            shared.notify.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(watch::watch_files(daemon.clone(), shutdown.clone()));
        let http_shutdown = CancellationToken::new();
        let http = http_listener.map(|l| {
            let monitor = Monitor::new(shared.clone(), daemon.clone());
            tokio::spawn(crate::http::serve(l, monitor, http_shutdown.clone()))
        });
        info!(
            dns = %dns_addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
            http = %http_addr.map_or_else(|| "none".to_string(), |a| a.to_string()),
            zones = cfg.server.zones.len(),
            services = cfg.services.len(),
            "serving"
        );
        Ok(Server {
            daemon,
            http_addr,
            shutdown,
            http_shutdown,
            dns: Mutex::new(Some(dns)),
            http: Mutex::new(http),
            redirect: Mutex::new(redirect_tasks),
        })
    }

    /// The addresses DNS is served on (with the real port when the config said port 0).
    pub fn dns_addrs(&self) -> &[SocketAddr] {
        &self.daemon.shared.dns_addrs
    }

    /// Where each `[[redirect]]` listens (with the real ports).
    pub fn redirect_addrs(&self) -> &[crate::redirect::Addrs] {
        &self.daemon.shared.redirect_addrs
    }

    /// The monitoring endpoint's address, if enabled.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Completes when the DNS listeners are being stopped: by [`Server::shutdown`], or on
    /// their own when a UDP worker died (the listeners cancel the shared token themselves).
    pub async fn dns_stopping(&self) {
        self.shutdown.cancelled().await
    }

    /// The published routing table.
    pub fn table(&self) -> &Arc<ArcSwap<RoutingTable>> {
        &self.daemon.shared.table
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.daemon.shared.stats
    }

    /// Reloads config, zones and geo data and returns the new config generation. On any
    /// problem nothing changes and the problems are returned (and counted, and shown in
    /// `/status`).
    pub async fn reload(&self) -> Result<u64, Problems> {
        self.daemon.reload_and_notify().await
    }

    /// Reads the prober's state, if there is a prober.
    pub async fn with_health<T>(
        &self,
        f: impl FnOnce(&crate::config::Config, &health::state::HealthState) -> T,
    ) -> Option<T> {
        self.daemon.shared.with_health(f).await
    }

    /// Stops answering DNS, waits for in-flight TCP answers, stops the probes (writing the
    /// state file), then the monitoring endpoint.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        if let Some(h) = self.dns.lock().await.take() {
            match h.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => error!(error = %e, "DNS listeners failed"),
                Err(e) => error!(error = %e, "DNS task panicked"),
            }
        }
        for h in self.redirect.lock().await.drain(..) {
            let _ = h.await;
        }
        if let Some(h) = self.daemon.shared.prober.lock().await.take() {
            h.stop().await;
        }
        self.http_shutdown.cancel();
        if let Some(h) = self.http.lock().await.take() {
            let _ = h.await;
        }
    }

    pub fn config_path(&self) -> &Path {
        &self.daemon.shared.config_path
    }
}

impl Reload for Daemon {
    fn reload(self: Arc<Self>) -> ReloadFuture {
        // A task of its own: an HTTP client that hangs up must not cancel a reload half-way
        // (guard and admin state swapped, the prober not yet, the config generation not moved).
        Box::pin(async move {
            let path = self.shared.config_path.clone();
            tokio::spawn(async move { self.reload_and_notify().await })
                .await
                .unwrap_or_else(|e| {
                    Err(Problems::from(Problem::new(
                        &path,
                        None,
                        None,
                        format!("reload task failed: {e}"),
                    )))
                })
        })
    }
}

impl Daemon {
    /// Reloads config, zones and geo data from the config file and returns the new config
    /// generation (`/status` config.generation). On any problem nothing changes and the
    /// problems are returned (and counted, and shown in `/status`). Listen
    /// addresses are not rebound. Probe state carries over for mirrors with the same name and
    /// base URL.
    ///
    /// Under systemd, every reload (SIGHUP, `POST /reload`, a watched file) is announced as
    /// RELOADING=1, then READY=1 with the status line.
    async fn reload_and_notify(&self) -> Result<u64, Problems> {
        if let Some(n) = &self.notifier {
            n.reloading();
        }
        let result = self.reload_files().await;
        self.notify(&format!(
            "READY=1\nSTATUS={}",
            self.status_line(result.as_ref().err())
        ));
        result
    }

    async fn reload_files(&self) -> Result<u64, Problems> {
        let _reloading = self.reload_lock.lock().await;
        let sh = &self.shared;
        let path = sh.config_path.clone();
        // Compiling a GeoLite2-City database takes seconds: it runs with no lock held that
        // `/status`, `/metrics` or an on-call action need.
        let loaded = tokio::task::spawn_blocking(move || Loaded::from_file(&path))
            .await
            .map_err(|e| {
                Problems::from(Problem::new(
                    &sh.config_path,
                    None,
                    None,
                    format!("reload task failed: {e}"),
                ))
            })
            .and_then(|r| r);
        let mut loaded = match loaded {
            Ok(l) => l,
            Err(p) => {
                sh.metrics.reloads_failed.fetch_add(1, Ordering::Relaxed);
                // Only reloads write the config info, and they hold the reload lock.
                let mut ci = ConfigInfo::clone(&sh.config_info.load());
                ci.last_error = Some((SystemTime::now(), p.to_string()));
                sh.config_info.store(Arc::new(ci));
                return Err(p);
            }
        };
        // Answer counts go on from where they were (Prometheus counters never go down).
        loaded.continue_counters(&sh.table.load());
        loaded.warn_serials_going_back(&sh.table.load());
        let listens = |c: &crate::config::Config| -> Vec<_> {
            c.redirects
                .iter()
                .map(|r| (r.listen.clone(), r.tls_listen.clone()))
                .collect()
        };
        if listens(&loaded.config) != listens(&sh.table.load().config) {
            warn!(
                "[[redirect]] sections or their listen addresses changed: sockets are bound at start, so this takes a restart; the rest of each redirector's settings apply now by position"
            );
        }
        let wanted = loaded.config.rate_limit.table_size;
        let guard = sh.guard.load_full();
        if wanted != guard.rrl.cells() {
            // The UDP workers pick the new table up with their next batch. Counting starts
            // again, so a flood in progress gets at most one more burst.
            let g = guard.with_table_size(wanted);
            info!(
                from = guard.rrl.cells(),
                to = g.rrl.cells(),
                "rate-limit table resized; flows are counted afresh"
            );
            sh.guard.store(Arc::new(g));
        }
        // The admin state is checked against the new config (mirror names may have changed).
        let (admin_state, admin_err) = load_admin(&loaded.config, &sh.metrics);
        sh.store_admin(admin_state, None);
        cluster::reconfigure(sh, &loaded.config);
        sh.admin_error
            .store(admin_err.map(|e| Arc::new((SystemTime::now(), e))));
        {
            // Held while the prober takes the new config (tasks of unchanged mirrors go on;
            // others stop at their next await) and publishes its first table: one
            // routing-table build, milliseconds.
            let mut health = sh.prober.lock().await;
            match start_health(&loaded.inputs, &mut health, sh).await {
                Ok(stat) => *lock(&self.static_publish) = stat,
                Err(e) => {
                    // Only an HTTP client that cannot be built gets here (the CA file is checked
                    // at load). Never publish unprobed mirrors: a running prober goes on with
                    // the previous config and table.
                    error!(error = %e, "prober not reconfigured; still serving the previous routing table");
                }
            }
        }
        loaded.geo.release_database();
        sh.geo.store(Arc::new(loaded.geo));
        release_free_memory();
        let config_generation = {
            let prev = sh.config_info.load();
            let ci = ConfigInfo {
                generation: prev.generation + 1,
                loaded_at: SystemTime::now(),
                last_error: None,
            };
            let generation = ci.generation;
            sh.config_info.store(Arc::new(ci));
            generation
        };
        sh.metrics.reloads_ok.fetch_add(1, Ordering::Relaxed);
        let routing_generation = sh.generation.load(Ordering::Relaxed);
        info!(config_generation, routing_generation, "reloaded");
        Ok(config_generation)
    }
}

/// Locks a std mutex, taking the data as it is if a thread panicked while holding it: every
/// one of these guards plain values that a panic cannot leave half-written. The one way
/// poisoning is handled in the daemon.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Compiling a GeoLite2-City database peaks near a gigabyte of short-lived allocations; hand
/// the freed memory back to the OS so the resident size reflects what serving needs.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap memory; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A publisher that builds a routing table from each health snapshot and swaps it in. It
/// holds the pieces it writes, not `shared`: the prober that keeps it lives in `shared`.
fn publisher(inputs: &Arc<Inputs>, shared: &Published) -> Publisher {
    let inputs = inputs.clone();
    let (table, generation, metrics, admin, stored) = (
        shared.table.clone(),
        shared.generation.clone(),
        shared.metrics.clone(),
        shared.admin.clone(),
        shared.table_stored.clone(),
    );
    Arc::new(move |snap| {
        let started = Instant::now();
        // On-call drains and force-ups override what the probes say.
        let mut snap = snap.clone();
        admin
            .load()
            .apply(&inputs.config, &mut snap, SystemTime::now());
        let g = generation.fetch_add(1, Ordering::Relaxed) + 1;
        let t = routing::build_after(&inputs, &snap, g, Some(&table.load()));
        metrics.build.observe(started.elapsed());
        table.store(Arc::new(t));
        metrics.swaps.fetch_add(1, Ordering::Relaxed);
        stored.send_replace(());
    })
}

/// Makes signatures again before they expire, when no health change or reload has: builds
/// the table's signatures off to the side (only the sets that came due are signed) and swaps
/// the result in unless a newer table got there first, whose own build used the same cache.
async fn refresh_signatures(shared: Arc<Published>, shutdown: CancellationToken) {
    // Also the longest wait, so that a reload that adds `[dnssec]` is noticed.
    const CHECK: std::time::Duration = std::time::Duration::from_secs(30);
    loop {
        let current = shared.table.load_full();
        let now = SystemTime::now();
        let wait = match current.dnssec.as_ref() {
            None => CHECK,
            Some(sg) => {
                let unix = now
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                std::time::Duration::from_secs(sg.due.refresh_at.saturating_sub(unix)).min(CHECK)
            }
        };
        if wait.is_zero() {
            let g = shared.generation.fetch_add(1, Ordering::Relaxed) + 1;
            let old = current.clone();
            let built = tokio::task::spawn_blocking(move || old.resigned(g, now)).await;
            if let Ok(Some(t)) = built {
                let prev = shared.table.compare_and_swap(&current, Arc::new(t));
                if Arc::ptr_eq(&prev, &current) {
                    shared.metrics.swaps.fetch_add(1, Ordering::Relaxed);
                    shared.table_stored.send_replace(());
                    info!(generation = g, "signatures refreshed");
                }
            }
            // Never spin: a failed signing keeps the old signatures and comes due again in a
            // minute.
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            }
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// For configs without probes: the publisher and the snapshot to publish again when the
/// admin state changes.
type StaticPublish = Option<(Publisher, routing::HealthSnapshot)>;

/// Starts the prober if the config has anything to probe, or puts the config in force in the
/// running one (which keeps what is unchanged going: counters, verifications in flight; see
/// `Health::reconfigure`); otherwise stops it and publishes the static table. `health` is
/// `shared.prober`, locked by the caller for the swap.
async fn start_health(
    inputs: &Arc<Inputs>,
    health: &mut Option<Health>,
    shared: &Published,
) -> Result<StaticPublish, health::ClientsError> {
    // The prober gets the very config the tables are built from: `http::with_table` pairs its
    // state with a table by comparing the two pointers.
    let config = &inputs.config;
    let publish = publisher(inputs, shared);
    if !config.has_probes() {
        if let Some(h) = health.take() {
            h.stop().await;
        }
        let snap = routing::HealthSnapshot::static_config(config);
        publish(&snap);
        return Ok(Some((publish, snap)));
    }
    let admin = shared.admin.load_full();
    if let Some(h) = health {
        h.reconfigure(config.clone(), admin, publish).await?;
        h.set_cluster(shared.cluster.load_full());
        return Ok(None);
    }
    let mut state = health::initial_state(config, None);
    state.admin = admin;
    *health = Some(Health::start(
        config.clone(),
        state,
        publish,
        shared.cluster.load_full(),
    )?);
    Ok(None)
}

/// Reads the admin-state file named by the config: the state (None if rejected) and the
/// error text.
fn load_admin(
    cfg: &crate::config::Config,
    metrics: &ServerMetrics,
) -> (Option<AdminState>, Option<String>) {
    let Some(path) = &cfg.server.admin_state else {
        return (Some(AdminState::default()), None);
    };
    match crate::admin::load(path, cfg) {
        Ok(a) => (Some(a), None),
        Err(p) => {
            metrics.admin_rejected.fetch_add(1, Ordering::Relaxed);
            for problem in &p.0 {
                error!(%problem, "admin state rejected; the previous one stays in force");
            }
            (None, Some(p.to_string()))
        }
    }
}

/// Why `serve` ended with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("the DNS listeners stopped")]
    DnsStopped,
}

/// Runs `serve` until SIGTERM or SIGINT; SIGHUP reloads. Under systemd (`NOTIFY_SOCKET`), says
/// when it answers and stops, and pings the watchdog while every DNS listener runs. Exits with
/// an error if the DNS listeners stop on their own, so that a supervisor restarts it.
pub async fn serve(loaded: Loaded) -> Result<(), ServeError> {
    use tokio::signal::unix::{SignalKind, signal};
    // Handlers first: the server answers as soon as it starts, and a SIGTERM that a supervisor
    // sends right then must stop it cleanly rather than kill it with the default action.
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let server = Server::start(loaded).await?;
    let daemon = server.daemon.clone();
    daemon.notify(&format!("READY=1\nSTATUS={}", daemon.status_line(None)));
    let watchdog = daemon
        .notifier
        .as_ref()
        .and(notify::watchdog_interval())
        .map(|every| tokio::spawn(ping_watchdog(daemon.clone(), every)));
    let mut failed = false;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                info!("SIGHUP: reloading");
                if let Err(p) = server.reload().await {
                    for problem in &p.0 {
                        error!(%problem, "reload rejected; still serving the previous state");
                    }
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = server.dns_stopping() => {
                error!("the DNS listeners stopped; exiting so that the supervisor restarts the server");
                failed = true;
                break;
            }
        }
    }
    info!("shutting down");
    daemon.notify("STOPPING=1\nSTATUS=shutting down");
    if let Some(w) = watchdog {
        w.abort();
    }
    server.shutdown().await;
    if failed {
        return Err(ServeError::DnsStopped);
    }
    Ok(())
}

impl Daemon {
    fn notify(&self, state: &str) {
        if let Some(n) = &self.notifier {
            n.send(state);
        }
    }

    /// The one-line status `systemctl status` shows.
    fn status_line(&self, rejected: Option<&Problems>) -> String {
        let generation = self.shared.config_info.load().generation;
        let addrs: Vec<String> = self
            .shared
            .dns_addrs
            .iter()
            .map(|a| a.to_string())
            .collect();
        let mut s = format!(
            "serving config generation {generation} on {}",
            addrs.join(" ")
        );
        if let Some(first) = rejected.and_then(|p| p.0.first()) {
            // One line: systemd shows STATUS up to the first newline.
            s.push_str("; last reload rejected: ");
            s.push_str(first.to_string().lines().next().unwrap_or_default());
        }
        s
    }
}

/// Pings systemd's watchdog while the DNS listeners run. When one stops, the pings stop (and
/// `serve` exits with an error), so systemd restarts the service as `WatchdogSec=` asks.
async fn ping_watchdog(daemon: Arc<Daemon>, every: std::time::Duration) {
    loop {
        if daemon.shared.dns_running.load(Ordering::Relaxed) {
            daemon.notify("WATCHDOG=1");
        }
        tokio::time::sleep(every).await;
    }
}
