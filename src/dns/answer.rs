//! The answer logic: query bytes + client address + routing table -> response bytes.
//!
//! A pure function of its inputs (plus counters), shared by every transport. It follows RFC
//! 1034 4.3.2 for zone data (referrals, CNAME chasing within the zone, wildcards, NXDOMAIN and
//! NODATA with the SOA per RFC 2308) and answers geo service names from the routing table.
//! It can answer every query, the hot path's included, which makes it the reference the hot
//! path (`fast`) is checked against byte for byte.

use std::hash::Hasher;
use std::net::IpAddr;

use super::dnssec::{Proofs, Signing};
use super::message::{
    Echo, Flags, OptOut, Owner, Response, Rr, RrList, Sections, write_error, write_response,
};
use super::rrl::{self, Flow, Kind, Verdict};
use super::wire::{self, Query, Reject, client_of, scope_for, size_limit};
use super::{Ctx, Event, Stats};
use super::{cookie, transfer, tsig};
use crate::dnssec::signed::{Sigs, variant};
use crate::routing::RoutingTable;
use crate::zone::{Lookup, RRset, TYPE_A, TYPE_AAAA, TYPE_CNAME, TYPE_DS, TYPE_SOA, Zone};

const TYPE_ANY: u16 = 255;
/// CNAME hops followed inside a zone before giving up (a loop, or an absurd chain).
const MAX_CNAME_HOPS: usize = 8;

/// [`super::handle`] without the hot path: answers one query packet from `src` into `out`.
/// Returns false when nothing should be sent.
pub fn handle_full(ctx: &Ctx<'_>, pkt: &[u8], src: IpAddr, out: &mut Vec<u8>) -> bool {
    let Ctx { table, stats, .. } = *ctx;
    let payload = table.config.server.udp_payload_max;
    let q = match wire::parse(pkt) {
        Ok(q) => q,
        Err(Reject::Drop) => {
            stats.add(Event::Dropped);
            return false;
        }
        Err(Reject::Error {
            id,
            rcode,
            flags,
            question,
            edns,
        }) => {
            if rcode == wire::RCODE_FORMERR {
                stats.add(Event::Malformed);
            }
            ctx.count(None, rcode);
            let verdict = rrl::limit(ctx, src, false, || Flow {
                kind: Kind::Error,
                name: &[],
                qtype: 0,
                content: 0,
            });
            if verdict == Verdict::Drop {
                return false;
            }
            let opt = edns.then_some(OptOut {
                payload,
                ecs: None,
                cookie: None,
                dnssec_ok: false,
            });
            let question = question.and_then(|len| pkt.get(12..12 + len));
            write_error(out, Echo { id, flags }, rcode, question, opt.as_ref());
            if verdict == Verdict::Slip {
                // An error response holds no records already: setting TC is all a slip needs.
                out[2] |= 0x02;
            }
            return true;
        }
    };
    let req_flags = u16::from_be_bytes([pkt[2], pkt[3]]);
    let req = Echo {
        id: q.id,
        flags: req_flags,
    };
    // A signed query (RFC 8945): answered signed with our key, or NOTAUTH with the TSIG error
    // (BADKEY when we have no key or another one).
    let tsig_key = table.config.transfer.tsig.as_ref();
    let signer = match q
        .tsig
        .map(|at| tsig::check(pkt, at, tsig_key, super::unix_now()))
    {
        None => None,
        Some(tsig::Checked::Valid(s)) => Some(s),
        Some(bad) => {
            let rcode = if matches!(bad, tsig::Checked::Malformed) {
                stats.add(Event::Malformed);
                wire::RCODE_FORMERR
            } else {
                tsig::RCODE_NOTAUTH
            };
            ctx.count(Some(q.qtype), rcode);
            let opt = q.edns.map(|e| OptOut {
                payload,
                ecs: None,
                cookie: None,
                dnssec_ok: e.dnssec_ok,
            });
            write_error(out, req, rcode, Some(q.question), opt.as_ref());
            if let tsig::Checked::Invalid(r) = bad {
                r.append(out);
            }
            return true;
        }
    };
    let (cookie, cookie_ok) = cookie_reply(ctx, &q, src);
    if let Some(e) = q.edns
        && e.version != 0
    {
        ctx.count(Some(q.qtype), wire::RCODE_BADVERS);
        let opt = OptOut {
            payload,
            ecs: None,
            cookie,
            dnssec_ok: e.dnssec_ok,
        };
        write_error(out, req, wire::RCODE_BADVERS, Some(q.question), Some(&opt));
        return true;
    }
    // RFC 8945 5.3: the signature must fit too, so a signed answer that would not is sent
    // truncated (question, OPT and TSIG only) and the client retries over TCP.
    let limit_bytes = size_limit(ctx.transport, q.edns.map(|e| e.udp_payload), payload)
        .saturating_sub(signer.as_ref().map_or(0, |s| s.record_len()));
    let ecs = q.edns.and_then(|e| e.ecs);
    if ecs.is_some() {
        stats.add(Event::Ecs);
    }
    let mut sections = Sections::default();
    let question = Question {
        table,
        stats,
        q: &q,
        client: client_of(ecs, src),
        signing: Signing::new(table, q.edns.is_some_and(|e| e.dnssec_ok)),
        transport: ctx.transport,
    };
    let (flags, scope) = resolve(&question, &mut sections);
    let scope = scope_for(ecs, scope);
    let opt = q.edns.map(|e| OptOut {
        payload,
        ecs: e.ecs.map(|ecs| (ecs, scope)),
        cookie,
        dnssec_ok: e.dnssec_ok,
    });
    ctx.count(Some(q.qtype), flags.rcode);
    let verdict = rrl::limit(ctx, src, cookie_ok, || flow(&q, flags, &sections));
    let response = Response {
        flags,
        sections: &sections,
        opt: opt.as_ref(),
    };
    match verdict {
        Verdict::Drop => return false,
        // A truncated answer carries no records, only the header, question and OPT (with our
        // cookie, so that a resolver that speaks cookies is exempt from then on).
        Verdict::Slip => {
            write_response(out, &q, req_flags, &response, 0);
        }
        Verdict::Send => {
            if write_response(out, &q, req_flags, &response, limit_bytes) {
                stats.add(Event::Truncated);
            }
        }
    }
    if let Some(mut s) = signer {
        s.sign(out, 0, &[]);
    }
    true
}

