//! The table of open TCP connections, and the eviction that makes room at a cap.
//!
//! `server`'s accept loop admits each connection here and each connection's task flips its
//! own state between idle and busy; at `tcp-max-connections`, or at a client's
//! `tcp-max-per-client`, the connection idle longest is closed for the newcomer (a refused
//! newcomer would let idle connections, a slowloris spread over many addresses, lock out
//! every client with a query to send). Kept apart from the listeners so that the eviction
//! rules can be read and tested without a socket.

use std::collections::{BinaryHeap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// Settings for the TCP listeners: the idle timeout each connection keeps, and the caps the
/// table enforces.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    pub idle_timeout: Duration,
    /// Concurrent connections, all listeners together; beyond it the longest-idle one closes.
    pub max_connections: usize,
    /// Concurrent connections from one client address; beyond it that client's longest-idle
    /// one closes.
    pub max_per_client: usize,
}

/// A connection's idle clock while it waits for a query: microseconds since [`Tcp::epoch`] at
/// the last byte received (or at the last answer written, or at accept). These two values
/// mark the other states.
const BUSY: u64 = u64::MAX;
const EVICTED: u64 = u64::MAX - 1;

/// What the accept loop and one connection's task share. The task flips `state` between
/// idle and [`BUSY`] without any lock; the accept loop, under the table's lock, may flip an
/// idle connection to [`EVICTED`]. Both flips are compare-and-swap from the value last seen,
/// so a connection that starts answering at the moment it is chosen is either answered (the
/// eviction fails and another is chosen) or closed unanswered (it never starts), never both.
#[derive(Debug)]
pub(super) struct Conn {
    state: AtomicU64,
    /// Cancelled to evict, and (a child of the shutdown token) at shutdown.
    pub(super) wake: CancellationToken,
}

impl Conn {
    fn new(now: u64, wake: CancellationToken) -> Conn {
        Conn {
            state: AtomicU64::new(now),
            wake,
        }
    }

    /// Bytes arrived, not yet a whole query: the idle clock restarts. False once evicted.
    pub(super) fn touch(&self, now: u64) -> bool {
        self.leave_idle(now)
    }

    /// A whole query arrived: not evictable until it is answered. False once evicted, and then
    /// the query must not be answered, as its connection no longer counts against the caps.
    pub(super) fn begin(&self) -> bool {
        self.leave_idle(BUSY)
    }

    fn leave_idle(&self, to: u64) -> bool {
        let cur = self.state.load(Relaxed);
        cur != EVICTED
            && self
                .state
                .compare_exchange(cur, to, Relaxed, Relaxed)
                .is_ok()
    }

    /// Answered: idle again from `now`. Only this connection's task writes a busy state, so
    /// a plain store is enough.
    pub(super) fn end(&self, now: u64) {
        self.state.store(now, Relaxed);
    }

    /// Evicts the connection if its state is still `seen` (idle since then), and wakes its
    /// task to close the socket.
    fn try_evict(&self, seen: u64) -> bool {
        if seen >= EVICTED
            || self
                .state
                .compare_exchange(seen, EVICTED, Relaxed, Relaxed)
                .is_err()
        {
            return false;
        }
        self.wake.cancel();
        true
    }
}

/// The idle connection with the oldest idle clock among `(id, state)`, ties to the lowest
/// (oldest) id; busy and evicted ones are never picked. Returns its id and the state seen.
fn idlest(candidates: impl Iterator<Item = (u64, u64)>) -> Option<(u64, u64)> {
    candidates
        .filter(|&(_, state)| state < EVICTED)
        .min_by_key(|&(id, state)| (state, id))
}

/// The `k` idle connections with the oldest idle clocks among `(id, state)`, as
/// `(state, id)` with the oldest last (to be popped first).
fn oldest_idle(candidates: impl Iterator<Item = (u64, u64)>, k: usize) -> Vec<(u64, u64)> {
    let mut heap = BinaryHeap::with_capacity(k + 1);
    for (id, state) in candidates.filter(|&(_, state)| state < EVICTED) {
        heap.push((state, id));
        if heap.len() > k {
            heap.pop();
        }
    }
    let mut v = heap.into_sorted_vec();
    v.reverse();
    v
}

