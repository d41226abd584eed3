//! Query parsing straight from wire bytes, without allocating.
//!
//! We parse queries ourselves rather than through a general message decoder for two reasons:
//! RFC 7871's rules for a malformed ECS option need the raw option bytes (hickory accepts
//! options the RFC says are malformed), and the hot path should not allocate per query.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::Transport;
pub use super::cookie::Cookie;

pub const OPCODE_QUERY: u8 = 0;
pub const TYPE_OPT: u16 = 41;
pub const OPTION_ECS: u16 = 8;
pub const OPTION_COOKIE: u16 = 10;
pub const TYPE_TSIG: u16 = 250;
pub const TYPE_IXFR: u16 = 251;
pub const CLASS_IN: u16 = 1;

pub const RCODE_NOERROR: u16 = 0;
pub const RCODE_FORMERR: u16 = 1;
pub const RCODE_SERVFAIL: u16 = 2;
pub const RCODE_NXDOMAIN: u16 = 3;
pub const RCODE_NOTIMP: u16 = 4;
pub const RCODE_REFUSED: u16 = 5;
/// Extended rcode 16: the OPT version is not one we speak.
pub const RCODE_BADVERS: u16 = 16;

/// An EDNS Client Subnet option as received (RFC 7871 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ecs {
    pub family: u16,
    pub source_prefix: u8,
    /// Address bits, zero beyond `source_prefix` (checked).
    pub addr: IpAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    pub udp_payload: u16,
    pub version: u8,
    /// The DO bit (RFC 3225): the client wants RRSIGs and NSEC records.
    pub dnssec_ok: bool,
    pub ecs: Option<Ecs>,
    pub cookie: Option<Cookie>,
}

/// A parsed query. Borrowed bytes point into the packet.
#[derive(Debug)]
pub struct Query<'a> {
    pub id: u16,
    pub opcode: u8,
    pub rd: bool,
    pub cd: bool,
    /// The question exactly as sent (name in the sender's case, type, class): echoed back.
    pub question: &'a [u8],
    /// Lower-case copy of the question name, in wire format.
    pub qname: [u8; 255],
    pub qname_len: usize,
    pub qtype: u16,
    pub qclass: u16,
    pub edns: Option<Edns>,
    /// Offset of the TSIG record, which RFC 8945 requires to be the last one.
    pub tsig: Option<usize>,
}

impl Query<'_> {
    pub fn qname(&self) -> &[u8] {
        &self.qname[..self.qname_len]
    }
}

/// Why a packet gets no normal answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Not worth a reply: shorter than a header, or itself a response (answering responses
    /// would let anyone bounce traffic between servers).
    Drop,
    /// Reply with this rcode, echoing the header; `question` is the question's length if it
    /// parsed, so it can be echoed too. `edns` says whether the query had a usable OPT.
    Error {
        id: u16,
        rcode: u16,
        flags: u16,
        question: Option<usize>,
        edns: bool,
    },
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Reads a name that must not use compression (questions are at offset 12, so a pointer there
/// could only point into the header). Returns the end offset and the name's length.
pub(super) fn read_question_name(
    pkt: &[u8],
    start: usize,
    lower: &mut [u8; 255],
) -> Option<(usize, usize)> {
    // Walk the length bytes first, then copy the whole name at once and lower-case it in one
    // pass: length bytes are below 64, so lower-casing leaves them alone.
    let mut at = start;
    loop {
        let len = *pkt.get(at)? as usize;
        if len & 0xC0 != 0 {
            return None;
        }
        at += 1 + len;
        if at - start > 255 {
            return None;
        }
        if len == 0 {
            break;
        }
    }
    let n = at - start;
    let name = pkt.get(start..at)?;
    lower[..n].copy_from_slice(name);
    lower[..n].make_ascii_lowercase();
    Some((at, n))
}

/// Skips a name that may use compression pointers (in the additional section). Returns the end
/// offset and whether the name is the root.
pub(super) fn skip_name(pkt: &[u8], mut at: usize) -> Option<(usize, bool)> {
    let mut first = true;
    loop {
        let len = *pkt.get(at)?;
        match len & 0xC0 {
            0x00 if len == 0 => return Some((at + 1, first)),
            0x00 => {
                at += 1 + len as usize;
                pkt.get(at - 1)?;
            }
            // A pointer ends the name; we never need to follow it.
            0xC0 => {
                pkt.get(at + 1)?;
                return Some((at + 2, false));
            }
            _ => return None,
        }
        first = false;
    }
}

/// Validates an ECS option body per RFC 7871 6 and 7.1.1.
pub(super) fn parse_ecs(data: &[u8]) -> Option<Ecs> {
    if data.len() < 4 {
        return None;
    }
    let family = u16::from_be_bytes([data[0], data[1]]);
    let source = data[2];
    let addr = &data[4..];
    let max = match family {
        1 => 32,
        2 => 128,
        _ => return None,
    };
    if source > max || addr.len() != (source as usize).div_ceil(8) {
        return None;
    }
    // Bits beyond the source prefix must be zero.
    if !source.is_multiple_of(8) {
        let last = *addr.last()?;
        if last & (0xFFu8 >> (source % 8)) != 0 {
            return None;
        }
    }
    let addr = if family == 1 {
        let mut b = [0u8; 4];
        b[..addr.len()].copy_from_slice(addr);
        IpAddr::V4(Ipv4Addr::from(b))
    } else {
        let mut b = [0u8; 16];
        b[..addr.len()].copy_from_slice(addr);
        IpAddr::V6(Ipv6Addr::from(b))
    };
    Some(Ecs {
        family,
        source_prefix: source,
        addr,
    })
}

/// The options in an OPT record's RDATA, in order, as (code, data). An option cut short is a
/// `None`, and ends the walk.
pub(super) fn options(rdata: &[u8]) -> impl Iterator<Item = Option<(u16, &[u8])>> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at >= rdata.len() {
            return None;
        }
        let option = be16(rdata, at)
            .zip(be16(rdata, at + 2))
            .and_then(|(code, len)| {
                let end = at + 4 + len as usize;
                rdata.get(at + 4..end).map(|data| (code, data, end))
            });
        at = option.map_or(rdata.len(), |(_, _, end)| end);
        Some(option.map(|(code, data, _)| (code, data)))
    })
}