/// The cookie to return (client cookie + a fresh server cookie) and whether the query's server
/// cookie was one of ours.
fn cookie_reply(ctx: &Ctx<'_>, q: &Query<'_>, src: IpAddr) -> (Option<[u8; 24]>, bool) {
    let Some(c) = q.edns.and_then(|e| e.cookie) else {
        return (None, false);
    };
    // RFC 9018 timestamps are 32-bit seconds.
    let now = super::unix_now() as u32;
    let secret = ctx.guard.cookie_secret(&ctx.table.config);
    let ok = cookie::is_valid(secret, &c, src, now);
    if ok {
        ctx.stats.add(Event::CookiesValid);
    } else {
        ctx.stats.add(Event::CookiesNew);
    }
    let mut b = [0u8; 24];
    b[..8].copy_from_slice(&c.client);
    b[8..].copy_from_slice(&cookie::make(secret, &c.client, src, now));
    (Some(b), ok)
}

/// The response as rate limiting counts it: answers by query name, type and content, negative
/// answers by zone (so that random names share one allowance), referrals by delegation, errors
/// all together.
fn flow<'a>(q: &'a Query<'_>, flags: Flags, s: &Sections<'a>) -> Flow<'a> {
    let first_authority = || match s.authority.first().map(|r| r.owner) {
        Some(Owner::Name(n)) => n,
        _ => q.qname(),
    };
    let (kind, name) = match flags.rcode {
        wire::RCODE_NOERROR if !s.answer.is_empty() => (Kind::Answer, q.qname()),
        wire::RCODE_NOERROR if !flags.aa && !s.authority.is_empty() => {
            (Kind::Referral, first_authority())
        }
        wire::RCODE_NOERROR => (Kind::NoData, first_authority()),
        wire::RCODE_NXDOMAIN => (Kind::NxDomain, first_authority()),
        _ => (Kind::Error, &[][..]),
    };
    let mut content = rustc_hash::FxHasher::default();
    for rr in &s.answer {
        content.write(rr.rdata);
    }
    Flow {
        kind,
        name,
        qtype: q.qtype,
        content: content.finish(),
    }
}

