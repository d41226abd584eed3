//! The signatures of one routing table, made when the table is built and read by answers.
//!
//! A zone's own data (its records, DNSKEY, CDS, CDNSKEY and NSEC chain) is signed when the
//! zone is loaded and again when its signatures come due; a geo service's answer RRsets are
//! signed when a table is built. Every signature goes through one cache keyed by the RRset's
//! content, so a rebuild after a health change signs only the sets no earlier table had, and
//! a query never signs anything: it copies what is here.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::nsec;
use super::sign::{TYPE_CDNSKEY, TYPE_CDS, TYPE_DNSKEY};
pub use super::signer::{SignStats, Signer};
use crate::zone::{Name, ZoneSet};

/// The RRSIG RDATAs over one RRset, one per signing key.
pub type Sigs = Arc<[Box<[u8]>]>;

/// Soonest expiry and refresh over a set of signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub expiration: u32,
    pub refresh_at: u64,
}

impl Due {
    pub(super) const NEVER: Due = Due {
        expiration: u32::MAX,
        refresh_at: u64::MAX,
    };

    /// Takes in one signature's expiration and refresh time.
    pub(super) fn add(&mut self, (expiration, refresh_at): (u32, u64)) {
        self.expiration = self.expiration.min(expiration);
        self.refresh_at = self.refresh_at.min(refresh_at);
    }

    pub(super) fn merge(&mut self, o: Due) {
        self.expiration = self.expiration.min(o.expiration);
        self.refresh_at = self.refresh_at.min(o.refresh_at);
    }
}

/// One NSEC record of a chain, with its signatures.
#[derive(Debug)]
pub struct Nsec {
    pub owner: Name,
    /// None for a geo service's name: its types depend on the table, so its record is in
    /// [`ServiceSigs`].
    pub body: Option<(Box<[u8]>, Sigs)>,
    /// The next owner, and the types the zone file gives this name (for service names).
    pub(super) next: Name,
    pub(super) types: Vec<u16>,
    pub(super) service: Option<usize>,
}

/// A signed zone's own records and signatures.
#[derive(Debug)]
pub struct ZoneSigs {
    pub origin: Name,
    /// Signatures by owner, then type, for every authoritative RRset of the zone file.
    pub sets: FxHashMap<Name, Vec<(u16, Sigs)>>,
    /// DNSKEY, CDS and CDNSKEY at the apex (RDATAs, TTL), signed by the key-signing keys.
    pub dnskey: Apex,
    pub cds: Apex,
    pub cdnskey: Apex,
    /// NSEC records in canonical order; TTL [`Zone::negative_ttl`].
    pub chain: Vec<Nsec>,
    pub nsec_ttl: u32,
    pub due: Due,
}

/// An RRset made for the apex rather than read from the zone file.
#[derive(Debug)]
pub struct Apex {
    pub ttl: u32,
    pub rdatas: Vec<Box<[u8]>>,
    pub sigs: Option<Sigs>,
}

/// A geo service's signed answers: per candidate list, the A and AAAA sets' signatures, and
/// the NSEC record at the service name in each of its type variants.
#[derive(Debug)]
pub struct ServiceSigs {
    pub origin: Name,
    pub a: Vec<Option<Sigs>>,
    pub aaaa: Vec<Option<Sigs>>,
    /// By variant: bit 0 set when the answer has A records, bit 1 when it has AAAA.
    pub nsec: [Option<(Box<[u8]>, Sigs)>; 4],
    /// The variant a zone transfer and other names' proofs use: the unknown location's.
    pub default_variant: usize,
    pub due: Due,
}

/// Everything signed for one routing table.
#[derive(Debug)]
pub struct Signed {
    pub signer: Arc<Signer>,
    /// The zones signed, so that a later build knows whether it may reuse their signatures.
    pub(super) zoneset: Arc<ZoneSet>,
    pub zones: FxHashMap<Name, Arc<ZoneSigs>>,
    pub services: Vec<Option<ServiceSigs>>,
    /// Per signed zone, by origin: the SOA served, with the serial `[dnssec] serial` gives.
    pub serials: FxHashMap<Name, ZoneSerial>,
    pub due: Due,
}

