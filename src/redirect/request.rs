//! What a request asks for, as pure functions of its parts: the file path (decoded and
//! checked), the client's address (the peer, or what a trusted proxy says), and whether a
//! range request counts as a download.

use std::borrow::Cow;
use std::net::IpAddr;

use ipnet::IpNet;

/// Longest path accepted, in bytes as sent (before decoding).
pub const MAX_PATH: usize = 1024;

/// Why a request was refused before routing; the label of
/// `mirrordns_redirect_rejected_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// A `.` or `..` segment, an empty segment, a backslash or a NUL.
    Traversal,
    TooLong,
    BadEncoding,
    NoHost,
    ForeignHost,
    /// `Forwarded` / `X-Forwarded-For` from a peer not in `trusted-proxies`: ignored, counted.
    UntrustedForwarded,
    Method,
}

impl Reject {
    pub const ALL: [Reject; 7] = [
        Reject::Traversal,
        Reject::TooLong,
        Reject::BadEncoding,
        Reject::NoHost,
        Reject::ForeignHost,
        Reject::UntrustedForwarded,
        Reject::Method,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reject::Traversal => "traversal",
            Reject::TooLong => "too_long",
            Reject::BadEncoding => "bad_encoding",
            Reject::NoHost => "no_host",
            Reject::ForeignHost => "foreign_host",
            Reject::UntrustedForwarded => "untrusted_forwarded",
            Reject::Method => "method",
        }
    }
}

/// The file path a request names: the URL path without its leading `/`, percent-decoded,
/// checked so that it can only name a file under a base URL.
/// Borrowed when there is nothing to decode, as in almost every request.
pub fn file_path(raw: &str) -> Result<Cow<'_, str>, Reject> {
    if raw.len() > MAX_PATH {
        return Err(Reject::TooLong);
    }
    let stripped = raw.strip_prefix('/').unwrap_or(raw);
    let path = if stripped.contains('%') {
        Cow::Owned(decode(stripped)?)
    } else {
        Cow::Borrowed(stripped)
    };
    if path.contains(['\\', '\0'])
        || path
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(Reject::Traversal);
    }
    Ok(path)
}

/// Percent-decoding, to UTF-8.
fn decode(s: &str) -> Result<String, Reject> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = |b: u8| (b as char).to_digit(16);
                let (Some(h), Some(l)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(Reject::BadEncoding);
                };
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| Reject::BadEncoding)
}

/// The host a request was sent to, lower-case, without port or trailing dot.
pub fn host_name(host: &str) -> String {
    let h = if let Some(rest) = host.strip_prefix('[') {
        // An IPv6 literal: "[::1]:8080".
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    h.trim_end_matches('.').to_ascii_lowercase()
}

/// The client's address: the peer's, unless the peer is a trusted proxy, in which case the
/// nearest address in the forwarding chain that is not itself a trusted proxy (read from the
/// right, since only what trusted proxies appended can be believed). `Forwarded` (RFC 7239)
/// wins over `X-Forwarded-For`.
pub fn client_addr(
    peer: IpAddr,
    trusted: &[IpNet],
    forwarded: Option<&str>,
    x_forwarded_for: Option<&str>,
) -> Result<IpAddr, Reject> {
    let peer = canonical(peer);
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if forwarded.is_none() && x_forwarded_for.is_none() {
        return Ok(peer);
    }
    if !is_trusted(&peer) {
        return Err(Reject::UntrustedForwarded);
    }
    let chain: Vec<IpAddr> = match forwarded {
        Some(f) => forwarded_for(f),
        None => x_forwarded_for
            .unwrap_or_default()
            .split(',')
            .filter_map(|s| parse_node(s.trim()))
            .collect(),
    };
    Ok(chain
        .into_iter()
        .rev()
        .map(canonical)
        .find(|ip| !is_trusted(ip))
        .unwrap_or(peer))
}

/// An IPv4 client seen through an IPv6 socket is an IPv4 client.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The `for=` addresses of a `Forwarded` header, in order (obfuscated and unknown nodes are
/// skipped).
fn forwarded_for(header: &str) -> Vec<IpAddr> {
    header
        .split(',')
        .flat_map(|elem| elem.split(';'))
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("for")
                .then(|| parse_node(v.trim().trim_matches('"')))?
        })
        .collect()
}

