//! The DNS side: wire parsing, the answer logic, response assembly, and the UDP/TCP listeners.
//!
//! [`handle`] is the one function from query bytes to response bytes; the listeners in
//! `server` and `udp` only move bytes and never decide anything about the answer. It tries the
//! hot path (`fast`) and falls back to the full path (`answer`), which stays the reference the
//! hot path is tested against; the two share only lower layers (`wire`, `message`, `rrl`),
//! never each other.

pub mod answer;
mod conns;
pub mod cookie;
mod dnssec;
mod fast;
pub mod ixfr;
pub mod message;
pub mod notify;
pub mod rrl;
pub mod server;
pub mod transfer;
pub mod tsig;
pub mod udp;
pub mod wire;

use std::net::IpAddr;

use crate::metrics::{Counters, DNS_BUCKETS, Histogram};
use crate::routing::RoutingTable;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// What answering a query needs besides the query itself. A listener makes one per batch of
/// datagrams or per TCP query, from one `load()` of the routing table and of the guard, so
/// that every query in it is answered from the same snapshot.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub table: &'a RoutingTable,
    pub stats: &'a Stats,
    pub guard: &'a Guard,
    /// The transport the answer goes back on: it sets the size limit and whether rate
    /// limiting applies.
    pub transport: Transport,
}

impl Ctx<'_> {
    /// Counts one answered query of type `qtype` (None: unparsed) by its rcode.
    #[inline]
    fn count(&self, qtype: Option<u16>, rcode: u16) {
        self.stats.count(self.transport, qtype, rcode);
    }
}

/// Answers one query packet from `src` into `out`. Returns false when nothing should be sent.
pub fn handle(ctx: &Ctx<'_>, pkt: &[u8], src: IpAddr, out: &mut Vec<u8>) -> bool {
    match fast::try_answer(ctx, pkt, src, out) {
        Some(sent) => sent,
        None => answer::handle_full(ctx, pkt, src, out),
    }
}

/// Query types counted by name; the rest are "other", unparsed queries "none".
pub const QTYPES: &[(u16, &str)] = &[
    (1, "A"),
    (28, "AAAA"),
    (255, "ANY"),
    (2, "NS"),
    (6, "SOA"),
    (5, "CNAME"),
    (15, "MX"),
    (16, "TXT"),
    (33, "SRV"),
    (257, "CAA"),
    (12, "PTR"),
    (43, "DS"),
    (65, "HTTPS"),
    (252, "AXFR"),
    (251, "IXFR"),
];
const QTYPE_OTHER: usize = QTYPES.len();
const QTYPE_NONE: usize = QTYPES.len() + 1;
const N_QTYPES: usize = QTYPES.len() + 2;

/// Response codes counted by name; the rest are "other".
pub const RCODES: &[(u16, &str)] = &[
    (0, "NOERROR"),
    (1, "FORMERR"),
    (2, "SERVFAIL"),
    (3, "NXDOMAIN"),
    (4, "NOTIMP"),
    (5, "REFUSED"),
    (16, "BADVERS"),
];
const N_RCODES: usize = RCODES.len() + 1;

/// Things the DNS path counts besides answered queries (read by the monitoring endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Queries carrying an ECS option.
    Ecs,
    UnknownLocation,
    Truncated,
    Malformed,
    /// Packets not answered at all (shorter than a header, or responses).
    Dropped,
    /// Responses withheld by rate limiting, and those sent truncated instead (slipped).
    RrlDropped,
    RrlSlipped,
    /// Queries with a server cookie we made (exempt from rate limiting), and with a client
    /// cookie only or a stale or foreign server cookie (answered with a fresh one).
    CookiesValid,
    CookiesNew,
    /// Zone transfers sent, and refused (not allowed, or TSIG missing or wrong).
    Transfers,
    TransfersRefused,
    /// Transfers sent as differences (IXFR from the journal), counted in `Transfers` too.
    TransfersIncremental,
    /// TCP connections closed to make room for a new one, because `tcp-max-connections` or
    /// the client's `tcp-max-per-client` was reached.
    TcpEvictedMaxConnections,
    TcpEvictedPerClient,
}
const N_EVENTS: usize = Event::TcpEvictedPerClient as usize + 1;

/// Counters kept by the DNS path: events, then answered queries by
/// [transport][qtype][rcode]. Sharded per thread, so UDP workers on different cores never
/// write the same cache line.
#[derive(Debug)]
pub struct Stats {
    counts: Counters,
    /// Time spent in the answer logic per query.
    pub latency: Histogram,
    /// The last transfers of each zone, for `/status`.
    pub transfers: notify::TransferLog,
    /// The versions of each zone sent by transfers, for IXFR.
    pub journal: ixfr::Journal,
}

