//! Static zone data: zone files loaded into per-name nodes with pre-rendered RDATA.
//!
//! Loading checks what an authoritative server must refuse to serve (no SOA, records outside
//! the zone, CNAME beside other data) and reports each with its file and line. Lookups work on
//! lower-case wire names and return what the answer logic needs to follow RFC 1034's algorithm:
//! the node, a referral at a zone cut, or NXDOMAIN; wildcards are expanded (RFC 4592).

pub mod name;
mod parse;

use std::collections::HashMap;

use rustc_hash::FxHashMap;
use std::path::{Path, PathBuf};

use hickory_proto::ProtoError;
use hickory_proto::rr::{RData, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};

use crate::diag::Problem;
pub use name::Name;
use name::suffixes;

pub const TYPE_A: u16 = 1;
pub const TYPE_NS: u16 = 2;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_SOA: u16 = 6;
pub const TYPE_MX: u16 = 15;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_SRV: u16 = 33;
pub const TYPE_DS: u16 = 43;

/// All records of one type at one name.
#[derive(Debug, Clone)]
pub struct RRset {
    pub rtype: u16,
    pub ttl: u32,
    /// Wire-format RDATA, names uncompressed, case as written in the zone file.
    pub rdatas: Vec<Box<[u8]>>,
    /// Names this set points at (NS, MX, SRV targets; the CNAME target), for additional
    /// section processing and CNAME chasing.
    pub targets: Vec<Name>,
}

/// Everything at one owner name. A node with no sets is an empty non-terminal.
#[derive(Debug, Clone, Default)]
pub struct Node {
    pub rrsets: Vec<RRset>,
    /// Index of the geo service answered at this name.
    pub service: Option<usize>,
}

impl Node {
    pub fn get(&self, rtype: u16) -> Option<&RRset> {
        self.rrsets.iter().find(|s| s.rtype == rtype)
    }
}

#[derive(Debug, Clone)]
pub struct Zone {
    pub origin: Name,
    pub file: PathBuf,
    pub serial: u32,
    /// The line of the SOA record in `file`, for messages about the serial.
    pub soa_line: usize,
    /// TTL for negative answers: min(SOA TTL, SOA MINIMUM) per RFC 2308.
    pub negative_ttl: u32,
    nodes: FxHashMap<Name, Node>,
}

/// What a name resolves to inside its zone.
#[derive(Debug)]
pub enum Lookup<'z> {
    /// The name exists. `wildcard` is set when the node is a wildcard's, synthesised for the
    /// query name.
    Found {
        node: &'z Node,
        /// The node's own name: the wildcard's (`*.…`) when `wildcard` is set.
        name: &'z Name,
        wildcard: bool,
    },
    /// The name is at or below a zone cut: refer to the child's name servers.
    Referral {
        cut: &'z Name,
        ns: &'z RRset,
    },
    NxDomain,
}

impl Zone {
    /// Loads and checks one zone file.
    pub fn load(path: &Path) -> Result<Zone, Vec<Problem>> {
        let records = parse::read_zone_file(path, None)?;
        build_zone(path, records)
    }

    pub fn soa(&self) -> &RRset {
        // A zone is only built with an SOA at its apex.
        self.nodes
            .get(self.origin.wire())
            .and_then(|n| n.get(TYPE_SOA))
            .expect("zone built without SOA")
    }

    pub fn node(&self, name: &[u8]) -> Option<&Node> {
        self.nodes.get(name)
    }

    /// Every node, the apex first and the rest in a stable order (for zone transfers).
    pub fn nodes(&self) -> Vec<(&Name, &Node)> {
        let mut v: Vec<_> = self.nodes.iter().collect();
        v.sort_by(|a, b| (a.0 != &self.origin, a.0.wire()).cmp(&(b.0 != &self.origin, b.0.wire())));
        v
    }

    pub fn record_count(&self) -> usize {
        self.nodes
            .values()
            .flat_map(|n| &n.rrsets)
            .map(|s| s.rdatas.len())
            .sum()
    }

