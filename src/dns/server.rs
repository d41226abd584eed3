//! UDP and TCP listeners: move bytes between sockets and `answer::handle`.
//!
//! One task per UDP socket (no task per packet), one task per TCP connection with an idle
//! timeout and a global cap on connections. Every task watches the shutdown token; a TCP
//! connection finishes the query it is answering before it closes.

use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, warn};

use super::answer::{Transport, handle};
use super::{Guard, Stats, transfer};
use crate::routing::RoutingTable;

/// Bound sockets, before any task runs: binding happens first so that errors (port in use,
/// no permission for port 53) are reported before the server claims to be up.
pub struct Listeners {
    udp: Vec<StdUdpSocket>,
    tcp: Vec<StdTcpListener>,
    addrs: Vec<SocketAddr>,
}

fn udp_socket(addr: SocketAddr, recv_buffer: usize) -> io::Result<StdUdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    // One socket per UDP worker on the same address; the kernel spreads queries over them.
    s.set_reuse_port(true)?;
    // Bursts of queries overflow the default buffer (about 200 KiB) and are dropped silently.
    if let Err(e) = s.set_recv_buffer_size(recv_buffer) {
        warn!(%addr, error = %e, "cannot raise the UDP receive buffer");
    }
    if let Err(e) = omit_path_mtu(&s, addr.is_ipv6()) {
        warn!(%addr, error = %e, "cannot turn off path MTU discovery on the UDP socket");
    }
    s.bind(&addr.into())?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// Answers go out without the DF bit and never at a path MTU learnt from ICMP (Linux's
/// IP_PMTUDISC_OMIT, as BIND, Knot and gdnsd set): a forged "fragmentation needed" would
/// otherwise make the kernel fragment our answers to that client, and spoofed fragments are
/// a known way to poison resolver caches (RFC 9715). Answers fit 1232 bytes unless a client
/// asks for more, so nothing else changes.
fn omit_path_mtu(s: &Socket, v6: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (level, name, value) = if v6 {
        (
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_OMIT,
        )
    } else {
        (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_OMIT,
        )
    };
    // SAFETY: a plain int option on a socket we own.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn tcp_listener(addr: SocketAddr) -> io::Result<StdTcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

impl Listeners {
    /// Binds UDP (`udp_per_addr` sockets with SO_REUSEPORT) and TCP on every address. Port 0
    /// picks one free port for all of them.
    pub fn bind(
        addrs: &[SocketAddr],
        recv_buffer: usize,
        udp_per_addr: usize,
    ) -> io::Result<Listeners> {
        let mut l = Listeners {
            udp: Vec::new(),
            tcp: Vec::new(),
            addrs: Vec::new(),
        };
        for &addr in addrs {
            let mut tries = 0;
            let (udp, tcp, bound) = loop {
                let udp = udp_socket(addr, recv_buffer)
                    .map_err(|e| io::Error::new(e.kind(), format!("UDP {addr}: {e}")))?;
                let bound = udp.local_addr()?;
                match tcp_listener(bound) {
                    Ok(tcp) => break (udp, tcp, bound),
                    // The port picked for UDP may be taken for TCP; pick again.
                    Err(e) if addr.port() == 0 && tries < 20 => {
                        tries += 1;
                        debug!(%bound, error = %e, "TCP port taken, retrying");
                    }
                    Err(e) => return Err(io::Error::new(e.kind(), format!("TCP {bound}: {e}"))),
                }
            };
            l.udp.push(udp);
            for _ in 1..udp_per_addr.max(1) {
                l.udp.push(
                    udp_socket(bound, recv_buffer)
                        .map_err(|e| io::Error::new(e.kind(), format!("UDP {bound}: {e}")))?,
                );
            }
            l.tcp.push(tcp);
            l.addrs.push(bound);
        }
        Ok(l)
    }

    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }
}

/// Settings for the listeners.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// Concurrent connections from one client address.
    pub max_per_client: usize,
}

