//! Incremental zone transfers (RFC 1995): a bounded journal of the differences between the
//! versions of each zone that were transferred, so that a secondary asking with a serial it
//! got from us receives only what changed since.
//!
//! A version is recorded when a transfer is served from a table whose served serial for the
//! zone is new: a secondary can only hold a version it transferred, so those are the versions
//! worth a difference. Each difference is kept as RFC 1995 sends it (the old SOA, the records
//! removed, the new SOA, the records added); the journal keeps the last
//! `[transfer] ixfr-journal` of them per zone and the record set of the newest version to
//! diff the next one against.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Mutex;

use super::message::{Owner, Rr};
use super::wire::skip_name;
use crate::dnssec::serial::serial_of;
use crate::zone::TYPE_SOA;

/// One record, owned, ordered for set differences.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Record {
    pub owner: Box<[u8]>,
    pub rtype: u16,
    pub ttl: u32,
    pub rdata: Box<[u8]>,
}

impl Record {
    fn of(rr: &Rr<'_>, origin: &[u8]) -> Record {
        let owner = match rr.owner {
            Owner::Name(n) => n,
            // Transfers name every owner; the query name is the apex.
            Owner::QName => origin,
        };
        Record {
            owner: owner.into(),
            rtype: rr.rtype,
            ttl: rr.ttl,
            rdata: rr.rdata.into(),
        }
    }

    pub fn rr(&self) -> Rr<'_> {
        Rr {
            owner: Owner::Name(&self.owner),
            rtype: self.rtype,
            ttl: self.ttl,
            rdata: &self.rdata,
        }
    }
}

/// The change from one transferred version to the next.
#[derive(Debug)]
struct Diff {
    from: Record,
    to: Record,
    removed: Vec<Record>,
    added: Vec<Record>,
}

#[derive(Debug)]
struct History {
    serial: u32,
    soa: Record,
    records: BTreeSet<Record>,
    /// Oldest first; each `from` serial is the previous one's `to`.
    diffs: VecDeque<Diff>,
}

/// What to send for an IXFR request.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// The client is up to date (or ahead): the current SOA alone.
    UpToDate,
    /// The differences, in RFC 1995 order: current SOA, then for each version the old SOA, the
    /// removals, the new SOA, the additions, and the current SOA again.
    Incremental(Vec<Record>),
    /// No chain from the client's serial: the whole zone, as for AXFR.
    Full,
}

/// Every zone's journal, by origin (lower-case wire name).
#[derive(Debug, Default)]
pub struct Journal(Mutex<HashMap<Box<[u8]>, History>>);

impl Journal {
    /// Records the version a transfer is about to send: `records` as `zone_records` gives them
    /// (the SOA first and last). Keeps at most `keep` differences for the zone.
    pub fn record(&self, origin: &[u8], records: &[Rr<'_>], keep: usize) {
        let Some(first) = records.first().filter(|r| r.rtype == TYPE_SOA) else {
            return;
        };
        let Some(serial) = serial_of(first.rdata) else {
            return;
        };
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(origin).is_some_and(|h| h.serial == serial) {
            return;
        }
        let soa = Record::of(first, origin);
        let set: BTreeSet<Record> = records
            .iter()
            .filter(|r| r.rtype != TYPE_SOA)
            .map(|r| Record::of(r, origin))
            .collect();
        match map.get_mut(origin) {
            Some(h) if keep > 0 => {
                let diff = Diff {
                    from: h.soa.clone(),
                    to: soa.clone(),
                    removed: h.records.difference(&set).cloned().collect(),
                    added: set.difference(&h.records).cloned().collect(),
                };
                h.diffs.push_back(diff);
                while h.diffs.len() > keep {
                    h.diffs.pop_front();
                }
                h.serial = serial;
                h.soa = soa;
                h.records = set;
            }
            _ => {
                map.insert(
                    origin.into(),
                    History {
                        serial,
                        soa,
                        records: set,
                        diffs: VecDeque::new(),
                    },
                );
            }
        }
    }

    /// The reply to an IXFR for `origin` from a client at `client_serial`, the zone now being
    /// at `current` (recorded first with [`Journal::record`]).
    pub fn reply(&self, origin: &[u8], client_serial: u32, current: u32) -> Reply {
        use crate::dnssec::serial::greater;
        if client_serial == current || greater(client_serial, current) {
            return Reply::UpToDate;
        }
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let Some(h) = map.get(origin).filter(|h| h.serial == current) else {
            return Reply::Full;
        };
        let Some(start) = h
            .diffs
            .iter()
            .position(|d| serial_of(&d.from.rdata) == Some(client_serial))
        else {
            return Reply::Full;
        };
        let mut out = vec![h.soa.clone()];
        for d in h.diffs.iter().skip(start) {
            out.push(d.from.clone());
            out.extend(d.removed.iter().cloned());
            out.push(d.to.clone());
            out.extend(d.added.iter().cloned());
        }
        out.push(h.soa.clone());
        Reply::Incremental(out)
    }
}

/// The serial of the SOA in an IXFR request's authority section (RFC 1995 3), after the
/// question that ends at `qend`.
pub fn client_serial(pkt: &[u8], qend: usize) -> Option<u32> {
    let nscount = u16::from_be_bytes([*pkt.get(8)?, *pkt.get(9)?]);
    if nscount == 0 {
        return None;
    }
    let (at, _) = skip_name(pkt, qend)?;
    let fixed = pkt.get(at..at + 10)?;
    if u16::from_be_bytes([fixed[0], fixed[1]]) != TYPE_SOA {
        return None;
    }
    let rdlen = u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
    let rdata = pkt.get(at + 10..at + 10 + rdlen)?;
    // The SOA's names in a query may be compressed: skip each (pointer or labels).
    let (p, _) = skip_name(rdata, 0)?;
    let (p, _) = skip_name(rdata, p)?;
    let b = rdata.get(p..p + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: &[u8] = b"\x07example\x03com\x00";

    fn soa(serial: u32) -> Vec<u8> {
        let mut v = b"\x03ns1\x07example\x03com\x00\x0ahostmaster\x07example\x03com\x00".to_vec();
        for x in [serial, 3600, 600, 604_800, 300] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v
    }

    /// A zone version: SOA, the A records given (as last octets of 192.0.2.x at www), SOA.
    fn version(serial: u32, hosts: &[u8]) -> (Vec<u8>, Vec<[u8; 4]>) {
        (soa(serial), hosts.iter().map(|&h| [192, 0, 2, h]).collect())
    }

    fn rrs<'a>(v: &'a (Vec<u8>, Vec<[u8; 4]>)) -> Vec<Rr<'a>> {
        let www = b"\x03www\x07example\x03com\x00";
        let soa = Rr {
            owner: Owner::Name(ORIGIN),
            rtype: TYPE_SOA,
            ttl: 3600,
            rdata: &v.0,
        };
        let mut out = vec![soa];
        out.extend(v.1.iter().map(|a| Rr {
            owner: Owner::Name(www),
            rtype: 1,
            ttl: 300,
            rdata: a,
        }));
        out.push(soa);
        out
    }

