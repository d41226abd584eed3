//! The signer: keys, validity and refresh, and the signature cache through which every
//! RRSIG of a routing table is made. Only table builds (and the refresh task) call it; answers
//! read what it made, in [`super::signed::Signed`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustc_hash::FxHashMap;
use tracing::warn;

use super::keys::Key;
use super::nsec;
use super::serial::{self, SerialPolicy};
use super::sign::{self, SetRef, TYPE_CDNSKEY, TYPE_CDS, TYPE_DNSKEY, Window};
use super::signed::{Apex, Due, Nsec, ServiceSigs, Signed, Sigs, ZoneSerial, ZoneSigs, variant};
use crate::zone::name::suffixes;
use crate::zone::{Name, Node, TYPE_A, TYPE_AAAA, TYPE_DS, TYPE_NS, TYPE_SOA, Zone, ZoneSet};

/// Inception is set this far back, for resolvers whose clocks run behind.
const CLOCK_SKEW: u32 = 3600;
/// Cached signatures no table has used for this long are dropped.
const UNUSED_FOR: u64 = 3600;

/// Signature counts since start, for `/metrics` and `/status`.
#[derive(Debug, Default)]
pub struct SignStats {
    /// Signatures made.
    pub made: AtomicU64,
    /// RRsets whose cached signatures a table build used again.
    pub reused: AtomicU64,
    /// RRsets that could not be signed (their previous signatures were kept while valid).
    pub failed: AtomicU64,
    /// The last failure and when, shown in `/status`.
    pub last_error: Mutex<Option<(SystemTime, String)>>,
}

/// One candidate list's A and AAAA addresses.
pub type ListAddrs<'a> = (&'a [[u8; 4]], &'a [[u8; 16]]);

/// A geo service's answers as the signer needs them: what a routing table holds, in plain
/// terms (routing calls the signer; the signer does not reach into routing's types).
#[derive(Debug)]
pub struct ServiceSets<'a> {
    pub name: &'a Name,
    pub ttl: u32,
    /// Per candidate list: its A and AAAA addresses, or None for a list answered SERVFAIL.
    pub lists: Vec<Option<ListAddrs<'a>>>,
    /// The list of clients of unknown location: what a zone transfer carries.
    pub default: Option<usize>,
}

impl ServiceSets<'_> {
    fn default_answer(&self) -> Option<ListAddrs<'_>> {
        self.default
            .and_then(|i| self.lists.get(i).copied().flatten())
    }
}

/// What signs: the keys, the validity and refresh periods, and the signature cache. Lives as
/// long as the config that named the keys; only table builds use the cache.
#[derive(Debug)]
pub struct Signer {
    keys: Vec<Arc<Key>>,
    validity: u32,
    refresh: u32,
    serial: SerialPolicy,
    cache: Mutex<HashMap<Vec<u8>, Cached>>,
    pub stats: SignStats,
}

#[derive(Debug)]
struct Cached {
    sigs: Sigs,
    expiration: u32,
    refresh_at: u64,
    last_used: u64,
}

