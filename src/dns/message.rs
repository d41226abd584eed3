//! Response assembly from pre-rendered pieces.
//!
//! The question is echoed byte for byte (so the sender's case comes back), owner names are
//! written as compression pointers into it where they share a suffix, and RDATA is copied from
//! the zone or routing table. A response that does not fit the client's limit first loses its
//! additional section (unless that holds glue a referral needs), then is cut to the header,
//! question and OPT with TC set (RFC 2181 9, RFC 6891 7).

use super::wire::{Ecs, Query, TYPE_OPT};

/// Whose name a record carries.
#[derive(Debug, Clone, Copy)]
pub enum Owner<'a> {
    /// The query name, as sent.
    QName,
    /// A lower-case wire name.
    Name(&'a [u8]),
}

#[derive(Debug, Clone, Copy)]
pub struct Rr<'a> {
    pub owner: Owner<'a>,
    pub rtype: u16,
    pub ttl: u32,
    pub rdata: &'a [u8],
}

/// Records of one section; up to 8 without touching the heap.
pub type RrList<'a> = smallvec::SmallVec<[Rr<'a>; 8]>;

/// The records of a response, by section.
#[derive(Debug, Default)]
pub struct Sections<'a> {
    pub answer: RrList<'a>,
    pub authority: RrList<'a>,
    pub additional: RrList<'a>,
    /// The additional section holds glue without which a referral is useless.
    pub glue_required: bool,
}

impl Sections<'_> {
    pub fn clear(&mut self) {
        self.answer.clear();
        self.authority.clear();
        self.additional.clear();
        self.glue_required = false;
    }
}

/// Header bits of a response.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flags {
    pub aa: bool,
    /// Full rcode; values above 15 go partly into the OPT record.
    pub rcode: u16,
}

/// The header fields a response copies from its query: the ID, and the query's flags, of
/// which the opcode, RD and CD come back.
#[derive(Debug, Clone, Copy)]
pub struct Echo {
    pub id: u16,
    pub flags: u16,
}

/// A response's content: its header flags, its records, and its OPT record when the query
/// had one.
#[derive(Debug, Clone, Copy)]
pub struct Response<'r, 't> {
    pub flags: Flags,
    pub sections: &'r Sections<'t>,
    pub opt: Option<&'r OptOut>,
}

/// The OPT record we send back when the query had one.
#[derive(Debug, Clone, Copy)]
pub struct OptOut {
    /// Our UDP payload size.
    pub payload: u16,
    /// The client's ECS option with the scope we answer for.
    pub ecs: Option<(Ecs, u8)>,
    /// The client's cookie followed by our server cookie (RFC 7873).
    pub cookie: Option<[u8; 24]>,
    /// The query's DO bit, copied back (RFC 3225 3).
    pub dnssec_ok: bool,
}

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Writes `name` (lower-case wire), pointing into the question where a suffix matches.
fn put_name(out: &mut Vec<u8>, name: &[u8], qname: &[u8]) {
    let mut o = 0;
    loop {
        let rest = &name[o..];
        if rest.len() > 1 && rest.len() <= qname.len() {
            let p = qname.len() - rest.len();
            if &qname[p..] == rest && is_boundary(qname, p) {
                put16(out, 0xC000 | (12 + p) as u16);
                return;
            }
        }
        let len = name[o] as usize;
        out.extend_from_slice(&name[o..o + 1 + len]);
        if len == 0 {
            return;
        }
        o += 1 + len;
    }
}

fn is_boundary(name: &[u8], at: usize) -> bool {
    let mut o = 0;
    while o < at {
        o += 1 + name[o] as usize;
    }
    o == at
}

