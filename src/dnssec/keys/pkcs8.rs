//! Just enough DER to take the private scalar out of the PKCS#8 document ring makes for a new
//! P-256 key: BIND's `.private` file holds the bare scalar, and ring has no other way to give
//! it out.

/// One DER element at the start of `input`: its tag, its contents and what follows it.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        // Long form: the low bits count the length bytes; two are plenty for a key.
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 2 {
            return None;
        }
        let (bytes, rest) = rest.split_at_checked(count)?;
        let len = bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b));
        (len, rest)
    };
    let (contents, after) = rest.split_at_checked(len)?;
    Some((tag, contents, after))
}

const DER_INTEGER: u8 = 0x02;
const DER_OCTET_STRING: u8 = 0x04;
const DER_SEQUENCE: u8 = 0x30;

/// The 32-byte private scalar of a P-256 key in a PKCS#8 document (RFC 5208):
/// PrivateKeyInfo ::= SEQUENCE { version INTEGER, algorithm SEQUENCE, privateKey OCTET STRING
/// }, whose OCTET STRING holds ECPrivateKey ::= SEQUENCE { version INTEGER (1), privateKey
/// OCTET STRING, ... } (RFC 5915).
pub(super) fn ec_private_scalar(pkcs8: &[u8]) -> Option<&[u8]> {
    fn expect(want: u8, input: &[u8]) -> Option<(&[u8], &[u8])> {
        let (tag, contents, after) = der(input)?;
        (tag == want).then_some((contents, after))
    }
    let (info, _) = expect(DER_SEQUENCE, pkcs8)?;
    let (_, rest) = expect(DER_INTEGER, info)?;
    let (_, rest) = expect(DER_SEQUENCE, rest)?;
    let (ec_key, _) = expect(DER_OCTET_STRING, rest)?;
    let (ec, _) = expect(DER_SEQUENCE, ec_key)?;
    let (version, rest) = expect(DER_INTEGER, ec)?;
    if version != [1] {
        return None;
    }
    let (scalar, _) = expect(DER_OCTET_STRING, rest)?;
    (scalar.len() == 32).then_some(scalar)
}
