//! The TOML config: file -> typed, validated [`Config`].
//!
//! Parsing is two steps. serde reads the file into the `raw` structs (syntax, types and unknown
//! keys are caught there, with toml's line numbers); `validate` then checks meaning (addresses,
//! networks, mirror references, policies) and reports every problem with file, line and key.
//! Checks that need the zones (is a service inside a zone?) happen in `crate::load`.

mod cluster;
pub mod defaults;
mod dnssec;
mod health;
mod protect;
mod raw;
mod redirect;
mod services;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use toml::Spanned;

use crate::diag::{Problem, Problems, line_of};
use crate::geo::{Code, Location, Override};

/// A validated config. Every reference (service -> mirror) is resolved to an index.
/// Where the command line looks for the config when `--config` is not given: the shipped
/// one, from a clone's top directory.
pub const DEFAULT_PATH: &str = "config/mirrordns.toml";

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from.
    pub path: PathBuf,
    pub server: ServerConfig,
    pub geo: GeoConfig,
    pub services: Vec<Service>,
    pub mirrors: Vec<Mirror>,
    pub origin: Option<Origin>,
    pub health: HealthConfig,
    pub rate_limit: RateLimit,
    pub cookies: Cookies,
    pub transfer: Transfer,
    /// `[[redirect]]` sections: HTTP download redirectors.
    pub redirects: Vec<Redirect>,
    /// `[dnssec]`: zone keys and signature timing; None: nothing is signed.
    pub dnssec: Option<Dnssec>,
    /// `[cluster]`: shared verification and admin entries through Redis; None: alone.
    pub cluster: Option<Cluster>,
}

impl Config {
    /// True if anything is probed: some mirror has a base URL or some service needs releases.
    pub fn has_probes(&self) -> bool {
        self.mirrors.iter().any(|m| m.base_url.is_some())
            || self
                .services
                .iter()
                .any(|s| !s.releases.is_empty() || !s.archive.is_empty())
    }
}

pub use cluster::{Cluster, host_name, redact};
pub use dnssec::Dnssec;
pub use health::{Fallback, HealthConfig, Origin, is_safe_relative_path};
pub use protect::{Cookies, RateLimit, Transfer, TsigAlgorithm, TsigKey};
pub use redirect::{Redirect, Tls, Unlisted};
pub use services::{Mirror, Policy, Regions, Service};

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub dns_listen: Vec<SocketAddr>,
    /// Zone files with the config line that named each.
    pub zones: Vec<(PathBuf, usize)>,
    pub udp_payload_max: u16,
    pub tcp_idle_timeout: Duration,
    pub tcp_max_connections: usize,
    pub tcp_max_per_client: usize,
    pub udp_recv_buffer: usize,
    /// The monitoring endpoint; None when turned off.
    pub http_listen: Option<SocketAddr>,
    /// UDP worker threads per listen address.
    pub udp_workers: usize,
    pub watch_zones: bool,
    /// The admin-state file, if any.
    pub admin_state: Option<PathBuf>,
}

#[derive(Debug, Clone, Default)]
pub struct GeoConfig {
    /// MaxMind DB file and the config line that named it.
    pub database: Option<(PathBuf, usize)>,
    /// Parsed straight into geo's own type, so that geo never needs the config.
    pub overrides: Vec<Override>,
    /// Reload when the database file changes.
    pub watch: bool,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, Problems> {
        let src = std::fs::read_to_string(path)
            .map_err(|e| Problem::new(path, None, None, format!("cannot read config: {e}")))?;
        Config::parse(path, &src)
    }

    /// Validates config text; `path` names the file in errors and anchors relative paths.
    pub fn parse(path: &Path, src: &str) -> Result<Config, Problems> {
        let raw: raw::RawConfig = toml::from_str(src).map_err(|e| {
            let line = e.span().map(|s| line_of(src, s.start));
            Problem::new(path, line, None, e.message().trim_end().to_string())
        })?;
        let mut v = Validator {
            path,
            src,
            base: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            problems: Vec::new(),
        };
        let config = v.config(raw);
        if v.problems.is_empty() {
            Ok(config)
        } else {
            Err(Problems(v.problems))
        }
    }
}

struct Validator<'a> {
    path: &'a Path,
    src: &'a str,
    base: PathBuf,
    problems: Vec<Problem>,
}

