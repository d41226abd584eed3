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

use crate::diag::Problems;
use crate::dns::Stats;
use crate::dns::server::{self, Listeners, TcpLimits};
use crate::load::Loaded;
use crate::routing::RoutingTable;

/// A server that is answering queries.
pub struct Server {
    addrs: Vec<SocketAddr>,
    config_path: PathBuf,
    table: Arc<ArcSwap<RoutingTable>>,
    stats: Arc<Stats>,
    generation: AtomicU64,
    /// Serialises reloads: one table is built at a time.
    reload_lock: Mutex<()>,
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
            generation: AtomicU64::new(1),
            reload_lock: Mutex::new(()),
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
    /// changes and the problems are returned. Listen addresses are not rebound.
    pub async fn reload(&self) -> Result<u64, Problems> {
        let _guard = self.reload_lock.lock().await;
        let path = self.config_path.clone();
        let loaded = tokio::task::spawn_blocking(move || Loaded::from_file(&path))
            .await
            .map_err(|e| {
                Problems::from(crate::diag::Problem::new(
                    &self.config_path,
                    None,
                    None,
                    format!("reload task failed: {e}"),
                ))
            })??;
        let generation = self.next_generation();
        self.table.store(Arc::new(loaded.table(generation)));
        info!(generation, "reloaded");
        Ok(generation)
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
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }
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