/// "192.0.2.1", "192.0.2.1:4711", "[2001:db8::1]" or "[2001:db8::1]:4711", or a bare IPv6.
fn parse_node(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    s.rsplit_once(':')?.0.parse().ok()
}

/// Whether a `Range` header asks for anything but the start of the file: a resumed or
/// segmented download, counted apart from downloads.
pub fn is_partial(range: Option<&str>) -> bool {
    let Some(r) = range else { return false };
    let Some(spec) = r.trim().strip_prefix("bytes=") else {
        return false;
    };
    let first = spec.split(',').next().unwrap_or_default().trim();
    match first.split_once('-') {
        Some((start, _)) => start.trim().parse::<u64>() != Ok(0),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            file_path("/tool/v1/a.tar.gz"),
            Ok("tool/v1/a.tar.gz".into())
        );
        assert_eq!(file_path("/tool/a%20b").as_deref(), Ok("tool/a b"));
        for bad in [
            "/../etc/passwd",
            "/a/./b",
            "/a//b",
            "/a/%2e%2e/b",
            "/a\\b",
            "/a%00",
        ] {
            assert_eq!(file_path(bad).as_deref(), Err(&Reject::Traversal), "{bad}");
        }
        for bad in ["/a%zz", "/a%4", "/a%ff%fe"] {
            assert_eq!(
                file_path(bad).as_deref(),
                Err(&Reject::BadEncoding),
                "{bad}"
            );
        }
        assert_eq!(
            file_path(&"/a".repeat(600)).as_deref(),
            Err(&Reject::TooLong)
        );
        assert_eq!(file_path("/").as_deref(), Err(&Reject::Traversal));
    }

    #[test]
    fn hosts() {
        assert_eq!(host_name("Get.Example.COM:8080"), "get.example.com");
        assert_eq!(host_name("get.example.com."), "get.example.com");
        assert_eq!(host_name("[::1]:8080"), "::1");
    }

    #[test]
    fn client_addresses() {
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        let stranger: IpAddr = "198.51.100.7".parse().unwrap();
        let trusted: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        assert_eq!(client_addr(stranger, &trusted, None, None), Ok(stranger));
        assert_eq!(
            client_addr(stranger, &trusted, None, Some("81.2.69.1")),
            Err(Reject::UntrustedForwarded)
        );
        // The rightmost address a trusted proxy did not add itself.
        assert_eq!(
            client_addr(proxy, &trusted, None, Some("1.1.1.1, 81.2.69.1, 127.0.0.2")),
            Ok("81.2.69.1".parse().unwrap())
        );
        assert_eq!(
            client_addr(
                proxy,
                &trusted,
                Some("for=\"[2a02:c7c::1]:4711\";proto=https, for=127.0.0.3"),
                Some("9.9.9.9")
            ),
            Ok("2a02:c7c::1".parse().unwrap())
        );
        assert_eq!(
            client_addr(proxy, &trusted, Some("for=unknown"), None),
            Ok(proxy)
        );
        let mapped: IpAddr = "::ffff:81.2.69.1".parse().unwrap();
        assert_eq!(
            client_addr(mapped, &[], None, None),
            Ok("81.2.69.1".parse().unwrap())
        );
    }

    #[test]
    fn ranges() {
        assert!(!is_partial(None));
        assert!(!is_partial(Some("bytes=0-")));
        assert!(!is_partial(Some("bytes=0-1023, 2048-")));
        assert!(is_partial(Some("bytes=1024-")));
        assert!(is_partial(Some("bytes=-500")));
        assert!(!is_partial(Some("items=5-")));
    }
}
