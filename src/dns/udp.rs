//! The UDP path: one OS thread per socket, batched with recvmmsg/sendmmsg.
//!
//! Each worker owns one SO_REUSEPORT socket (the kernel spreads queries across them), receives
//! up to [`BATCH`] datagrams per system call, answers each with `dns::handle` against one
//! `load()` of the routing table (and of the abuse-protection guard), and sends all answers
//! with one call. No task, no lock, and no heap allocation per query. A receive timeout lets
//! the worker notice shutdown.

use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tracing::{debug, error};

use super::{Ctx, Event, Guard, Stats, Transport, handle};
use crate::routing::RoutingTable;

/// Datagrams per system call.
pub const BATCH: usize = 32;
/// Largest query we read; anything longer is not a query we answer.
const MAX_QUERY: usize = 4096;
/// Receive buffers are this far apart: a stride of exactly 4096 would put every buffer's first
/// cache line in the same L1 set, so a batch of 32 would evict itself (8 ways) as the kernel
/// copies the datagrams in and the parser reads them.
const IN_STRIDE: usize = MAX_QUERY + 64;
/// How often an idle worker looks at the shutdown flag.
const POLL: Duration = Duration::from_millis(200);

fn source_ip(sa: &libc::sockaddr_storage) -> Option<IpAddr> {
    match sa.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in for AF_INET.
            let sin =
                unsafe { &*(sa as *const libc::sockaddr_storage as *const libc::sockaddr_in) };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                sin.sin_addr.s_addr,
            ))))
        }
        libc::AF_INET6 => {
            // SAFETY: the kernel wrote a sockaddr_in6 for AF_INET6.
            let sin6 =
                unsafe { &*(sa as *const libc::sockaddr_storage as *const libc::sockaddr_in6) };
            Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

/// Runs one worker until `stop` is set. Blocking: call it on its own thread.
pub fn worker(
    sock: UdpSocket,
    table: Arc<ArcSwap<RoutingTable>>,
    stats: Arc<Stats>,
    guard: Arc<ArcSwap<Guard>>,
    stop: Arc<AtomicBool>,
) {
    if let Err(e) = sock
        .set_nonblocking(false)
        .and_then(|_| sock.set_read_timeout(Some(POLL)))
    {
        debug!(error = %e, "cannot set the UDP socket to blocking with a timeout");
        return;
    }
    let fd = sock.as_raw_fd();
    let mut inbuf = vec![[0u8; IN_STRIDE]; BATCH];
    let mut outbuf: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(1500)).collect();
    // SAFETY: all-zero is a valid value for these plain C structs (integers, raw pointers).
    let mut addrs: [libc::sockaddr_storage; BATCH] = unsafe { zeroed() };
    // SAFETY: a null base and a zero length, until pointed at a buffer below.
    let mut in_iov: [libc::iovec; BATCH] = unsafe { zeroed() };
    // SAFETY: null pointers and zero lengths, until pointed at buffers below.
    let mut in_hdr: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
    // SAFETY: as `in_iov`.
    let mut out_iov: [libc::iovec; BATCH] = unsafe { zeroed() };
    // SAFETY: as `in_hdr`.
    let mut out_hdr: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
    let mut sampled: u32 = 0;
    // The buffers never move, so the headers pointing at them are set up once; after each
    // batch only the fields the kernel wrote are reset, and only for the messages it filled
    // (at low rates a batch is one or two queries, and re-initialising all 32 headers each
    // time cost more than answering).
    for i in 0..BATCH {
        in_iov[i] = libc::iovec {
            iov_base: inbuf[i].as_mut_ptr().cast(),
            iov_len: MAX_QUERY,
        };
        in_hdr[i].msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
        in_hdr[i].msg_hdr.msg_iov = &mut in_iov[i];
        in_hdr[i].msg_hdr.msg_iovlen = 1;
        in_hdr[i].msg_hdr.msg_control = std::ptr::null_mut();
        in_hdr[i].msg_hdr.msg_controllen = 0;
    }
    let mut filled = BATCH;
    while !stop.load(Ordering::Relaxed) {
        for h in &mut in_hdr[..filled] {
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        // SAFETY: every header points at live buffers of the stated sizes for the whole call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                in_hdr.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n <= 0 {
            filled = 0;
            let e = std::io::Error::last_os_error();
            if socket_gone(&e) {
                // Retrying would spin forever on a socket that no longer is one. Ending the
                // worker stops the server (see `server::run`), so that a supervisor restarts
                // it rather than half the queries going unanswered.
                error!(error = %e, "UDP socket unusable; stopping this worker");
                return;
            }
            // Timeout (EAGAIN), signal (EINTR) or a transient error: look at `stop`, go on.
            continue;
        }
        let n = n as usize;
        filled = n;
        let mut m = 0;
        {
            let t = table.load();
            let g = guard.load();
            let ctx = Ctx {
                table: &t,
                stats: &stats,
                guard: &g,
                transport: Transport::Udp,
            };
            for i in 0..n {
                if in_hdr[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                    stats.add(Event::Dropped);
                    continue;
                }
                let Some(src) = source_ip(&addrs[i]) else {
                    continue;
                };
                let len = in_hdr[i].msg_len as usize;
                // Time one query in 16: the histogram's shape without two clock reads per query.
                sampled = sampled.wrapping_add(1);
                let started = sampled.is_multiple_of(16).then(Instant::now);
                let answered = handle(&ctx, &inbuf[i][..len], src, &mut outbuf[m]);
                if let Some(s) = started {
                    stats.latency.observe(s.elapsed());
                }
                if !answered {
                    continue;
                }
                out_iov[m] = libc::iovec {
                    iov_base: outbuf[m].as_mut_ptr().cast(),
                    iov_len: outbuf[m].len(),
                };
                out_hdr[m].msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
                out_hdr[m].msg_hdr.msg_namelen = in_hdr[i].msg_hdr.msg_namelen;
                out_hdr[m].msg_hdr.msg_iov = &mut out_iov[m];
                out_hdr[m].msg_hdr.msg_iovlen = 1;
                out_hdr[m].msg_hdr.msg_control = std::ptr::null_mut();
                out_hdr[m].msg_hdr.msg_controllen = 0;
                out_hdr[m].msg_hdr.msg_flags = 0;
                m += 1;
            }
        }
        let mut sent = 0;
        while sent < m {
            // SAFETY: headers [sent, m) point at live answer buffers and peer addresses.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    out_hdr[sent..].as_mut_ptr(),
                    (m - sent) as libc::c_uint,
                    0,
                )
            };
            if r <= 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                // A full send buffer or an unreachable peer: skip that answer (UDP is lossy
                // anyway, and the client retries), never spin.
                debug!(error = %e, "UDP send failed");
                sent += 1;
                continue;
            }
            sent += r as usize;
        }
    }
}

/// Errors after which the descriptor is no UDP socket of ours any more (closed, or replaced by
/// something else): no retry can succeed.
fn socket_gone(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EBADF | libc::ENOTSOCK | libc::EINVAL | libc::EFAULT)
    )
}