/// The cap that made a newcomer wait for room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cap {
    Connections,
    PerClient,
}

/// Every open TCP connection across the listeners, by id and by client address. The accept
/// loop consults it once per connection and each task once when it ends; queries never do.
#[derive(Debug)]
pub(super) struct ConnTable {
    max: usize,
    max_per_client: usize,
    next_id: u64,
    conns: HashMap<u64, (IpAddr, Arc<Conn>)>,
    /// Ids per client address; an entry leaves when its last connection closes.
    clients: HashMap<IpAddr, Vec<u64>>,
    /// The oldest idle connections at the last scan of all, as `(state, id)`, oldest last.
    /// Under a flood every accept evicts, and a scan per accept would cost O(connections);
    /// one scan serves [`OLDEST_KEPT`] evictions instead, and stays exact: idle clocks only
    /// move forward, so an entry whose state is still the one seen (checked by the
    /// compare-and-swap that evicts) is still older than every connection not listed.
    oldest: Vec<(u64, u64)>,
}

/// How many times an eviction picks again after its choice left idle at that very moment.
const EVICT_TRIES: usize = 8;

/// Candidates kept from one scan of every connection.
const OLDEST_KEPT: usize = 64;

impl ConnTable {
    fn new(limits: &TcpLimits) -> ConnTable {
        ConnTable {
            max: limits.max_connections,
            max_per_client: limits.max_per_client,
            next_id: 0,
            conns: HashMap::new(),
            clients: HashMap::new(),
            oldest: Vec::new(),
        }
    }

    /// Registers a connection from `ip` accepted at `now`. At a cap, the longest-idle
    /// connection (at the per-client cap, the longest-idle of that client's) is evicted first
    /// and the cap that made room is returned with the new id; Err when every connection
    /// that could make room is answering a query.
    pub(super) fn admit(
        &mut self,
        ip: IpAddr,
        now: u64,
        wake: CancellationToken,
    ) -> Result<(u64, Arc<Conn>, Option<Cap>), Cap> {
        let own = self.clients.get(&ip).map_or(0, Vec::len);
        let cap = if own >= self.max_per_client {
            Some(Cap::PerClient)
        } else if self.conns.len() >= self.max {
            Some(Cap::Connections)
        } else {
            None
        };
        if let Some(cap) = cap
            && !self.evict(cap, ip)
        {
            return Err(cap);
        }
        let id = self.next_id;
        self.next_id += 1;
        let conn = Arc::new(Conn::new(now, wake));
        self.conns.insert(id, (ip, conn.clone()));
        self.clients.entry(ip).or_default().push(id);
        Ok((id, conn, cap))
    }

    fn evict(&mut self, cap: Cap, ip: IpAddr) -> bool {
        match cap {
            Cap::Connections => self.evict_oldest(),
            Cap::PerClient => self.evict_own(ip),
        }
    }

    fn evict_oldest(&mut self) -> bool {
        let mut scans = 0;
        loop {
            let Some((seen, id)) = self.oldest.pop() else {
                if scans == EVICT_TRIES {
                    return false;
                }
                scans += 1;
                let all = self
                    .conns
                    .iter()
                    .map(|(id, c)| (*id, c.1.state.load(Relaxed)));
                self.oldest = oldest_idle(all, OLDEST_KEPT);
                if self.oldest.is_empty() {
                    return false;
                }
                continue;
            };
            // Gone already (closed, or evicted for its client's cap), or no longer idle since
            // `seen`: then it is younger than the next in the list.
            if self.conns.get(&id).is_some_and(|c| c.1.try_evict(seen)) {
                self.remove(id);
                return true;
            }
        }
    }

