//! NOTIFY (RFC 1996): telling secondaries that a zone changed, so that they transfer it now
//! rather than at their SOA refresh timer.
//!
//! A change is read from the published routing tables, not announced by whoever made it: a
//! zone whose [`transfer::zone_fingerprint`] differs from the one last notified (a reload with
//! a new zone file, a re-sign, new keys, a geo name's default answer) is notified with the
//! serial then served. The daemon only signals "a table was stored" on a `watch` channel, which
//! coalesces a burst of swaps into one wake-up; the task here then works out what changed.
//!
//! What to send and when is decided by [`Book`], a pure function of events and time, tested
//! without a network; [`run`] does the I/O around it: one UDP socket per address family, a
//! response matched by ID and source address. Each NOTIFY is retried (1 s, doubling, at most
//! 60 s apart) until the secondary acknowledges it, for at most [`MAX_TRIES`] sends; a newer
//! change supersedes it. A secondary that is down delays no other.
//!
//! Transfers served are logged here too ([`TransferLog`]), so that `/status` shows per zone
//! which secondaries fetched it and when.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::message::{Echo, Flags, Owner, Rr, put_header, put_rr};
use super::{transfer, tsig, unix_now};
use crate::config::TsigKey;
use crate::routing::RoutingTable;
use crate::zone::{Name, TYPE_SOA, Zone};

pub const OPCODE_NOTIFY: u16 = 4;
/// Sends of one NOTIFY before giving up on it.
pub const MAX_TRIES: u32 = 10;
/// The wait before the first retry; doubled for each one after.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between two sends.
pub const MAX_RETRY: Duration = Duration::from_secs(60);
/// Transfers kept per zone for `/status`.
pub const TRANSFERS_KEPT: usize = 16;

/// How one send of a NOTIFY ended, as counted in `mirrordns_dns_notify_total{result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// NOERROR from the address notified, with a valid TSIG when we sign.
    Acked,
    /// Answered with another rcode (NOTAUTH for a key it does not know, REFUSED, ...).
    Refused,
    /// No answer before the next send was due, or before giving up.
    Timeout,
    /// The send failed, or the answer's TSIG did not verify.
    Error,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Acked,
        Outcome::Refused,
        Outcome::Timeout,
        Outcome::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Acked => "acked",
            Outcome::Refused => "refused",
            Outcome::Timeout => "timeout",
            Outcome::Error => "error",
        }
    }
}

/// The wait after the `attempts`-th send: 1 s, 2 s, 4 s, ... capped at [`MAX_RETRY`].
pub fn backoff(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    (FIRST_RETRY * (1u32 << doublings)).min(MAX_RETRY)
}

/// What a zone is now, for notifying.
#[derive(Debug, Clone)]
pub struct ZoneNow {
    pub origin: Name,
    pub serial: u32,
    pub fingerprint: u64,
}

/// One zone at one secondary.
#[derive(Debug, Clone)]
pub struct Entry {
    pub origin: Name,
    pub addr: SocketAddr,
    /// The content and serial this NOTIFY is for.
    pub fingerprint: u64,
    pub serial: u32,
    pub id: u16,
    /// Sends of this NOTIFY so far.
    pub attempts: u32,
    /// When to send next; None once acknowledged, refused or given up.
    pub next: Option<Instant>,
    /// The MACs of the signed sends, any of which the answer may be signed over.
    pub macs: Vec<Vec<u8>>,
    /// The latest send was answered (or failed), so its wait is not a timeout.
    pub settled: bool,
    pub acked: bool,
    pub last_sent: Option<SystemTime>,
    pub last_result: Option<Outcome>,
}

/// A NOTIFY to send now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Send {
    pub origin: Name,
    pub addr: SocketAddr,
    pub serial: u32,
    pub id: u16,
}

/// Every zone's NOTIFY state at every secondary: the decisions, without I/O.
#[derive(Debug, Default)]
pub struct Book {
    pub entries: Vec<Entry>,
}

