//! The NSEC chain of a signed zone (RFC 4034 4, RFC 4035 3.1.3): every name that owns data,
//! in canonical order, each pointing at the next and listing its types. Denial answers pick
//! the record that matches or covers a name with a binary search.

use std::cmp::Ordering;

use super::sign::{TYPE_NSEC, TYPE_RRSIG, canonical_cmp};
use crate::zone::Name;

/// An NSEC type bitmap (RFC 4034 4.1.2) for `types`, which need not be sorted.
pub fn bitmap(types: &[u16]) -> Vec<u8> {
    let mut t = types.to_vec();
    t.sort_unstable();
    t.dedup();
    let mut out = Vec::new();
    let mut i = 0;
    while i < t.len() {
        let window = (t[i] >> 8) as u8;
        let mut bits = [0u8; 32];
        let mut len = 0;
        while i < t.len() && (t[i] >> 8) as u8 == window {
            let low = (t[i] & 0xff) as usize;
            bits[low / 8] |= 0x80 >> (low % 8);
            len = low / 8 + 1;
            i += 1;
        }
        out.push(window);
        out.push(len as u8);
        out.extend_from_slice(&bits[..len]);
    }
    out
}

/// NSEC RDATA: the next owner name, then the bitmap of `types` plus RRSIG and NSEC.
pub fn rdata(next: &[u8], types: &[u16]) -> Box<[u8]> {
    let mut all = types.to_vec();
    all.extend([TYPE_RRSIG, TYPE_NSEC]);
    let mut v = next.to_vec();
    v.extend(bitmap(&all));
    v.into_boxed_slice()
}

/// The position in a canonical-order list of owners of the entry that matches `name`
/// (`Ok`) or covers it, that is the last one before it (`Err`; the apex when nothing else
/// comes before, since every name of a zone sorts after its apex).
pub fn find<T>(entries: &[T], owner: impl Fn(&T) -> &[u8], name: &[u8]) -> Result<usize, usize> {
    match entries.binary_search_by(|e| canonical_cmp(owner(e), name)) {
        Ok(i) => Ok(i),
        Err(0) => Err(0),
        Err(i) => Err(i - 1),
    }
}

/// Sorts names into canonical order.
pub fn sort(names: &mut [Name]) {
    names.sort_by(|a, b| canonical_cmp(a.wire(), b.wire()));
}

/// True if `a` sorts before `b`.
pub fn before(a: &[u8], b: &[u8]) -> bool {
    canonical_cmp(a, b) == Ordering::Less
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_matches_rfc_4034_example() {
        // RFC 4034 4.3: A MX RRSIG NSEC TYPE1234.
        let b = bitmap(&[1, 15, 46, 47, 1234]);
        // Window 0: A (1), MX (15), RRSIG (46), NSEC (47); window 4: type 1234, bit 210.
        let mut want = vec![0x00, 0x06, 0x40, 0x01, 0x00, 0x00, 0x00, 0x03, 0x04, 0x1b];
        want.extend([0u8; 26]);
        want.push(0x20);
        assert_eq!(b, want);
    }

    #[test]
    fn find_matches_or_covers() {
        let mut names: Vec<Name> = ["example", "a.example", "z.example", "*.z.example"]
            .iter()
            .map(|n| Name::from_text(n).unwrap())
            .collect();
        sort(&mut names);
        let f = |n: &str| find(&names, |x| x.wire(), Name::from_text(n).unwrap().wire());
        assert_eq!(f("a.example"), Ok(1));
        assert_eq!(f("b.example"), Err(1));
        assert_eq!(f("b.a.example"), Err(1));
        assert_eq!(f("zz.example"), Err(3));
        assert_eq!(f("example"), Ok(0));
    }
}