pub(super) fn put_rr(out: &mut Vec<u8>, rr: &Rr<'_>, qname: &[u8]) {
    match rr.owner {
        Owner::QName => put16(out, 0xC00C),
        Owner::Name(n) => put_name(out, n, qname),
    }
    // Type, class IN, TTL and RDATA length in one write.
    let mut fixed = [0u8; 10];
    fixed[..2].copy_from_slice(&rr.rtype.to_be_bytes());
    fixed[2..4].copy_from_slice(&1u16.to_be_bytes());
    fixed[4..8].copy_from_slice(&rr.ttl.to_be_bytes());
    fixed[8..].copy_from_slice(&(rr.rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(&fixed);
    out.extend_from_slice(rr.rdata);
}

impl OptOut {
    /// Bytes [`put_opt`] writes for this record.
    pub fn wire_len(&self) -> usize {
        let ecs = self
            .ecs
            .map_or(0, |(e, _)| 8 + (e.source_prefix as usize).div_ceil(8));
        let cookie = self.cookie.map_or(0, |c| 4 + c.len());
        11 + ecs + cookie
    }
}

/// Largest OPT record we write: 11 fixed bytes, ECS (4 + 4 + 16), cookie (4 + 24).
const OPT_MAX: usize = 11 + 24 + 28;

pub(super) fn put_opt(out: &mut Vec<u8>, opt: &OptOut, rcode: u16) {
    // Assembled on the stack and appended once: one capacity check instead of one per field.
    let mut b = [0u8; OPT_MAX];
    // Owner: the root; type OPT; our payload size.
    b[1..3].copy_from_slice(&TYPE_OPT.to_be_bytes());
    b[3..5].copy_from_slice(&opt.payload.to_be_bytes());
    // Extended rcode (upper 8 bits of 12), version 0, DO; RDATA length at 9..11.
    b[5] = (rcode >> 4) as u8;
    if opt.dnssec_ok {
        b[7] = 0x80;
    }
    let mut n = 11;
    if let Some((ecs, scope)) = opt.ecs {
        let len = (ecs.source_prefix as usize).div_ceil(8);
        b[n..n + 2].copy_from_slice(&super::wire::OPTION_ECS.to_be_bytes());
        b[n + 2..n + 4].copy_from_slice(&((4 + len) as u16).to_be_bytes());
        b[n + 4..n + 6].copy_from_slice(&ecs.family.to_be_bytes());
        b[n + 6] = ecs.source_prefix;
        b[n + 7] = scope;
        n += 8;
        match ecs.addr {
            std::net::IpAddr::V4(a) => b[n..n + len].copy_from_slice(&a.octets()[..len]),
            std::net::IpAddr::V6(a) => b[n..n + len].copy_from_slice(&a.octets()[..len]),
        }
        n += len;
    }
    if let Some(c) = &opt.cookie {
        b[n..n + 2].copy_from_slice(&super::wire::OPTION_COOKIE.to_be_bytes());
        b[n + 2..n + 4].copy_from_slice(&(c.len() as u16).to_be_bytes());
        b[n + 4..n + 4 + c.len()].copy_from_slice(c);
        n += 4 + c.len();
    }
    b[9..11].copy_from_slice(&((n - 11) as u16).to_be_bytes());
    out.extend_from_slice(&b[..n]);
}

/// Writes the header for a response to the query `req` echoes.
pub fn put_header(out: &mut Vec<u8>, req: Echo, flags: Flags, tc: bool, counts: [u16; 4]) {
    let Echo {
        id,
        flags: req_flags,
    } = req;
    out.clear();
    // QR, opcode echoed, AA, TC, RD echoed; RA clear; CD echoed; rcode low bits.
    let mut f: u16 = 0x8000 | (req_flags & 0x7800) | (req_flags & 0x0100) | (req_flags & 0x0010);
    if flags.aa {
        f |= 0x0400;
    }
    if tc {
        f |= 0x0200;
    }
    f |= flags.rcode & 0xF;
    let mut h = [0u8; 12];
    h[..2].copy_from_slice(&id.to_be_bytes());
    h[2..4].copy_from_slice(&f.to_be_bytes());
    for (i, c) in counts.iter().enumerate() {
        h[4 + 2 * i..6 + 2 * i].copy_from_slice(&c.to_be_bytes());
    }
    out.extend_from_slice(&h);
}

/// Assembles a full response to `q` (whose flags are `req_flags`) into `out`, in at most
/// `limit` bytes. Returns true if it had to be truncated.
pub fn write_response(
    out: &mut Vec<u8>,
    q: &Query<'_>,
    req_flags: u16,
    response: &Response<'_, '_>,
    limit: usize,
) -> bool {
    let Response {
        flags,
        sections,
        opt,
    } = *response;
    let req = Echo {
        id: q.id,
        flags: req_flags,
    };
    let qname = q.qname();
    let write = |out: &mut Vec<u8>, additional: bool, records: bool| {
        let (an, ns, ar) = if records {
            (
                sections.answer.len(),
                sections.authority.len(),
                if additional {
                    sections.additional.len()
                } else {
                    0
                },
            )
        } else {
            (0, 0, 0)
        };
        let counts = [
            1,
            an as u16,
            ns as u16,
            (ar + opt.is_some() as usize) as u16,
        ];
        put_header(out, req, flags, !records, counts);
        out.extend_from_slice(q.question);
        if records {
            for rr in sections.answer.iter().chain(&sections.authority) {
                put_rr(out, rr, qname);
            }
            if additional {
                for rr in &sections.additional {
                    put_rr(out, rr, qname);
                }
            }
        }
        if let Some(o) = opt {
            put_opt(out, o, flags.rcode);
        }
    };
    write(out, true, true);
    if out.len() <= limit {
        return false;
    }
    if !sections.additional.is_empty() && !sections.glue_required {
        write(out, false, true);
        if out.len() <= limit {
            return false;
        }
    }
    write(out, false, false);
    true
}

/// A reply that echoes the header (and the question, if it parsed) with an error rcode.
pub fn write_error(
    out: &mut Vec<u8>,
    req: Echo,
    rcode: u16,
    question: Option<&[u8]>,
    opt: Option<&OptOut>,
) {
    let counts = [question.is_some() as u16, 0, 0, opt.is_some() as u16];
    put_header(out, req, Flags { aa: false, rcode }, false, counts);
    if let Some(q) = question {
        out.extend_from_slice(q);
    }
    if let Some(o) = opt {
        put_opt(out, o, rcode);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::wire::Ecs;

    #[test]
    fn opt_length_is_what_is_written() {
        let ecs = |prefix: u8, addr: &str| Ecs {
            family: if addr.contains(':') { 2 } else { 1 },
            source_prefix: prefix,
            addr: addr.parse().unwrap(),
        };
        for (e, cookie) in [
            (None, None),
            (Some((ecs(24, "192.0.2.0"), 20)), None),
            (Some((ecs(0, "0.0.0.0"), 0)), Some([7u8; 24])),
            (Some((ecs(56, "2001:db8::"), 48)), Some([1u8; 24])),
        ] {
            let opt = OptOut {
                payload: 1232,
                ecs: e,
                cookie,
                dnssec_ok: true,
            };
            let mut out = Vec::new();
            put_opt(&mut out, &opt, 0);
            assert_eq!(opt.wire_len(), out.len(), "{opt:?}");
        }
    }
}