impl Book {
    /// Takes in the zones as now published and the secondaries now configured. A pair not seen
    /// before (at start, a new zone, a new secondary) or whose content changed gets a new
    /// NOTIFY, due now, which supersedes any still being retried. Pairs no longer configured
    /// are dropped.
    pub fn plan(
        &mut self,
        zones: &[ZoneNow],
        addrs: &[SocketAddr],
        now: Instant,
        mut new_id: impl FnMut() -> u16,
    ) {
        self.entries
            .retain(|e| addrs.contains(&e.addr) && zones.iter().any(|z| z.origin == e.origin));
        for z in zones {
            for &addr in addrs {
                let at = self
                    .entries
                    .iter()
                    .position(|e| e.addr == addr && e.origin == z.origin);
                if at.is_some_and(|i| self.entries[i].fingerprint == z.fingerprint) {
                    continue;
                }
                let fresh = Entry {
                    origin: z.origin.clone(),
                    addr,
                    fingerprint: z.fingerprint,
                    serial: z.serial,
                    id: new_id(),
                    attempts: 0,
                    next: Some(now),
                    macs: Vec::new(),
                    settled: true,
                    acked: false,
                    last_sent: None,
                    last_result: None,
                };
                match at {
                    // What the last one came to stays on show until the new one is sent.
                    Some(i) => {
                        let old = &self.entries[i];
                        self.entries[i] = Entry {
                            last_sent: old.last_sent,
                            last_result: old.last_result,
                            ..fresh
                        };
                    }
                    None => self.entries.push(fresh),
                }
            }
        }
    }

    /// The NOTIFYs due at `now`, and the results of the sends whose wait ran out unanswered
    /// (to be counted). An entry sent [`MAX_TRIES`] times is given up.
    pub fn due(&mut self, now: Instant) -> (Vec<Send>, Vec<Outcome>) {
        let mut sends = Vec::new();
        let mut results = Vec::new();
        for e in &mut self.entries {
            if e.next.is_none_or(|t| t > now) {
                continue;
            }
            if e.attempts > 0 && !e.settled {
                e.last_result = Some(Outcome::Timeout);
                results.push(Outcome::Timeout);
            }
            if e.attempts >= MAX_TRIES {
                e.next = None;
                continue;
            }
            e.attempts += 1;
            e.settled = false;
            e.next = Some(now + backoff(e.attempts));
            sends.push(Send {
                origin: e.origin.clone(),
                addr: e.addr,
                serial: e.serial,
                id: e.id,
            });
        }
        (sends, results)
    }

    /// Records that `send` went out at `at` (signed with `mac`), or failed.
    pub fn sent(&mut self, send: &Send, at: SystemTime, mac: Option<Vec<u8>>, ok: bool) {
        if let Some(e) = self.find(send.addr, send.id) {
            e.last_sent = Some(at);
            e.macs.extend(mac);
            if !ok {
                e.settled = true;
                e.last_result = Some(Outcome::Error);
            }
        }
    }

    /// The entry in flight at `addr` with `id`.
    fn find(&mut self, addr: SocketAddr, id: u16) -> Option<&mut Entry> {
        self.entries
            .iter_mut()
            .find(|e| e.addr == addr && e.id == id && e.next.is_some())
    }

    /// Applies an answer from `from` with `id`, judged by `judge` against the entry's MACs.
    /// Returns the outcome to count, or None if it answers nothing in flight (late, spoofed,
    /// from elsewhere). Acknowledged or refused ends the NOTIFY; a bad signature does not.
    pub fn answer(
        &mut self,
        from: SocketAddr,
        id: u16,
        judge: impl FnOnce(&[Vec<u8>]) -> Outcome,
    ) -> Option<Outcome> {
        let e = self.find(from, id)?;
        let outcome = judge(&e.macs);
        e.last_result = Some(outcome);
        e.settled = true;
        match outcome {
            Outcome::Acked | Outcome::Refused => {
                e.acked = outcome == Outcome::Acked;
                e.next = None;
            }
            Outcome::Timeout | Outcome::Error => {}
        }
        Some(outcome)
    }

    /// When the next send is due.
    pub fn next_wake(&self) -> Option<Instant> {
        self.entries.iter().filter_map(|e| e.next).min()
    }
}

/// The notifier's state as the monitoring endpoint reads it, and its counters.
#[derive(Debug, Default)]
pub struct NotifyStatus {
    book: Mutex<Book>,
    counts: [AtomicU64; 4],
}

impl NotifyStatus {
    /// Counts one result; the one place NOTIFY results are counted.
    fn count(&self, o: Outcome) {
        self.counts[o as usize].fetch_add(1, Relaxed);
    }

    pub fn get(&self, o: Outcome) -> u64 {
        self.counts[o as usize].load(Relaxed)
    }