    fn evict_own(&mut self, ip: IpAddr) -> bool {
        for _ in 0..EVICT_TRIES {
            let Some(ids) = self.clients.get(&ip) else {
                return false;
            };
            let own = ids
                .iter()
                .filter_map(|id| Some((*id, self.conns.get(id)?.1.state.load(Relaxed))));
            let Some((id, seen)) = idlest(own) else {
                return false;
            };
            if self.conns.get(&id).is_some_and(|c| c.1.try_evict(seen)) {
                self.remove(id);
                return true;
            }
        }
        false
    }

    /// Forgets a connection: closed by its task, or evicted (then its task's own call later
    /// finds nothing, as ids are never reused).
    fn remove(&mut self, id: u64) {
        let Some((ip, _)) = self.conns.remove(&id) else {
            return;
        };
        if let Some(ids) = self.clients.get_mut(&ip) {
            ids.retain(|&x| x != id);
            if ids.is_empty() {
                self.clients.remove(&ip);
            }
        }
    }
}

/// The TCP listeners' shared state: the table of connections, the clock it counts in, and
/// how long a connection may stay idle by that clock.
pub(super) struct Tcp {
    epoch: Instant,
    table: Mutex<ConnTable>,
    pub(super) idle: Duration,
}

impl Tcp {
    pub(super) fn new(limits: &TcpLimits) -> Tcp {
        Tcp {
            idle: limits.idle_timeout,
            epoch: Instant::now(),
            table: Mutex::new(ConnTable::new(limits)),
        }
    }

    pub(super) fn stamp(&self, t: Instant) -> u64 {
        // Far below EVICTED for any uptime (u64 microseconds is 584,000 years).
        t.saturating_duration_since(self.epoch).as_micros() as u64
    }

    pub(super) fn table(&self) -> std::sync::MutexGuard<'_, ConnTable> {
        // Its methods do not panic; if a poisoned lock came from elsewhere, a table off by a
        // connection is better than refusing every TCP client from then on.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Takes a connection out of the table when its task ends, however it ends.
pub(super) struct Registered {
    pub(super) tcp: Arc<Tcp>,
    pub(super) id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.tcp.table().remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_idlest_is_the_oldest_idle_clock_and_never_a_busy_or_evicted_connection() {
        assert_eq!(
            idlest([(0, 30), (1, 10), (2, 20)].into_iter()),
            Some((1, 10))
        );
        // Equal clocks (accepted in the same microsecond): the older connection goes.
        assert_eq!(
            idlest([(5, 10), (3, 10), (4, 10)].into_iter()),
            Some((3, 10))
        );
        assert_eq!(
            idlest([(0, BUSY), (1, EVICTED), (2, 99)].into_iter()),
            Some((2, 99))
        );
        assert_eq!(idlest([(0, BUSY), (1, EVICTED)].into_iter()), None);
        assert_eq!(idlest(std::iter::empty()), None);
    }

    fn table(max: usize, max_per_client: usize) -> ConnTable {
        ConnTable::new(&TcpLimits {
            idle_timeout: Duration::from_secs(10),
            max_connections: max,
            max_per_client,
        })
    }

    fn ip(n: u16) -> IpAddr {
        IpAddr::from([192, 0, (n >> 8) as u8, n as u8])
    }

    /// Admits a connection from `ip(n)` at `now`: its id, its shared state, the cap it hit.
    fn admit(t: &mut ConnTable, n: u16, now: u64) -> Result<(u64, Arc<Conn>, Option<Cap>), Cap> {
        t.admit(ip(n), now, CancellationToken::new())
    }

    fn ok(r: Result<(u64, Arc<Conn>, Option<Cap>), Cap>) -> (u64, Arc<Conn>, Option<Cap>) {
        r.expect("admitted")
    }