/// A signed zone's SOA as served and transferred: its serial moves when the zone's content
/// does (see [`serial::decide`]).
#[derive(Debug)]
pub struct ZoneSerial {
    pub serial: u32,
    pub soa: Box<[u8]>,
    pub sigs: Option<Sigs>,
    /// The digest of what a transfer carries besides the SOA, when this serial was decided.
    pub(super) content: u64,
}

/// An NSEC record to put in an answer.
#[derive(Debug, Clone, Copy)]
pub struct NsecRef<'a> {
    pub owner: &'a [u8],
    pub rdata: &'a [u8],
    pub sigs: &'a [Box<[u8]>],
}

/// The variant index of an answer with or without A and AAAA records.
pub fn variant(a: bool, aaaa: bool) -> usize {
    (a as usize) | (aaaa as usize) << 1
}

impl ZoneSigs {
    /// The signatures over the zone file's `rtype` set at `owner` (not the SOA: see
    /// [`Signed::serial`]).
    pub fn sigs(&self, owner: &[u8], rtype: u16) -> Option<&Sigs> {
        let v = self.sets.get(owner)?;
        v.iter().find(|(t, _)| *t == rtype).map(|(_, s)| s)
    }

    /// The DNSKEY, CDS or CDNSKEY set made for the apex.
    pub fn apex(&self, rtype: u16) -> Option<&Apex> {
        let a = match rtype {
            TYPE_DNSKEY => &self.dnskey,
            TYPE_CDS => &self.cds,
            TYPE_CDNSKEY => &self.cdnskey,
            _ => return None,
        };
        (!a.rdatas.is_empty()).then_some(a)
    }
}

impl Signed {
    /// When the zone at `origin` has its first signature expire and come due, its services'
    /// answers included.
    pub fn zone_due(&self, origin: &Name) -> Option<Due> {
        let mut d = self.zones.get(origin)?.due;
        for s in self
            .services
            .iter()
            .flatten()
            .filter(|s| &s.origin == origin)
        {
            d.merge(s.due);
        }
        Some(d)
    }

    /// The SOA served for the signed zone at `origin`.
    pub fn serial(&self, origin: &Name) -> Option<&ZoneSerial> {
        self.serials.get(origin)
    }

    pub fn zone(&self, origin: &Name) -> Option<&ZoneSigs> {
        self.zones.get(origin).map(|z| &**z)
    }

    /// The NSEC record at `name` (`Ok`) or covering it (`Err`), in the zone at `origin`.
    pub fn nsec<'a>(&'a self, zs: &'a ZoneSigs, name: &[u8]) -> Result<NsecRef<'a>, NsecRef<'a>> {
        let r = nsec::find(&zs.chain, |n| n.owner.wire(), name);
        let i = match r {
            Ok(i) | Err(i) => i,
        };
        let entry = &zs.chain[i];
        let body = match (&entry.body, entry.service) {
            (Some((rdata, sigs)), _) => Some((&**rdata, sigs)),
            (None, Some(si)) => self
                .services
                .get(si)
                .and_then(|s| s.as_ref())
                .and_then(|s| s.nsec[s.default_variant].as_ref())
                .map(|(r, sg)| (&**r, sg)),
            (None, None) => None,
        };
        // Every chain entry is signed unless signing failed outright; then the record goes
        // out empty and unsigned, and validation fails as it should.
        let (rdata, sigs): (&[u8], &[Box<[u8]>]) = match body {
            Some((r, s)) => (r, s),
            None => (&[], &[]),
        };
        let n = NsecRef {
            owner: entry.owner.wire(),
            rdata,
            sigs,
        };
        if r.is_ok() { Ok(n) } else { Err(n) }
    }
}