impl Validator<'_> {
    fn line<T>(&self, s: &Spanned<T>) -> usize {
        line_of(self.src, s.span().start)
    }

    /// The entries of an address list that parse as `A`; each other one is reported under
    /// `key` as "not an {family} address".
    fn addresses<A: std::str::FromStr>(
        &mut self,
        list: &[Spanned<String>],
        key: &str,
        family: &str,
    ) -> Vec<A> {
        let mut out = Vec::new();
        for a in list {
            match a.get_ref().parse() {
                Ok(ip) => out.push(ip),
                Err(_) => self.err(
                    a,
                    key,
                    format!("`{}` is not an {family} address", a.get_ref()),
                ),
            }
        }
        out
    }

    fn err<T>(&mut self, at: &Spanned<T>, key: &str, msg: impl Into<String>) {
        let line = self.line(at);
        self.problems
            .push(Problem::new(self.path, Some(line), Some(key), msg));
    }

    fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn config(&mut self, raw: raw::RawConfig) -> Config {
        let raw::RawConfig {
            server,
            geo,
            services,
            mirrors,
            origin,
            health,
            rate_limit,
            cookies,
            transfer,
            redirects,
            dnssec,
            cluster,
        } = raw;
        let server = self.server(server);
        let geo = geo.map(|g| self.geo(g)).unwrap_or_default();
        let origin = origin.map(|o| self.origin(o));
        let health = self.health(health);
        let mirrors = self.mirrors(mirrors);
        let services = self.services(services, &mirrors, origin.as_ref());
        let rate_limit = self.rate_limit(rate_limit);
        let cookies = self.cookies(cookies);
        let transfer = self.transfer(transfer);
        let redirects = self.redirects(redirects, &services);
        let dnssec = dnssec.map(|d| self.dnssec(d));
        let cluster = cluster.and_then(|c| self.cluster(c));
        Config {
            dnssec,
            cluster,
            redirects,
            rate_limit,
            cookies,
            transfer,
            path: self.path.to_path_buf(),
            server,
            geo,
            services,
            mirrors,
            origin,
            health,
        }
    }

    fn server(&mut self, raw: Spanned<raw::RawServer>) -> ServerConfig {
        let raw::RawServer {
            dns_listen,
            zones,
            udp_payload_max,
            tcp_idle_timeout,
            tcp_max_connections,
            tcp_max_per_client,
            udp_recv_buffer,
            http_listen,
            udp_workers,
            watch_zones,
            admin_state,
        } = raw.into_inner();
        let mut listen = Vec::new();
        for a in dns_listen.get_ref() {
            match a.get_ref().parse::<SocketAddr>() {
                Ok(sa) => listen.push(sa),
                Err(_) => self.err(
                    a,
                    "server.dns-listen",
                    format!(
                        "`{}` is not an address with port: expected e.g. \"127.0.0.1:53\" or \"[::1]:53\"",
                        a.get_ref()
                    ),
                ),
            }
        }
        if dns_listen.get_ref().is_empty() {
            self.err(
                &dns_listen,
                "server.dns-listen",
                "needs at least one address",
            );
        }
        let mut zone_files = Vec::new();
        for z in zones.get_ref() {
            zone_files.push((self.resolve(z.get_ref()), self.line(z)));
        }
        if zones.get_ref().is_empty() {
            self.err(&zones, "server.zones", "needs at least one zone file");
        }
        let udp_payload_max = match udp_payload_max {
            Some(s) if *s.get_ref() < 512 => {
                self.err(&s, "server.udp-payload-max", "must be at least 512 bytes");
                defaults::SERVER_UDP_PAYLOAD_MAX
            }
            Some(s) => *s.get_ref(),
            None => defaults::SERVER_UDP_PAYLOAD_MAX,
        };
        let tcp_idle_timeout = match tcp_idle_timeout {
            Some(s) => match parse_duration(s.get_ref()) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => {
                    self.err(&s, "server.tcp-idle-timeout", "must be longer than zero");
                    defaults::SERVER_TCP_IDLE_TIMEOUT
                }
                Err(e) => {
                    self.err(&s, "server.tcp-idle-timeout", e.to_string());
                    defaults::SERVER_TCP_IDLE_TIMEOUT
                }
            },
            None => defaults::SERVER_TCP_IDLE_TIMEOUT,
        };
        let tcp_max_connections = match tcp_max_connections {
            Some(s) if *s.get_ref() == 0 => {
                self.err(&s, "server.tcp-max-connections", "must be at least 1");
                1
            }
            Some(s) => *s.get_ref(),
            None => defaults::SERVER_TCP_MAX_CONNECTIONS,
        };
        let http_listen = match http_listen {
            None => Some(defaults::SERVER_HTTP_LISTEN),
            Some(s) if s.get_ref().is_empty() => None,
            Some(s) => {
                match s.get_ref().parse::<SocketAddr>() {
                    Ok(a) => Some(a),
                    Err(_) => {
                        self.err(
                        &s,
                        "server.http-listen",
                        format!("`{}` is not an address with port: expected e.g. \"127.0.0.1:9153\"", s.get_ref()),
                    );
                        None
                    }
                }
            }
        };
        let tcp_max_per_client = match tcp_max_per_client {
            Some(s) if *s.get_ref() == 0 => {
                self.err(&s, "server.tcp-max-per-client", "must be at least 1");
                1
            }
            Some(s) => *s.get_ref(),
            None => defaults::SERVER_TCP_MAX_PER_CLIENT,
        };
        let udp_workers = match udp_workers {
            Some(w) if *w.get_ref() == 0 || *w.get_ref() > 256 => {
                self.err(&w, "server.udp-workers", "must be between 1 and 256");
                1
            }
            Some(w) => *w.get_ref(),
            None => defaults::server_udp_workers(),
        };
        ServerConfig {
            admin_state: admin_state.map(|a| self.resolve(a.get_ref())),
            tcp_max_per_client,
            watch_zones: watch_zones.unwrap_or(defaults::SERVER_WATCH_ZONES),
            udp_workers,
            http_listen,
            dns_listen: listen,
            zones: zone_files,
            udp_payload_max,
            tcp_idle_timeout,
            tcp_max_connections,
            udp_recv_buffer: udp_recv_buffer
                .map(|s| s.into_inner())
                .unwrap_or(defaults::SERVER_UDP_RECV_BUFFER),
        }
    }

    fn geo(&mut self, raw: raw::RawGeo) -> GeoConfig {
        let raw::RawGeo {
            database,
            overrides,
            watch,
        } = raw;
        let database = database.map(|d| (self.resolve(d.get_ref()), self.line(&d)));
        let mut out = Vec::new();
        for o in overrides {
            let raw::RawOverride { network, location } = o.into_inner();
            let net = match parse_network(network.get_ref()) {
                Ok(n) => Some(n),
                Err(e) => {
                    self.err(&network, "geo.override.network", e.to_string());
                    None
                }
            };
            let loc = self.location(&location, "geo.override.location");
            if let (Some(network), Some(location)) = (net, loc) {
                out.push(Override { network, location });
            }
        }
        GeoConfig {
            database,
            overrides: out,
            watch: watch.unwrap_or(defaults::GEO_WATCH),
        }
    }

    fn location(&mut self, raw: &Spanned<raw::RawLocation>, key: &str) -> Option<Location> {
        let raw::RawLocation {
            lat,
            lon,
            country,
            continent,
        } = raw.get_ref();
        let mut ok = true;
        let coords = match (lat, lon) {
            (Some(lat), Some(lon)) => {
                if !(-90.0..=90.0).contains(lat) {
                    self.err(
                        raw,
                        &format!("{key}.lat"),
                        format!("{lat} is not a latitude: expected -90 to 90"),
                    );
                    ok = false;
                }
                if !(-180.0..=180.0).contains(lon) {
                    self.err(
                        raw,
                        &format!("{key}.lon"),
                        format!("{lon} is not a longitude: expected -180 to 180"),
                    );
                    ok = false;
                }
                Some((*lat, *lon))
            }
            (None, None) => None,
            _ => {
                self.err(
                    raw,
                    key,
                    "`lat` and `lon` go together: give both or neither",
                );
                ok = false;
                None
            }
        };
        let country = match country {
            Some(c) => match Code::parse_country(c) {
                Some(code) => Some(code),
                None => {
                    self.err(
                        raw,
                        &format!("{key}.country"),
                        format!("`{c}` is not an ISO 3166-1 alpha-2 code"),
                    );
                    ok = false;
                    None
                }
            },
            None => None,
        };
        let continent = match continent {
            Some(c) => {
                match Code::parse_continent(c) {
                    Some(code) => Some(code),
                    None => {
                        self.err(
                        raw,
                        &format!("{key}.continent"),
                        format!("`{c}` is not a continent code: expected one of AF AN AS EU NA OC SA"),
                    );
                        ok = false;
                        None
                    }
                }
            }
            None => None,
        };
        ok.then_some(Location {
            coords,
            country,
            continent,
        })
    }
}

