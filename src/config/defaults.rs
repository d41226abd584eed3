//! Every default of the config file, in one place.
//!
//! The parsing code takes its defaults from here and nowhere else. Tests below check that the
//! commented-out defaults in `config/mirrordns.toml` and the configuration reference in the
//! docs say the same, so a default changed here cannot leave either behind.
//!
//! Keys that are not here have no default value: leaving them out turns something off
//! (`server.admin-state`, `health.state-file`, `transfer.allow`, ...), or the default is worked
//! out when the config is read (`server.udp-workers`, a service's `fallback`, `cookies.secret`).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::{Fallback, Policy, TsigAlgorithm, Unlisted};

// [server]

/// `server.udp-payload-max`, bytes: the largest UDP response we send. The DNS flag day 2020
/// value, which fits the common path MTU without fragments.
pub const SERVER_UDP_PAYLOAD_MAX: u16 = 1232;
/// `server.tcp-idle-timeout`: how long an idle TCP connection stays open.
pub const SERVER_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// `server.tcp-max-connections`: concurrent TCP connections across all listeners.
pub const SERVER_TCP_MAX_CONNECTIONS: usize = 1024;
/// `server.tcp-max-per-client`: concurrent TCP connections from one client address.
pub const SERVER_TCP_MAX_PER_CLIENT: usize = 16;
/// `server.udp-recv-buffer`, bytes: the receive buffer requested per UDP socket (8 MiB).
pub const SERVER_UDP_RECV_BUFFER: usize = 8 << 20;
/// `server.http-listen`: the monitoring endpoint. Loopback, so that status and on-call
/// actions are not reachable from the network unless asked for.
pub const SERVER_HTTP_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9153));
/// `server.watch-zones`: whether a changed zone file reloads by itself.
pub const SERVER_WATCH_ZONES: bool = false;

/// `server.udp-workers`, threads per listen address: one per CPU this process may run on
/// (`available_parallelism` honours CPU affinity, so `taskset -c 0` means one worker).
pub fn server_udp_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

// [[redirect]]

/// `redirect.unlisted`: a path in no manifest gets 404, not a redirect to the origin.
pub const REDIRECT_UNLISTED: Unlisted = Unlisted::NotFound;
/// `redirect.max-connections`: concurrent connections per redirector; past it, the one idle
/// longest is closed, as on the DNS TCP side.
pub const REDIRECT_MAX_CONNECTIONS: usize = 4096;
/// `redirect.idle-timeout`: how long a connection may wait for (or sit between) requests.
pub const REDIRECT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

// [geo]

/// `geo.watch`: whether a replaced database file reloads by itself.
pub const GEO_WATCH: bool = true;

// [[service]]

/// `service.policy`: order mirrors by distance from the client.
pub const SERVICE_POLICY: Policy = Policy::Nearest;
/// `service.ttl`, seconds: the TTL of geo answers.
pub const SERVICE_TTL: u32 = 30;
/// `service.answers`: mirrors per answer.
pub const SERVICE_ANSWERS: usize = 1;
/// `service.lag-grace`: how long a mirror still verified for the previous release stays
/// routable (none: it leaves the answers as soon as it lags).
pub const SERVICE_LAG_GRACE: Duration = Duration::ZERO;

/// `service.fallback`: the origin's own addresses when it has some to answer with, else the
/// mirrors that are up.
pub fn service_fallback(origin_has_addresses: bool) -> Fallback {
    if origin_has_addresses {
        Fallback::Origin
    } else {
        Fallback::Live
    }
}

// [[mirror]]

/// `mirror.drained`: whether the mirror is out of every answer.
pub const MIRROR_DRAINED: bool = false;

// [health]