    /// A copy of every entry, for `/status`.
    pub fn entries(&self) -> Vec<Entry> {
        lock(&self.book).entries.clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The NOTIFY for `zone` with `serial` and `id`, signed with `key` when one is set (with the
/// MAC, which the answer's signature covers).
pub fn message(
    zone: &Zone,
    serial: u32,
    id: u16,
    key: Option<&TsigKey>,
    now: u64,
) -> (Vec<u8>, Option<Vec<u8>>) {
    let origin = zone.origin.wire();
    let soa = zone.soa();
    let mut rdata = soa.rdatas[0].to_vec();
    // The serial is the first of the five numbers that end the SOA RDATA.
    if let Some(at) = rdata.len().checked_sub(20) {
        rdata[at..at + 4].copy_from_slice(&serial.to_be_bytes());
    }
    let mut out = Vec::with_capacity(128);
    // put_header writes a response; a NOTIFY is a request, so QR comes off again.
    let req = Echo {
        id,
        flags: OPCODE_NOTIFY << 11,
    };
    let flags = Flags { aa: true, rcode: 0 };
    put_header(&mut out, req, flags, false, [1, 1, 0, 0]);
    out[2] &= 0x7F;
    out.extend_from_slice(origin);
    out.extend_from_slice(&TYPE_SOA.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    let rr = Rr {
        owner: Owner::Name(origin),
        rtype: TYPE_SOA,
        ttl: soa.ttl,
        rdata: &rdata,
    };
    put_rr(&mut out, &rr, origin);
    let mac = key.map(|k| tsig::sign_request(&mut out, k, now));
    (out, mac)
}

/// A NOTIFY answer's ID and what it says, or None if it is not a NOTIFY answer at all.
/// `macs` are the MACs of our signed sends, any of which its signature may cover.
pub fn judge(
    pkt: &[u8],
    key: Option<&TsigKey>,
    macs: &[Vec<u8>],
    now: u64,
) -> Option<(u16, Outcome)> {
    let header = pkt.get(..12)?;
    let flags = u16::from_be_bytes([header[2], header[3]]);
    if flags & 0x8000 == 0 || (flags >> 11) & 0xF != OPCODE_NOTIFY {
        return None;
    }
    let id = u16::from_be_bytes([header[0], header[1]]);
    if flags & 0xF != 0 {
        // Refusals carry an unsigned TSIG when the key is wrong: nothing to verify.
        return Some((id, Outcome::Refused));
    }
    let Some(key) = key else {
        return Some((id, Outcome::Acked));
    };
    let signed = last_record(pkt)
        .filter(|&(_, rtype)| rtype == super::wire::TYPE_TSIG)
        .and_then(|(at, _)| Some((at, tsig::parse(pkt, at)?)));
    let Some((at, rec)) = signed else {
        return Some((id, Outcome::Error));
    };
    let valid = macs
        .iter()
        .any(|m| tsig::verify_response(pkt, at, &rec, key, m, now).is_ok());
    Some((
        id,
        if valid {
            Outcome::Acked
        } else {
            Outcome::Error
        },
    ))
}

/// The offset and type of a message's last record, if it has records and parses.
fn last_record(pkt: &[u8]) -> Option<(usize, u16)> {
    let be16 = |o: usize| Some(u16::from_be_bytes([*pkt.get(o)?, *pkt.get(o + 1)?]));
    let qd = be16(4)?;
    let records: u32 = [6, 8, 10]
        .iter()
        .map(|&o| be16(o).map(u32::from))
        .sum::<Option<u32>>()?;
    let mut at = 12;
    for _ in 0..qd {
        at = tsig::read_name(pkt, at)?.1 + 4;
    }
    let mut last = None;
    for _ in 0..records {
        let start = at;
        let end = tsig::read_name(pkt, at)?.1;
        let rtype = be16(end)?;
        let rdlen = be16(end + 8)? as usize;
        at = end + 10 + rdlen;
        if at > pkt.len() {
            return None;
        }
        last = Some((start, rtype));
    }
    last
}

/// Works out what each zone is now under `table`: its serial and content fingerprint.
fn zones_now(table: &RoutingTable) -> Vec<ZoneNow> {
    table
        .zones
        .zones()
        .iter()
        .map(|z| ZoneNow {
            origin: z.origin.clone(),
            serial: transfer::served_serial(table, z),
            fingerprint: transfer::zone_fingerprint(table, z),
        })
        .collect()
}

fn random_id() -> u16 {
    let mut b = [0u8; 2];
    // A failing system RNG leaves the ID less guessable, not wrong: answers are also matched
    // by source address.
    let _ = getrandom::fill(&mut b);
    u16::from_be_bytes(b)
}

/// Receives on `sock`, or waits forever when there is none.
async fn recv(sock: &Option<UdpSocket>, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match sock {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

/// Sends NOTIFYs for every change of the tables published in `tables`, woken by `changed`,
/// until `shutdown`. The secondaries and the key are read from each table's config, so a
/// reload that changes `[transfer] notify` applies with the table it publishes.
pub async fn run(
    tables: Arc<ArcSwap<RoutingTable>>,
    mut changed: watch::Receiver<()>,
    status: Arc<NotifyStatus>,
    shutdown: CancellationToken,
) {
    let v4 = UdpSocket::bind("0.0.0.0:0").await.ok();
    let v6 = UdpSocket::bind("[::]:0").await.ok();
    let (mut buf4, mut buf6) = (vec![0u8; 4096], vec![0u8; 4096]);
    // The table in force at start counts as a change: a restart may have changed the zone,
    // and a secondary that finds the serial unchanged does nothing.
    let mut fresh = true;
    changed.borrow_and_update();
    loop {
        let table = tables.load_full();
        if fresh {
            fresh = false;
            let addrs = table.config.transfer.notify.clone();
            let zones = if addrs.is_empty() {
                Vec::new()
            } else {
                let t = table.clone();
                // A digest of every zone record: off the runtime's worker threads.
                tokio::task::spawn_blocking(move || zones_now(&t))
                    .await
                    .unwrap_or_default()
            };
            lock(&status.book).plan(&zones, &addrs, Instant::now(), random_id);
        }
        let (sends, results) = lock(&status.book).due(Instant::now());
        for r in results {
            status.count(r);
        }
        for s in sends {
            send(&table, &s, v4.as_ref(), v6.as_ref(), &status).await;
        }
        let wake = lock(&status.book).next_wake();
        let sleep = async {
            match wake {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        let (pkt, from) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = changed.changed() => {
                if r.is_err() {
                    return;
                }
                fresh = true;
                continue;
            }
            _ = sleep => continue,
            r = recv(&v4, &mut buf4) => match r {
                Ok((n, from)) => (&buf4[..n], from),
                Err(_) => continue,
            },
            r = recv(&v6, &mut buf6) => match r {
                Ok((n, from)) => (&buf6[..n], from),
                Err(_) => continue,
            },
        };
        let from = SocketAddr::new(crate::geo::canonical(from.ip()), from.port());
        let key = table.config.transfer.tsig.as_ref();
        let now = unix_now();
        let Some((id, _)) = judge(pkt, None, &[], now) else {
            continue;
        };
        let outcome = lock(&status.book).answer(from, id, |macs| {
            judge(pkt, key, macs, now).map_or(Outcome::Error, |(_, o)| o)
        });
        match outcome {
            Some(o) => {
                status.count(o);
                debug!(secondary = %from, id, result = o.as_str(), "NOTIFY answered");
            }
            None => debug!(secondary = %from, id, "an answer to no NOTIFY in flight; ignored"),
        }
    }
}

/// Sends one NOTIFY and records it.
async fn send(
    table: &RoutingTable,
    s: &Send,
    v4: Option<&UdpSocket>,
    v6: Option<&UdpSocket>,
    status: &NotifyStatus,
) {
    let Some(zone) = table.zones.zones().iter().find(|z| z.origin == s.origin) else {
        return;
    };
    let key = table.config.transfer.tsig.as_ref();
    let (msg, mac) = message(zone, s.serial, s.id, key, unix_now());
    let sock = if s.addr.is_ipv4() { v4 } else { v6 };
    let result = match sock {
        Some(sock) => sock.send_to(&msg, s.addr).await.map(|_| ()),
        None => Err(std::io::Error::other("no socket for this address family")),
    };
    let ok = result.is_ok();
    lock(&status.book).sent(s, SystemTime::now(), mac, ok);
    match result {
        Ok(()) => info!(zone = %s.origin, secondary = %s.addr, serial = s.serial, "NOTIFY sent"),
        Err(error) => {
            status.count(Outcome::Error);
            warn!(zone = %s.origin, secondary = %s.addr, %error, "NOTIFY not sent");
        }
    }
}

/// A zone transfer served, for `/status`.
#[derive(Debug, Clone)]
pub struct TransferRecord {
    pub client: IpAddr,
    pub at: SystemTime,
    /// "AXFR" or "IXFR".
    pub kind: &'static str,
    /// The serial the secondary said it holds (an IXFR's), and the serial it was sent.
    pub from_serial: Option<u32>,
    pub serial: u32,
}

/// The last [`TRANSFERS_KEPT`] transfers of each zone, by the zone's wire name. Written only
/// when a transfer is served (over TCP, never on the query hot path).
#[derive(Debug, Default)]
pub struct TransferLog(Mutex<HashMap<Vec<u8>, VecDeque<TransferRecord>>>);

impl TransferLog {
    pub fn record(&self, origin: &[u8], rec: TransferRecord) {
        let mut log = lock(&self.0);
        let q = log.entry(origin.to_vec()).or_default();
        if q.len() == TRANSFERS_KEPT {
            q.pop_front();
        }
        q.push_back(rec);
    }

    /// The zone's transfers, oldest first.
    pub fn of(&self, origin: &[u8]) -> Vec<TransferRecord> {
        lock(&self.0)
            .get(origin)
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
