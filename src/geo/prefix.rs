//! Compiled prefix tables: every address of a family maps to one value, in sorted ranges.
//!
//! A table covers the whole address space (gaps hold a caller-given value), so a lookup is one
//! binary search and always succeeds. Adjacent ranges with equal values are merged, which both
//! shrinks the table and gives the broadest correct ECS scope: the answer cannot differ within
//! the largest aligned network that fits inside the client's range.

/// An address family's integer form: u32 for IPv4, u128 for IPv6.
pub trait Key: Copy + Ord + std::fmt::Debug {
    const BITS: u8;
    fn from_u128(v: u128) -> Self;
    fn to_u128(self) -> u128;
    /// The top 16 bits, which pick the first-level index slot.
    fn top16(self) -> usize {
        (self.to_u128() >> (Self::BITS - 16)) as usize
    }
}

impl Key for u32 {
    const BITS: u8 = 32;
    fn from_u128(v: u128) -> Self {
        v as u32
    }
    fn to_u128(self) -> u128 {
        self as u128
    }
}

impl Key for u128 {
    const BITS: u8 = 128;
    fn from_u128(v: u128) -> Self {
        v
    }
    fn to_u128(self) -> u128 {
        self
    }
}

/// An inclusive range of addresses (as u128, whatever the family) and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: u128,
    pub end: u128,
    pub value: u32,
}

/// Sorted ranges covering a whole address space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixTable<K: Key> {
    starts: Vec<K>,
    values: Vec<u32>,
    /// For each value t of an address's top 16 bits ("slot"): either the answer itself, when one
    /// range covers the whole slot ([`UNIFORM`] set, scope in bits 32..40, value in the low 32
    /// bits; the scope cannot differ inside the slot), or the ranges holding the slot's first
    /// and last address (low and high 32 bits), so that a lookup searches only those instead of
    /// the whole table. With a GeoLite2-sized table that is one cache miss for most addresses
    /// and two or three for the rest, instead of a dozen. Empty for small tables, which stay in
    /// cache.
    index: Vec<u64>,
}

/// Marks an index slot that one range covers whole.
const UNIFORM: u64 = 1 << 63;

/// Tables with fewer ranges than this are searched whole.
const INDEX_MIN_RANGES: usize = 4096;

/// What one lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub value: u32,
    /// Prefix length of the largest network around the address that lies inside its range.
    pub scope: u8,
}

