//! The TOML config: file -> typed, validated [`Config`].
//!
//! Parsing is two steps. serde reads the file into the `raw` structs (syntax, types and unknown
//! keys are caught there, with toml's line numbers); `validate` then checks meaning (addresses,
//! networks, mirror references, policies) and reports every problem with file, line and key.
//! Checks that need the zones (is a service inside a zone?) happen in `crate::load`.

mod health;
mod protect;
mod raw;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use toml::Spanned;

use crate::diag::{Problem, Problems, line_of};
use crate::geo::{Code, Location};

/// A validated config. Every reference (service -> mirror) is resolved to an index.
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
}

impl Config {
    /// True if anything is probed: some mirror has a base URL or some service needs releases.
    pub fn has_probes(&self) -> bool {
        self.mirrors.iter().any(|m| m.base_url.is_some())
            || self.services.iter().any(|s| !s.releases.is_empty())
    }
}

pub use health::{Fallback, HealthConfig, Origin, is_safe_relative_path};
pub use protect::{Cookies, RateLimit, Transfer, TsigAlgorithm, TsigKey};

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
    pub overrides: Vec<Override>,
    /// Reload when the database file changes.
    pub watch: bool,
}

#[derive(Debug, Clone)]
pub struct Override {
    pub network: IpNet,
    pub location: Location,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Order mirrors by great-circle distance from the client.
    Nearest,
    /// Ordered lists by country, then continent, then default.
    Regions,
}

#[derive(Debug, Clone)]
pub struct Service {
    /// Lower-case, without the trailing dot.
    pub name: String,
    /// Config line of `name`, for errors found once zones are loaded.
    pub line: usize,
    pub policy: Policy,
    pub ttl: u32,
    pub answers: usize,
    /// Indices into `Config::mirrors`, in configured order.
    pub mirrors: Vec<usize>,
    pub regions: Regions,
    /// Manifest paths relative to the origin's base URL.
    pub releases: Vec<String>,
    pub fallback: Fallback,
    pub lag_grace: Duration,
}