fn refused() -> (Flags, u8) {
    (
        Flags {
            aa: false,
            rcode: wire::RCODE_REFUSED,
        },
        0,
    )
}

fn push_set<'t>(to: &mut RrList<'t>, owner: Owner<'t>, set: &'t RRset) {
    to.extend(set.rdatas.iter().map(|d| Rr {
        owner,
        rtype: set.rtype,
        ttl: set.ttl,
        rdata: d,
    }));
}

fn push_soa<'t>(s: &mut Sections<'t>, zone: &'t Zone, proofs: &Proofs<'t>) {
    let owner = Owner::Name(zone.origin.wire());
    push_soa_set(&mut s.authority, owner, zone, zone.negative_ttl, proofs);
}

/// The zone's SOA (a signed zone's with its managed serial, and RRSIGs with DO) at `ttl`.
fn push_soa_set<'t>(
    to: &mut RrList<'t>,
    owner: Owner<'t>,
    zone: &'t Zone,
    ttl: u32,
    proofs: &Proofs<'t>,
) {
    let (rdata, sigs) = match proofs.soa() {
        Some((rdata, sigs)) => (rdata, sigs),
        None => (&zone.soa().rdatas[0][..], None),
    };
    to.push(Rr {
        owner,
        rtype: TYPE_SOA,
        ttl,
        rdata,
    });
    if let Some(sigs) = sigs {
        super::dnssec::push_sigs(to, owner, sigs, ttl);
    }
}

/// A and AAAA records of in-zone targets (NS, MX, SRV) for the additional section.
fn push_additional<'t>(s: &mut Sections<'t>, zone: &'t Zone, set: &'t RRset) -> bool {
    let mut any = false;
    for t in &set.targets {
        if !t.is_within(&zone.origin) {
            continue;
        }
        let Some(node) = zone.node(t.wire()) else {
            continue;
        };
        if node.service.is_some() {
            continue;
        }
        for rtype in [TYPE_A, TYPE_AAAA] {
            if let Some(addrs) = node.get(rtype) {
                push_set(&mut s.additional, Owner::Name(t.wire()), addrs);
                any = true;
            }
        }
    }
    any
}

/// One question to answer from the routing table, for one client: the ECS subnet's address,
/// or the sender's. The records found borrow from the table (`'t`), never from the packet.
struct Question<'t, 'q> {
    table: &'t RoutingTable,
    stats: &'t Stats,
    q: &'q Query<'q>,
    client: IpAddr,
    /// The table's signatures, and whether the query asked for them.
    signing: Signing<'t>,
    transport: super::Transport,
}