/// Connections open per client address; an entry leaves when its last connection closes.
#[derive(Default)]
struct PerClient(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

impl PerClient {
    fn try_add(&self, ip: std::net::IpAddr, max: usize) -> bool {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(ip).or_insert(0);
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    fn remove(&self, ip: std::net::IpAddr) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }
}

/// What every listener reads: the current routing table, the counters, the protection state.
#[derive(Clone)]
pub struct Shared {
    pub table: Arc<ArcSwap<RoutingTable>>,
    pub stats: Arc<Stats>,
    /// Swapped whole when a reload resizes the rate-limit table.
    pub guard: Arc<ArcSwap<Guard>>,
}

/// Serves until `shutdown` is cancelled, then waits for in-flight TCP answers.
pub async fn run(
    listeners: Listeners,
    shared: Shared,
    limits: TcpLimits,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let tracker = TaskTracker::new();
    let conns = Arc::new(Semaphore::new(limits.max_connections));
    // UDP: one OS thread per socket (see `udp`), stopped through a flag they poll.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for (n, s) in listeners.udp.into_iter().enumerate() {
        let (sh, stop) = (shared.clone(), stop.clone());
        let h = std::thread::Builder::new()
            .name(format!("udp-{n}"))
            .spawn(move || super::udp::worker(s, sh.table, sh.stats, sh.guard, stop))?;
        workers.push(h);
    }
    for l in listeners.tcp {
        let l = TcpListener::from_std(l)?;
        tracker.spawn(tcp_accept(
            l,
            shared.clone(),
            limits,
            conns.clone(),
            tracker.clone(),
            shutdown.clone(),
        ));
    }
    // A UDP worker only ends on its own if it panicked or could not set up its socket: then
    // this server no longer answers on that socket, so everything stops and the caller (and
    // a supervisor) hears of it rather than half the queries going unanswered.
    let died = async {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if let Some(w) = workers.iter().find(|w| w.is_finished()) {
                return w.thread().name().unwrap_or("udp").to_string();
            }
        }
    };
    let died = tokio::select! {
        _ = shutdown.cancelled() => None,
        name = died => Some(name),
    };
    if let Some(name) = &died {
        error!(worker = %name, "a UDP worker stopped; stopping the DNS listeners");
        shutdown.cancel();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    tracker.close();
    tracker.wait().await;
    // Workers notice the flag within one receive timeout.
    let _ = tokio::task::spawn_blocking(move || {
        for w in workers {
            let _ = w.join();
        }
    })
    .await;
    match died {
        Some(name) => Err(io::Error::other(format!("UDP worker {name} stopped"))),
        None => Ok(()),
    }
}

async fn tcp_accept(
    listener: TcpListener,
    shared: Shared,
    limits: TcpLimits,
    conns: Arc<Semaphore>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let per_client = Arc::new(PerClient::default());
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %e, "TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = conns.clone().try_acquire_owned() else {
            debug!(%peer, "TCP connection limit reached, closing");
            continue;
        };
        // One client (a slowloris, or a broken resolver) cannot take every connection.
        if !per_client.try_add(peer.ip(), limits.max_per_client) {
            debug!(%peer, "TCP per-client connection limit reached, closing");
            continue;
        }
        let (shared, shutdown, per_client) = (shared.clone(), shutdown.clone(), per_client.clone());
        tracker.spawn(async move {
            tcp_conn(stream, peer, shared, limits.idle_timeout, shutdown).await;
            per_client.remove(peer.ip());
            drop(permit);
        });
    }
}

async fn tcp_conn(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: Shared,
    idle: Duration,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(512);
    let mut out = Vec::with_capacity(4096);
    loop {
        let mut len = [0u8; 2];
        let read = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = tokio::time::timeout(idle, stream.read_exact(&mut len)) => r,
        };
        if !matches!(read, Ok(Ok(_))) {
            break;
        }
        buf.resize(u16::from_be_bytes(len) as usize, 0);
        if !matches!(
            tokio::time::timeout(idle, stream.read_exact(&mut buf)).await,
            Ok(Ok(_))
        ) {
            break;
        }
        let started = Instant::now();
        let (messages, answered) = {
            let t = shared.table.load();
            match transfer::serve(&t, &buf, peer.ip(), &shared.stats) {
                Some(m) => (m, true),
                None => {
                    let a = handle(
                        &t,
                        &buf,
                        peer.ip(),
                        Transport::Tcp,
                        &mut out,
                        &shared.stats,
                        &shared.guard.load(),
                    );
                    (Vec::new(), a)
                }
            }
        };
        shared.stats.latency.observe(started.elapsed());
        debug!(%peer, query_bytes = buf.len(), answer_bytes = out.len(), answered, "tcp query");
        if !answered {
            continue;
        }
        // A transfer is several messages; anything else is the one answer in `out`.
        let msgs = if messages.is_empty() {
            std::slice::from_ref(&out)
        } else {
            &messages[..]
        };
        let mut framed = Vec::with_capacity(msgs.iter().map(|m| m.len() + 2).sum());
        for m in msgs {
            framed.extend_from_slice(&(m.len() as u16).to_be_bytes());
            framed.extend_from_slice(m);
        }
        if !matches!(
            tokio::time::timeout(idle, stream.write_all(&framed)).await,
            Ok(Ok(_))
        ) {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    fn int_option(s: &StdUdpSocket, level: libc::c_int, name: libc::c_int) -> libc::c_int {
        let mut v: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: an int-sized buffer for an int option.
        let r = unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                level,
                name,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(r, 0, "{}", io::Error::last_os_error());
        v
    }

    #[test]
    fn udp_sockets_ignore_path_mtu_from_icmp() {
        let addrs = ["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()];
        let l = Listeners::bind(&addrs, 1 << 20, 2).expect("bind on loopback");
        assert_eq!(l.udp.len(), 4);
        for s in &l.udp {
            let v6 = s.local_addr().unwrap().is_ipv6();
            let got = if v6 {
                int_option(s, libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER)
            } else {
                int_option(s, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER)
            };
            assert_eq!(got, 5, "IP(V6)_PMTUDISC_OMIT on {:?}", s.local_addr());
        }
    }
}