    /// RFC 1034 4.3.2 step 3, for a lower-case wire `qname` inside this zone.
    pub fn lookup(&self, qname: &[u8], qtype: u16) -> Lookup<'_> {
        let origin_len = self.origin.wire().len();
        // Suffix offsets from qname up to (not including) the origin; a name has at most 127
        // labels. Walked in reverse to find the highest cut.
        let mut offs = [0usize; 128];
        let mut n = 0;
        for o in suffixes(qname).take_while(|&o| qname.len() - o > origin_len) {
            offs[n] = o;
            n += 1;
        }
        for &o in offs[..n].iter().rev() {
            if let Some((cut, node)) = self.nodes.get_key_value(&qname[o..])
                && let Some(ns) = node.get(TYPE_NS)
            {
                // DS lives on the parent side of the cut.
                if o == 0 && qtype == TYPE_DS {
                    break;
                }
                return Lookup::Referral { cut, ns };
            }
        }
        if let Some((name, node)) = self.nodes.get_key_value(qname) {
            return Lookup::Found {
                node,
                name,
                wildcard: false,
            };
        }
        // Closest encloser (the longest existing ancestor), then its wildcard child.
        for &o in offs[n.min(1)..n]
            .iter()
            .chain(std::iter::once(&(qname.len() - origin_len)))
        {
            let encloser = &qname[o..];
            if self.nodes.contains_key(encloser) {
                let mut wild = [0u8; 257];
                wild[..2].copy_from_slice(&[1, b'*']);
                wild[2..2 + encloser.len()].copy_from_slice(encloser);
                return match self.nodes.get_key_value(&wild[..2 + encloser.len()]) {
                    Some((name, node)) => Lookup::Found {
                        node,
                        name,
                        wildcard: true,
                    },
                    None => Lookup::NxDomain,
                };
            }
        }
        Lookup::NxDomain
    }
}

/// RDATA in wire form, names uncompressed so the bytes can be copied into any message.
fn render_rdata(rdata: &RData) -> Result<Vec<u8>, ProtoError> {
    let mut buf = Vec::with_capacity(64);
    let mut enc = BinEncoder::new(&mut buf);
    enc.set_name_encoding(NameEncoding::Uncompressed);
    rdata.emit(&mut enc)?;
    Ok(buf)
}

fn targets_of(rdata: &RData) -> Option<Name> {
    match rdata {
        RData::NS(ns) => Some(Name::from_hickory(&ns.0)),
        RData::CNAME(c) => Some(Name::from_hickory(&c.0)),
        RData::MX(mx) => Some(Name::from_hickory(&mx.exchange)),
        RData::SRV(srv) => Some(Name::from_hickory(&srv.target)),
        _ => None,
    }
}