/// Fills `s` with the answer; returns the header flags and the ECS scope.
fn resolve<'t>(question: &Question<'t, '_>, s: &mut Sections<'t>) -> (Flags, u8) {
    let Question {
        table, stats, q, ..
    } = *question;
    if q.qclass != wire::CLASS_IN {
        return refused();
    }
    match q.qtype {
        // RFC 1995 2: an IXFR over UDP gets the zone's current SOA alone, which tells the
        // client to come back over TCP (the SOA is public: anyone may ask for it).
        wire::TYPE_IXFR if question.transport == super::Transport::Udp => {
            if let Some(zone) = table.zones.find(q.qname())
                && zone.origin.wire() == q.qname()
            {
                let proofs = question.signing.zone(zone);
                push_soa_set(&mut s.answer, Owner::QName, zone, zone.soa().ttl, &proofs);
                return (
                    Flags {
                        aa: true,
                        rcode: wire::RCODE_NOERROR,
                    },
                    0,
                );
            }
            stats.add(Event::TransfersRefused);
            return refused();
        }
        // Transfers go over TCP through `transfer::serve`; one reaching here is refused.
        transfer::TYPE_AXFR | wire::TYPE_IXFR => {
            stats.add(Event::TransfersRefused);
            return refused();
        }
        wire::TYPE_OPT => {
            return (
                Flags {
                    aa: false,
                    rcode: wire::RCODE_FORMERR,
                },
                0,
            );
        }
        _ => {}
    }
    // The hot case, an address query for a geo service name, without searching the zones.
    if matches!(q.qtype, TYPE_A | TYPE_AAAA | TYPE_ANY)
        && let Some((zone, si)) = table.zones.service(q.qname())
    {
        return answer_service(question, zone, si, Owner::QName, s);
    }
    let Some(zone) = table.zones.find(q.qname()) else {
        return refused();
    };
    let proofs = question.signing.zone(zone);
    let mut flags = Flags {
        aa: true,
        rcode: wire::RCODE_NOERROR,
    };
    let mut cur: &[u8] = q.qname();
    let mut owner: Owner<'t> = Owner::QName;
    let mut hops = 0;
    loop {
        match zone.lookup(cur, q.qtype) {
            Lookup::Referral { cut, ns } => {
                if hops == 0 {
                    flags.aa = false;
                    push_set(&mut s.authority, Owner::Name(cut.wire()), ns);
                    // The delegation's DS, signed, or the proof that it has none.
                    if proofs.on() {
                        let ds = zone.node(cut.wire()).and_then(|n| n.get(TYPE_DS));
                        match ds {
                            Some(ds) => {
                                push_set(&mut s.authority, Owner::Name(cut.wire()), ds);
                                proofs.sigs(
                                    &mut s.authority,
                                    Owner::Name(cut.wire()),
                                    cut.wire(),
                                    TYPE_DS,
                                    ds.ttl,
                                );
                            }
                            None => {
                                proofs.nsec(&mut s.authority, cut.wire());
                            }
                        }
                    }
                    s.glue_required = push_additional(s, zone, ns);
                }
                break;
            }
            Lookup::NxDomain => {
                flags.rcode = wire::RCODE_NXDOMAIN;
                push_soa(s, zone, &proofs);
                proofs.nxdomain(&mut s.authority, zone, cur);
                break;
            }
            Lookup::Found {
                node,
                name,
                wildcard,
            } => {
                if let Some(si) = node.service {
                    return answer_service(question, zone, si, owner, s);
                }
                // An expansion proves that no closer name exists (RFC 4035 3.1.3.3).
                if wildcard {
                    proofs.nsec(&mut s.authority, cur);
                }
                if q.qtype != TYPE_CNAME
                    && let Some(cn) = node.get(TYPE_CNAME)
                {
                    push_set(&mut s.answer, owner, cn);
                    proofs.sigs(&mut s.answer, owner, name.wire(), TYPE_CNAME, cn.ttl);
                    hops += 1;
                    match cn.targets.first() {
                        Some(t) if hops <= MAX_CNAME_HOPS && t.is_within(&zone.origin) => {
                            cur = t.wire();
                            owner = Owner::Name(t.wire());
                            continue;
                        }
                        _ => break,
                    }
                }
                // DNSKEY, CDS and CDNSKEY are made for the apex of a signed zone.
                if name.wire() == zone.origin.wire()
                    && let Some(apex) = proofs.apex_set(q.qtype)
                {
                    s.answer.extend(apex.rdatas.iter().map(|d| Rr {
                        owner,
                        rtype: q.qtype,
                        ttl: apex.ttl,
                        rdata: d,
                    }));
                    if proofs.on()
                        && let Some(sigs) = &apex.sigs
                    {
                        super::dnssec::push_sigs(&mut s.answer, owner, sigs, apex.ttl);
                    }
                    break;
                }
                let set = if q.qtype == TYPE_ANY {
                    node.rrsets.first()
                } else {
                    node.get(q.qtype)
                };
                match set {
                    Some(set) if set.rtype == TYPE_SOA && name.wire() == zone.origin.wire() => {
                        push_soa_set(&mut s.answer, owner, zone, set.ttl, &proofs);
                    }
                    Some(set) => {
                        push_set(&mut s.answer, owner, set);
                        proofs.sigs(&mut s.answer, owner, name.wire(), set.rtype, set.ttl);
                        push_additional(s, zone, set);
                    }
                    None => {
                        push_soa(s, zone, &proofs);
                        // NODATA: the NSEC at the name (or at the wildcard, the name itself
                        // being covered above), or for an empty non-terminal the one covering it.
                        proofs.nsec(&mut s.authority, name.wire());
                    }
                }
                break;
            }
        }
    }
    (flags, 0)
}

