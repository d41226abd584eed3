//! Mirrors and services: `[[mirror]]` and `[[service]]`, validated into indices (a service's
//! mirrors, its region lists and releases), with every problem named by line and key.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use toml::Spanned;

use super::{Fallback, Origin, Validator, defaults, raw};
use crate::geo::Code;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Order mirrors by great-circle distance from the client.
    Nearest,
    /// Ordered lists by country, then continent, then default.
    Regions,
}

impl Policy {
    /// As the config writes it, and as `/status` and `/lookup` show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Nearest => "nearest",
            Policy::Regions => "regions",
        }
    }
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
    /// Older manifests, verified at lower priority for the redirector and never required:
    /// DNS routing does not look at them, and a mirror lacking them is not penalised.
    pub archive: Vec<String>,
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
    /// From `location.country`: the redirector's `Link: geo=` and Metalink `location`.
    pub country: Option<Code>,
    /// Where release files are served; None for a static mirror (never probed, always live).
    pub base_url: Option<reqwest::Url>,
    pub probe_address: Option<SocketAddr>,
    pub drained: bool,
}

impl Validator<'_> {
    pub(super) fn mirrors(&mut self, raw: Vec<Spanned<raw::RawMirror>>) -> Vec<Mirror> {
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
            let v4: Vec<Ipv4Addr> = self.addresses(&ipv4, &format!("mirror `{n}`: ipv4"), "IPv4");
            let v6: Vec<Ipv6Addr> = self.addresses(&ipv6, &format!("mirror `{n}`: ipv6"), "IPv6");
            let key = format!("mirror `{n}`: location");
            let parsed = location.as_ref().and_then(|l| {
                let loc = self.location(l, &key)?;
                if loc.coords.is_none() {
                    self.err(l, &key, "a mirror's location needs `lat` and `lon`");
                }
                Some(loc)
            });
            let loc = parsed.as_ref().and_then(|l| l.coords);
            let country = parsed.as_ref().and_then(|l| l.country);
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
                country,
                base_url,
                probe_address,
                drained: drained.unwrap_or(defaults::MIRROR_DRAINED),
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

    pub(super) fn services(
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
                archive,
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
                None => defaults::SERVICE_POLICY,
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
                None => defaults::SERVICE_ANSWERS,
            };
            let ttl = ttl
                .map(Spanned::into_inner)
                .unwrap_or(defaults::SERVICE_TTL);
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
            let archive = self.release_paths(&n, "archive", archive, origin);
            out.push(Service {
                name: n,
                line,
                policy,
                ttl,
                answers,
                mirrors: mlist,
                regions: regions_out,
                releases,
                archive,
                fallback,
                lag_grace,
            });
        }
        out
    }
}