/// Where the answered-query counter for (transport, qtype, rcode) indices lives.
fn query_slot(transport: usize, qtype: usize, rcode: usize) -> usize {
    N_EVENTS + (transport * N_QTYPES + qtype) * N_RCODES + rcode
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            counts: Counters::new(N_EVENTS + 2 * N_QTYPES * N_RCODES),
            latency: Histogram::new(DNS_BUCKETS),
            transfers: notify::TransferLog::default(),
            journal: ixfr::Journal::default(),
        }
    }
}

impl Stats {
    #[inline]
    pub fn add(&self, e: Event) {
        self.counts.add(e as usize, 1);
    }

    pub fn get(&self, e: Event) -> u64 {
        self.counts.get(e as usize)
    }

    /// Counts one answered query.
    pub fn count(&self, transport: Transport, qtype: Option<u16>, rcode: u16) {
        let t = transport as usize;
        let q = match qtype {
            None => QTYPE_NONE,
            Some(q) => QTYPES
                .iter()
                .position(|&(v, _)| v == q)
                .unwrap_or(QTYPE_OTHER),
        };
        let r = RCODES
            .iter()
            .position(|&(v, _)| v == rcode)
            .unwrap_or(RCODES.len());
        self.counts.add(query_slot(t, q, r), 1);
    }

    /// Every non-zero query counter as (transport, qtype, rcode, count).
    pub fn queries(&self) -> Vec<(&'static str, &'static str, &'static str, u64)> {
        let mut out = Vec::new();
        let qnames = QTYPES.iter().map(|q| q.1).chain(["other", "none"]);
        let rnames: Vec<&'static str> = RCODES.iter().map(|r| r.1).chain(["other"]).collect();
        for (t, tname) in [(0, "udp"), (1, "tcp")] {
            for (q, qname) in qnames.clone().enumerate() {
                for (r, rname) in rnames.iter().enumerate() {
                    let v = self.counts.get(query_slot(t, q, r));
                    if v > 0 {
                        out.push((tname, qname, *rname, v));
                    }
                }
            }
        }
        out
    }

    /// All answered queries.
    pub fn total(&self) -> u64 {
        (N_EVENTS..self.counts.len())
            .map(|i| self.counts.get(i))
            .sum()
    }
}

/// Protection state shared by every listener: the rate limiter's table and the cookie secret
/// used when the config sets none. It outlives reloads, except that a reload changing
/// `[rate-limit] table-size` swaps in a copy with a new, empty table ([`Guard::with_table_size`]).
pub struct Guard {
    pub rrl: rrl::Rrl,
    random_secret: [u8; 16],
}

impl Guard {
    /// A guard with a rate-limit table of `table_size` cells and fresh random keys.
    pub fn new(table_size: usize) -> Guard {
        let mut secret = [0u8; 16];
        let mut key = [0u8; 16];
        if getrandom::fill(&mut secret)
            .and_then(|_| getrandom::fill(&mut key))
            .is_err()
        {
            // No OS randomness (a broken sandbox): cookies and RRL keys still work, only less
            // unpredictable, so say so rather than refuse to answer.
            tracing::warn!("no OS randomness: cookie and rate-limit keys derived from the clock");
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
                ^ u128::from(std::process::id());
            secret = t.to_le_bytes();
            key = t.rotate_left(64).to_le_bytes();
        }
        Guard {
            rrl: rrl::Rrl::new(table_size, key),
            random_secret: secret,
        }
    }

    /// The same guard with an empty rate-limit table of `table_size` cells. The cookie secret
    /// stays, so server cookies already handed out stay valid; flows are counted afresh.
    pub fn with_table_size(&self, table_size: usize) -> Guard {
        Guard {
            rrl: self.rrl.with_size(table_size),
            random_secret: self.random_secret,
        }
    }

    /// The cookie secret: the configured one, or this process's random one.
    pub fn cookie_secret<'a>(&'a self, config: &'a crate::config::Config) -> &'a [u8; 16] {
        config
            .cookies
            .secret
            .as_ref()
            .unwrap_or(&self.random_secret)
    }
}

impl Default for Guard {
    fn default() -> Self {
        Guard::new(crate::config::RateLimit::default().table_size)
    }
}

/// Seconds since the Unix epoch: the clock TSIG and cookies work in.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
