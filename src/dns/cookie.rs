//! DNS Cookies (RFC 7873) with the interoperable server cookie of RFC 9018.
//!
//! A server cookie is version 1, three reserved bytes, a 32-bit timestamp and a SipHash-2-4 of
//! the client cookie, those eight bytes and the client's address, keyed with our secret. A
//! client that returns a cookie we made for its address proves it receives our answers, so it
//! cannot be spoofing its source: such queries are exempt from response rate limiting.

use std::hash::Hasher;
use std::net::IpAddr;

use siphasher::sip::SipHasher24;

/// The client cookie and, when present, the server cookie as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cookie {
    pub client: [u8; 8],
    pub server: [u8; 32],
    /// 0 when the client sent only its own cookie.
    pub server_len: u8,
}

impl Cookie {
    /// Parses a COOKIE option body; None if its length is not one RFC 7873 5.2.2 allows (the
    /// query then gets FORMERR).
    pub fn parse(data: &[u8]) -> Option<Cookie> {
        if data.len() != 8 && !(16..=40).contains(&data.len()) {
            return None;
        }
        let mut c = Cookie {
            client: [0; 8],
            server: [0; 32],
            server_len: (data.len() - 8) as u8,
        };
        c.client.copy_from_slice(&data[..8]);
        c.server[..data.len() - 8].copy_from_slice(&data[8..]);
        Some(c)
    }

    fn server(&self) -> &[u8] {
        &self.server[..self.server_len as usize]
    }
}

/// How far a cookie's timestamp may lie in the past, and in the future (RFC 9018 4.3).
const MAX_AGE: u32 = 3600;
const MAX_AHEAD: u32 = 300;

fn hash(secret: &[u8; 16], client: &[u8; 8], head: &[u8; 8], ip: IpAddr) -> [u8; 8] {
    let mut h = SipHasher24::new_with_key(secret);
    h.write(client);
    h.write(head);
    match ip {
        IpAddr::V4(a) => h.write(&a.octets()),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => h.write(&v4.octets()),
            None => h.write(&a.octets()),
        },
    }
    // RFC 9018 writes the 64-bit SipHash output in little-endian byte order.
    h.finish().to_le_bytes()
}

/// A fresh server cookie for this client cookie and address at `now` (Unix seconds).
pub fn make(secret: &[u8; 16], client: &[u8; 8], ip: IpAddr, now: u32) -> [u8; 16] {
    let mut head = [1u8, 0, 0, 0, 0, 0, 0, 0];
    head[4..].copy_from_slice(&now.to_be_bytes());
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&head);
    out[8..].copy_from_slice(&hash(secret, client, &head, ip));
    out
}

/// True if the query's server cookie is one we made for this client and it is still fresh.
pub fn is_valid(secret: &[u8; 16], c: &Cookie, ip: IpAddr, now: u32) -> bool {
    let s = c.server();
    if s.len() != 16 || s[0] != 1 {
        return false;
    }
    let ts = u32::from_be_bytes([s[4], s[5], s[6], s[7]]);
    // Serial-number arithmetic (RFC 1982): the timestamp wraps in 2106.
    let age = now.wrapping_sub(ts);
    let fresh = age <= MAX_AGE || ts.wrapping_sub(now) <= MAX_AHEAD;
    if !fresh {
        return false;
    }
    let mut head = [0u8; 8];
    head.copy_from_slice(&s[..8]);
    hash(secret, &c.client, &head, ip) == s[8..16]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 9018 Appendix A.1: learning a new server cookie.
    #[test]
    fn rfc9018_vector() {
        let secret: [u8; 16] = hex("e5e973e5a6b2a43f48e7dc849e37bfcf").try_into().unwrap();
        let client: [u8; 8] = hex("2464c4abcf10c957").try_into().unwrap();
        let ip: IpAddr = "198.51.100.100".parse().unwrap();
        let made = make(&secret, &client, ip, 1559731985);
        assert_eq!(made.to_vec(), hex("010000005cf79f111f8130c3eee29480"));
        let mut opt = client.to_vec();
        opt.extend_from_slice(&made);
        let c = Cookie::parse(&opt).unwrap();
        assert!(is_valid(&secret, &c, ip, 1559731985 + 10));
        // Another address, an old timestamp, a flipped bit: not valid.
        assert!(!is_valid(
            &secret,
            &c,
            "198.51.100.101".parse().unwrap(),
            1559731985
        ));
        assert!(!is_valid(&secret, &c, ip, 1559731985 + 7200));
        let mut bad = c;
        bad.server[15] ^= 1;
        assert!(!is_valid(&secret, &bad, ip, 1559731985));
        // Lengths RFC 7873 allows: 8, or 16 to 40.
        assert!(Cookie::parse(&[0; 8]).is_some());
        assert!(Cookie::parse(&[0; 12]).is_none());
        assert!(Cookie::parse(&[0; 41]).is_none());
    }
}