/// `health.interval`: the period of liveness probes and manifest fetches.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(10);
/// `health.timeout`: per probe request.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);
/// `health.rise`: consecutive good probes before a down mirror is up again.
pub const HEALTH_RISE: u32 = 2;
/// `health.fall`: consecutive failed probes before an up mirror is down.
pub const HEALTH_FALL: u32 = 3;
/// `health.reverify`: the period of full re-verification (6 hours).
pub const HEALTH_REVERIFY: Duration = Duration::from_secs(6 * 3600);
/// `health.state-max-age`: a state file older than this is ignored at start-up (1 hour).
pub const HEALTH_STATE_MAX_AGE: Duration = Duration::from_secs(3600);
/// `health.download-timeout`: time allowed for one file download during verification
/// (30 minutes).
pub const HEALTH_DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// `health.max-downloads`: concurrent file downloads across all mirrors.
pub const HEALTH_MAX_DOWNLOADS: usize = 4;

// [rate-limit]

/// `rate-limit.enabled`: response rate limiting is on unless turned off.
pub const RATE_LIMIT_ENABLED: bool = true;
/// `rate-limit.responses-per-second`: identical responses per second to one client network.
/// Conservative: a caching resolver asks for the same answer a few times per TTL, so 100 a
/// second to one /24 only happens under a flood.
pub const RATE_LIMIT_RESPONSES_PER_SECOND: u32 = 100;
/// `rate-limit.slip`: every n-th limited response goes out truncated instead of dropped.
pub const RATE_LIMIT_SLIP: u32 = 2;
/// `rate-limit.ipv4-prefix`, bits: the IPv4 client network a flow is counted over.
pub const RATE_LIMIT_IPV4_PREFIX: u8 = 24;
/// `rate-limit.ipv6-prefix`, bits: the IPv6 client network a flow is counted over.
pub const RATE_LIMIT_IPV6_PREFIX: u8 = 56;
/// `rate-limit.table-size`: buckets in the flow table (a power of two).
pub const RATE_LIMIT_TABLE_SIZE: usize = 1 << 16;
/// `rate-limit.exempt`: client networks never limited. Loopback cannot be spoofed from off the
/// host (the kernel drops such packets), and a resolver on the same host must never be
/// limited.
pub const RATE_LIMIT_EXEMPT: [IpNet; 2] = [
    IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8)),
    IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::LOCALHOST, 128)),
];

// [transfer]

/// `transfer.ixfr-journal`: versions of each zone kept for incremental transfers. A secondary
/// more versions behind gets the whole zone, as it would without IXFR.
pub const IXFR_JOURNAL: usize = 16;

// [transfer.tsig]

/// `transfer.tsig.algorithm`: the TSIG algorithm of the transfer key.
pub const TSIG_ALGORITHM: TsigAlgorithm = TsigAlgorithm::HmacSha256;

// [dnssec]

/// `dnssec.signature-validity`: how long a signature is valid from when it is made (14 days,
/// so that a server that cannot sign for a week still serves valid answers).
pub const DNSSEC_SIGNATURE_VALIDITY: Duration = Duration::from_secs(14 * 86_400);

/// `dnssec.serial`: the served SOA serial of a signed zone moves by one whenever what a transfer
/// carries changes (new signatures included), so secondaries always fetch them.
pub const DNSSEC_SERIAL: crate::dnssec::serial::SerialPolicy =
    crate::dnssec::serial::SerialPolicy::Increment;

/// `dnssec.refresh`: how often signatures are made again, half their validity, so that a
/// signature is replaced when half its life is left.
pub fn dnssec_refresh(signature_validity: Duration) -> Duration {
    signature_validity / 2
}

// [cluster]

