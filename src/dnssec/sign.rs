//! One RRSIG over one RRset: the to-be-signed bytes come from hickory-proto's canonical form
//! (RFC 4034 6: lower-case owner and embedded names, records in canonical order), the
//! signature from the key, and the RRSIG RDATA is written here in wire form, ready to copy
//! into answers.

use std::cmp::Ordering;

use hickory_proto::ProtoError;
use hickory_proto::dnssec::rdata::sig::SigInput;
use hickory_proto::dnssec::{Algorithm, TBS};
use hickory_proto::rr::{DNSClass, Name as HName, RData, Record, RecordType, SerialNumber};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, Restrict};

use super::keys::{Key, KeyError};
use crate::zone::name::{label_count, suffixes};

pub const TYPE_RRSIG: u16 = 46;
pub const TYPE_NSEC: u16 = 47;
pub const TYPE_DNSKEY: u16 = 48;
pub const TYPE_CDS: u16 = 59;
pub const TYPE_CDNSKEY: u16 = 60;

/// When a signature is valid, in seconds since the epoch (RFC 4034 3.1.5: serial arithmetic
/// on 32 bits, which `as u32` gives).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub inception: u32,
    pub expiration: u32,
}

/// Why an RRset could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("record data of type {rtype} does not parse: {source}")]
    Rdata { rtype: u16, source: ProtoError },
    #[error("canonical form: {0}")]
    Canonical(ProtoError),
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// An RRset to sign: owner (lower-case wire; a wildcard's own name for wildcard records),
/// type, TTL as served in the zone, and RDATA in wire form.
#[derive(Debug, Clone, Copy)]
pub struct SetRef<'a> {
    pub owner: &'a [u8],
    pub rtype: u16,
    pub ttl: u32,
    pub rdatas: &'a [Box<[u8]>],
}

/// The RRSIG RDATA for `set` by `key`, valid over `window`.
pub fn rrsig(key: &Key, set: SetRef<'_>, window: Window) -> Result<Box<[u8]>, SignError> {
    let owner = hickory_name(set.owner)?;
    let rtype = RecordType::from(set.rtype);
    let mut records = Vec::with_capacity(set.rdatas.len());
    for d in set.rdatas {
        let mut dec = BinDecoder::new(d);
        let rdata = RData::read(&mut dec, rtype, Restrict::new(d.len() as u16)).map_err(|e| {
            SignError::Rdata {
                rtype: set.rtype,
                source: ProtoError::from(e),
            }
        })?;
        records.push(Record::from_rdata(owner.clone(), set.ttl, rdata));
    }
    let input = SigInput {
        type_covered: rtype,
        algorithm: Algorithm::from_u8(key.algorithm),
        num_labels: labels(set.owner),
        original_ttl: set.ttl,
        sig_expiration: SerialNumber::from(window.expiration),
        sig_inception: SerialNumber::from(window.inception),
        key_tag: key.tag,
        signer_name: hickory_name(key.owner.wire())?,
    };
    let tbs = TBS::from_input(&owner, DNSClass::IN, &input, records.iter())
        .map_err(SignError::Canonical)?;
    let signature = key.sign(tbs.as_ref())?;
    let mut out = Vec::with_capacity(18 + key.owner.wire().len() + signature.len());
    out.extend_from_slice(&set.rtype.to_be_bytes());
    out.push(key.algorithm);
    out.push(input.num_labels);
    out.extend_from_slice(&set.ttl.to_be_bytes());
    out.extend_from_slice(&window.expiration.to_be_bytes());
    out.extend_from_slice(&window.inception.to_be_bytes());
    out.extend_from_slice(&key.tag.to_be_bytes());
    out.extend_from_slice(key.owner.wire());
    out.extend_from_slice(&signature);
    Ok(out.into_boxed_slice())
}

/// The RRSIG labels field: the owner's labels, a leading `*` not counted (RFC 4034 3.1.3).
pub fn labels(owner: &[u8]) -> u8 {
    let n = label_count(owner);
    if owner.starts_with(&[1, b'*']) {
        (n - 1) as u8
    } else {
        n as u8
    }
}

fn hickory_name(wire: &[u8]) -> Result<HName, SignError> {
    let mut dec = BinDecoder::new(wire);
    HName::read(&mut dec).map_err(|e| SignError::Canonical(ProtoError::from(e)))
}

/// RFC 4034 6.1 canonical order of two lower-case wire names: label by label from the
/// root, each label compared as an octet string. No allocation: denial answers binary-search
/// with it on the query path.
pub fn canonical_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut oa, mut ob) = ([0u8; 128], [0u8; 128]);
    let na = label_offsets(a, &mut oa);
    let nb = label_offsets(b, &mut ob);
    for (&x, &y) in oa[..na].iter().rev().zip(ob[..nb].iter().rev()) {
        let (x, y) = (x as usize, y as usize);
        let lx = &a[x + 1..x + 1 + a[x] as usize];
        let ly = &b[y + 1..y + 1 + b[y] as usize];
        match lx.cmp(ly) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    na.cmp(&nb)
}

/// Offsets of the non-root labels of a wire name (at most 127, each under 255), in order.
fn label_offsets(wire: &[u8], out: &mut [u8; 128]) -> usize {
    let mut n = 0;
    for o in suffixes(wire) {
        if wire[o] == 0 || n == out.len() {
            break;
        }
        out[n] = o as u8;
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::Name;

    fn w(s: &str) -> Name {
        Name::from_text(s).unwrap()
    }

    #[test]
    fn canonical_order_is_rfc_4034_example() {
        // RFC 4034 6.1's example, in its order (escaped labels left out).
        let names = [
            "example",
            "a.example",
            "yljkjljk.a.example",
            "z.a.example",
            "zabc.a.example",
            "z.example",
            "*.z.example",
        ];
        // `\001.z.example` and `\200.z.example` sort between; our names only hold what a zone
        // file's text gives, and `*` (0x2a) sorts after `z`'s shorter sibling list here.
        let mut sorted: Vec<Name> = names.iter().map(|n| w(n)).collect();
        sorted.sort_by(|a, b| canonical_cmp(a.wire(), b.wire()));
        let got: Vec<String> = sorted.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            got,
            [
                "example.",
                "a.example.",
                "yljkjljk.a.example.",
                "z.a.example.",
                "zabc.a.example.",
                "z.example.",
                "*.z.example.",
            ]
        );
        assert_eq!(
            canonical_cmp(w("b.example").wire(), w("a.b.example").wire()),
            Ordering::Less
        );
    }

    #[test]
    fn wildcard_labels_leave_out_the_star() {
        assert_eq!(labels(w("*.example.com").wire()), 2);
        assert_eq!(labels(w("www.example.com").wire()), 3);
        assert_eq!(labels(Name::ROOT), 0);
    }
}