/// A network or duration in the config that does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("`{0}` is not a network: expected CIDR notation such as \"10.20.0.0/16\"")]
    NotANetwork(String),
    #[error("`{text}` has host bits set beyond /{}: did you mean {meant}?", .meant.prefix_len())]
    HostBits { text: String, meant: IpNet },
    #[error("`{0}` is not a duration: expected e.g. \"500ms\", \"10s\", \"5m\", \"6h\"")]
    NotADuration(String),
}

/// Parses "10.0.0.0/8", "2001:db8::/32", or a bare address (a /32 or /128). Host bits must be
/// zero, so that a typo in the prefix length is not silently widened.
pub fn parse_network(s: &str) -> Result<IpNet, ValueError> {
    let bad = || ValueError::NotANetwork(s.to_string());
    let net = if s.contains('/') {
        s.parse::<IpNet>().map_err(|_| bad())?
    } else {
        let ip: IpAddr = s.parse().map_err(|_| bad())?;
        IpNet::from(ip)
    };
    if net.trunc() != net {
        return Err(ValueError::HostBits {
            text: s.to_string(),
            meant: net.trunc(),
        });
    }
    Ok(net)
}

/// Parses "500ms", "10s", "5m", "6h", "1d", or a sum of these such as "1h30m".
pub fn parse_duration(s: &str) -> Result<Duration, ValueError> {
    let bad = || ValueError::NotADuration(s.to_string());
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let d = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86400)),
            _ => return Err(bad()),
        };
        total = total.saturating_add(d);
    }
    Ok(total)
}

#[cfg(test)]
mod tests;
