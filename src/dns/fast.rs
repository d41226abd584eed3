//! The hot path: an address query (A or AAAA, class IN, one question, at most an OPT record
//! with ECS) for a geo service name or a plain name with address records.
//!
//! Almost every query a download hostname gets is this one. It is answered here straight from
//! the packet bytes: one hash finds the name, the routing table or the zone's pre-rendered
//! records give the answer section, and the header, question echo and OPT are written around
//! it. Anything else (other types, cookies, NODATA, SERVFAIL, truncation, errors) returns
//! `None` before anything is counted, and the full path in `answer` handles it; the full path
//! stays the reference, and the differential test checks that both write the same bytes.

use std::hash::Hasher;
use std::net::IpAddr;

use super::message::{OptOut, Owner, Rr, put_opt, put_rr};
use super::rrl::{self, Flow, Kind, Verdict};
use super::wire::{self, Ecs, client_of, scope_for, size_limit};
use super::{Ctx, Event};
use crate::dnssec::sign::TYPE_RRSIG;
use crate::zone::{Hot, Rendered, TYPE_A, TYPE_AAAA};

/// What the OPT record of a query says, when the hot path can take it.
struct Opt {
    payload: u16,
    ecs: Option<Ecs>,
    dnssec_ok: bool,
}

/// Reads the additional section: nothing, or one OPT at the root, version 0, whose options
/// are at most one valid ECS plus options we ignore. Anything else is for the full path.
fn read_opt(pkt: &[u8], at: usize, arcount: u16) -> Option<Option<Opt>> {
    match arcount {
        0 => return Some(None),
        1 => {}
        _ => return None,
    }
    let fixed = pkt.get(at..at + 11)?;
    if fixed[0] != 0 || u16::from_be_bytes([fixed[1], fixed[2]]) != wire::TYPE_OPT || fixed[6] != 0
    {
        return None;
    }
    let payload = u16::from_be_bytes([fixed[3], fixed[4]]);
    let rdlen = u16::from_be_bytes([fixed[9], fixed[10]]) as usize;
    let rdata = pkt.get(at + 11..at + 11 + rdlen)?;
    let mut ecs = None;
    for option in wire::options(rdata) {
        match option? {
            (wire::OPTION_ECS, data) if ecs.is_none() => ecs = Some(wire::parse_ecs(data)?),
            (wire::OPTION_ECS | wire::OPTION_COOKIE, _) => return None,
            _ => {}
        }
    }
    Some(Some(Opt {
        payload,
        ecs,
        dnssec_ok: fixed[7] & 0x80 != 0,
    }))
}

/// The answer section: pre-rendered in the zone, or the addresses of the client's mirrors.
enum Records<'a> {
    Zone(&'a Rendered),
    /// Addresses of `width` bytes each, back to back.
    Mirrors {
        data: &'a [u8],
        width: usize,
        rtype: u16,
        ttl: u32,
        /// The RRSIGs over the set, when the query has DO and the zone is signed.
        sigs: &'a [Box<[u8]>],
    },
}

impl Records<'_> {
    fn count(&self) -> usize {
        match self {
            Records::Zone(r) => r.count as usize,
            Records::Mirrors {
                data, width, sigs, ..
            } => data.len() / width + sigs.len(),
        }
    }

    fn wire_len(&self) -> usize {
        match self {
            Records::Zone(r) => r.wire.len(),
            Records::Mirrors {
                data, width, sigs, ..
            } => {
                data.len() / width * (12 + width) + sigs.iter().map(|s| 12 + s.len()).sum::<usize>()
            }
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Records::Zone(r) => out.extend_from_slice(&r.wire),
            Records::Mirrors {
                data,
                width,
                rtype,
                ttl,
                sigs,
            } => {
                let sig_rrs = sigs.iter().map(|s| (TYPE_RRSIG, &s[..]));
                for (rtype, rdata) in data
                    .chunks_exact(*width)
                    .map(|d| (*rtype, d))
                    .chain(sig_rrs)
                {
                    let rr = Rr {
                        owner: Owner::QName,
                        rtype,
                        ttl: *ttl,
                        rdata,
                    };
                    // The owner is the question name itself, so no name to compress against.
                    put_rr(out, &rr, &[]);
                }
            }
        }
    }

    /// The answer data as rate limiting keys it: the RDATA of each record, in order (the
    /// same hash the full path takes over its answer records).
    fn content_hash(&self) -> u64 {
        let mut h = rustc_hash::FxHasher::default();
        match self {
            Records::Zone(r) => {
                let mut at = 0;
                while let Some(fixed) = r.wire.get(at..at + 12) {
                    let len = u16::from_be_bytes([fixed[10], fixed[11]]) as usize;
                    let Some(rdata) = r.wire.get(at + 12..at + 12 + len) else {
                        break;
                    };
                    h.write(rdata);
                    at += 12 + len;
                }
            }
            Records::Mirrors {
                data, width, sigs, ..
            } => {
                for a in data.chunks_exact(*width) {
                    h.write(a);
                }
                for s in sigs.iter() {
                    h.write(s);
                }
            }
        }
        h.finish()
    }
}

