//! The abuse-protection parts of the config: `[rate-limit]` (RRL), `[cookies]` (RFC 7873
//! server cookies) and `[transfer]` (who may AXFR/IXFR, and the TSIG key they must sign with).

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use toml::Spanned;

use super::{Validator, defaults, parse_network, raw};

/// Response rate limiting as Knot and BIND do it: identical responses to one client network
/// are limited per second, and every `slip`-th limited response is sent truncated (TC) so that
/// a real client behind a spoofed flood retries over TCP.
#[derive(Debug, Clone)]
pub struct RateLimit {
    pub enabled: bool,
    pub responses_per_second: u32,
    /// 0: drop every limited response; 1: truncate every one; n: truncate one in n.
    pub slip: u32,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    /// Buckets in the table (a power of two); more means fewer unrelated flows share one.
    pub table_size: usize,
    /// Client networks never limited (e.g. your own resolvers or monitoring); loopback by
    /// default.
    pub exempt: Vec<IpNet>,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            enabled: defaults::RATE_LIMIT_ENABLED,
            responses_per_second: defaults::RATE_LIMIT_RESPONSES_PER_SECOND,
            slip: defaults::RATE_LIMIT_SLIP,
            ipv4_prefix: defaults::RATE_LIMIT_IPV4_PREFIX,
            ipv6_prefix: defaults::RATE_LIMIT_IPV6_PREFIX,
            table_size: defaults::RATE_LIMIT_TABLE_SIZE,
            exempt: defaults::RATE_LIMIT_EXEMPT.to_vec(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Cookies {
    /// Server secret (16 bytes). None: a random one per process, so cookies do not survive a
    /// restart; set it (the same on every server of an anycast group) when they should.
    pub secret: Option<[u8; 16]>,
}

/// TSIG algorithms we sign and verify with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsigAlgorithm {
    HmacSha256,
    HmacSha512,
}

impl TsigAlgorithm {
    /// The algorithm's name as it appears in a TSIG record (RFC 8945 6).
    pub fn name(self) -> &'static str {
        match self {
            TsigAlgorithm::HmacSha256 => "hmac-sha256",
            TsigAlgorithm::HmacSha512 => "hmac-sha512",
        }
    }
}

#[derive(Debug, Clone)]
pub struct TsigKey {
    /// Key name, lower-case, without the trailing dot.
    pub name: String,
    pub algorithm: TsigAlgorithm,
    pub secret: Vec<u8>,
}

/// Zone transfers: refused for everyone unless listed.
#[derive(Debug, Clone)]
pub struct Transfer {
    pub allow: Vec<IpNet>,
    /// Secondaries told of every change to a zone's content (RFC 1996 NOTIFY), signed with
    /// `tsig` when it is set.
    pub notify: Vec<SocketAddr>,
    /// Versions of each zone kept for IXFR (RFC 1995): a secondary holding one of them gets
    /// only the differences.
    pub ixfr_journal: usize,
    /// When set, an allowed client must also sign with this key.
    pub tsig: Option<TsigKey>,
}

impl Default for Transfer {
    fn default() -> Self {
        Transfer {
            allow: Vec::new(),
            notify: Vec::new(),
            ixfr_journal: defaults::IXFR_JOURNAL,
            tsig: None,
        }
    }
}