    #[test]
    fn at_the_global_cap_the_longest_idle_connection_makes_room() {
        let mut t = table(3, 3);
        let (_, a, cap) = ok(admit(&mut t, 1, 10));
        assert_eq!(cap, None);
        let (_, b, _) = ok(admit(&mut t, 2, 20));
        let (_, c, _) = ok(admit(&mut t, 3, 30));
        // a received a byte of a query since: its idle clock restarted, b is now idlest.
        assert!(a.touch(35));
        let (_, d, cap) = ok(admit(&mut t, 4, 40));
        assert_eq!(cap, Some(Cap::Connections));
        assert!(b.wake.is_cancelled(), "the evicted task is woken");
        assert_eq!(b.state.load(Relaxed), EVICTED);
        assert!(!a.wake.is_cancelled() && !c.wake.is_cancelled());
        assert_eq!(t.conns.len(), 3);
        assert!(!t.clients.contains_key(&ip(2)));
        // c is answering a query: not evictable, so a goes next although c is older.
        assert!(c.begin());
        let (_, _, cap) = ok(admit(&mut t, 5, 50));
        assert_eq!(cap, Some(Cap::Connections));
        assert!(a.wake.is_cancelled() && !c.wake.is_cancelled());
        // c answered and is idle from 60, after d (40) and e (50): d goes.
        c.end(60);
        ok(admit(&mut t, 6, 70));
        assert!(d.wake.is_cancelled() && !c.wake.is_cancelled());
    }

    #[test]
    fn evictions_past_one_scan_still_go_in_idle_order() {
        let n = 3 * OLDEST_KEPT;
        let mut t = table(n, 1);
        let old: Vec<Arc<Conn>> = (0..n)
            .map(|i| ok(admit(&mut t, i as u16, 1000 + i as u64)).1)
            .collect();
        // Idle clocks in another order than the connections': a permutation of 2000..2000+n.
        let mut clock: Vec<u64> = (0..n).map(|i| 2000 + (i * 37 % n) as u64).collect();
        for (c, &at) in old.iter().zip(&clock) {
            assert!(c.touch(at));
        }
        let evicted = |old: &[Arc<Conn>]| -> Vec<usize> {
            (0..old.len())
                .filter(|&i| old[i].wake.is_cancelled())
                .collect()
        };
        let mut order = Vec::new();
        let mut admitted = 0;
        let mut admit_one = |t: &mut ConnTable| {
            let (_, _, cap) = ok(admit(t, (n + admitted) as u16, 5000 + admitted as u64));
            admitted += 1;
            cap
        };
        // The first eviction fills the list of the oldest.
        assert_eq!(admit_one(&mut t), Some(Cap::Connections));
        order.extend(evicted(&old));
        // Listed ones change meanwhile: the next oldest receives a byte, the one after starts
        // answering and stays busy, the one after that closes.
        let by_age = |clock: &[u64]| {
            let mut v: Vec<usize> = (0..n).collect();
            v.sort_by_key(|&i| clock[i]);
            v
        };
        let ages = by_age(&clock);
        let (touched, busy, gone) = (ages[1], ages[2], ages[3]);
        assert!(old[touched].touch(4000));
        clock[touched] = 4000;
        assert!(old[busy].begin());
        let gone_id = t
            .conns
            .iter()
            .find(|(_, c)| Arc::ptr_eq(&c.1, &old[gone]))
            .map(|(id, _)| *id)
            .unwrap();
        t.remove(gone_id);
        // Room for one without evicting, then one eviction per newcomer.
        assert_eq!(admit_one(&mut t), None);
        for _ in 0..n - 3 {
            assert_eq!(admit_one(&mut t), Some(Cap::Connections));
            let now = evicted(&old);
            let new: Vec<usize> = now.into_iter().filter(|i| !order.contains(i)).collect();
            assert_eq!(new.len(), 1, "one eviction per newcomer");
            order.extend(new);
        }
        // Every idle old connection went, oldest first (the touched one by its new clock),
        // before any newcomer; the busy one stays.
        let expected: Vec<usize> = by_age(&clock)
            .into_iter()
            .filter(|&i| i != busy && i != gone)
            .collect();
        assert_eq!(order, expected);
        assert!(!old[busy].wake.is_cancelled());
        assert_eq!(t.conns.len(), n);
    }