fn max_of(bits: u8) -> u128 {
    if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

impl<K: Key> PrefixTable<K> {
    /// Builds a table from sorted, non-overlapping spans; gaps get `gap`. Adjacent equal values
    /// are merged.
    pub fn from_spans(spans: impl IntoIterator<Item = Span>, gap: u32) -> Self {
        let mut b = Builder::new(gap);
        for s in spans {
            b.push(s);
        }
        b.finish()
    }

    fn indexed(starts: Vec<K>, values: Vec<u32>) -> Self {
        let index = if starts.len() < INDEX_MIN_RANGES {
            Vec::new()
        } else {
            let slot_bits = K::BITS - 16;
            let mut index = Vec::with_capacity(1 << 16);
            // The range holding the current slot's first address.
            let mut i = 0;
            for t in 0..(1u128 << 16) {
                let first = t << slot_bits;
                let last = first | max_of(slot_bits);
                while i + 1 < starts.len() && starts[i + 1].to_u128() <= first {
                    i += 1;
                }
                let end = |i: usize| match starts.get(i + 1) {
                    Some(n) => n.to_u128() - 1,
                    None => max_of(K::BITS),
                };
                if end(i) >= last {
                    // The scope is the same for every address of the slot: the range's ends
                    // lie outside it, so they differ from each address in the same top bits.
                    let scope = scope_within(first, starts[i].to_u128(), end(i), K::BITS);
                    index.push(UNIFORM | u64::from(scope) << 32 | u64::from(values[i]));
                } else {
                    let mut j = i;
                    while end(j) < last {
                        j += 1;
                    }
                    index.push(i as u64 | (j as u64) << 32);
                }
            }
            index
        };
        PrefixTable {
            starts,
            values,
            index,
        }
    }

    /// The value for `addr`, and the ECS scope within which it cannot differ.
    #[inline]
    pub fn lookup(&self, addr: K) -> Hit {
        let i = if self.index.is_empty() {
            // starts[0] is always 0, so the partition point is at least 1.
            self.starts
                .partition_point(|&s| s <= addr)
                .saturating_sub(1)
        } else {
            let e = self.index[addr.top16()];
            if e & UNIFORM != 0 {
                return Hit {
                    value: e as u32,
                    scope: (e >> 32) as u8,
                };
            }
            // The answer lies between the ranges holding the slot's first and last address.
            let (lo, hi) = (e as u32 as usize, (e >> 32) as usize);
            lo + self.starts[lo + 1..=hi].partition_point(|&s| s <= addr)
        };
        let start = self.starts[i].to_u128();
        let end = match self.starts.get(i + 1) {
            Some(n) => n.to_u128() - 1,
            None => max_of(K::BITS),
        };
        Hit {
            value: self.values[i],
            scope: scope_within(addr.to_u128(), start, end, K::BITS),
        }
    }

    /// Number of ranges after merging.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Bytes held by the table.
    pub fn heap_bytes(&self) -> usize {
        self.starts.capacity() * std::mem::size_of::<K>()
            + self.values.capacity() * 4
            + self.index.capacity() * 8
    }

    /// Every range as a span (for rebuilding with other values).
    pub fn spans(&self) -> impl Iterator<Item = Span> + '_ {
        (0..self.starts.len()).map(move |i| Span {
            start: self.starts[i].to_u128(),
            end: self
                .starts
                .get(i + 1)
                .map(|n| n.to_u128() - 1)
                .unwrap_or(max_of(K::BITS)),
            value: self.values[i],
        })
    }

    /// A table with every value mapped through `f`, re-merged.
    pub fn map_values(&self, mut f: impl FnMut(u32) -> u32) -> Self {
        PrefixTable::from_spans(
            self.spans().map(|s| Span {
                value: f(s.value),
                ..s
            }),
            0,
        )
    }
}

/// Builds a table from spans that arrive in address order (sorted, disjoint), without holding
/// them: a database walk feeds it directly.
struct Builder<K: Key> {
    starts: Vec<K>,
    values: Vec<u32>,
    gap: u32,
    /// The first address no span has reached yet; None once the family is covered.
    next: Option<u128>,
}

impl<K: Key> Builder<K> {
    pub fn new(gap: u32) -> Self {
        Builder {
            starts: Vec::new(),
            values: Vec::new(),
            gap,
            next: Some(0),
        }
    }

    fn range(&mut self, start: u128, value: u32) {
        if self.values.last() == Some(&value) {
            return;
        }
        self.starts.push(K::from_u128(start));
        self.values.push(value);
    }

    pub fn push(&mut self, s: Span) {
        let Some(next) = self.next else {
            return;
        };
        debug_assert!(s.start >= next, "spans must be sorted and disjoint");
        if s.start > next {
            self.range(next, self.gap);
        }
        self.range(s.start, s.value);
        self.next = (s.end < max_of(K::BITS)).then(|| s.end + 1);
    }

    pub fn finish(mut self) -> PrefixTable<K> {
        if let Some(next) = self.next {
            self.range(next, self.gap);
        }
        // The vectors grew by doubling; a table of millions of ranges would keep up to half
        // of that unused.
        self.starts.shrink_to_fit();
        self.values.shrink_to_fit();
        PrefixTable::indexed(self.starts, self.values)
    }
}

/// Lays `top` (sorted and disjoint, as [`paint`] makes it) over base spans that arrive in
/// address order: where they overlap, `top` wins. The result goes straight into a [`Builder`],
/// so the base (a whole database walk) is never held.
pub struct Overlay<K: Key> {
    top: Vec<Span>,
    /// The next top span not passed on yet.
    ti: usize,
    /// The last address covered by a top span passed on.
    covered: Option<u128>,
    out: Builder<K>,
}