fn build_zone(path: &Path, records: Vec<parse::ParsedRecord>) -> Result<Zone, Vec<Problem>> {
    let mut problems = Vec::new();
    let soas: Vec<&parse::ParsedRecord> = records
        .iter()
        .filter(|r| r.rtype == RecordType::SOA)
        .collect();
    let (origin, serial, negative_ttl, soa_line) = match soas.as_slice() {
        [] => {
            return Err(vec![Problem::new(
                path,
                None,
                None,
                "no SOA record: a zone file needs exactly one, at the zone's apex",
            )]);
        }
        [soa, rest @ ..] => {
            for r in rest {
                problems.push(Problem::new(
                    path,
                    Some(r.line),
                    None,
                    format!("second SOA record (the first is on line {})", soa.line),
                ));
            }
            let RData::SOA(s) = &soa.rdata else {
                unreachable!("SOA type with other data")
            };
            (
                Name::from_hickory(&soa.owner),
                s.serial,
                soa.ttl.min(s.minimum),
                soa.line,
            )
        }
    };
    let mut nodes: FxHashMap<Name, Node> = FxHashMap::default();
    // (owner, type) -> line of the first record, for conflict messages.
    let mut first_line: HashMap<(Name, u16), usize> = HashMap::new();
    for r in &records {
        let owner = Name::from_hickory(&r.owner);
        let here = || Problem::new(&r.file, Some(r.line), None, String::new());
        if !owner.is_within(&origin) {
            problems.push(Problem {
                message: format!("`{owner}` is outside the zone `{origin}`"),
                ..here()
            });
            continue;
        }
        let rtype: u16 = r.rtype.into();
        let rdata = match render_rdata(&r.rdata) {
            Ok(b) => b,
            Err(e) => {
                problems.push(Problem {
                    message: format!("cannot encode {} record: {e}", r.rtype),
                    ..here()
                });
                continue;
            }
        };
        let node = nodes.entry(owner.clone()).or_default();
        let has_cname = node.get(TYPE_CNAME).is_some();
        let has_other = node.rrsets.iter().any(|s| s.rtype != TYPE_CNAME);
        if (rtype == TYPE_CNAME && has_other) || (rtype != TYPE_CNAME && has_cname) {
            let other = node.rrsets.first().map(|s| s.rtype).unwrap_or(rtype);
            let line = first_line
                .get(&(owner.clone(), other))
                .copied()
                .unwrap_or(0);
            problems.push(Problem {
                message: format!("`{owner}` has a CNAME and other data (see line {line}): a CNAME must stand alone"),
                ..here()
            });
            continue;
        }
        if rtype == TYPE_CNAME && has_cname {
            problems.push(Problem {
                message: format!("`{owner}` has a second CNAME: only one is allowed"),
                ..here()
            });
            continue;
        }
        first_line.entry((owner.clone(), rtype)).or_insert(r.line);
        let target = targets_of(&r.rdata);
        match node.rrsets.iter_mut().find(|s| s.rtype == rtype) {
            Some(set) => {
                // RFC 2181 5.2: one TTL per set; serve the smallest.
                set.ttl = set.ttl.min(r.ttl);
                if !set.rdatas.iter().any(|d| **d == *rdata) {
                    set.rdatas.push(rdata.into_boxed_slice());
                    set.targets.extend(target);
                }
            }
            None => node.rrsets.push(RRset {
                rtype,
                ttl: r.ttl,
                rdatas: vec![rdata.into_boxed_slice()],
                targets: target.into_iter().collect(),
            }),
        }
    }
    if nodes
        .get(origin.wire())
        .and_then(|n| n.get(TYPE_NS))
        .is_none()
    {
        problems.push(Problem::new(
            path,
            None,
            None,
            format!(
                "no NS record at the apex `{origin}`: an authoritative zone needs its name servers"
            ),
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut zone = Zone {
        origin,
        file: path.to_path_buf(),
        serial,
        soa_line,
        negative_ttl,
        nodes,
    };
    let owners: Vec<Name> = zone.nodes.keys().cloned().collect();
    for o in owners {
        add_ancestors(&mut zone, o.wire());
    }
    Ok(zone)
}

/// Empty non-terminals: every name between an owner and the apex exists (RFC 8020).
fn add_ancestors(zone: &mut Zone, wire: &[u8]) {
    let origin_len = zone.origin.wire().len();
    for o in suffixes(wire).skip(1) {
        let anc = &wire[o..];
        if anc.len() < origin_len {
            break;
        }
        if zone.nodes.contains_key(anc) {
            continue;
        }
        zone.nodes.insert(Name::from_wire(anc), Node::default());
    }
}

/// Every loaded zone, found by the longest origin that contains a name.
#[derive(Debug, Clone, Default)]
pub struct ZoneSet {
    zones: Vec<Zone>,
    by_origin: FxHashMap<Name, usize>,
    /// Names the hot path answers with one hash instead of a zone search plus a lookup in
    /// the zone: geo service names, and plain names with address records.
    hot: FxHashMap<Name, Hot>,
}

/// What an address query for one name resolves to, worked out when the zones are loaded.
#[derive(Debug, Clone)]
pub enum Hot {
    /// Geo service number `service`, in zone number `zone`.
    Service { zone: usize, service: usize },
    /// A name with A and/or AAAA records and nothing that changes the answer (no CNAME, not
    /// below a zone cut, not occluded by a child zone): the answer sections, pre-rendered.
    Static {
        a: Option<Rendered>,
        aaaa: Option<Rendered>,
    },
}

/// An answer section in wire format, every owner a pointer to the question name (offset 12).
#[derive(Debug, Clone)]
pub struct Rendered {
    pub count: u16,
    pub wire: Box<[u8]>,
}

impl Rendered {
    fn of(set: &RRset) -> Rendered {
        let mut wire = Vec::with_capacity(set.rdatas.len() * 28);
        for d in &set.rdatas {
            wire.extend_from_slice(&[0xC0, 0x0C]);
            wire.extend_from_slice(&set.rtype.to_be_bytes());
            wire.extend_from_slice(&1u16.to_be_bytes());
            wire.extend_from_slice(&set.ttl.to_be_bytes());
            wire.extend_from_slice(&(d.len() as u16).to_be_bytes());
            wire.extend_from_slice(d);
        }
        Rendered {
            count: set.rdatas.len() as u16,
            wire: wire.into_boxed_slice(),
        }
    }
}

impl ZoneSet {
    /// Loads every zone file; problems from all files are reported together.
    pub fn load(files: &[(PathBuf, usize)], config_path: &Path) -> Result<ZoneSet, Vec<Problem>> {
        let mut set = ZoneSet::default();
        let mut problems = Vec::new();
        for (file, line) in files {
            match Zone::load(file) {
                Ok(z) => {
                    if let Some(&i) = set.by_origin.get(&z.origin) {
                        problems.push(Problem::new(
                            config_path,
                            Some(*line),
                            Some("server.zones"),
                            format!(
                                "{} and {} both hold zone `{}`",
                                set.zones[i].file.display(),
                                file.display(),
                                z.origin
                            ),
                        ));
                        continue;
                    }
                    set.by_origin.insert(z.origin.clone(), set.zones.len());
                    set.zones.push(z);
                }
                Err(mut p) => {
                    // Zone-level checks can find one problem per record, too.
                    if p.len() > parse::MAX_PROBLEMS + 1 {
                        let more = p.len() - parse::MAX_PROBLEMS;
                        p.truncate(parse::MAX_PROBLEMS);
                        p.push(Problem::new(
                            file,
                            None,
                            None,
                            format!("{more} more problems not shown"),
                        ));
                    }
                    // A file that cannot be read at all is named by its config line.
                    for pr in &mut p {
                        if pr.line.is_none() && pr.message.starts_with("cannot read") {
                            *pr = Problem::new(
                                config_path,
                                Some(*line),
                                Some("server.zones"),
                                format!("{}: {}", file.display(), pr.message),
                            );
                        }
                    }
                    problems.extend(p);
                }
            }
        }
        if problems.is_empty() {
            set.index_addresses();
            Ok(set)
        } else {
            Err(problems)
        }
    }

    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }

    /// The zone with the longest origin containing `qname` (lower-case wire).
    pub fn find(&self, qname: &[u8]) -> Option<&Zone> {
        self.holder(qname).map(|i| &self.zones[i])
    }

    /// The index of the zone [`ZoneSet::find`] returns.
    fn holder(&self, qname: &[u8]) -> Option<usize> {
        suffixes(qname).find_map(|o| self.by_origin.get(&qname[o..]).copied())
    }

    /// The zone and service index of a geo service name (lower-case wire).
    #[inline]
    pub fn service(&self, qname: &[u8]) -> Option<(&Zone, usize)> {
        match self.hot.get(qname)? {
            Hot::Service { zone, service } => Some((&self.zones[*zone], *service)),
            Hot::Static { .. } => None,
        }
    }

    /// What an address query for `qname` (lower-case wire) resolves to, when that is known
    /// without a zone search.
    #[inline]
    pub fn hot(&self, qname: &[u8]) -> Option<&Hot> {
        self.hot.get(qname)
    }

    /// Records every plain name with address records for the hot path. Each candidate is run
    /// through the same search an answer makes (the zone that holds it, then the lookup in it),
    /// so only names whose answer is exactly their A or AAAA set are taken.
    fn index_addresses(&mut self) {
        for (zi, zone) in self.zones.iter().enumerate() {
            for (name, node) in &zone.nodes {
                if node.service.is_some() || node.get(TYPE_CNAME).is_some() {
                    continue;
                }
                if self.holder(name.wire()) != Some(zi) {
                    continue;
                }
                if !matches!(
                    zone.lookup(name.wire(), TYPE_A),
                    Lookup::Found {
                        wildcard: false,
                        ..
                    }
                ) {
                    continue;
                }
                let render = |rtype| {
                    node.get(rtype)
                        .filter(|s| s.targets.is_empty() && !s.rdatas.is_empty())
                        .map(Rendered::of)
                };
                let (a, aaaa) = (render(TYPE_A), render(TYPE_AAAA));
                if a.is_some() || aaaa.is_some() {
                    self.hot.insert(name.clone(), Hot::Static { a, aaaa });
                }
            }
        }
    }

    /// Marks `name` as geo service number `index`. The caller adds the config line to the
    /// error.
    pub fn attach_service(&mut self, name: &Name, index: usize) -> Result<(), AttachError> {
        let Some(zi) = self.holder(name.wire()) else {
            return Err(AttachError::OutsideZones(name.clone()));
        };
        let zone = &mut self.zones[zi];
        if *name == zone.origin {
            return Err(AttachError::Apex(name.clone()));
        }
        if let Lookup::Referral { cut, .. } = zone.lookup(name.wire(), TYPE_A) {
            return Err(AttachError::Delegated {
                name: name.clone(),
                cut: cut.clone(),
            });
        }
        if let Some(node) = zone.nodes.get(name.wire())
            && let Some(set) = node.rrsets.first()
        {
            return Err(AttachError::HasRecords {
                name: name.clone(),
                rtype: RecordType::from(set.rtype),
                file: zone.file.clone(),
            });
        }
        zone.nodes.entry(name.clone()).or_default().service = Some(index);
        add_ancestors(zone, name.wire());
        self.hot.insert(
            name.clone(),
            Hot::Service {
                zone: zi,
                service: index,
            },
        );
        Ok(())
    }
}

/// Why a service name cannot be served from the loaded zones.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AttachError {
    #[error("`{0}` is not inside any loaded zone")]
    OutsideZones(Name),
    #[error("`{0}` is the zone apex, which holds SOA and NS records")]
    Apex(Name),
    #[error("`{name}` is at or below the delegation `{cut}`")]
    Delegated { name: Name, cut: Name },
    #[error("`{name}` already has {rtype} records in {}: a service name cannot share its name with zone records", .file.display())]
    HasRecords {
        name: Name,
        rtype: RecordType,
        file: PathBuf,
    },
}