/// Answers the hot case into `out`. `None`: not the hot case, nothing counted, use the full
/// path. `Some(send)`: answered (or dropped by rate limiting when `send` is false).
pub(super) fn try_answer(
    ctx: &Ctx<'_>,
    pkt: &[u8],
    src: IpAddr,
    out: &mut Vec<u8>,
) -> Option<bool> {
    let Ctx {
        table,
        stats,
        transport,
        ..
    } = *ctx;
    let head = pkt.get(..12)?;
    let req_flags = u16::from_be_bytes([head[2], head[3]]);
    // A query (QR clear, opcode 0) with one question and nothing in the answer and authority
    // sections.
    if req_flags & 0xF800 != 0 || head[4..10] != [0, 1, 0, 0, 0, 0] {
        return None;
    }
    let arcount = u16::from_be_bytes([head[10], head[11]]);
    let mut qname = [0u8; 255];
    let (end, qname_len) = wire::read_question_name(pkt, 12, &mut qname)?;
    let qt = pkt.get(end..end + 4)?;
    let qtype = u16::from_be_bytes([qt[0], qt[1]]);
    if !matches!(qtype, TYPE_A | TYPE_AAAA) || u16::from_be_bytes([qt[2], qt[3]]) != wire::CLASS_IN
    {
        return None;
    }
    let qend = end + 4;
    let opt = read_opt(pkt, qend, arcount)?;
    let qname = &qname[..qname_len];
    let hot = table.zones.hot(qname)?;

    let ecs = opt.as_ref().and_then(|o| o.ecs);
    let dnssec_ok = opt.as_ref().is_some_and(|o| o.dnssec_ok);
    // Signed answers on the hot path are a service's (their RRSIGs made with the table); a
    // signed zone's own names go to the full path, which has their proofs.
    let signed = table.dnssec.as_deref().filter(|_| dnssec_ok);
    let client = client_of(ecs, src);
    let mut service = None;
    let (records, scope) = match hot {
        Hot::Service { service: si, .. } => {
            let route = &table.services[*si];
            let hit = route.map.lookup(client);
            let ans = &route.answers[hit.list as usize];
            if ans.servfail {
                return None;
            }
            let (data, width) = if qtype == TYPE_A {
                (ans.a.as_flattened(), 4)
            } else {
                (ans.aaaa.as_flattened(), 16)
            };
            if data.is_empty() {
                // NODATA, with the SOA: the full path writes that.
                return None;
            }
            let sigs: &[Box<[u8]>] = match signed.map(|sg| sg.services.get(*si)) {
                None => &[],
                Some(Some(Some(ss))) => {
                    let by_list = if qtype == TYPE_A { &ss.a } else { &ss.aaaa };
                    by_list.get(hit.list as usize)?.as_deref()?
                }
                // A service outside any signed zone.
                Some(_) => &[],
            };
            service = Some((*si, hit, qtype == TYPE_A));
            let records = Records::Mirrors {
                data,
                width,
                rtype: qtype,
                ttl: route.ttl,
                sigs,
            };
            (records, hit.scope)
        }
        Hot::Static { a, aaaa } => {
            if signed.is_some() {
                return None;
            }
            let r = if qtype == TYPE_A { a } else { aaaa }.as_ref()?;
            (Records::Zone(r), 0)
        }
    };
    let server_payload = table.config.server.udp_payload_max;
    let limit_bytes = size_limit(transport, opt.as_ref().map(|o| o.payload), server_payload);
    let question = &pkt[12..qend];
    let scope = scope_for(ecs, scope);
    let opt_out = opt.as_ref().map(|o| OptOut {
        payload: server_payload,
        ecs: o.ecs.map(|e| (e, scope)),
        cookie: None,
        dnssec_ok: o.dnssec_ok,
    });
    let opt_len = opt_out.as_ref().map_or(0, OptOut::wire_len);
    if 12 + question.len() + records.wire_len() + opt_len > limit_bytes {
        return None;
    }

    // Committed: from here on this is the answer, counted as the full path counts it.
    if ecs.is_some() {
        stats.add(Event::Ecs);
    }
    if let Some((si, hit, v4)) = service {
        let route = &table.services[si];
        if route.map.lists[hit.list as usize].unknown {
            stats.add(Event::UnknownLocation);
        }
        let ans = &route.answers[hit.list as usize];
        table.answer_counts.record(si, ans, !v4, hit.continent);
    }
    ctx.count(Some(qtype), wire::RCODE_NOERROR);
    let verdict = rrl::limit(ctx, src, false, || Flow {
        kind: Kind::Answer,
        name: qname,
        qtype,
        content: records.content_hash(),
    });
    let send_records = match verdict {
        Verdict::Drop => return Some(false),
        Verdict::Slip => false,
        Verdict::Send => true,
    };

    // QR, AA, RD and CD echoed; opcode 0 and rcode NOERROR are zero bits. A slipped answer
    // is the header, question and OPT with TC set.
    let mut flags: u16 = 0x8400 | (req_flags & 0x0110);
    let mut h = [0u8; 12];
    h[..2].copy_from_slice(&head[..2]);
    h[5] = 1;
    if send_records {
        h[6..8].copy_from_slice(&(records.count() as u16).to_be_bytes());
    } else {
        flags |= 0x0200;
    }
    h[2..4].copy_from_slice(&flags.to_be_bytes());
    h[11] = opt_out.is_some() as u8;
    out.clear();
    out.extend_from_slice(&h);
    out.extend_from_slice(question);
    if send_records {
        records.write(out);
    }
    if let Some(o) = &opt_out {
        put_opt(out, o, wire::RCODE_NOERROR);
    }
    Some(true)
}