impl<K: Key> Overlay<K> {
    pub fn new(top: Vec<Span>, gap: u32) -> Self {
        Overlay {
            top,
            ti: 0,
            covered: None,
            out: Builder::new(gap),
        }
    }

    fn emit_top(&mut self) {
        let t = self.top[self.ti];
        self.out.push(t);
        self.covered = Some(t.end);
        self.ti += 1;
    }

    pub fn push(&mut self, b: Span) {
        let mut cur = match self.covered {
            Some(c) if c >= b.end => return,
            Some(c) if c >= b.start => c + 1,
            _ => b.start,
        };
        loop {
            // Top spans wholly before what is left of `b` go first, in order.
            while self.ti < self.top.len() && self.top[self.ti].end < cur {
                self.emit_top();
            }
            match self.top.get(self.ti).copied() {
                Some(t) if t.start <= b.end => {
                    if t.start > cur {
                        self.out.push(Span {
                            start: cur,
                            end: t.start - 1,
                            value: b.value,
                        });
                    }
                    self.emit_top();
                    if t.end >= b.end {
                        return;
                    }
                    cur = t.end + 1;
                }
                _ => {
                    self.out.push(Span {
                        start: cur,
                        end: b.end,
                        value: b.value,
                    });
                    return;
                }
            }
        }
    }

    pub fn finish(mut self) -> PrefixTable<K> {
        while self.ti < self.top.len() {
            self.emit_top();
        }
        self.out.finish()
    }
}

/// The shortest prefix length p such that addr's /p network lies inside [start, end].
///
/// The /p network's low end stays >= start exactly while addr and start-1 differ in a bit that
/// p keeps, so p must keep the highest such bit; the same holds for the high end and end+1.
fn scope_within(addr: u128, start: u128, end: u128, bits: u8) -> u8 {
    let keep = |other: u128| -> u8 {
        let diff = addr ^ other;
        // Index (from the top of the family's width) of the highest differing bit, plus one.
        (bits as u32 - (127 - diff.leading_zeros())) as u8
    };
    let low = if start == 0 { 0 } else { keep(start - 1) };
    let high = if end >= max_of(bits) {
        0
    } else {
        keep(end + 1)
    };
    low.max(high)
}

/// The same by trying every length: the reference the fast form is tested against.
#[cfg(test)]
fn scope_within_slow(addr: u128, start: u128, end: u128, bits: u8) -> u8 {
    for p in 0..bits {
        let host = max_of(bits - p);
        let lo = addr & !host;
        let hi = lo | host;
        if lo >= start && hi <= end {
            return p;
        }
    }
    bits
}

