//! The download redirector: `GET /<path>` answers `302` to the nearest mirror that verified
//! that file's SHA-256, from the same routing table DNS answers from, so DNS and HTTP never
//! disagree about which mirror is good. What it answers is in [`answer`] (a function of the
//! request and the table); this file accepts HTTP and HTTPS (rustls) connections, with a
//! connection cap past which the connection idle longest is closed, and `http1` serves each
//! connection: our own HTTP/1.1 loop over httparse (pipelining, keep-alive, timeouts, limits).
//!
//! Neither axum nor hyper here: the redirect path is one function, and every request's cost
//! counts (the benchmark compares it with nginx's `return 302`); hyper's connection handling
//! was measured as the larger part of what mirrordns spent per request beyond nginx
//! (bench/README.md). hyper stays for the monitoring endpoint, through axum.

pub mod answer;
pub mod counters;
mod http1;
pub mod request;
mod views;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::config::Config;
use crate::routing::RoutingTable;
pub use counters::RedirectStats;

/// One `[[redirect]]`'s sockets, bound at start.
pub struct Bound {
    /// Index into `Config::redirects`.
    pub index: usize,
    pub plain: Vec<TcpListener>,
    pub tls: Vec<TcpListener>,
}

/// Where each redirector listens (with the real port when the config said port 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addrs {
    pub index: usize,
    pub plain: Vec<SocketAddr>,
    pub tls: Vec<SocketAddr>,
}

/// Binds every redirector's addresses.
pub async fn bind(config: &Config) -> std::io::Result<Vec<Bound>> {
    let mut out = Vec::new();
    for (index, r) in config.redirects.iter().enumerate() {
        let mut b = Bound {
            index,
            plain: Vec::new(),
            tls: Vec::new(),
        };
        for (list, addrs) in [(&mut b.plain, &r.listen), (&mut b.tls, &r.tls_listen)] {
            for a in addrs {
                let l = TcpListener::bind(a).await.map_err(|e| {
                    std::io::Error::new(e.kind(), format!("redirect listen {a}: {e}"))
                })?;
                list.push(l);
            }
        }
        out.push(b);
    }
    Ok(out)
}

impl Bound {
    pub fn addrs(&self) -> Addrs {
        let local = |v: &[TcpListener]| v.iter().filter_map(|l| l.local_addr().ok()).collect();
        Addrs {
            index: self.index,
            plain: local(&self.plain),
            tls: local(&self.tls),
        }
    }
}

/// What every connection reads.
#[derive(Clone)]
pub struct Shared {
    pub table: Arc<ArcSwap<RoutingTable>>,
    pub stats: Arc<RedirectStats>,
}

/// Starts accepting on every bound socket until `shutdown`.
pub fn run(bound: Vec<Bound>, shared: Shared, shutdown: CancellationToken) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for b in bound {
        let conns = Arc::new(Conns::default());
        for (l, tls) in b
            .plain
            .into_iter()
            .map(|l| (l, false))
            .chain(b.tls.into_iter().map(|l| (l, true)))
        {
            tasks.push(tokio::spawn(accept_loop(
                l,
                tls,
                b.index,
                shared.clone(),
                conns.clone(),
                shutdown.clone(),
            )));
        }
    }
    tasks
}

/// Open connections of one redirector, so that at the cap the one idle longest is closed.
#[derive(Default)]
struct Conns {
    next: AtomicU64,
    open: Mutex<HashMap<u64, (Arc<AtomicU64>, CancellationToken)>>,
}

/// Milliseconds since the first use: a connection's last activity, comparable across them.
fn now_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

impl Conns {
    /// Registers a connection, first closing the one idle longest if `max` are open.
    fn admit(&self, max: usize, stats: &RedirectStats) -> (u64, Arc<AtomicU64>, CancellationToken) {
        let id = self.next.fetch_add(1, Relaxed);
        let last = Arc::new(AtomicU64::new(now_ms()));
        let token = CancellationToken::new();
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        while open.len() >= max.max(1) {
            let Some(victim) = open
                .iter()
                .min_by_key(|(_, (l, _))| l.load(Relaxed))
                .map(|(k, _)| *k)
            else {
                break;
            };
            if let Some((_, t)) = open.remove(&victim) {
                t.cancel();
                stats.evictions.fetch_add(1, Relaxed);
            }
        }
        open.insert(id, (last.clone(), token.clone()));
        (id, last, token)
    }

    fn close(&self, id: u64) {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: bool,
    index: usize,
    shared: Shared,
    conns: Arc<Conns>,
    shutdown: CancellationToken,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors and the like: pause rather than spin.
                    warn!(error = %e, "redirect: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let table = shared.table.load();
        let Some(cfg) = table.config.redirects.get(index) else {
            // Removed by a reload: its sockets stay bound until restart, but answer nothing.
            continue;
        };
        let (max, idle) = (cfg.max_connections, cfg.idle_timeout);
        let acceptor = tls.then(|| cfg.tls.as_ref().map(|t| t.config.clone()));
        drop(table);
        let (id, last, token) = conns.admit(max, &shared.stats);
        let (shared, conns, stop) = (shared.clone(), conns.clone(), shutdown.clone());
        tokio::spawn(async move {
            let conn = Conn {
                peer,
                index,
                shared,
                idle,
                last,
            };
            tokio::select! {
                _ = token.cancelled() => {}
                _ = stop.cancelled() => {}
                _ = async {
                    match acceptor {
                        None => conn.serve(stream).await,
                        Some(None) => debug!("redirect: TLS listener without a certificate"),
                        Some(Some(cfg)) => {
                            let acc = tokio_rustls::TlsAcceptor::from(cfg);
                            match tokio::time::timeout(idle, acc.accept(stream)).await {
                                Ok(Ok(s)) => conn.serve(s).await,
                                Ok(Err(e)) => debug!(%peer, error = %e, "redirect: TLS handshake failed"),
                                Err(_) => debug!(%peer, "redirect: TLS handshake timed out"),
                            }
                        }
                    }
                } => {}
            }
            conns.close(id);
        });
    }
}

/// One connection.
struct Conn {
    peer: SocketAddr,
    index: usize,
    shared: Shared,
    idle: Duration,
    last: Arc<AtomicU64>,
}

impl Conn {
    async fn serve<S>(self, io: S)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        http1::serve(io, &self).await;
    }
}