/// The answer for geo service number `si` (at `owner`, in `zone`): the mirrors for the
/// client's location, or NODATA for other types.
fn answer_service<'t>(
    question: &Question<'t, '_>,
    zone: &'t Zone,
    si: usize,
    owner: Owner<'t>,
    s: &mut Sections<'t>,
) -> (Flags, u8) {
    let Question {
        table,
        stats,
        q,
        client,
        ..
    } = *question;
    let flags = Flags {
        aa: true,
        rcode: wire::RCODE_NOERROR,
    };
    let route = &table.services[si];
    let proofs = question.signing.zone(zone);
    let service_sigs = question
        .signing
        .signed()
        .and_then(|sg| sg.services.get(si))
        .and_then(|x| x.as_ref());
    if !matches!(q.qtype, TYPE_A | TYPE_AAAA | TYPE_ANY) {
        push_soa(s, zone, &proofs);
        let v = route
            .default_answer()
            .map_or(0, |d| variant(!d.a.is_empty(), !d.aaaa.is_empty()));
        proofs.service_nsec(&mut s.authority, si, route.name.wire(), v);
        return (flags, 0);
    }
    let hit = route.map.lookup(client);
    if route.map.lists[hit.list as usize].unknown {
        stats.add(Event::UnknownLocation);
    }
    let ans = &route.answers[hit.list as usize];
    if ans.servfail {
        s.clear();
        // No mirror is routable and the operator chose SERVFAIL over a fallback: resolvers
        // retry later rather than cache a bad answer.
        return (
            Flags {
                aa: false,
                rcode: wire::RCODE_SERVFAIL,
            },
            hit.scope,
        );
    }
    let before = s.answer.len();
    let list = hit.list as usize;
    let sigs_of = |v: Option<&'t Vec<Option<Sigs>>>| {
        v.and_then(|v| v.get(list))
            .and_then(|x| x.as_deref())
            .filter(|_| proofs.on())
    };
    if q.qtype != TYPE_AAAA {
        s.answer.extend(ans.a.iter().map(|a| Rr {
            owner,
            rtype: TYPE_A,
            ttl: route.ttl,
            rdata: a,
        }));
        if s.answer.len() > before
            && let Some(sigs) = sigs_of(service_sigs.map(|x| &x.a))
        {
            super::dnssec::push_sigs(&mut s.answer, owner, sigs, route.ttl);
        }
    }
    // RFC 8482: ANY gets one RRset; A when there is one.
    if q.qtype == TYPE_AAAA || (q.qtype == TYPE_ANY && s.answer.len() == before) {
        s.answer.extend(ans.aaaa.iter().map(|a| Rr {
            owner,
            rtype: TYPE_AAAA,
            ttl: route.ttl,
            rdata: a,
        }));
        if s.answer.len() > before
            && let Some(sigs) = sigs_of(service_sigs.map(|x| &x.aaaa))
        {
            super::dnssec::push_sigs(&mut s.answer, owner, sigs, route.ttl);
        }
    }
    if s.answer.len() == before {
        push_soa(s, zone, &proofs);
        let v = variant(!ans.a.is_empty(), !ans.aaaa.is_empty());
        proofs.service_nsec(&mut s.authority, si, route.name.wire(), v);
    } else {
        let v6 = s.answer[before].rtype == TYPE_AAAA;
        table.answer_counts.record(si, ans, v6, hit.continent);
    }
    (flags, hit.scope)
}