/// A signed RRset as a build got it: its signatures and when they must be made again.
struct Got {
    sigs: Sigs,
    expiration: u32,
    refresh_at: u64,
}
fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Signer {
    pub fn new(
        keys: Vec<Arc<Key>>,
        validity: Duration,
        refresh: Duration,
        serial: SerialPolicy,
    ) -> Signer {
        Signer {
            keys,
            serial,
            validity: validity.as_secs().min(u32::MAX as u64) as u32,
            refresh: refresh.as_secs().min(u32::MAX as u64) as u32,
            cache: Mutex::new(HashMap::new()),
            stats: SignStats::default(),
        }
    }

    /// True if `other` signs with the same keys over the same periods.
    pub fn same_as(&self, other: &Signer) -> bool {
        fn ids(s: &Signer) -> Vec<(&Name, &[u8])> {
            let mut v: Vec<(&Name, &[u8])> =
                s.keys.iter().map(|k| (&k.owner, &*k.dnskey)).collect();
            v.sort();
            v
        }
        self.validity == other.validity
            && self.refresh == other.refresh
            && self.serial == other.serial
            && ids(self) == ids(other)
    }

    pub fn keys(&self) -> &[Arc<Key>] {
        &self.keys
    }

    /// The keys of the zone at `origin`: those that sign DNSKEY, CDS and CDNSKEY (the KSKs,
    /// or every key when none is one), and those that sign the rest (the ZSKs, or every
    /// key when none is one: a CSK).
    fn roles(&self, origin: &Name) -> (Vec<&Key>, Vec<&Key>) {
        let mine: Vec<&Key> = self
            .keys
            .iter()
            .map(|k| &**k)
            .filter(|k| &k.owner == origin)
            .collect();
        let ksk: Vec<&Key> = mine.iter().copied().filter(|k| k.is_ksk()).collect();
        let zsk: Vec<&Key> = mine.iter().copied().filter(|k| !k.is_ksk()).collect();
        match (ksk.is_empty(), zsk.is_empty()) {
            (true, _) => (zsk.clone(), zsk),
            (false, true) => (ksk.clone(), ksk),
            (false, false) => (ksk, zsk),
        }
    }

    pub fn signs(&self, origin: &Name) -> bool {
        self.keys.iter().any(|k| &k.owner == origin)
    }

    /// Signs `set` with `keys`, or takes it from the cache while it is not due.
    fn sign(
        &self,
        cache: &mut HashMap<Vec<u8>, Cached>,
        keys: &[&Key],
        set: SetRef<'_>,
        now: u64,
    ) -> Option<Got> {
        let mut sorted: Vec<&[u8]> = set.rdatas.iter().map(|d| &**d).collect();
        sorted.sort_unstable();
        let mut id = Vec::with_capacity(64);
        id.extend_from_slice(set.owner);
        id.extend_from_slice(&set.rtype.to_be_bytes());
        id.extend_from_slice(&set.ttl.to_be_bytes());
        for k in keys {
            id.extend_from_slice(&k.tag.to_be_bytes());
            id.push(k.algorithm);
        }
        for d in sorted {
            id.extend_from_slice(&(d.len() as u16).to_be_bytes());
            id.extend_from_slice(d);
        }
        if let Some(c) = cache.get_mut(&id)
            && c.refresh_at > now
        {
            c.last_used = now;
            self.stats.reused.fetch_add(1, Relaxed);
            return Some(Got {
                sigs: c.sigs.clone(),
                expiration: c.expiration,
                refresh_at: c.refresh_at,
            });
        }
        let window = Window {
            inception: (now as u32).wrapping_sub(CLOCK_SKEW),
            expiration: (now as u32).wrapping_add(self.validity),
        };
        let mut sigs = Vec::with_capacity(keys.len());
        for k in keys {
            match sign::rrsig(k, set, window) {
                Ok(s) => {
                    self.stats.made.fetch_add(1, Relaxed);
                    sigs.push(s);
                }
                Err(e) => {
                    self.stats.failed.fetch_add(1, Relaxed);
                    let msg = format!(
                        "signing {} type {} with key {}: {e}",
                        crate::zone::name::to_text(set.owner),
                        set.rtype,
                        k.tag
                    );
                    warn!("{msg}");
                    if let Ok(mut l) = self.stats.last_error.lock() {
                        *l = Some((SystemTime::now(), msg));
                    }
                    // Keep what was signed before while it is still valid.
                    let old = cache.get_mut(&id)?;
                    if (old.expiration as u64) <= now {
                        return None;
                    }
                    old.last_used = now;
                    return Some(Got {
                        sigs: old.sigs.clone(),
                        expiration: old.expiration,
                        refresh_at: now + 60,
                    });
                }
            }
        }
        // Spread refreshes over the last tenth of the refresh period, so that a zone signed at
        // once does not come due at once.
        let jitter = (self.refresh / 10).max(1) as u64;
        let refresh_at = now + self.refresh as u64 - (rand_u64() % jitter);
        let sigs: Sigs = sigs.into();
        cache.insert(
            id,
            Cached {
                sigs: sigs.clone(),
                expiration: window.expiration,
                refresh_at,
                last_used: now,
            },
        );
        Some(Got {
            sigs,
            expiration: window.expiration,
            refresh_at,
        })
    }

    /// The signatures for a table over `zones` and `services`, reusing `previous`'s zone
    /// signatures where the zone is the same and nothing is due.
    pub fn sign_table(
        self: &Arc<Self>,
        zones: &Arc<ZoneSet>,
        services: &[ServiceSets<'_>],
        previous: Option<&Signed>,
        now: SystemTime,
    ) -> Signed {
        let now = unix(now);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let mut due = Due::NEVER;
        let mut out_zones = FxHashMap::default();
        for zone in zones.zones() {
            if !self.signs(&zone.origin) {
                continue;
            }
            let reuse = previous
                .filter(|p| Arc::ptr_eq(&p.signer, self) && Arc::ptr_eq(&p.zoneset, zones))
                .and_then(|p| p.zones.get(&zone.origin))
                .filter(|z| z.due.refresh_at > now)
                .cloned();
            let zs = match reuse {
                Some(z) => z,
                None => Arc::new(self.sign_zone(&mut cache, zone, now)),
            };
            due.merge(zs.due);
            out_zones.insert(zone.origin.clone(), zs);
        }
        let mut out_services = Vec::with_capacity(services.len());
        for (si, route) in services.iter().enumerate() {
            let Some((zone, _)) = zones.service(route.name.wire()) else {
                out_services.push(None);
                continue;
            };
            let Some(zs) = out_zones.get(&zone.origin) else {
                out_services.push(None);
                continue;
            };
            let (s, d) = self.sign_service(&mut cache, zs, si, route, now);
            due.merge(d);
            out_services.push(Some(s));
        }
        let mut serials = FxHashMap::default();
        for zone in zones.zones() {
            let Some(zs) = out_zones.get(&zone.origin) else {
                continue;
            };
            let content = content_digest(zs, services, &out_services);
            let prev = previous.and_then(|p| p.serials.get(&zone.origin));
            let last = prev.map(|z| (z.serial, z.content));
            let mut serial = serial::decide(self.serial, last, content, zone.serial, now);
            let (_, zsk) = self.roles(&zone.origin);
            let file_soa = &zone.soa().rdatas[0];
            let sign_soa = |serial: u32, cache: &mut HashMap<Vec<u8>, Cached>| {
                let soa = serial::with_serial(file_soa, serial).unwrap_or_else(|| file_soa.clone());
                let rdatas = [soa];
                let set = SetRef {
                    owner: zone.origin.wire(),
                    rtype: TYPE_SOA,
                    ttl: zone.soa().ttl,
                    rdatas: &rdatas,
                };
                let got = self.sign(cache, &zsk, set, now);
                let [soa] = rdatas;
                (soa, got)
            };
            let (mut soa, mut got) = sign_soa(serial, &mut cache);
            // The SOA's own signature came due with nothing else: a secondary still needs the
            // new one, so that is a change too.
            let resigned = match (prev.and_then(|p| p.sigs.as_ref()), got.as_ref()) {
                (Some(old), Some(new)) => !Arc::ptr_eq(old, &new.sigs),
                _ => false,
            };
            if resigned && Some(serial) == prev.map(|p| p.serial) {
                serial = serial::decide(self.serial, last, !content, zone.serial, now);
                (soa, got) = sign_soa(serial, &mut cache);
            }
            if let Some(g) = &got {
                due.add((g.expiration, g.refresh_at));
            }
            serials.insert(
                zone.origin.clone(),
                ZoneSerial {
                    serial,
                    soa,
                    sigs: got.map(|g| g.sigs),
                    content,
                },
            );
        }
        cache.retain(|_, c| c.last_used + UNUSED_FOR > now);
        Signed {
            signer: self.clone(),
            zoneset: zones.clone(),
            zones: out_zones,
            services: out_services,
            serials,
            due,
        }
    }

    fn sign_zone(&self, cache: &mut HashMap<Vec<u8>, Cached>, zone: &Zone, now: u64) -> ZoneSigs {
        let (ksk, zsk) = self.roles(&zone.origin);
        let origin = zone.origin.wire();
        let mut due = Due::NEVER;
        let soa_ttl = zone.soa().ttl;
        let key_ttl = ksk
            .iter()
            .chain(&zsk)
            .filter_map(|k| k.ttl)
            .min()
            .unwrap_or(soa_ttl);
        let mut all: Vec<&Key> = ksk.iter().chain(&zsk).copied().collect();
        all.sort_by_key(|k| (k.tag, k.algorithm));
        all.dedup_by_key(|k| (k.tag, k.algorithm));
        let mut apex = |rtype: u16, rdatas: Vec<Box<[u8]>>, due: &mut Due| {
            let got = (!rdatas.is_empty())
                .then(|| {
                    let set = SetRef {
                        owner: origin,
                        rtype,
                        ttl: key_ttl,
                        rdatas: &rdatas,
                    };
                    self.sign(cache, &ksk, set, now)
                })
                .flatten();
            if let Some(g) = &got {
                due.add((g.expiration, g.refresh_at));
            }
            Apex {
                ttl: key_ttl,
                sigs: got.map(|g| g.sigs),
                rdatas,
            }
        };
        let dnskey = apex(
            TYPE_DNSKEY,
            all.iter().map(|k| k.dnskey.clone()).collect(),
            &mut due,
        );
        let ksk_only = |k: &&&Key| k.is_ksk();
        let cds = apex(
            TYPE_CDS,
            all.iter()
                .filter(ksk_only)
                .map(|k| k.ds_sha256().into_boxed_slice())
                .collect(),
            &mut due,
        );
        let cdnskey = apex(
            TYPE_CDNSKEY,
            all.iter()
                .filter(ksk_only)
                .map(|k| k.dnskey.clone())
                .collect(),
            &mut due,
        );
        let mut sets = FxHashMap::default();
        let mut chain: Vec<Nsec> = Vec::new();
        for (name, node) in zone.nodes() {
            if occluded(zone, name.wire()) {
                continue;
            }
            let cut = name.wire() != origin && node.get(TYPE_NS).is_some();
            let mut types: Vec<u16> = node.rrsets.iter().map(|s| s.rtype).collect();
            for set in &node.rrsets {
                // At a cut only DS (and the NSEC) is the parent's to sign: NS and glue are
                // the child's. The SOA is signed with its managed serial (`ZoneSerial`).
                if (cut && set.rtype != TYPE_DS) || set.rtype == TYPE_SOA {
                    continue;
                }
                let r = SetRef {
                    owner: name.wire(),
                    rtype: set.rtype,
                    ttl: set.ttl,
                    rdatas: &set.rdatas,
                };
                if let Some(g) = self.sign(cache, &zsk, r, now) {
                    due.add((g.expiration, g.refresh_at));
                    sets.entry(name.clone())
                        .or_insert_with(Vec::new)
                        .push((set.rtype, g.sigs));
                }
            }
            if name.wire() == origin {
                for (rtype, a) in [
                    (TYPE_DNSKEY, &dnskey),
                    (TYPE_CDS, &cds),
                    (TYPE_CDNSKEY, &cdnskey),
                ] {
                    if !a.rdatas.is_empty() {
                        types.push(rtype);
                    }
                }
            }
            if types.is_empty() && node.service.is_none() {
                // An empty non-terminal owns no NSEC (RFC 4035 2.3).
                continue;
            }
            chain.push(Nsec {
                owner: name.clone(),
                body: None,
                next: Name::from_wire(origin),
                types,
                service: node.service,
            });
        }
        chain.sort_by(|a, b| sign::canonical_cmp(a.owner.wire(), b.owner.wire()));
        let nsec_ttl = zone.negative_ttl;
        for i in 0..chain.len() {
            let next = chain
                .get(i + 1)
                .map_or_else(|| Name::from_wire(origin), |n| n.owner.clone());
            chain[i].next = next;
            if chain[i].service.is_some() {
                continue;
            }
            let rdata = nsec::rdata(chain[i].next.wire(), &chain[i].types);
            let rdatas = [rdata];
            let r = SetRef {
                owner: chain[i].owner.wire(),
                rtype: sign::TYPE_NSEC,
                ttl: nsec_ttl,
                rdatas: &rdatas,
            };
            if let Some(g) = self.sign(cache, &zsk, r, now) {
                due.add((g.expiration, g.refresh_at));
                let [rdata] = rdatas;
                chain[i].body = Some((rdata, g.sigs));
            }
        }
        ZoneSigs {
            origin: zone.origin.clone(),
            sets,
            dnskey,
            cds,
            cdnskey,
            chain,
            nsec_ttl,
            due,
        }
    }

    fn sign_service(
        &self,
        cache: &mut HashMap<Vec<u8>, Cached>,
        zs: &ZoneSigs,
        si: usize,
        route: &ServiceSets<'_>,
        now: u64,
    ) -> (ServiceSigs, Due) {
        let (_, zsk) = self.roles(&zs.origin);
        let owner = route.name.wire();
        let mut due = Due::NEVER;
        let mut used = [false; 4];
        let mut sign_list = |rtype: u16, rdatas: Vec<Box<[u8]>>, due: &mut Due| {
            if rdatas.is_empty() {
                return None;
            }
            let r = SetRef {
                owner,
                rtype,
                ttl: route.ttl,
                rdatas: &rdatas,
            };
            let g = self.sign(cache, &zsk, r, now)?;
            due.add((g.expiration, g.refresh_at));
            Some(g.sigs)
        };
        let mut a = Vec::with_capacity(route.lists.len());
        let mut aaaa = Vec::with_capacity(route.lists.len());
        for list in &route.lists {
            let Some((v4, v6)) = list else {
                a.push(None);
                aaaa.push(None);
                continue;
            };
            used[variant(!v4.is_empty(), !v6.is_empty())] = true;
            a.push(sign_list(
                TYPE_A,
                v4.iter().map(|x| Box::from(&x[..])).collect(),
                &mut due,
            ));
            aaaa.push(sign_list(
                TYPE_AAAA,
                v6.iter().map(|x| Box::from(&x[..])).collect(),
                &mut due,
            ));
        }
        let default_variant = route
            .default_answer()
            .map_or(0, |(v4, v6)| variant(!v4.is_empty(), !v6.is_empty()));
        used[default_variant] = true;
        let mut nsec: [Option<(Box<[u8]>, Sigs)>; 4] = Default::default();
        if let Some(entry) = zs.chain.iter().find(|n| n.service == Some(si)) {
            for (v, slot) in nsec.iter_mut().enumerate() {
                if !used[v] {
                    continue;
                }
                let mut types = entry.types.clone();
                if v & 1 != 0 {
                    types.push(TYPE_A);
                }
                if v & 2 != 0 {
                    types.push(TYPE_AAAA);
                }
                let rdatas = [nsec::rdata(entry.next.wire(), &types)];
                let r = SetRef {
                    owner,
                    rtype: sign::TYPE_NSEC,
                    ttl: zs.nsec_ttl,
                    rdatas: &rdatas,
                };
                if let Some(g) = self.sign(cache, &zsk, r, now) {
                    due.add((g.expiration, g.refresh_at));
                    let [rdata] = rdatas;
                    *slot = Some((rdata, g.sigs));
                }
            }
        }
        (
            ServiceSigs {
                origin: zs.origin.clone(),
                a,
                aaaa,
                nsec,
                default_variant,
                due,
            },
            due,
        )
    }
}

/// A digest of everything a transfer of the zone carries besides its SOA: the signed zone
/// data, the apex key sets, the NSEC chain, and its services' answers for unknown locations.
fn content_digest(
    zs: &ZoneSigs,
    routes: &[ServiceSets<'_>],
    services: &[Option<ServiceSigs>],
) -> u64 {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    let sigs = |h: &mut rustc_hash::FxHasher, s: Option<&Sigs>| {
        for x in s.iter().flat_map(|s| s.iter()) {
            h.write(x);
        }
    };
    for a in [&zs.dnskey, &zs.cds, &zs.cdnskey] {
        for d in &a.rdatas {
            h.write(d);
        }
        sigs(&mut h, a.sigs.as_ref());
    }
    for n in &zs.chain {
        h.write(n.owner.wire());
        if let Some((rdata, s)) = &n.body {
            h.write(rdata);
            sigs(&mut h, Some(s));
        }
        for (t, s) in zs.sets.get(n.owner.wire()).into_iter().flatten() {
            h.write_u16(*t);
            sigs(&mut h, Some(s));
        }
    }
    for (route, ss) in routes.iter().zip(services) {
        let Some(ss) = ss.as_ref().filter(|ss| ss.origin == zs.origin) else {
            continue;
        };
        let default = route.default;
        match route.default_answer() {
            Some((v4, v6)) => {
                for a in v4 {
                    h.write(a);
                }
                for a in v6 {
                    h.write(a);
                }
            }
            None => h.write_u8(1),
        }
        if let Some(i) = default {
            sigs(&mut h, ss.a.get(i).and_then(|x| x.as_ref()));
            sigs(&mut h, ss.aaaa.get(i).and_then(|x| x.as_ref()));
        }
        if let Some((rdata, s)) = &ss.nsec[ss.default_variant] {
            h.write(rdata);
            sigs(&mut h, Some(s));
        }
    }
    h.finish()
}

/// True if `name` is below a zone cut of `zone` (glue, not the zone's own data).
fn occluded(zone: &Zone, name: &[u8]) -> bool {
    let origin_len = zone.origin.wire().len();
    suffixes(name)
        .skip(1)
        .map(|o| &name[o..])
        .take_while(|anc| anc.len() > origin_len)
        .any(|anc| zone.node(anc).and_then(|n: &Node| n.get(TYPE_NS)).is_some())
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(unix(SystemTime::now()));
    h.finish()
}
