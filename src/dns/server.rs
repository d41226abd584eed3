//! UDP and TCP listeners: move bytes between sockets and `dns::handle`.
//!
//! One task per UDP socket (no task per packet), one task per TCP connection with an idle
//! timeout, a global cap on connections and a cap per client address. At a cap the
//! connection idle longest makes room for the newcomer (the table in `conns`). Every task
//! watches the shutdown token; a TCP connection finishes the query it is answering before it
//! closes.

use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, warn};

pub use super::conns::TcpLimits;
use super::conns::{Cap, Conn, Registered, Tcp};
use super::{Ctx, Event, Guard, Stats, Transport, handle, transfer};
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
    // One table for every listener: the caps count connections to all of them together.
    let tcp = Arc::new(Tcp::new(&limits));
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
            tcp.clone(),
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
    tcp: Arc<Tcp>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
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
        // At a cap, an idle connection makes room: refusing the newcomer instead would let
        // idle connections (a slowloris spread over many addresses) lock out every client
        // with a query to send.
        let (now, wake) = (tcp.stamp(Instant::now()), shutdown.child_token());
        let admitted = tcp.table().admit(peer.ip(), now, wake);
        let (id, conn) = match admitted {
            Ok((id, conn, evicted)) => {
                if let Some(cap) = evicted {
                    debug!(%peer, ?cap, "TCP limit reached, closed the longest-idle connection");
                    shared.stats.add(match cap {
                        Cap::Connections => Event::TcpEvictedMaxConnections,
                        Cap::PerClient => Event::TcpEvictedPerClient,
                    });
                }
                (id, conn)
            }
            Err(cap) => {
                debug!(%peer, ?cap, "TCP limit reached and every connection busy, closing");
                continue;
            }
        };
        let registered = Registered {
            tcp: tcp.clone(),
            id,
        };
        let shared = shared.clone();
        tracker.spawn(async move {
            tcp_conn(stream, peer, shared, &conn, &registered.tcp).await;
            drop(registered);
        });
    }
}

/// Length of the first framed message in `inbuf`, prefix included (2 until the prefix is in).
fn frame_len(inbuf: &[u8]) -> usize {
    match inbuf {
        [a, b, ..] => 2 + usize::from(u16::from_be_bytes([*a, *b])),
        _ => 2,
    }
}

async fn tcp_conn(mut stream: TcpStream, peer: SocketAddr, shared: Shared, conn: &Conn, tcp: &Tcp) {
    let idle = tcp.idle;
    let _ = stream.set_nodelay(true);
    // Bytes received and not answered yet: read as they come rather than a prefix and then a
    // message, so a query costs one read and a pipelined one none.
    let mut inbuf: Vec<u8> = Vec::with_capacity(2 + 512);
    let mut out = Vec::with_capacity(4096);
    // The length prefix must arrive within `idle` of the connection going idle, and then the
    // message within `idle` of its prefix.
    let deadline = tokio::time::sleep(idle);
    tokio::pin!(deadline);
    loop {
        let need = frame_len(&inbuf);
        if inbuf.len() < need {
            let had_prefix = inbuf.len() >= 2;
            inbuf.reserve(need - inbuf.len());
            let read = tokio::select! {
                _ = conn.wake.cancelled() => break,
                _ = &mut deadline => break,
                r = stream.read_buf(&mut inbuf) => r,
            };
            if !matches!(read, Ok(n) if n > 0) {
                break;
            }
            if inbuf.len() < frame_len(&inbuf) {
                // Part of a query: still idle, but the idle clock restarts at its last byte.
                let now = Instant::now();
                if !conn.touch(tcp.stamp(now)) {
                    break;
                }
                if !had_prefix && inbuf.len() >= 2 {
                    deadline.as_mut().reset((now + idle).into());
                }
            }
            continue;
        }
        if !conn.begin() {
            break;
        }
        let query = &inbuf[2..need];
        let started = Instant::now();
        let (messages, answered) = {
            let t = shared.table.load();
            match transfer::serve(&t, query, peer.ip(), &shared.stats) {
                Some(m) => (m, true),
                None => {
                    let ctx = Ctx {
                        table: &t,
                        stats: &shared.stats,
                        guard: &shared.guard.load(),
                        transport: Transport::Tcp,
                    };
                    (Vec::new(), handle(&ctx, query, peer.ip(), &mut out))
                }
            }
        };
        shared.stats.latency.observe(started.elapsed());
        debug!(%peer, query_bytes = query.len(), answer_bytes = out.len(), answered, "tcp query");
        inbuf.drain(..need);
        if answered {
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
        let now = Instant::now();
        conn.end(tcp.stamp(now));
        deadline.as_mut().reset((now + idle).into());
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
    fn frames_are_measured_from_their_length_prefix() {
        assert_eq!(frame_len(&[]), 2);
        assert_eq!(frame_len(&[0]), 2);
        assert_eq!(frame_len(&[0, 0]), 2);
        assert_eq!(frame_len(&[1, 2, 9]), 2 + 258);
        assert_eq!(frame_len(&[0xff, 0xff]), 2 + 65535);
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