/// `cluster.key-prefix`: before every Redis key mirrordns writes.
pub const CLUSTER_KEY_PREFIX: &str = "mirrordns:";

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::config::{parse_duration, parse_network};

    /// A default in the form the config file writes it.
    #[derive(Debug)]
    enum Expected {
        Duration(Duration),
        Integer(i64),
        Bool(bool),
        Addr(SocketAddr),
        Word(String),
        Networks(Vec<IpNet>),
    }

    impl Expected {
        fn agrees(&self, v: &toml::Value) -> bool {
            match (self, v) {
                (Expected::Duration(d), toml::Value::String(s)) => parse_duration(s) == Ok(*d),
                (Expected::Integer(i), toml::Value::Integer(n)) => i == n,
                (Expected::Bool(b), toml::Value::Boolean(x)) => b == x,
                (Expected::Addr(a), toml::Value::String(s)) => s.parse() == Ok(*a),
                (Expected::Word(w), toml::Value::String(s)) => w == s,
                (Expected::Networks(nets), toml::Value::Array(list)) => {
                    let written: Vec<_> = list
                        .iter()
                        .map(|v| v.as_str().and_then(|s| parse_network(s).ok()))
                        .collect();
                    written == nets.iter().copied().map(Some).collect::<Vec<_>>()
                }
                _ => false,
            }
        }
    }

    /// Every named default, by the key the config file writes (`table.key`).
    fn named() -> Vec<(&'static str, Expected)> {
        use Expected::*;
        vec![
            (
                "server.udp-payload-max",
                Integer(SERVER_UDP_PAYLOAD_MAX.into()),
            ),
            ("server.tcp-idle-timeout", Duration(SERVER_TCP_IDLE_TIMEOUT)),
            (
                "server.tcp-max-connections",
                Integer(SERVER_TCP_MAX_CONNECTIONS as i64),
            ),
            (
                "server.tcp-max-per-client",
                Integer(SERVER_TCP_MAX_PER_CLIENT as i64),
            ),
            (
                "server.udp-recv-buffer",
                Integer(SERVER_UDP_RECV_BUFFER as i64),
            ),
            ("server.http-listen", Addr(SERVER_HTTP_LISTEN)),
            ("server.watch-zones", Bool(SERVER_WATCH_ZONES)),
            ("geo.watch", Bool(GEO_WATCH)),
            // The variant names are the config's words; `Policy` has no name method of its own.
            (
                "service.policy",
                Word(format!("{SERVICE_POLICY:?}").to_ascii_lowercase()),
            ),
            ("service.ttl", Integer(SERVICE_TTL.into())),
            ("service.answers", Integer(SERVICE_ANSWERS as i64)),
            ("service.lag-grace", Duration(SERVICE_LAG_GRACE)),
            ("mirror.drained", Bool(MIRROR_DRAINED)),
            (
                "redirect.unlisted",
                Word(REDIRECT_UNLISTED.as_str().to_string()),
            ),
            (
                "redirect.max-connections",
                Integer(REDIRECT_MAX_CONNECTIONS as i64),
            ),
            ("redirect.idle-timeout", Duration(REDIRECT_IDLE_TIMEOUT)),
            ("health.interval", Duration(HEALTH_INTERVAL)),
            ("health.timeout", Duration(HEALTH_TIMEOUT)),
            ("health.rise", Integer(HEALTH_RISE.into())),
            ("health.fall", Integer(HEALTH_FALL.into())),
            ("health.reverify", Duration(HEALTH_REVERIFY)),
            ("health.state-max-age", Duration(HEALTH_STATE_MAX_AGE)),
            ("health.download-timeout", Duration(HEALTH_DOWNLOAD_TIMEOUT)),
            ("health.max-downloads", Integer(HEALTH_MAX_DOWNLOADS as i64)),
            ("rate-limit.enabled", Bool(RATE_LIMIT_ENABLED)),
            (
                "rate-limit.responses-per-second",
                Integer(RATE_LIMIT_RESPONSES_PER_SECOND.into()),
            ),
            ("rate-limit.slip", Integer(RATE_LIMIT_SLIP.into())),
            (
                "rate-limit.ipv4-prefix",
                Integer(RATE_LIMIT_IPV4_PREFIX.into()),
            ),
            (
                "rate-limit.ipv6-prefix",
                Integer(RATE_LIMIT_IPV6_PREFIX.into()),
            ),
            (
                "rate-limit.table-size",
                Integer(RATE_LIMIT_TABLE_SIZE as i64),
            ),
            ("rate-limit.exempt", Networks(RATE_LIMIT_EXEMPT.to_vec())),
            ("transfer.ixfr-journal", Integer(IXFR_JOURNAL as i64)),
            (
                "transfer.tsig.algorithm",
                Word(TSIG_ALGORITHM.name().to_string()),
            ),
            (
                "dnssec.signature-validity",
                Duration(DNSSEC_SIGNATURE_VALIDITY),
            ),
            ("dnssec.serial", Word(DNSSEC_SERIAL.as_str().to_string())),
            ("cluster.key-prefix", Word(CLUSTER_KEY_PREFIX.to_string())),
        ]
    }

    /// The config's top-level tables: a TOML example with any other table is not part of
    /// the configuration reference (the admin-state file's, for one).
    const CONFIG_TABLES: [&str; 12] = [
        "redirect",
        "server",
        "geo",
        "service",
        "mirror",
        "origin",
        "health",
        "rate-limit",
        "cookies",
        "transfer",
        "dnssec",
        "cluster",
    ];

    /// One line of a TOML example. A leading `#` is taken off first, so commented-out lines
    /// count too.
    #[derive(Debug)]
    enum Line {
        Table(String),
        Key {
            key: String,
            value: toml::Value,
            /// What follows the value's `#`, if anything.
            comment: String,
            commented: bool,
        },
        Other,
    }

    /// Reads one line; a line that starts like `key =` but is not TOML is an error, so that a
    /// broken example is not silently skipped.
    fn read_line(line: &str) -> Result<Line, String> {
        let t = line.trim();
        let (commented, t) = match t.strip_prefix('#') {
            Some(rest) => (true, rest.trim()),
            None => (false, t),
        };
        let (code, comment) = split_comment(t);
        let code = code.trim();
        if let Some(table) = header(code) {
            return Ok(Line::Table(table.to_string()));
        }
        let Some((key, _)) = code.split_once('=') else {
            return Ok(Line::Other);
        };
        let key = key.trim();
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Ok(Line::Other);
        }
        let mut table: toml::Table =
            toml::from_str(code).map_err(|e| format!("`{code}` is not TOML: {e}"))?;
        let value = table
            .remove(key)
            .ok_or_else(|| format!("`{code}`: no `{key}`"))?;
        Ok(Line::Key {
            key: key.to_string(),
            value,
            comment: comment.trim().to_string(),
            commented,
        })
    }

    /// Code and comment: the first `#` outside a string starts the comment.
    fn split_comment(s: &str) -> (&str, &str) {
        let mut quote = None;
        let mut escaped = false;
        for (i, c) in s.char_indices() {
            match (quote, c) {
                (Some('"'), '\\') if !escaped => {
                    escaped = true;
                    continue;
                }
                (Some(q), c) if c == q && !escaped => quote = None,
                (None, '"' | '\'') => quote = Some(c),
                (None, '#') => return (&s[..i], &s[i + 1..]),
                _ => {}
            }
            escaped = false;
        }
        (s, "")
    }

    /// The table a `[table]` or `[[table]]` line opens.
    fn header(code: &str) -> Option<&str> {
        let inner = code
            .strip_prefix("[[")
            .and_then(|r| r.strip_suffix("]]"))
            .or_else(|| code.strip_prefix('[').and_then(|r| r.strip_suffix(']')))?;
        let ok = !inner.is_empty()
            && inner
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        ok.then_some(inner)
    }

    /// A default the comment names ("(default 30)", "default: \"10s\""), if it names one
    /// that is a TOML value ("default: none" and "(default)" name none).
    fn stated_default(comment: &str) -> Option<toml::Value> {
        comment.match_indices("default").find_map(|(i, w)| {
            let rest = comment[i + w.len()..].trim_start_matches(':').trim_start();
            let token = match rest.chars().next()? {
                '"' => &rest[..rest[1..].find('"')? + 2],
                '[' => &rest[..rest.find(']')? + 1],
                _ => {
                    let end = rest
                        .find(|c: char| c.is_whitespace() || "),;".contains(c))
                        .unwrap_or(rest.len());
                    &rest[..end]
                }
            };
            toml::from_str::<toml::Table>(&format!("v = {token}"))
                .ok()?
                .remove("v")
        })
    }

    fn full_key(table: &str, key: &str) -> String {
        if table.is_empty() {
            key.to_string()
        } else {
            format!("{table}.{key}")
        }
    }

    fn root() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
    }

    /// Commented-out `# key = value` lines say "this is the default": each must be a named
    /// default and agree with it, unless it shows an example of a key that has none.
    #[test]
    fn shipped_config_comments_give_the_defaults() {
        // Commented out to show what a value looks like, not what it defaults to.
        const EXAMPLES: [&str; 11] = [
            "geo.database",
            "transfer.allow",
            "transfer.notify",
            "redirect.service",
            "redirect.listen",
            "redirect.latest",
            "dnssec.keys",
            // Its default is worked out from `signature-validity`.
            "dnssec.refresh",
            "cluster.redis",
            // Its default is the host name, worked out when the config is read.
            "cluster.name",
            "cluster.secret",
        ];
        let path = root().join("config/mirrordns.toml");
        let text = std::fs::read_to_string(&path).expect("the shipped config is readable");
        let named = named();
        let mut table = String::new();
        let mut checked = 0;
        let mut wrong = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let at = format!("{}:{}", path.display(), i + 1);
            match read_line(line) {
                Err(e) => wrong.push(format!("{at}: {e}")),
                Ok(Line::Table(t)) => table = t,
                Ok(Line::Key {
                    key,
                    value,
                    commented: true,
                    ..
                }) => {
                    let key = full_key(&table, &key);
                    match named.iter().find(|(k, _)| *k == key) {
                        Some((_, expected)) => {
                            checked += 1;
                            if !expected.agrees(&value) {
                                wrong.push(format!(
                                    "{at}: `{key}` = {value}, but the default is {expected:?}"
                                ));
                            }
                        }
                        None if EXAMPLES.contains(&key.as_str()) => {}
                        None => wrong.push(format!(
                            "{at}: `{key}` is commented out like a default, but config::defaults \
                             has none (if it is an example, add it to EXAMPLES)"
                        )),
                    }
                }
                Ok(_) => {}
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        assert!(checked > 0, "no commented-out defaults found in {path:?}");
    }

    /// The configuration reference: docs/configuration.md once the README's reference has
    /// moved there, README.md before; whichever has a ```toml block with a `[server]` table.
    /// Its TOML blocks (those of config tables), line by line, with line numbers.
    fn reference() -> (PathBuf, Vec<Vec<(usize, String)>>) {
        for name in ["docs/configuration.md", "README.md"] {
            let path = root().join(name);
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let mut blocks: Vec<Vec<(usize, String)>> = Vec::new();
            let mut inside = false;
            for (i, line) in text.lines().enumerate() {
                if inside && line.trim_start().starts_with("```") {
                    inside = false;
                } else if inside {
                    if let Some(b) = blocks.last_mut() {
                        b.push((i + 1, line.to_string()));
                    }
                } else if line.trim_start().starts_with("```toml") {
                    inside = true;
                    blocks.push(Vec::new());
                }
            }
            if blocks
                .iter()
                .flatten()
                .any(|(_, l)| l.starts_with("[server]"))
            {
                blocks.retain(|b| {
                    b.iter().all(|(_, l)| match read_line(l) {
                        Ok(Line::Table(t)) => {
                            CONFIG_TABLES.contains(&t.split('.').next().unwrap_or_default())
                        }
                        _ => true,
                    })
                });
                return (path, blocks);
            }
        }
        panic!("neither docs/configuration.md nor README.md has a ```toml block with [server]");
    }

    /// The values the reference gives for keys with a named default, by key: what the
    /// comment names as the default ("ttl = 60  # default 30"), else the value written.
    fn documented() -> (PathBuf, Vec<(String, String, toml::Value)>) {
        let (path, blocks) = reference();
        let mut out = Vec::new();
        for block in blocks {
            let mut table = String::new();
            for (n, line) in block {
                let at = format!("{}:{n}", path.display());
                match read_line(&line) {
                    Err(e) => panic!("{at}: {e}"),
                    Ok(Line::Table(t)) => table = t,
                    Ok(Line::Key {
                        key,
                        value,
                        comment,
                        ..
                    }) => {
                        let value = stated_default(&comment).unwrap_or(value);
                        out.push((at, full_key(&table, &key), value));
                    }
                    Ok(Line::Other) => {}
                }
            }
        }
        (path, out)
    }

    #[test]
    fn reference_defaults_agree() {
        let named = named();
        let (_, documented) = documented();
        let wrong: Vec<String> = documented
            .iter()
            .filter_map(|(at, key, value)| {
                let (_, expected) = named.iter().find(|(k, _)| k == key)?;
                (!expected.agrees(value))
                    .then(|| format!("{at}: `{key}` = {value}, but the default is {expected:?}"))
            })
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn every_named_default_is_in_the_reference() {
        let (path, documented) = documented();
        let missing: Vec<&str> = named()
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| !documented.iter().any(|(_, key, _)| key == k))
            .collect();
        assert!(
            missing.is_empty(),
            "{} does not give these defaults: {missing:?}",
            path.display()
        );
    }

    /// A constant added above but not to [`named`] would go unchecked.
    #[test]
    fn every_constant_is_named() {
        let source = include_str!("defaults.rs");
        for line in source.lines() {
            let Some(rest) = line.strip_prefix("pub const ") else {
                continue;
            };
            let name = rest.split(':').next().unwrap_or_default();
            // Whole words only: one name inside a longer one is not a use of it.
            let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
            let uses = source
                .match_indices(name)
                .filter(|&(i, _)| {
                    !source[..i].ends_with(ident) && !source[i + name.len()..].starts_with(ident)
                })
                .count();
            assert!(uses >= 2, "{name} is not in named()");
        }
    }

    #[test]
    fn line_reading() {
        let Ok(Line::Key {
            key,
            value,
            comment,
            commented,
        }) = read_line("# http-listen = \"127.0.0.1:9153\"  # a # in a comment")
        else {
            panic!("a commented key line");
        };
        assert_eq!(key, "http-listen");
        assert_eq!(value.as_str(), Some("127.0.0.1:9153"));
        assert_eq!(comment, "a # in a comment");
        assert!(commented);
        let Ok(Line::Key { value, .. }) = read_line("x = \"a#b\"") else {
            panic!("a key line with a # in its string");
        };
        assert_eq!(value.as_str(), Some("a#b"));
        let Ok(Line::Table(table)) = read_line("[[geo.override]]   # c") else {
            panic!("a table header");
        };
        assert_eq!(table, "geo.override");
        assert!(matches!(
            read_line("# [origin] base-url is"),
            Ok(Line::Other)
        ));
        assert!(matches!(
            read_line("# Longest prefix wins."),
            Ok(Line::Other)
        ));
        assert!(read_line("# slip = two").is_err());

        assert_eq!(stated_default("seconds (default 30)"), Some(30.into()));
        assert_eq!(stated_default("default: \"10s\"; more"), Some("10s".into()));
        assert_eq!(stated_default("\"nearest\" (default) or \"regions\""), None);
        assert_eq!(stated_default("default: none"), None);
        assert_eq!(stated_default("the default: loopback"), None);
    }
}
