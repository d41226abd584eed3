//! The running server: loaded state, the published routing table, listeners, reload and
//! shutdown. `mirrordns serve` and the integration tests start it through the same
//! [`Server::start`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::diag::{Problem, Problems};
use crate::dns::Stats;
use crate::dns::server::{self, Listeners, TcpLimits};
use crate::health::{self, Health, Publisher};
use crate::load::Loaded;
use crate::routing::{self, RoutingTable};

/// A server that is answering queries.
pub struct Server {
    addrs: Vec<SocketAddr>,
    config_path: PathBuf,
    table: Arc<ArcSwap<RoutingTable>>,
    stats: Arc<Stats>,
    generation: Arc<AtomicU64>,
    /// The prober, when the config has anything to probe. Its lock also serialises reloads.
    health: Mutex<Option<Health>>,
    shutdown: CancellationToken,
    dns: Mutex<Option<JoinHandle<std::io::Result<()>>>>,
}

impl Server {
    /// Binds every listener and starts answering from `loaded`.
    pub async fn start(loaded: Loaded) -> std::io::Result<Server> {
        let cfg = loaded.config.clone();
        let listeners = Listeners::bind(&cfg.server.dns_listen, cfg.server.udp_recv_buffer)?;
        let addrs = listeners.local_addrs().to_vec();
        let table = Arc::new(ArcSwap::from_pointee(loaded.table(1)));
        let stats = Arc::new(Stats::default());
        let shutdown = CancellationToken::new();
        let limits = TcpLimits {
            idle_timeout: cfg.server.tcp_idle_timeout,
            max_connections: cfg.server.tcp_max_connections,
        };
        let generation = Arc::new(AtomicU64::new(1));
        let health =
            start_health(&loaded, None, &table, &generation).map_err(std::io::Error::other)?;
        let dns = tokio::spawn(server::run(
            listeners,
            table.clone(),
            stats.clone(),
            limits,
            shutdown.clone(),
        ));
        info!(listen = ?addrs, zones = cfg.server.zones.len(), services = cfg.services.len(), "serving DNS");
        Ok(Server {
            addrs,
            config_path: cfg.path.clone(),
            table,
            stats,
            generation,
            health: Mutex::new(health),
            shutdown,
            dns: Mutex::new(Some(dns)),
        })
    }

    /// The addresses DNS is served on (with the real port when the config said port 0).
    pub fn dns_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The published routing table.
    pub fn table(&self) -> &Arc<ArcSwap<RoutingTable>> {
        &self.table
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// The generation number for the next table.
    pub fn next_generation(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Reloads config, zones and geo data from the config file. On any problem nothing
    /// changes and the problems are returned. Listen addresses are not rebound. Probe state
    /// carries over for mirrors with the same name and base URL.
    pub async fn reload(&self) -> Result<u64, Problems> {
        let mut health = self.health.lock().await;
        let path = self.config_path.clone();
        let loaded = tokio::task::spawn_blocking(move || Loaded::from_file(&path))
            .await
            .map_err(|e| {
                Problems::from(Problem::new(
                    &self.config_path,
                    None,
                    None,
                    format!("reload task failed: {e}"),
                ))
            })??;
        let carried = match health.take() {
            Some(h) => Some(h.stop().await),
            None => None,
        };
        let carried_ref = carried.as_ref().map(|(c, s)| (c.as_ref(), s));
        match start_health(&loaded, carried_ref, &self.table, &self.generation) {
            Ok(h) => *health = h,
            Err(e) => {
                // Only an HTTP client that cannot be built gets here (the CA file is checked at
                // load). Never publish unprobed mirrors: keep the last table.
                error!(error = %e, "prober not started; still serving the previous routing table");
            }
        }
        let generation = self.generation.load(Ordering::Relaxed);
        info!(generation, "reloaded");
        Ok(generation)
    }

    /// Reads the prober's state, if there is a prober.
    pub async fn with_health<T>(
        &self,
        f: impl FnOnce(&crate::config::Config, &health::state::HealthState) -> T,
    ) -> Option<T> {
        self.health.lock().await.as_ref().map(|h| h.with_state(f))
    }

    /// Stops answering and waits for in-flight TCP answers.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        if let Some(h) = self.dns.lock().await.take() {
            match h.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => error!(error = %e, "DNS listeners failed"),
                Err(e) => error!(error = %e, "DNS task panicked"),
            }
        }
        // Probes stop after DNS; stopping writes the state file.
        if let Some(h) = self.health.lock().await.take() {
            h.stop().await;
        }
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }
}

/// A publisher that builds a routing table from each health snapshot and swaps it in.
fn publisher(
    loaded: &Loaded,
    table: &Arc<ArcSwap<RoutingTable>>,
    generation: &Arc<AtomicU64>,
) -> Publisher {
    let (config, zones, maps) = (
        loaded.config.clone(),
        loaded.zones.clone(),
        loaded.maps.clone(),
    );
    let (table, generation) = (table.clone(), generation.clone());
    Arc::new(move |snap| {
        let g = generation.fetch_add(1, Ordering::Relaxed) + 1;
        table.store(Arc::new(routing::build(&config, &zones, &maps, snap, g)));
    })
}

/// Starts the prober if the config has anything to probe; otherwise publishes the static table.
fn start_health(
    loaded: &Loaded,
    carried: Option<(&crate::config::Config, &health::state::HealthState)>,
    table: &Arc<ArcSwap<RoutingTable>>,
    generation: &Arc<AtomicU64>,
) -> Result<Option<Health>, String> {
    if !loaded.config.has_probes() {
        let g = generation.fetch_add(1, Ordering::Relaxed) + 1;
        table.store(Arc::new(loaded.table(g)));
        return Ok(None);
    }
    let state = health::initial_state(&loaded.config, carried);
    Health::start(
        loaded.config.clone(),
        state,
        publisher(loaded, table, generation),
    )
    .map(Some)
}

/// Runs `serve` until SIGTERM or SIGINT; SIGHUP reloads.
pub async fn serve(loaded: Loaded) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let server = Server::start(loaded).await?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
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
        }
    }
    info!("shutting down");
    server.shutdown().await;
    Ok(())
}
