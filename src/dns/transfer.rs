//! Zone transfers over TCP to clients in `[transfer] allow` that sign with the configured TSIG
//! key if one is set: AXFR, and IXFR (RFC 1995) with the differences since the client's serial
//! when the journal ([`super::ixfr`]) holds them, else the whole zone as RFC 1995 4 allows.
//! Everyone else gets REFUSED (or NOTAUTH with the TSIG error, RFC 8945 5.2).
//!
//! A geo service name cannot be transferred as such: a secondary has no routing table. It is
//! sent with the answer for clients of unknown location (the service's default order), so that
//! a secondary answers with a working mirror rather than NXDOMAIN.

use std::net::IpAddr;

use super::message::{Echo, Flags, Owner, Rr, put_header, put_rr};
use super::tsig::{self, Checked, Signer};
use super::wire;
use super::{Event, Stats, Transport};
use crate::dnssec::sign::{TYPE_CDNSKEY, TYPE_CDS, TYPE_DNSKEY, TYPE_NSEC, TYPE_RRSIG};
use crate::dnssec::signed::Sigs;
use crate::routing::RoutingTable;
use crate::zone::{TYPE_A, TYPE_AAAA, TYPE_SOA, Zone};

use super::wire::TYPE_IXFR;
pub const TYPE_AXFR: u16 = 252;

/// Start a new message once one holds this many bytes (well under the 64 KiB TCP limit).
const MESSAGE_TARGET: usize = 16 * 1024;

/// Answers `pkt` if it is a transfer request from an allowed client: every message of the
/// response, in order. Returns None for any other packet (answered by `dns::handle`).
pub fn serve(table: &RoutingTable, pkt: &[u8], src: IpAddr, stats: &Stats) -> Option<Vec<Vec<u8>>> {
    let q = wire::parse(pkt).ok()?;
    if q.qtype != TYPE_AXFR && q.qtype != TYPE_IXFR {
        return None;
    }
    let req = Echo {
        id: q.id,
        flags: u16::from_be_bytes([pkt[2], pkt[3]]),
    };
    let cfg = &table.config.transfer;
    let refuse = |rcode: u16| {
        stats.add(Event::TransfersRefused);
        stats.count(Transport::Tcp, Some(q.qtype), rcode);
        let mut out = Vec::new();
        put_header(
            &mut out,
            req,
            Flags { aa: false, rcode },
            false,
            [1, 0, 0, 0],
        );
        out.extend_from_slice(q.question);
        out
    };
    let src = crate::geo::canonical(src);
    let zone = table
        .zones
        .find(q.qname())
        .filter(|z| z.origin.wire() == q.qname());
    // Not ours to transfer, or not allowed: `dns::handle` refuses it like any transport.
    let (Some(zone), true) = (zone, cfg.allow.iter().any(|n| n.contains(&src))) else {
        return None;
    };
    let mut signer = match (&cfg.tsig, q.tsig) {
        (None, None) => None,
        // A key is required and the request is unsigned.
        (Some(_), None) => return Some(vec![refuse(wire::RCODE_REFUSED)]),
        // Signed (even when we have no key: then with a key we do not know, RFC 8945 5.2.1).
        (key, Some(at)) => match tsig::check(pkt, at, key.as_ref(), super::unix_now()) {
            Checked::Valid(s) => Some(s),
            Checked::Malformed => {
                stats.add(Event::Malformed);
                return Some(vec![refuse(wire::RCODE_FORMERR)]);
            }
            Checked::Invalid(r) => {
                let mut out = refuse(tsig::RCODE_NOTAUTH);
                r.append(&mut out);
                return Some(vec![out]);
            }
        },
    };
    stats.add(Event::Transfers);
    stats.count(Transport::Tcp, Some(q.qtype), wire::RCODE_NOERROR);
    let from_serial = (q.qtype == TYPE_IXFR)
        .then(|| super::ixfr::client_serial(pkt, 12 + q.question.len()))
        .flatten();
    stats.transfers.record(
        zone.origin.wire(),
        super::notify::TransferRecord {
            client: src,
            at: std::time::SystemTime::now(),
            kind: if q.qtype == TYPE_AXFR { "AXFR" } else { "IXFR" },
            from_serial,
            serial: served_serial(table, zone),
        },
    );
    let mut messages = Vec::new();
    let all = zone_records(table, zone);
    stats
        .journal
        .record(zone.origin.wire(), &all, cfg.ixfr_journal);
    let incremental: Vec<Rr<'_>>;
    let owned;
    let records: &[Rr<'_>] = if q.qtype == TYPE_IXFR {
        let current = served_serial(table, zone);
        let reply = from_serial.map(|c| stats.journal.reply(zone.origin.wire(), c, current));
        match reply {
            // RFC 1995 2: a client at our serial (or past it) gets the SOA alone.
            Some(super::ixfr::Reply::UpToDate) => &all[..1],
            Some(super::ixfr::Reply::Incremental(v)) => {
                owned = v;
                incremental = owned.iter().map(|r| r.rr()).collect();
                stats.add(Event::TransfersIncremental);
                &incremental
            }
            _ => &all,
        }
    } else {
        &all
    };
    let mut out = Vec::new();
    let mut count = 0u16;
    let flush = |out: &mut Vec<u8>,
                 count: u16,
                 messages: &mut Vec<Vec<u8>>,
                 signer: &mut Option<Signer>| {
        out[6..8].copy_from_slice(&count.to_be_bytes());
        if let Some(s) = signer {
            s.sign(out, 0, &[]);
        }
        messages.push(std::mem::take(out));
    };
    for rr in records {
        if out.is_empty() {
            let flags = Flags {
                aa: true,
                rcode: wire::RCODE_NOERROR,
            };
            // Every message repeats the question (RFC 5936 2.2 allows it), so that owner names
            // can point into it.
            put_header(&mut out, req, flags, false, [1, 0, 0, 0]);
            out.extend_from_slice(q.question);
        }
        put_rr(&mut out, rr, q.qname());
        count += 1;
        if out.len() >= MESSAGE_TARGET {
            flush(&mut out, count, &mut messages, &mut signer);
            count = 0;
        }
    }
    if !out.is_empty() {
        flush(&mut out, count, &mut messages, &mut signer);
    }
    Some(messages)
}