/// Paints networks one over another in the order given (so give them shortest prefix first:
/// the longest prefix then wins) and returns disjoint sorted spans.
pub fn paint(networks: impl IntoIterator<Item = Span>) -> Vec<Span> {
    use std::collections::BTreeMap;
    // Map from range start to (end, value); disjoint at all times.
    let mut map: BTreeMap<u128, (u128, u32)> = BTreeMap::new();
    for n in networks {
        // Split any range that straddles n.start or n.end, then drop what n covers.
        let straddling: Vec<(u128, (u128, u32))> = map
            .range(..=n.end)
            .rev()
            .take_while(|(_, (e, _))| *e >= n.start)
            .map(|(s, v)| (*s, *v))
            .collect();
        for (s, (e, v)) in straddling {
            map.remove(&s);
            if s < n.start {
                map.insert(s, (n.start - 1, v));
            }
            if e > n.end {
                map.insert(n.end + 1, (e, v));
            }
        }
        map.insert(n.start, (n.end, n.value));
    }
    map.into_iter()
        .map(|(start, (end, value))| Span { start, end, value })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(start: u128, end: u128, value: u32) -> Span {
        Span { start, end, value }
    }

    #[test]
    fn gaps_and_merging() {
        let t: PrefixTable<u32> =
            PrefixTable::from_spans([sp(10, 19, 1), sp(20, 29, 1), sp(40, 49, 2)], 0);
        assert_eq!(t.len(), 5);
        assert_eq!(t.lookup(0).value, 0);
        assert_eq!(t.lookup(15).value, 1);
        assert_eq!(t.lookup(29).value, 1);
        assert_eq!(t.lookup(30).value, 0);
        assert_eq!(t.lookup(45).value, 2);
        assert_eq!(t.lookup(u32::MAX).value, 0);
    }

    /// The first-level index finds exactly what a search of the whole table finds.
    fn indexed_matches_whole_search<K: Key>(spans: Vec<Span>, probes: impl Iterator<Item = u128>) {
        let t: PrefixTable<K> = PrefixTable::from_spans(spans, 0);
        assert!(!t.index.is_empty(), "big enough to be indexed: {}", t.len());
        let uniform = t.index.iter().filter(|&&e| e & UNIFORM != 0).count();
        assert!(
            uniform > 0 && uniform < t.index.len(),
            "both kinds of slot are tested: {uniform} of {} uniform",
            t.index.len()
        );
        let whole = PrefixTable::<K> {
            index: Vec::new(),
            ..t.clone()
        };
        for p in probes {
            let a = K::from_u128(p);
            assert_eq!(t.lookup(a), whole.lookup(a), "{a:?}");
        }
    }

    #[test]
    fn first_level_index_agrees_with_whole_search() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        // IPv4: 20000 ranges of random sizes, some slots dense, some empty.
        let mut spans = Vec::new();
        let mut at: u128 = 0;
        for v in 0..20_000u32 {
            at += 1 + (rnd() % 300_000) as u128;
            let len = (rnd() % 5000) as u128;
            if at + len >= 1 << 32 {
                break;
            }
            spans.push(sp(at, at + len, v % 7 + 1));
            at += len + 1;
        }
        let probes: Vec<u128> = (0..200_000).map(|_| (rnd() as u32) as u128).collect();
        let edges: Vec<u128> = spans
            .iter()
            .flat_map(|s| [s.start, s.end, s.end.wrapping_add(1)])
            .collect();
        indexed_matches_whole_search::<u32>(
            spans,
            probes.into_iter().chain(edges).chain([0, u32::MAX as u128]),
        );
        // IPv6: ranges inside 2000::/3 only, so most slots are empty.
        let mut spans = Vec::new();
        let mut at: u128 = 0x2000 << 112;
        for v in 0..10_000u32 {
            at += 1 + ((rnd() as u128) << 40);
            let len = (rnd() as u128) << 32;
            spans.push(sp(at, at + len, v % 5 + 1));
            at += len + 1;
        }
        let probes: Vec<u128> = (0..100_000)
            .map(|_| ((rnd() as u128) << 64 | rnd() as u128) >> (rnd() % 4))
            .collect();
        let edges: Vec<u128> = spans
            .iter()
            .flat_map(|s| [s.start, s.end, s.end.wrapping_add(1)])
            .collect();
        indexed_matches_whole_search::<u128>(
            spans,
            probes.into_iter().chain(edges).chain([0, u128::MAX]),
        );
    }

    #[test]
    fn scope_is_largest_aligned_network_inside_range() {
        // 10.0.0.0 - 10.3.255.255 is a /14.
        let s = 0x0a00_0000u128;
        let e = 0x0a03_ffffu128;
        let t: PrefixTable<u32> = PrefixTable::from_spans([sp(s, e, 7)], 0);
        let hit = t.lookup(0x0a01_0203);
        assert_eq!(
            hit,
            Hit {
                value: 7,
                scope: 14
            }
        );
        // A range that is not aligned: 10.0.1.0 - 10.0.2.255 -> /24 around each address.
        let t: PrefixTable<u32> = PrefixTable::from_spans([sp(0x0a00_0100, 0x0a00_02ff, 7)], 0);
        assert_eq!(t.lookup(0x0a00_0105).scope, 24);
        // The whole space: scope 0.
        let t: PrefixTable<u32> = PrefixTable::from_spans([], 3);
        assert_eq!(t.lookup(12345), Hit { value: 3, scope: 0 });
    }

    #[test]
    fn fast_scope_matches_the_slow_reference() {
        let mut x: u64 = 88172645463325252;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20000 {
            let a = next() as u32 as u128;
            let b = next() as u32 as u128;
            let (s, e) = (a.min(b), a.max(b));
            let addr = s + (next() as u128 % (e - s + 1));
            assert_eq!(
                scope_within(addr, s, e, 32),
                scope_within_slow(addr, s, e, 32),
                "{s} {e} {addr}"
            );
        }
        for (s, e, addr) in [
            (0, u32::MAX as u128, 5),
            (0, 0, 0),
            (7, 7, 7),
            (0, 255, 255),
        ] {
            assert_eq!(
                scope_within(addr, s, e, 32),
                scope_within_slow(addr, s, e, 32)
            );
        }
        let v6 = [
            (0u128, u128::MAX, 1u128),
            (1 << 100, (1 << 101) - 1, (1 << 100) + 77),
        ];
        for (s, e, addr) in v6 {
            assert_eq!(
                scope_within(addr, s, e, 128),
                scope_within_slow(addr, s, e, 128)
            );
        }
    }

    #[test]
    fn ipv6_full_space() {
        let t: PrefixTable<u128> = PrefixTable::from_spans([sp(0, u128::MAX, 5)], 0);
        assert_eq!(t.len(), 1);
        assert_eq!(t.lookup(u128::MAX), Hit { value: 5, scope: 0 });
    }

    #[test]
    fn paint_longest_prefix_wins() {
        let spans = paint([sp(0, 255, 1), sp(16, 31, 2), sp(20, 23, 3)]);
        assert_eq!(
            spans,
            vec![
                sp(0, 15, 1),
                sp(16, 19, 2),
                sp(20, 23, 3),
                sp(24, 31, 2),
                sp(32, 255, 1)
            ]
        );
    }

    fn overlaid(base: &[Span], top: Vec<Span>) -> Vec<Span> {
        let mut o: Overlay<u32> = Overlay::new(top, 0);
        for b in base {
            o.push(*b);
        }
        o.finish().spans().collect()
    }

    #[test]
    fn overlay_top_wins() {
        let base = [sp(0, 99, 1), sp(100, 199, 2)];
        let top = vec![sp(50, 149, 9), sp(190, 199, 8)];
        assert_eq!(
            overlaid(&base, top),
            vec![
                sp(0, 49, 1),
                sp(50, 149, 9),
                sp(150, 189, 2),
                sp(190, 199, 8),
                sp(200, u32::MAX as u128, 0)
            ]
        );
        let mut o: Overlay<u128> = Overlay::new(vec![sp(0, u128::MAX, 2)], 0);
        o.push(sp(0, u128::MAX, 1));
        assert_eq!(
            o.finish().spans().collect::<Vec<_>>(),
            vec![sp(0, u128::MAX, 2)]
        );
    }

    /// Random bases and overrides over a small space, against the answer worked out address by
    /// address: an override wins, then the base, then the gap value.
    #[test]
    fn overlay_matches_address_by_address() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        const SPACE: usize = 600;
        for _ in 0..500 {
            let mut want = [0u32; SPACE];
            // Base: disjoint spans in order, with gaps.
            let mut base = Vec::new();
            let mut at = rnd(20) as u128;
            while at < 500 {
                let end = at + rnd(60) as u128;
                let v = 1 + rnd(3) as u32;
                base.push(sp(at, end, v));
                at = end + 1 + rnd(3) as u128 * rnd(15) as u128;
            }
            let mut top = Vec::new();
            for _ in 0..rnd(6) {
                let start = rnd(560) as u128;
                top.push(sp(start, start + rnd(80) as u128, 10 + rnd(3) as u32));
            }
            let top = paint(top);
            for s in base.iter().chain(&top) {
                for a in s.start..=s.end.min(SPACE as u128 - 1) {
                    want[a as usize] = s.value;
                }
            }
            let got = overlaid(&base, top.clone());
            for (a, w) in want.iter().enumerate() {
                let v = got
                    .iter()
                    .find(|s| s.start <= a as u128 && a as u128 <= s.end)
                    .map(|s| s.value);
                assert_eq!(v, Some(*w), "address {a}: base {base:?} top {top:?}");
            }
        }
    }
}
