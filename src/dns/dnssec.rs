//! DNSSEC material in answers: RRSIGs after each signed set, NSEC records proving what does
//! not exist. Everything is read from the table's [`Signed`]; nothing is signed here.

use super::message::{Owner, Rr, RrList};
use crate::dnssec::sign::{TYPE_NSEC, TYPE_RRSIG};
use crate::dnssec::signed::{Apex, Signed, ZoneSerial, ZoneSigs};
use crate::routing::RoutingTable;
use crate::zone::Zone;
use crate::zone::name::suffixes;

/// RRSIG RDATAs, one per key.
type SigList<'t> = &'t [Box<[u8]>];

/// The table's signatures as one query sees them.
#[derive(Debug, Clone, Copy)]
pub struct Signing<'t> {
    signed: Option<&'t Signed>,
    dnssec_ok: bool,
}

impl<'t> Signing<'t> {
    pub fn new(table: &'t RoutingTable, dnssec_ok: bool) -> Signing<'t> {
        Signing {
            signed: table.dnssec.as_deref(),
            dnssec_ok,
        }
    }

    /// What one zone can prove for this query.
    pub fn zone(&self, zone: &Zone) -> Proofs<'t> {
        let zs = self.signed.and_then(|s| s.zone(&zone.origin));
        Proofs {
            signed: self.signed,
            zs,
            soa: self.signed.and_then(|s| s.serial(&zone.origin)),
            on: self.dnssec_ok && zs.is_some(),
        }
    }

    pub fn signed(&self) -> Option<&'t Signed> {
        self.signed
    }
}

/// A zone's signatures for one answer; `on` when the zone is signed and the query has DO.
#[derive(Debug, Clone, Copy)]
pub struct Proofs<'t> {
    signed: Option<&'t Signed>,
    zs: Option<&'t ZoneSigs>,
    soa: Option<&'t ZoneSerial>,
    on: bool,
}

impl<'t> Proofs<'t> {
    pub fn on(&self) -> bool {
        self.on
    }

    /// A signed zone's SOA RDATA (with its managed serial) in place of the zone file's, DO or
    /// not; with DO, its RRSIGs too.
    pub fn soa(&self) -> Option<(&'t [u8], Option<SigList<'t>>)> {
        let z = self.soa?;
        Some((&z.soa, z.sigs.as_deref().filter(|_| self.on)))
    }

    /// The apex's DNSKEY, CDS or CDNSKEY set when the zone is signed, DO or not.
    pub fn apex_set(&self, rtype: u16) -> Option<&'t Apex> {
        self.zs?.apex(rtype)
    }

    /// Appends the RRSIGs over the zone file's `rtype` set at `name` (its own name; the
    /// wildcard's for an expansion), written with `owner` and the TTL the set was served with.
    pub fn sigs(&self, to: &mut RrList<'t>, owner: Owner<'t>, name: &[u8], rtype: u16, ttl: u32) {
        if !self.on {
            return;
        }
        if let Some(sigs) = self.zs.and_then(|z| z.sigs(name, rtype)) {
            push_sigs(to, owner, sigs, ttl);
        }
    }

    /// Appends the NSEC record at `name`, or the one covering it, with its RRSIGs; returns
    /// true if it was at `name`. Records already in `to` are not repeated.
    pub fn nsec(&self, to: &mut RrList<'t>, name: &[u8]) -> bool {
        let (Some(signed), Some(zs), true) = (self.signed, self.zs, self.on) else {
            return false;
        };
        let (found, n) = match signed.nsec(zs, name) {
            Ok(n) => (true, n),
            Err(n) => (false, n),
        };
        let owner = Owner::Name(n.owner);
        let present = to
            .iter()
            .any(|r| r.rtype == TYPE_NSEC && matches!(r.owner, Owner::Name(o) if o == n.owner));
        if !present {
            to.push(Rr {
                owner,
                rtype: TYPE_NSEC,
                ttl: zs.nsec_ttl,
                rdata: n.rdata,
            });
            push_sigs(to, owner, n.sigs, zs.nsec_ttl);
        }
        found
    }

    /// NXDOMAIN's proof (RFC 4035 3.1.3.2): the NSEC covering `name`, and the one covering
    /// the wildcard at its closest encloser, the longest ancestor that exists in `zone`.
    pub fn nxdomain(&self, to: &mut RrList<'t>, zone: &Zone, name: &[u8]) {
        if !self.on {
            return;
        }
        self.nsec(to, name);
        let encloser = suffixes(name)
            .skip(1)
            .map(|o| &name[o..])
            .find(|anc| zone.node(anc).is_some());
        if let Some(ce) = encloser
            && ce.len() + 2 <= 255
        {
            let mut wild = [0u8; 255];
            wild[..2].copy_from_slice(&[1, b'*']);
            wild[2..2 + ce.len()].copy_from_slice(ce);
            self.nsec(to, &wild[..2 + ce.len()]);
        }
    }

    /// The NSEC record of a geo service name for an answer with or without A and AAAA
    /// records (its bitmap must say what this client's answer has).
    pub fn service_nsec(&self, to: &mut RrList<'t>, si: usize, owner: &'t [u8], variant: usize) {
        let (Some(signed), Some(zs), true) = (self.signed, self.zs, self.on) else {
            return;
        };
        let Some(Some(ss)) = signed.services.get(si) else {
            return;
        };
        if let Some((rdata, sigs)) = &ss.nsec[variant] {
            let o = Owner::Name(owner);
            to.push(Rr {
                owner: o,
                rtype: TYPE_NSEC,
                ttl: zs.nsec_ttl,
                rdata,
            });
            push_sigs(to, o, sigs, zs.nsec_ttl);
        }
    }
}

/// Appends one RRSIG record per signature.
pub fn push_sigs<'t>(to: &mut RrList<'t>, owner: Owner<'t>, sigs: &'t [Box<[u8]>], ttl: u32) {
    to.extend(sigs.iter().map(|s| Rr {
        owner,
        rtype: TYPE_RRSIG,
        ttl,
        rdata: s,
    }));
}