    fn serials(recs: &[Record]) -> Vec<Option<u32>> {
        recs.iter()
            .filter(|r| r.rtype == TYPE_SOA)
            .map(|r| serial_of(&r.rdata))
            .collect()
    }

    #[test]
    fn differences_chain_from_the_client_serial_and_the_journal_is_bounded() {
        let j = Journal::default();
        let (v1, v2, v3) = (version(1, &[1, 2]), version(2, &[2, 3]), version(3, &[3]));
        j.record(ORIGIN, &rrs(&v1), 2);
        assert_eq!(j.reply(ORIGIN, 1, 1), Reply::UpToDate);
        assert_eq!(
            j.reply(ORIGIN, 0, 1),
            Reply::Full,
            "never held by anyone here"
        );
        j.record(ORIGIN, &rrs(&v2), 2);
        j.record(ORIGIN, &rrs(&v2), 2); // the same version again: nothing new
        let Reply::Incremental(r) = j.reply(ORIGIN, 1, 2) else {
            panic!("incremental")
        };
        assert_eq!(serials(&r), [Some(2), Some(1), Some(2), Some(2)]);
        // Removed .1 between the old and new SOA; added .3 after the new one.
        assert_eq!(&*r[2].rdata, &[192, 0, 2, 1]);
        assert_eq!(&*r[4].rdata, &[192, 0, 2, 3]);
        assert_eq!(r.len(), 6);
        j.record(ORIGIN, &rrs(&v3), 2);
        let Reply::Incremental(r) = j.reply(ORIGIN, 1, 3) else {
            panic!("two steps")
        };
        assert_eq!(
            serials(&r),
            [Some(3), Some(1), Some(2), Some(2), Some(3), Some(3)]
        );
        assert!(matches!(j.reply(ORIGIN, 2, 3), Reply::Incremental(_)));
        // A fourth version pushes the first difference out: serial 1 now needs the whole zone.
        j.record(ORIGIN, &rrs(&version(4, &[4])), 2);
        assert_eq!(j.reply(ORIGIN, 1, 4), Reply::Full);
        assert!(matches!(j.reply(ORIGIN, 2, 4), Reply::Incremental(_)));
        // A table newer than the journal: the whole zone until it is recorded.
        assert_eq!(j.reply(ORIGIN, 3, 5), Reply::Full);
        // A client ahead of us (serial arithmetic): up to date, nothing to send.
        assert_eq!(j.reply(ORIGIN, 5, 4), Reply::UpToDate);
    }

    #[test]
    fn no_journal_means_full_transfers() {
        let j = Journal::default();
        j.record(ORIGIN, &rrs(&version(1, &[1])), 0);
        j.record(ORIGIN, &rrs(&version(2, &[2])), 0);
        assert_eq!(j.reply(ORIGIN, 1, 2), Reply::Full);
    }

    #[test]
    fn the_client_serial_is_read_from_the_authority_soa() {
        // Header (1 question, 1 authority), question example.com IXFR IN, then the SOA with a
        // compressed owner and names.
        let mut p = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0];
        p.extend_from_slice(ORIGIN);
        p.extend_from_slice(&[0, 251, 0, 1]);
        let qend = p.len();
        p.extend_from_slice(&[0xC0, 12, 0, 6, 0, 1, 0, 0, 0, 0]);
        let mut rdata = vec![0xC0, 12, 0xC0, 12];
        for x in [2_026_112_701u32, 1, 2, 3, 4] {
            rdata.extend_from_slice(&x.to_be_bytes());
        }
        p.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        p.extend_from_slice(&rdata);
        assert_eq!(client_serial(&p, qend), Some(2_026_112_701));
        assert_eq!(client_serial(&p[..p.len() - 3], qend), None);
        p[9] = 0;
        assert_eq!(client_serial(&p, qend), None, "no authority record");
    }
}