impl Validator<'_> {
    pub(super) fn networks(&mut self, list: Vec<Spanned<String>>, key: &str) -> Vec<IpNet> {
        let mut out = Vec::new();
        for n in list {
            match parse_network(n.get_ref()) {
                Ok(net) => out.push(net),
                Err(e) => self.err(&n, key, e.to_string()),
            }
        }
        out
    }

    pub(super) fn rate_limit(&mut self, raw: Option<raw::RawRateLimit>) -> RateLimit {
        let d = RateLimit::default();
        let Some(raw) = raw else {
            return d;
        };
        let mut rps = d.responses_per_second;
        if let Some(r) = raw.responses_per_second {
            if *r.get_ref() == 0 || *r.get_ref() > 1_000_000 {
                self.err(
                    &r,
                    "rate-limit.responses-per-second",
                    "must be between 1 and 1000000 (turn limiting off with enabled = false)",
                );
            } else {
                rps = *r.get_ref();
            }
        }
        let mut prefix = |v: Option<Spanned<u8>>, max: u8, key: &str, default: u8| match v {
            Some(p) if *p.get_ref() == 0 || *p.get_ref() > max => {
                self.err(&p, key, format!("must be between 1 and {max}"));
                default
            }
            Some(p) => *p.get_ref(),
            None => default,
        };
        let ipv4_prefix = prefix(raw.ipv4_prefix, 32, "rate-limit.ipv4-prefix", d.ipv4_prefix);
        let ipv6_prefix = prefix(
            raw.ipv6_prefix,
            128,
            "rate-limit.ipv6-prefix",
            d.ipv6_prefix,
        );
        let mut table_size = d.table_size;
        if let Some(t) = raw.table_size {
            let v = *t.get_ref();
            if !(1024..=1 << 24).contains(&v) || !v.is_power_of_two() {
                self.err(
                    &t,
                    "rate-limit.table-size",
                    "must be a power of two between 1024 and 16777216",
                );
            } else {
                table_size = v;
            }
        }
        RateLimit {
            enabled: raw.enabled.unwrap_or(d.enabled),
            responses_per_second: rps,
            slip: raw.slip.map(|s| s.into_inner()).unwrap_or(d.slip),
            ipv4_prefix,
            ipv6_prefix,
            table_size,
            exempt: match raw.exempt {
                Some(list) => self.networks(list, "rate-limit.exempt"),
                None => d.exempt,
            },
        }
    }

    pub(super) fn cookies(&mut self, raw: Option<raw::RawCookies>) -> Cookies {
        let Some(s) = raw.and_then(|r| r.secret) else {
            return Cookies::default();
        };
        match hex16(s.get_ref()) {
            Some(k) => Cookies { secret: Some(k) },
            None => {
                self.err(
                    &s,
                    "cookies.secret",
                    "expected 32 hexadecimal digits (16 bytes), e.g. from `openssl rand -hex 16`",
                );
                Cookies::default()
            }
        }
    }

    pub(super) fn transfer(&mut self, raw: Option<raw::RawTransfer>) -> Transfer {
        let Some(raw) = raw else {
            return Transfer::default();
        };
        let raw::RawTransfer {
            allow,
            notify,
            ixfr_journal,
            tsig,
        } = raw;
        let ixfr_journal = match ixfr_journal {
            None => defaults::IXFR_JOURNAL,
            Some(n) => match usize::try_from(*n.get_ref()) {
                Ok(v) if v <= 1000 => v,
                _ => {
                    self.err(
                        &n,
                        "transfer.ixfr-journal",
                        "expected a number of versions from 0 (no IXFR) to 1000",
                    );
                    defaults::IXFR_JOURNAL
                }
            },
        };
        let allow = self.networks(allow, "transfer.allow");
        let notify = notify
            .into_iter()
            .filter_map(|a| match notify_address(a.get_ref()) {
                Some(addr) => Some(addr),
                None => {
                    self.err(
                        &a,
                        "transfer.notify",
                        format!(
                            "`{}` is not an address: expected \"192.0.2.54:53\", \"[2001:db8::54]:53\" or a bare IP (port 53)",
                            a.get_ref()
                        ),
                    );
                    None
                }
            })
            .collect();
        let tsig = tsig.and_then(|k| self.tsig_key(k));
        Transfer {
            allow,
            notify,
            ixfr_journal,
            tsig,
        }
    }

    fn tsig_key(&mut self, raw: Spanned<raw::RawTsig>) -> Option<TsigKey> {
        let k = raw.get_ref();
        let name = k.name.get_ref().trim_end_matches('.').to_ascii_lowercase();
        let mut ok = true;
        if name.is_empty() || crate::zone::Name::from_text(&name).is_none() {
            self.err(
                &k.name,
                "transfer.tsig.name",
                "expected a domain name such as \"xfr-key\"",
            );
            ok = false;
        }
        let algorithm = match &k.algorithm {
            None => defaults::TSIG_ALGORITHM,
            Some(a) if a.get_ref() == "hmac-sha256" => TsigAlgorithm::HmacSha256,
            Some(a) if a.get_ref() == "hmac-sha512" => TsigAlgorithm::HmacSha512,
            Some(a) => {
                self.err(
                    a,
                    "transfer.tsig.algorithm",
                    format!(
                        "`{}` is not supported: expected \"hmac-sha256\" or \"hmac-sha512\"",
                        a.get_ref()
                    ),
                );
                ok = false;
                TsigAlgorithm::HmacSha256
            }
        };
        use base64::Engine;
        let secret = match base64::engine::general_purpose::STANDARD.decode(k.secret.get_ref()) {
            Ok(s) if s.len() >= 16 => s,
            Ok(_) => {
                self.err(
                    &k.secret,
                    "transfer.tsig.secret",
                    "is shorter than 16 bytes: use e.g. `openssl rand -base64 32`",
                );
                ok = false;
                Vec::new()
            }
            Err(_) => {
                self.err(
                    &k.secret,
                    "transfer.tsig.secret",
                    "is not base64: use e.g. `openssl rand -base64 32`",
                );
                ok = false;
                Vec::new()
            }
        };
        ok.then_some(TsigKey {
            name,
            algorithm,
            secret,
        })
    }
}

/// A secondary's address: "ip:port", or a bare IP meaning port 53.
fn notify_address(s: &str) -> Option<SocketAddr> {
    let s = s.trim();
    s.parse::<SocketAddr>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
        .filter(|a| a.port() != 0)
}

fn hex16(s: &str) -> Option<[u8; 16]> {
    let s = s.trim();
    if s.len() != 32 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}
