//! "Why this answer": for a client address, the location found, the service's candidate
//! mirrors in order, the answer and the ECS scope. Used by `mirrordns lookup`.

use std::net::IpAddr;

use serde::Serialize;

use crate::geo::{self, GeoSource, Source};
use crate::routing::RoutingTable;

#[derive(Debug, Serialize)]
pub struct LocationView {
    /// "override", "database" or "unknown".
    pub source: &'static str,
    pub network: Option<String>,
    pub country: Option<String>,
    pub continent: Option<String>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct CandidateView {
    pub mirror: String,
    pub distance_km: Option<f64>,
    pub ipv4: Vec<String>,
    pub ipv6: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Explanation {
    pub client: String,
    pub service: String,
    pub policy: &'static str,
    pub location: LocationView,
    /// True when the service's default order was used because the location is unknown.
    pub unknown_location: bool,
    pub candidates: Vec<CandidateView>,
    /// Every address answered: A then AAAA.
    pub answer: Vec<String>,
    pub a: Vec<String>,
    pub aaaa: Vec<String>,
    pub ttl: u32,
    /// ECS scope prefix length a query from this client's subnet gets.
    pub scope: u8,
    /// Families ("A", "AAAA") for which every mirror of this client's own list is out, so the
    /// answer comes from past it: `regions.default`, then by distance, then configured order.
    pub fallthrough: Vec<&'static str>,
}

/// Explains the answer for `name` (default: the only or first service) to a client at `ip`.
pub fn explain(
    table: &RoutingTable,
    geo: &GeoSource,
    name: Option<&str>,
    ip: IpAddr,
) -> Result<Explanation, String> {
    let cfg = &table.config;
    let idx = match name {
        Some(n) => {
            let n = n.trim_end_matches('.').to_ascii_lowercase();
            cfg.services
                .iter()
                .position(|s| s.name == n)
                .ok_or_else(|| format!("no service named `{n}` in {}", cfg.path.display()))?
        }
        None if cfg.services.is_empty() => {
            return Err(format!("{} defines no [[service]]", cfg.path.display()));
        }
        None => 0,
    };
    let service = &cfg.services[idx];
    let route = &table.services[idx];
    let ip = geo::canonical(ip);
    let located = geo.locate(ip);
    let hit = route.map.lookup(ip);
    let list = &route.map.lists[hit.list as usize];
    let answer = &route.answers[hit.list as usize];
    let loc = located.location;
    // The whole order for this location: the table keeps only the nearest few per list.
    let candidates = crate::routing::order(service, cfg, &loc)
        .mirrors
        .iter()
        .map(|&i| {
            let m = &cfg.mirrors[i];
            CandidateView {
                mirror: m.name.clone(),
                distance_km: match (loc.coords, m.location) {
                    (Some(a), Some(b)) => Some((geo::distance_km(a, b) * 10.0).round() / 10.0),
                    _ => None,
                },
                ipv4: m.ipv4.iter().map(|a| a.to_string()).collect(),
                ipv6: m.ipv6.iter().map(|a| a.to_string()).collect(),
            }
        })
        .collect();
    let a: Vec<String> = answer.ipv4().map(|x| x.to_string()).collect();
    let aaaa: Vec<String> = answer.ipv6().map(|x| x.to_string()).collect();
    Ok(Explanation {
        client: ip.to_string(),
        service: service.name.clone(),
        policy: match service.policy {
            crate::config::Policy::Nearest => "nearest",
            crate::config::Policy::Regions => "regions",
        },
        location: LocationView {
            source: match located.source {
                Source::Override => "override",
                Source::Database => "database",
                Source::None => "unknown",
            },
            network: located.network.map(|n| n.to_string()),
            country: loc.country.map(|c| c.to_string()),
            continent: loc.continent.map(|c| c.to_string()),
            lat: loc.coords.map(|c| c.0),
            lon: loc.coords.map(|c| c.1),
        },
        unknown_location: list.unknown,
        candidates,
        answer: a.iter().chain(&aaaa).cloned().collect(),
        a,
        aaaa,
        ttl: route.ttl,
        scope: hit.scope,
        fallthrough: [
            ("A", answer.a_fallthrough),
            ("AAAA", answer.aaaa_fallthrough),
        ]
        .into_iter()
        .filter_map(|(f, past)| past.then_some(f))
        .collect(),
    })
}

impl std::fmt::Display for Explanation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let l = &self.location;
        writeln!(f, "client      {}", self.client)?;
        writeln!(f, "service     {} (policy {})", self.service, self.policy)?;
        write!(f, "location    {}", l.source)?;
        if let Some(n) = &l.network {
            write!(f, " {n}")?;
        }
        let mut parts = Vec::new();
        if let Some(c) = &l.country {
            parts.push(format!("country {c}"));
        }
        if let Some(c) = &l.continent {
            parts.push(format!("continent {c}"));
        }
        if let (Some(lat), Some(lon)) = (l.lat, l.lon) {
            parts.push(format!("lat {lat} lon {lon}"));
        }
        if !parts.is_empty() {
            write!(f, ": {}", parts.join(", "))?;
        }
        if self.unknown_location {
            write!(f, " (unknown: default order)")?;
        }
        writeln!(f)?;
        writeln!(f, "candidates")?;
        for (i, c) in self.candidates.iter().enumerate() {
            write!(f, "  {}. {}", i + 1, c.mirror)?;
            if let Some(d) = c.distance_km {
                write!(f, " ({d} km)")?;
            }
            writeln!(f)?;
        }
        writeln!(
            f,
            "answer A    {}",
            if self.a.is_empty() {
                "(none)".into()
            } else {
                self.a.join(" ")
            }
        )?;
        writeln!(
            f,
            "answer AAAA {}",
            if self.aaaa.is_empty() {
                "(none)".into()
            } else {
                self.aaaa.join(" ")
            }
        )?;
        if !self.fallthrough.is_empty() {
            writeln!(
                f,
                "note        every mirror of this client's list is out for {}: answered from past it",
                self.fallthrough.join(" and ")
            )?;
        }
        writeln!(f, "ttl         {}", self.ttl)?;
        write!(f, "scope       /{}", self.scope)
    }
}