    #[test]
    fn at_the_per_client_cap_that_clients_longest_idle_connection_makes_room() {
        let mut t = table(10, 2);
        let (_, other, _) = ok(admit(&mut t, 9, 5));
        let (_, a, _) = ok(admit(&mut t, 1, 10));
        let (_, b, _) = ok(admit(&mut t, 1, 20));
        let (_, c, cap) = ok(admit(&mut t, 1, 30));
        // The other client's connection is idle longer, but is not this client's.
        assert_eq!(cap, Some(Cap::PerClient));
        assert!(a.wake.is_cancelled());
        assert!(!b.wake.is_cancelled() && !other.wake.is_cancelled());
        assert_eq!(t.clients[&ip(1)].len(), 2);
        // Both of the client's connections answering: the newcomer is refused, nothing closed.
        assert!(b.begin() && c.begin());
        assert_eq!(admit(&mut t, 1, 40).err(), Some(Cap::PerClient));
        assert!(!b.wake.is_cancelled() && !c.wake.is_cancelled());
        assert_eq!(t.conns.len(), 3);
    }

    #[test]
    fn at_both_caps_one_eviction_of_the_clients_own_is_enough() {
        let mut t = table(3, 2);
        let (_, other, _) = ok(admit(&mut t, 9, 5));
        let (_, a, _) = ok(admit(&mut t, 1, 10));
        ok(admit(&mut t, 1, 20));
        let (_, _, cap) = ok(admit(&mut t, 1, 30));
        assert_eq!(cap, Some(Cap::PerClient));
        assert!(a.wake.is_cancelled() && !other.wake.is_cancelled());
        assert_eq!(t.conns.len(), 3);
    }

    #[test]
    fn with_every_connection_answering_a_newcomer_is_refused() {
        let mut t = table(2, 2);
        let (_, a, _) = ok(admit(&mut t, 1, 10));
        let (_, b, _) = ok(admit(&mut t, 2, 20));
        assert!(a.begin() && b.begin());
        assert_eq!(admit(&mut t, 3, 30).err(), Some(Cap::Connections));
        assert!(!a.wake.is_cancelled() && !b.wake.is_cancelled());
    }

    #[test]
    fn an_evicted_connection_never_starts_a_query_and_a_stale_choice_evicts_nothing() {
        let c = Conn::new(10, CancellationToken::new());
        // Chosen at 10, but a byte arrived (or a query started) before the eviction landed.
        assert!(c.touch(15));
        assert!(!c.try_evict(10));
        assert!(c.begin());
        assert!(!c.try_evict(BUSY), "a busy connection is never evicted");
        c.end(20);
        assert!(c.try_evict(20));
        assert!(c.wake.is_cancelled());
        // The task, woken or not yet, can neither restart its clock nor answer.
        assert!(!c.touch(25));
        assert!(!c.begin());
        assert!(!c.try_evict(EVICTED));
    }

    #[test]
    fn a_closed_connection_frees_its_slots_once() {
        let mut t = table(2, 1);
        let (a, _, _) = ok(admit(&mut t, 1, 10));
        let (b, _, _) = ok(admit(&mut t, 2, 20));
        t.remove(a);
        t.remove(a);
        assert_eq!(t.conns.len(), 1);
        assert!(!t.clients.contains_key(&ip(1)));
        let (_, _, cap) = ok(admit(&mut t, 1, 30));
        assert_eq!(cap, None, "room without evicting");
        // An evicted connection's own removal, later, takes nothing else with it.
        let (_, _, cap) = ok(admit(&mut t, 3, 40));
        assert_eq!(cap, Some(Cap::Connections));
        t.remove(b);
        assert_eq!(t.conns.len(), 2);
    }
}
