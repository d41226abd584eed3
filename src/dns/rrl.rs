//! Response rate limiting (RRL), as Knot and BIND implement it.
//!
//! A spoofed flood makes an authoritative server send many identical responses to one victim
//! network. We count responses per (client network, kind of response, name) and allow
//! `responses-per-second` of them with a one-second burst; beyond that a response is dropped,
//! or every `slip`-th one is sent truncated so that a real client behind the flood retries over
//! TCP, which cannot be spoofed.
//!
//! The state is a fixed table of 64-bit cells, one atomic each, shared by every UDP worker: a
//! 24-bit tag of the flow's hash and a 40-bit "theoretical arrival time" in microseconds (the
//! generic cell rate algorithm, so one word holds a whole token bucket). Unrelated flows that
//! land in one cell replace each other, which only ever makes limiting more lenient.

use std::hash::Hasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use siphasher::sip::SipHasher13;

use super::{Ctx, Event, Transport};
use crate::config::RateLimit;

/// What a response says, for keying: floods of different kinds are counted apart, and
/// NXDOMAIN is counted per zone so that random names do not each get their own allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Answer,
    NoData,
    NxDomain,
    Referral,
    Error,
}

/// One response as the limiter sees it: responses with equal flows are "identical".
#[derive(Debug, Clone, Copy)]
pub struct Flow<'a> {
    pub kind: Kind,
    pub name: &'a [u8],
    pub qtype: u16,
    /// A hash of the answer records' data. Geo answers differ by client subnet, and a public
    /// resolver asking for many ECS subnets at once gets different, not identical, responses.
    pub content: u64,
}

/// What to do with a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Send,
    Drop,
    /// Send a truncated response (TC set, no records).
    Slip,
}

/// Response rate limiting for UDP; TCP, exempt networks and valid cookies always pass. The
/// flow is only worked out for responses that are limited at all. Limited responses are
/// counted here, for the fast and the full path alike.
pub(super) fn limit<'a>(
    ctx: &Ctx<'_>,
    src: IpAddr,
    cookie_ok: bool,
    flow: impl FnOnce() -> Flow<'a>,
) -> Verdict {
    let rl = &ctx.table.config.rate_limit;
    if ctx.transport == Transport::Tcp
        || !rl.enabled
        || cookie_ok
        || rl.exempt.iter().any(|n| n.contains(&src))
    {
        return Verdict::Send;
    }
    let v = ctx.guard.rrl.check(rl, src, flow());
    match v {
        Verdict::Drop => ctx.stats.add(Event::RrlDropped),
        Verdict::Slip => ctx.stats.add(Event::RrlSlipped),
        Verdict::Send => {}
    }
    v
}

const TIME_BITS: u32 = 40;
const TIME_MASK: u64 = (1 << TIME_BITS) - 1;

pub struct Rrl {
    cells: Box<[AtomicU64]>,
    key: [u8; 16],
    epoch: Instant,
    limited: AtomicU32,
}

impl Rrl {
    pub fn new(table_size: usize, key: [u8; 16]) -> Rrl {
        Rrl {
            cells: (0..table_size.next_power_of_two().max(1))
                .map(|_| AtomicU64::new(0))
                .collect(),
            key,
            epoch: Instant::now(),
            limited: AtomicU32::new(0),
        }
    }

    /// An empty table of `table_size` cells (rounded up to a power of two) with this one's key.
    pub fn with_size(&self, table_size: usize) -> Rrl {
        Rrl::new(table_size, self.key)
    }

    /// Cells in the table.
    pub fn cells(&self) -> usize {
        self.cells.len()
    }

    /// Decides for one response to `src` (UDP only: TCP sources cannot be spoofed).
    pub fn check(&self, cfg: &RateLimit, src: IpAddr, flow: Flow<'_>) -> Verdict {
        let now = self.epoch.elapsed().as_micros() as u64 & TIME_MASK;
        self.check_at(cfg, src, flow, now)
    }