impl Service {
    /// The order used where nothing more specific applies: `regions.default`, else `mirrors`.
    pub fn default_order(&self) -> &[usize] {
        self.regions.default.as_deref().unwrap_or(&self.mirrors)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Regions {
    pub default: Option<Vec<usize>>,
    pub continent: HashMap<Code, Vec<usize>>,
    pub country: HashMap<Code, Vec<usize>>,
}

#[derive(Debug, Clone)]
pub struct Mirror {
    pub name: String,
    pub ipv4: Vec<Ipv4Addr>,
    pub ipv6: Vec<Ipv6Addr>,
    /// (latitude, longitude) in degrees.
    pub location: Option<(f64, f64)>,
    /// Where release files are served; None for a static mirror (never probed, always live).
    pub base_url: Option<reqwest::Url>,
    pub probe_address: Option<SocketAddr>,
    pub drained: bool,
}

pub const DEFAULT_UDP_PAYLOAD_MAX: u16 = 1232;
pub const DEFAULT_TTL: u32 = 30;

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
        Config {
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
                DEFAULT_UDP_PAYLOAD_MAX
            }
            Some(s) => *s.get_ref(),
            None => DEFAULT_UDP_PAYLOAD_MAX,
        };
        let tcp_idle_timeout = match tcp_idle_timeout {
            Some(s) => match parse_duration(s.get_ref()) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => {
                    self.err(&s, "server.tcp-idle-timeout", "must be longer than zero");
                    Duration::from_secs(10)
                }
                Err(e) => {
                    self.err(&s, "server.tcp-idle-timeout", e);
                    Duration::from_secs(10)
                }
            },
            None => Duration::from_secs(10),
        };
        let tcp_max_connections = match tcp_max_connections {
            Some(s) if *s.get_ref() == 0 => {
                self.err(&s, "server.tcp-max-connections", "must be at least 1");
                1
            }
            Some(s) => *s.get_ref(),
            None => 1024,
        };
        let http_listen = match http_listen {
            None => Some(SocketAddr::from(([127, 0, 0, 1], 9153))),
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
            None => 16,
        };
        let udp_workers = match udp_workers {
            Some(w) if *w.get_ref() == 0 || *w.get_ref() > 256 => {
                self.err(&w, "server.udp-workers", "must be between 1 and 256");
                1
            }
            Some(w) => *w.get_ref(),
            // available_parallelism honours CPU affinity, so `taskset -c 0` means one worker.
            None => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        };
        ServerConfig {
            admin_state: admin_state.map(|a| self.resolve(a.get_ref())),
            tcp_max_per_client,
            watch_zones: watch_zones.unwrap_or(false),
            udp_workers,
            http_listen,
            dns_listen: listen,
            zones: zone_files,
            udp_payload_max,
            tcp_idle_timeout,
            tcp_max_connections,
            udp_recv_buffer: udp_recv_buffer.map(|s| s.into_inner()).unwrap_or(8 << 20),
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
                    self.err(&network, "geo.override.network", e);
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
            watch: watch.unwrap_or(true),
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

    fn mirrors(&mut self, raw: Vec<Spanned<raw::RawMirror>>) -> Vec<Mirror> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for m in raw {
            let raw::RawMirror {
                name,
                ipv4,
                ipv6,
                location,
                base_url,
                probe_address,
                drained,
            } = m.into_inner();
            let n = name.get_ref().clone();
            if n.is_empty() {
                self.err(&name, "mirror.name", "must not be empty");
            } else if !seen.insert(n.clone()) {
                self.err(
                    &name,
                    "mirror.name",
                    format!("mirror `{n}` is defined twice"),
                );
            }
            let key4 = format!("mirror `{n}`: ipv4");
            let mut v4 = Vec::new();
            for a in &ipv4 {
                match a.get_ref().parse::<Ipv4Addr>() {
                    Ok(ip) => v4.push(ip),
                    Err(_) => self.err(
                        a,
                        &key4,
                        format!("`{}` is not an IPv4 address", a.get_ref()),
                    ),
                }
            }
            let key6 = format!("mirror `{n}`: ipv6");
            let mut v6 = Vec::new();
            for a in &ipv6 {
                match a.get_ref().parse::<Ipv6Addr>() {
                    Ok(ip) => v6.push(ip),
                    Err(_) => self.err(
                        a,
                        &key6,
                        format!("`{}` is not an IPv6 address", a.get_ref()),
                    ),
                }
            }
            let key = format!("mirror `{n}`: location");
            let loc = location.as_ref().and_then(|l| {
                let loc = self.location(l, &key)?;
                if loc.coords.is_none() {
                    self.err(l, &key, "a mirror's location needs `lat` and `lon`");
                }
                loc.coords
            });
            let base_url = base_url.and_then(|u| self.url(&u, &format!("mirror `{n}`: base-url")));
            let probe_address =
                probe_address.and_then(|a| match a.get_ref().parse::<SocketAddr>() {
                    Ok(sa) => Some(sa),
                    Err(_) => {
                        self.err(
                            &a,
                            &format!("mirror `{n}`: probe-address"),
                            format!(
                                "`{}` is not IP:port, e.g. \"127.0.0.1:8443\" or \"[::1]:443\"",
                                a.get_ref()
                            ),
                        );
                        None
                    }
                });
            out.push(Mirror {
                name: n,
                ipv4: v4,
                ipv6: v6,
                location: loc,
                base_url,
                probe_address,
                drained: drained.unwrap_or(false),
            });
        }
        out
    }

    fn mirror_list(
        &mut self,
        list: &Spanned<Vec<Spanned<String>>>,
        key: &str,
        mirrors: &[Mirror],
        allowed: Option<&[usize]>,
    ) -> Vec<usize> {
        let mut out = Vec::new();
        for m in list.get_ref() {
            match mirrors.iter().position(|x| &x.name == m.get_ref()) {
                Some(i) if allowed.is_some_and(|a| !a.contains(&i)) => self.err(
                    m,
                    key,
                    format!(
                        "mirror `{}` is not in this service's `mirrors`",
                        m.get_ref()
                    ),
                ),
                Some(i) if out.contains(&i) => {
                    self.err(m, key, format!("mirror `{}` is listed twice", m.get_ref()))
                }
                Some(i) => out.push(i),
                None => self.err(
                    m,
                    key,
                    format!(
                        "mirror `{}` is not defined: expected the name of a [[mirror]]",
                        m.get_ref()
                    ),
                ),
            }
        }
        if list.get_ref().is_empty() {
            self.err(list, key, "needs at least one mirror");
        }
        out
    }

    fn services(
        &mut self,
        raw: Vec<Spanned<raw::RawService>>,
        mirrors: &[Mirror],
        origin: Option<&Origin>,
    ) -> Vec<Service> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for s in raw {
            let raw::RawService {
                name,
                policy,
                ttl,
                answers,
                mirrors: list,
                regions,
                releases,
                fallback,
                lag_grace,
            } = s.into_inner();
            let n = name.get_ref().trim_end_matches('.').to_ascii_lowercase();
            let line = self.line(&name);
            if n.is_empty() || n.split('.').any(|l| l.is_empty() || l.len() > 63) || n.len() > 253 {
                self.err(
                    &name,
                    "service.name",
                    format!("`{}` is not a valid domain name", name.get_ref()),
                );
            } else if !seen.insert(n.clone()) {
                self.err(
                    &name,
                    "service.name",
                    format!("service `{n}` is defined twice"),
                );
            }
            let policy = match policy {
                None => Policy::Nearest,
                Some(p) => match p.get_ref().as_str() {
                    "nearest" => Policy::Nearest,
                    "regions" => Policy::Regions,
                    other => {
                        self.err(
                            &p,
                            &format!("service `{n}`: policy"),
                            format!(
                                "`{other}` is not a policy: expected \"nearest\" or \"regions\""
                            ),
                        );
                        Policy::Nearest
                    }
                },
            };
            let answers = match answers {
                Some(a) if *a.get_ref() == 0 => {
                    self.err(&a, &format!("service `{n}`: answers"), "must be at least 1");
                    1
                }
                Some(a) => *a.get_ref(),
                None => 1,
            };
            let ttl = ttl.map(Spanned::into_inner).unwrap_or(DEFAULT_TTL);
            let mlist = self.mirror_list(&list, &format!("service `{n}`: mirrors"), mirrors, None);
            let mut regions_out = Regions::default();
            if let Some(r) = &regions {
                let raw::RawRegions {
                    default,
                    continent,
                    country,
                } = r.get_ref();
                if let Some(d) = default {
                    regions_out.default = Some(self.mirror_list(
                        d,
                        &format!("service `{n}`: regions.default"),
                        mirrors,
                        Some(&mlist),
                    ));
                }
                for (code, l) in continent {
                    let key = format!("service `{n}`: regions.continent.{}", code.get_ref());
                    match Code::parse_continent(code.get_ref()) {
                        Some(c) => {
                            let v = self.mirror_list(l, &key, mirrors, Some(&mlist));
                            regions_out.continent.insert(c, v);
                        }
                        None => self.err(
                            code,
                            &key,
                            "not a continent code: expected one of AF AN AS EU NA OC SA",
                        ),
                    }
                }
                for (code, l) in country {
                    let key = format!("service `{n}`: regions.country.{}", code.get_ref());
                    match Code::parse_country(code.get_ref()) {
                        Some(c) => {
                            let v = self.mirror_list(l, &key, mirrors, Some(&mlist));
                            regions_out.country.insert(c, v);
                        }
                        None => self.err(code, &key, "not an ISO 3166-1 alpha-2 country code"),
                    }
                }
            }
            match (policy, &regions) {
                (Policy::Regions, None) => self.err(
                    &name,
                    &format!("service `{n}`: regions"),
                    "policy \"regions\" needs a [service.regions] table",
                ),
                (Policy::Nearest, _) => {
                    for &i in &mlist {
                        if mirrors[i].location.is_none() {
                            self.err(
                                &list,
                                &format!("service `{n}`: mirrors"),
                                format!(
                                    "policy \"nearest\" needs a location for every mirror; mirror `{}` has none",
                                    mirrors[i].name
                                ),
                            );
                        }
                    }
                }
                _ => {}
            }
            let (releases, fallback, lag_grace) =
                self.service_health(&n, releases, fallback, lag_grace, origin);
            out.push(Service {
                name: n,
                line,
                policy,
                ttl,
                answers,
                mirrors: mlist,
                regions: regions_out,
                releases,
                fallback,
                lag_grace,
            });
        }
        out
    }
}

/// Parses "10.0.0.0/8", "2001:db8::/32", or a bare address (a /32 or /128). Host bits must be
/// zero, so that a typo in the prefix length is not silently widened.
pub fn parse_network(s: &str) -> Result<IpNet, String> {
    let net = if s.contains('/') {
        s.parse::<IpNet>().map_err(|_| {
            format!("`{s}` is not a network: expected CIDR notation such as \"10.20.0.0/16\"")
        })?
    } else {
        let ip: IpAddr = s.parse().map_err(|_| {
            format!("`{s}` is not a network: expected CIDR notation such as \"10.20.0.0/16\"")
        })?;
        IpNet::from(ip)
    };
    if net.trunc() != net {
        return Err(format!(
            "`{s}` has host bits set beyond /{}: did you mean {}?",
            net.prefix_len(),
            net.trunc()
        ));
    }
    Ok(net)
}

/// Parses "500ms", "10s", "5m", "6h", "1d", or a sum of these such as "1h30m".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad =
        || format!("`{s}` is not a duration: expected e.g. \"500ms\", \"10s\", \"5m\", \"6h\"");
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