/// The largest response the client takes: its EDNS payload size within [512, ours] over UDP,
/// 512 without EDNS (RFC 6891 6.2.5), a whole message over TCP.
pub(super) fn size_limit(transport: Transport, client_payload: Option<u16>, ours: u16) -> usize {
    match (transport, client_payload) {
        (Transport::Tcp, _) => 65535,
        (Transport::Udp, Some(p)) => p.clamp(512, ours.max(512)) as usize,
        (Transport::Udp, None) => 512,
    }
}

/// Whom to answer for. RFC 7871 7.1.2: source prefix 0 means "do not use my subnet", so the
/// sender's own address counts.
pub(super) fn client_of(ecs: Option<Ecs>, src: IpAddr) -> IpAddr {
    match ecs {
        Some(e) if e.source_prefix > 0 => e.addr,
        _ => src,
    }
}

/// The ECS scope to return: 0 for a source prefix of 0 (the answer is not for a subnet).
pub(super) fn scope_for(ecs: Option<Ecs>, scope: u8) -> u8 {
    match ecs {
        Some(e) if e.source_prefix == 0 => 0,
        _ => scope,
    }
}

/// Parses a query packet.
pub fn parse(pkt: &[u8]) -> Result<Query<'_>, Reject> {
    if pkt.len() < 12 {
        return Err(Reject::Drop);
    }
    let id = u16::from_be_bytes([pkt[0], pkt[1]]);
    let flags = u16::from_be_bytes([pkt[2], pkt[3]]);
    if flags & 0x8000 != 0 {
        return Err(Reject::Drop);
    }
    let opcode = ((flags >> 11) & 0xF) as u8;
    let qdcount = be16(pkt, 4).unwrap_or(0);
    let ancount = be16(pkt, 6).unwrap_or(0);
    let nscount = be16(pkt, 8).unwrap_or(0);
    let arcount = be16(pkt, 10).unwrap_or(0);
    let err = |rcode, question| Reject::Error {
        id,
        rcode,
        flags,
        question,
        edns: false,
    };
    let mut qname = [0u8; 255];
    // Parse the question first so that even error replies can echo it.
    let question = if qdcount == 1 {
        read_question_name(pkt, 12, &mut qname).and_then(|(end, len)| {
            let qtype = be16(pkt, end)?;
            let qclass = be16(pkt, end + 2)?;
            Some((end + 4, len, qtype, qclass))
        })
    } else {
        None
    };
    if opcode != OPCODE_QUERY {
        return Err(err(RCODE_NOTIMP, question.map(|q| q.0 - 12)));
    }
    let Some((qend, qname_len, qtype, qclass)) = question else {
        return Err(err(RCODE_FORMERR, None));
    };
    // A malformed EDNS option: FORMERR, with an OPT in the reply since EDNS itself was fine.
    let bad_option = Reject::Error {
        id,
        rcode: RCODE_FORMERR,
        flags,
        question: question.map(|q| q.0 - 12),
        edns: true,
    };
    // IXFR carries the client's SOA in the authority section (RFC 1995 3); nothing else may.
    if ancount != 0 || nscount > u16::from(qtype == TYPE_IXFR) {
        return Err(err(RCODE_FORMERR, Some(qend - 12)));
    }
    // Additional section: the OPT record, and a TSIG record (checked by the transfer code).
    let mut at = qend;
    let mut edns: Option<Edns> = None;
    let mut tsig = None;
    let records = u32::from(nscount) + u32::from(arcount);
    for i in 0..records {
        let rr_start = at;
        let Some((name_end, is_root)) = skip_name(pkt, at) else {
            return Err(err(RCODE_FORMERR, Some(qend - 12)));
        };
        let (Some(rtype), Some(class), Some(ttl_hi), Some(ttl_lo), Some(rdlen)) = (
            be16(pkt, name_end),
            be16(pkt, name_end + 2),
            be16(pkt, name_end + 4),
            be16(pkt, name_end + 6),
            be16(pkt, name_end + 8),
        ) else {
            return Err(err(RCODE_FORMERR, Some(qend - 12)));
        };
        let rdata_start = name_end + 10;
        let Some(rdata) = pkt.get(rdata_start..rdata_start + rdlen as usize) else {
            return Err(err(RCODE_FORMERR, Some(qend - 12)));
        };
        at = rdata_start + rdlen as usize;
        if i < u32::from(nscount) {
            continue;
        }
        if rtype == TYPE_TSIG {
            // RFC 8945 5.1: a TSIG anywhere but last makes the message malformed.
            if i + 1 != records {
                return Err(err(RCODE_FORMERR, Some(qend - 12)));
            }
            tsig = Some(rr_start);
            continue;
        }
        if rtype != TYPE_OPT {
            continue;
        }
        // RFC 6891 6.1.1: one OPT, owned by the root.
        if edns.is_some() || !is_root {
            return Err(err(RCODE_FORMERR, Some(qend - 12)));
        }
        let version = (ttl_hi & 0xFF) as u8;
        let mut ecs = None;
        let mut cookie = None;
        for option in options(rdata) {
            let Some((code, data)) = option else {
                return Err(bad_option);
            };
            let ok = match code {
                OPTION_ECS => ecs.is_none() && parse_ecs(data).map(|e| ecs = Some(e)).is_some(),
                // RFC 7873 5.2.2: a cookie of a length it does not allow is FORMERR.
                OPTION_COOKIE => {
                    cookie.is_none() && Cookie::parse(data).map(|c| cookie = Some(c)).is_some()
                }
                _ => true,
            };
            if !ok {
                return Err(bad_option);
            }
        }
        edns = Some(Edns {
            udp_payload: class,
            version,
            dnssec_ok: ttl_lo & 0x8000 != 0,
            ecs,
            cookie,
        });
    }
    Ok(Query {
        id,
        opcode,
        rd: flags & 0x0100 != 0,
        cd: flags & 0x0010 != 0,
        question: &pkt[12..qend],
        qname,
        qname_len,
        qtype,
        qclass,
        edns,
        tsig,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecs_rules() {
        // 192.0.2.0/24
        let e = parse_ecs(&[0, 1, 24, 0, 192, 0, 2]).unwrap();
        assert_eq!(e.addr, "192.0.2.0".parse::<IpAddr>().unwrap());
        // Family 3.
        assert!(parse_ecs(&[0, 3, 24, 0, 192, 0, 2]).is_none());
        // /33 for IPv4.
        assert!(parse_ecs(&[0, 1, 33, 0, 1, 2, 3, 4, 5]).is_none());
        // Too many address bytes for /24.
        assert!(parse_ecs(&[0, 1, 24, 0, 192, 0, 2, 0]).is_none());
        // Bits set beyond /23.
        assert!(parse_ecs(&[0, 1, 23, 0, 192, 0, 3]).is_none());
        // /0 with no address bytes is valid.
        assert_eq!(parse_ecs(&[0, 2, 0, 0]).unwrap().source_prefix, 0);
        assert!(parse_ecs(&[0, 1]).is_none());
    }
}