/// The SOA serial served and transferred for `zone` under `table`.
pub fn served_serial(table: &RoutingTable, zone: &Zone) -> u32 {
    table
        .dnssec
        .as_ref()
        .and_then(|sg| sg.serial(&zone.origin))
        .map_or(zone.serial, |z| z.serial)
}

/// A digest of everything a transfer of `zone` would carry under `table`: when it changes, the
/// zone's content changed for a secondary (a new zone file, new signatures, keys, or a geo
/// name's answer for unknown locations).
pub fn zone_fingerprint(table: &RoutingTable, zone: &Zone) -> u64 {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    for rr in zone_records(table, zone) {
        if let Owner::Name(n) = rr.owner {
            h.write(n);
        }
        h.write_u16(rr.rtype);
        h.write_u32(rr.ttl);
        h.write(rr.rdata);
    }
    h.finish()
}

/// The zone's records in transfer order: SOA, everything else, SOA again (RFC 5936 2.2). A
/// signed zone comes with its DNSKEY, CDS and CDNSKEY sets, every RRSIG and its NSEC chain,
/// so that a secondary that does not sign can serve it.
fn zone_records<'t>(table: &'t RoutingTable, zone: &'t Zone) -> Vec<Rr<'t>> {
    let origin = zone.origin.wire();
    let soa = zone.soa();
    let signed = table.dnssec.as_deref();
    let zs = signed.and_then(|sg| sg.zone(&zone.origin));
    // A signed zone's SOA carries the serial `[dnssec] serial` manages.
    let served = signed.and_then(|sg| sg.serial(&zone.origin));
    let soa_rr = Rr {
        owner: Owner::Name(origin),
        rtype: TYPE_SOA,
        ttl: soa.ttl,
        rdata: served.map_or(&soa.rdatas[0], |z| &z.soa),
    };
    let mut v = vec![soa_rr];
    for d in served
        .and_then(|z| z.sigs.as_ref())
        .iter()
        .flat_map(|s| s.iter())
    {
        v.push(sig_rr(Owner::Name(origin), soa.ttl, d));
    }
    for (name, node) in zone.nodes() {
        let owner = Owner::Name(name.wire());
        let sigs = |v: &mut Vec<Rr<'t>>, rtype: u16, ttl: u32| {
            if let Some(s) = zs.and_then(|z| z.sigs(name.wire(), rtype)) {
                v.extend(s.iter().map(|d| sig_rr(owner, ttl, d)));
            }
        };
        for set in &node.rrsets {
            if set.rtype != TYPE_SOA || name != &zone.origin {
                v.extend(set.rdatas.iter().map(|d| Rr {
                    owner,
                    rtype: set.rtype,
                    ttl: set.ttl,
                    rdata: d,
                }));
            }
            sigs(&mut v, set.rtype, set.ttl);
        }
        if let Some(z) = zs
            && name == &zone.origin
        {
            for rtype in [TYPE_DNSKEY, TYPE_CDS, TYPE_CDNSKEY] {
                let Some(apex) = z.apex(rtype) else {
                    continue;
                };
                v.extend(apex.rdatas.iter().map(|d| Rr {
                    owner,
                    rtype,
                    ttl: apex.ttl,
                    rdata: d,
                }));
                for d in apex.sigs.iter().flat_map(|s| s.iter()) {
                    v.push(sig_rr(owner, apex.ttl, d));
                }
            }
        }
        if let Some(route) = node.service.and_then(|i| table.services.get(i)) {
            let default = route.map.lists.iter().position(|l| l.unknown);
            let ss = signed
                .zip(node.service)
                .and_then(|(sg, si)| sg.services.get(si))
                .and_then(|x| x.as_ref());
            if let Some(ans) = route.default_answer().filter(|a| !a.servfail) {
                let mut set = |rtype: u16,
                               rdatas: &mut dyn Iterator<Item = &'t [u8]>,
                               sigs: Option<&'t Vec<Option<Sigs>>>| {
                    let before = v.len();
                    v.extend(rdatas.map(|rdata| Rr {
                        owner,
                        rtype,
                        ttl: route.ttl,
                        rdata,
                    }));
                    let s = sigs
                        .zip(default)
                        .and_then(|(by, i)| by.get(i))
                        .and_then(|x| x.as_ref());
                    if v.len() > before
                        && let Some(s) = s
                    {
                        v.extend(s.iter().map(|d| sig_rr(owner, route.ttl, d)));
                    }
                };
                set(TYPE_A, &mut ans.a.iter().map(|a| &a[..]), ss.map(|x| &x.a));
                set(
                    TYPE_AAAA,
                    &mut ans.aaaa.iter().map(|a| &a[..]),
                    ss.map(|x| &x.aaaa),
                );
            }
        }
        if let (Some(sg), Some(z)) = (signed, zs)
            && let Ok(n) = sg.nsec(z, name.wire())
        {
            v.push(Rr {
                owner,
                rtype: TYPE_NSEC,
                ttl: z.nsec_ttl,
                rdata: n.rdata,
            });
            v.extend(n.sigs.iter().map(|d| sig_rr(owner, z.nsec_ttl, d)));
        }
    }
    v.push(soa_rr);
    v
}

fn sig_rr<'t>(owner: Owner<'t>, ttl: u32, rdata: &'t [u8]) -> Rr<'t> {
    Rr {
        owner,
        rtype: TYPE_RRSIG,
        ttl,
        rdata,
    }
}
