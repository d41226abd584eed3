//! The SOA serial of a signed zone (`[dnssec] serial`). Secondaries transfer a zone only when
//! its serial moves forward, so whenever what a transfer carries changes (new signatures at a
//! refresh included) the served serial must move, in RFC 1982 serial arithmetic.

/// `dnssec.serial`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SerialPolicy {
    /// The zone file's serial, always: the operator moves it (secondaries miss re-signing).
    Keep,
    /// One more than the last served serial at every change, never below the zone file's.
    Increment,
    /// The time in seconds since the epoch at every change (one more than the last when that
    /// is not later), never below the zone file's.
    UnixTime,
}

impl SerialPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            SerialPolicy::Keep => "keep",
            SerialPolicy::Increment => "increment",
            SerialPolicy::UnixTime => "unixtime",
        }
    }

    pub fn parse(s: &str) -> Option<SerialPolicy> {
        [
            SerialPolicy::Keep,
            SerialPolicy::Increment,
            SerialPolicy::UnixTime,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }
}

/// RFC 1982: true if `a` is greater than `b` in 32-bit serial arithmetic.
pub fn greater(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 1 << 31
}

/// The larger of two serials in serial arithmetic.
fn max(a: u32, b: u32) -> u32 {
    if greater(b, a) { b } else { a }
}

/// The serial to serve: `previous` is the last served serial and the content digest it was
/// served with (None at start), `content` the digest now, `file` the zone file's serial.
pub fn decide(
    policy: SerialPolicy,
    previous: Option<(u32, u64)>,
    content: u64,
    file: u32,
    now: u64,
) -> u32 {
    let Some((last, last_content)) = previous else {
        return match policy {
            SerialPolicy::UnixTime => max(file, now as u32),
            _ => file,
        };
    };
    if policy == SerialPolicy::Keep {
        return file;
    }
    if last_content == content {
        // Unchanged content; a zone file whose serial was raised by hand still counts.
        return max(last, file);
    }
    let next = last.wrapping_add(1);
    let candidate = match policy {
        SerialPolicy::UnixTime => max(next, now as u32),
        _ => next,
    };
    max(candidate, file)
}

/// SOA RDATA with its serial replaced (the RDATA is two uncompressed names, then the serial).
pub fn with_serial(soa: &[u8], serial: u32) -> Option<Box<[u8]>> {
    let at = serial_offset(soa)?;
    let mut out = soa.to_vec();
    out.get_mut(at..at + 4)?
        .copy_from_slice(&serial.to_be_bytes());
    Some(out.into_boxed_slice())
}

/// The serial in SOA RDATA.
pub fn serial_of(soa: &[u8]) -> Option<u32> {
    let at = serial_offset(soa)?;
    let b = soa.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Where the serial starts in SOA RDATA: past MNAME and RNAME.
fn serial_offset(soa: &[u8]) -> Option<usize> {
    let mut at = 0;
    for _ in 0..2 {
        loop {
            let len = *soa.get(at)? as usize;
            at += 1 + len;
            if len == 0 {
                break;
            }
        }
    }
    Some(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use SerialPolicy::*;

    #[test]
    fn serial_arithmetic_wraps() {
        assert!(greater(1, 0));
        assert!(greater(0, u32::MAX));
        assert!(!greater(5, 5));
        assert!(!greater(1 << 31 | 5, 0));
    }

    #[test]
    fn increment_moves_on_change_only_and_never_below_the_file() {
        assert_eq!(decide(Increment, None, 7, 100, 0), 100);
        assert_eq!(decide(Increment, Some((100, 7)), 7, 100, 0), 100);
        assert_eq!(decide(Increment, Some((100, 7)), 8, 100, 0), 101);
        assert_eq!(decide(Increment, Some((101, 8)), 9, 100, 0), 102);
        // The operator raised the file's serial past ours: it wins.
        assert_eq!(decide(Increment, Some((102, 9)), 10, 500, 0), 500);
        assert_eq!(decide(Increment, Some((102, 9)), 9, 500, 0), 500);
        // Past 2^32 - 1 the serial wraps to 0, which is still after the file's.
        assert_eq!(
            decide(Increment, Some((u32::MAX, 1)), 2, u32::MAX - 10, 0),
            0
        );
    }

    #[test]
    fn unixtime_and_keep() {
        assert_eq!(decide(UnixTime, None, 1, 100, 1_800_000_000), 1_800_000_000);
        assert_eq!(
            decide(UnixTime, Some((1_800_000_000, 1)), 2, 100, 1_800_000_000),
            1_800_000_001
        );
        assert_eq!(
            decide(UnixTime, Some((1_800_000_000, 1)), 2, 100, 1_800_000_050),
            1_800_000_050
        );
        assert_eq!(decide(Keep, Some((120, 1)), 2, 100, 0), 100);
    }

    #[test]
    fn soa_serial_is_rewritten_in_place() {
        // ns1.example. hostmaster.example. 2026112701 3600 600 604800 300
        let mut soa = Vec::new();
        for n in [
            &b"\x03ns1\x07example\x00"[..],
            b"\x0ahostmaster\x07example\x00",
        ] {
            soa.extend_from_slice(n);
        }
        for v in [2_026_112_701u32, 3600, 600, 604_800, 300] {
            soa.extend_from_slice(&v.to_be_bytes());
        }
        let new = with_serial(&soa, 2_026_112_702).unwrap();
        assert_eq!(serial_of(&new), Some(2_026_112_702));
        assert_eq!(new.len(), soa.len());
        assert_eq!(new[new.len() - 16..], soa[soa.len() - 16..]);
        assert_eq!(with_serial(&soa[..10], 1), None);
    }
}