    fn check_at(&self, cfg: &RateLimit, src: IpAddr, flow: Flow<'_>, now: u64) -> Verdict {
        let h = self.flow_hash(cfg, src, flow);
        let tag = h >> TIME_BITS;
        let cell = &self.cells[(h as usize) & (self.cells.len() - 1)];
        let interval = (1_000_000 / cfg.responses_per_second.max(1) as u64).max(1);
        // A burst of one second's worth is allowed.
        let tolerance = interval * (cfg.responses_per_second.max(1) as u64 - 1);
        let mut cur = cell.load(Relaxed);
        loop {
            let (ctag, tat) = (cur >> TIME_BITS, cur & TIME_MASK);
            // How far the flow's arrival time is ahead of now, in 40-bit wrapping arithmetic;
            // a cell from another flow, or one so stale that the difference is absurd, starts
            // over.
            let ahead = tat.wrapping_sub(now) & TIME_MASK;
            let ahead = if ctag != tag || ahead > tolerance + interval {
                None
            } else {
                Some(ahead)
            };
            let tat = match ahead {
                Some(a) if a > tolerance => break,
                Some(_) => tat,
                None => now,
            };
            let next = (tag << TIME_BITS) | ((tat + interval) & TIME_MASK);
            match cell.compare_exchange_weak(cur, next, Relaxed, Relaxed) {
                Ok(_) => return Verdict::Send,
                Err(v) => cur = v,
            }
        }
        match cfg.slip {
            0 => Verdict::Drop,
            n => {
                if self.limited.fetch_add(1, Relaxed).is_multiple_of(n) {
                    Verdict::Slip
                } else {
                    Verdict::Drop
                }
            }
        }
    }

    fn flow_hash(&self, cfg: &RateLimit, src: IpAddr, flow: Flow<'_>) -> u64 {
        // Keyed, so that an attacker cannot aim two flows at one cell.
        let mut h = SipHasher13::new_with_key(&self.key);
        match crate::geo::canonical(src) {
            IpAddr::V4(a) => {
                let bits = u32::from(a)
                    & (!0u32)
                        .checked_shl(32 - cfg.ipv4_prefix as u32)
                        .unwrap_or(0);
                h.write_u8(4);
                h.write_u32(bits);
            }
            IpAddr::V6(a) => {
                let bits = u128::from(a)
                    & (!0u128)
                        .checked_shl(128 - cfg.ipv6_prefix as u32)
                        .unwrap_or(0);
                h.write_u8(6);
                h.write_u128(bits);
            }
        }
        h.write_u8(flow.kind as u8);
        if flow.kind == Kind::Answer {
            h.write_u16(flow.qtype);
            h.write_u64(flow.content);
        }
        h.write(flow.name);
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_rate_then_limits_then_refills() {
        let cfg = RateLimit {
            responses_per_second: 10,
            slip: 2,
            ..RateLimit::default()
        };
        let rrl = Rrl::new(1024, [7; 16]);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.200".parse().unwrap();
        let t0 = 5_000_000;
        let name = b"\x03www\x00";
        let flow = |name: &'static [u8], qtype, content| Flow {
            kind: Kind::Answer,
            name,
            qtype,
            content,
        };
        let verdicts: Vec<_> = (0..20)
            .map(|_| rrl.check_at(&cfg, ip, flow(name, 1, 0), t0))
            .collect();
        assert_eq!(verdicts.iter().filter(|v| **v == Verdict::Send).count(), 10);
        assert_eq!(verdicts.iter().filter(|v| **v == Verdict::Slip).count(), 5);
        // The same /24 shares the bucket; another name, type or answer does not.
        assert_ne!(
            rrl.check_at(&cfg, other, flow(name, 1, 0), t0),
            Verdict::Send
        );
        assert_eq!(rrl.check_at(&cfg, ip, flow(name, 28, 0), t0), Verdict::Send);
        assert_eq!(rrl.check_at(&cfg, ip, flow(name, 1, 99), t0), Verdict::Send);
        assert_eq!(
            rrl.check_at(&cfg, ip, flow(b"\x01x\x00", 1, 0), t0),
            Verdict::Send
        );
        // A tenth of a second later one more response is allowed, then none.
        assert_eq!(
            rrl.check_at(&cfg, ip, flow(name, 1, 0), t0 + 100_000),
            Verdict::Send
        );
        assert_ne!(
            rrl.check_at(&cfg, ip, flow(name, 1, 0), t0 + 100_000),
            Verdict::Send
        );
        // After a quiet second the full burst is back.
        let later = t0 + 1_200_000;
        let sent = (0..20)
            .filter(|_| rrl.check_at(&cfg, ip, flow(name, 1, 0), later) == Verdict::Send)
            .count();
        assert_eq!(sent, 10);
    }
}
