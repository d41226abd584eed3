//! "Why this answer": for a client address, the location found, the service's candidate
//! mirrors in order, the answer and the ECS scope. Used by `/lookup` and `mirrordns lookup`,
//! which asks the running server when one serves the same config (only it knows which mirrors
//! are up and verified) and otherwise says that mirror health is unknown. The explanation and
//! the server's `/lookup` document are typed in [`crate::schema`].

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::geo::{self, GeoSource, Source};
use crate::routing::RoutingTable;
use crate::running::{AskError, Running};
use crate::schema::{CandidateView, Decision, Explanation, LocationView, Lookup};

/// No service to explain.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExplainError {
    #[error("no service named `{name}` in {}", .config.display())]
    NoService { name: String, config: PathBuf },
    #[error("{} defines no [[service]]", .0.display())]
    NoServices(PathBuf),
}

/// Explains the answer for `name` (default: the only or first service) to a client at `ip`.
pub fn explain(
    table: &RoutingTable,
    geo: &GeoSource,
    name: Option<&str>,
    ip: IpAddr,
) -> Result<Explanation, ExplainError> {
    let cfg = &table.config;
    let idx = match name {
        Some(n) => {
            let n = n.trim_end_matches('.').to_ascii_lowercase();
            match cfg.services.iter().position(|s| s.name == n) {
                Some(i) => i,
                None => {
                    return Err(ExplainError::NoService {
                        name: n,
                        config: cfg.path.clone(),
                    });
                }
            }
        }
        None if cfg.services.is_empty() => {
            return Err(ExplainError::NoServices(cfg.path.clone()));
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
                distance_km: shown_distance(loc.coords, m.location),
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
        policy: service.policy.as_str().into(),
        location: LocationView {
            source: match located.source {
                Source::Override => "override",
                Source::Database => "database",
                Source::None => "unknown",
            }
            .into(),
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
        .filter(|(_, past)| *past)
        .map(|(f, _)| f.to_string())
        .collect(),
    })
}

impl std::fmt::Display for Explanation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_explanation(f, self, None)
    }
}

/// The explanation as text; with the server's `decisions`, each candidate's state and whether
/// it is in the answer, and the server's mode.
fn write_explanation(
    f: &mut std::fmt::Formatter<'_>,
    e: &Explanation,
    server: Option<(&[Decision], &str)>,
) -> std::fmt::Result {
    let l = &e.location;
    writeln!(f, "client      {}", e.client)?;
    writeln!(f, "service     {} (policy {})", e.service, e.policy)?;
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
    if e.unknown_location {
        write!(f, " (unknown: default order)")?;
    }
    writeln!(f)?;
    let names: Vec<String> = e
        .candidates
        .iter()
        .enumerate()
        .map(|(i, c)| match c.distance_km {
            Some(d) => format!("{}. {} ({d} km)", i + 1, c.mirror),
            None => format!("{}. {}", i + 1, c.mirror),
        })
        .collect();
    match server {
        None => {
            writeln!(f, "candidates")?;
            for n in &names {
                writeln!(f, "  {n}")?;
            }
        }
        Some((decisions, mode)) => {
            writeln!(f, "candidates  (state as the server sees it; used)")?;
            let w = names.iter().map(String::len).max().unwrap_or(0);
            for (n, c) in names.iter().zip(&e.candidates) {
                match decisions.iter().find(|d| d.mirror == c.mirror) {
                    Some(d) => {
                        let used = if d.used == "answer" {
                            "in the answer"
                        } else if d.used == d.state.as_str() {
                            "not used"
                        } else {
                            d.used.as_str()
                        };
                        writeln!(f, "  {n:<w$}  {:<9}  {used}", d.state.as_str())?;
                    }
                    None => writeln!(f, "  {n}")?,
                }
            }
            // Mirrors answering from past the client's own list are not among its candidates.
            for d in decisions
                .iter()
                .filter(|d| !e.candidates.iter().any(|c| c.mirror == d.mirror))
            {
                writeln!(f, "  +  {}  {:<9}  {}", d.mirror, d.state.as_str(), d.used)?;
            }
            writeln!(f, "mode        {mode}")?;
        }
    }
    let list = |v: &[String]| {
        if v.is_empty() {
            "(none)".to_string()
        } else {
            v.join(" ")
        }
    };
    writeln!(f, "answer A    {}", list(&e.a))?;
    writeln!(f, "answer AAAA {}", list(&e.aaaa))?;
    if !e.fallthrough.is_empty() {
        writeln!(
            f,
            "note        every mirror of this client's list is out for {}: answered from past it",
            e.fallthrough.join(" and ")
        )?;
    }
    writeln!(f, "ttl         {}", e.ttl)?;
    write!(f, "scope       /{}", e.scope)
}

/// What `mirrordns lookup` prints: the explanation, and whether mirror health is in it.
#[derive(Debug, Serialize)]
pub struct LookupView {
    #[serde(flatten)]
    pub explanation: Explanation,
    /// "server": the running server's answer, with mirror health as it sees it now.
    /// "config": from the config alone, every mirror not drained counted as up and verified.
    pub answered_by: &'static str,
    /// The endpoint that answered (or that was tried), as `http://ADDR`.
    pub server: Option<String>,
    /// In the config-only view: why mirror health is unknown.
    pub health_unknown: Option<String>,
    /// Anything else to know about the answer (a config file changed since it was loaded).
    pub note: Option<String>,
    /// From the server: "mirrors", or "fallback: ..." when no mirror is routable.
    pub mode: Option<String>,
    pub routing_generation: Option<u64>,
    /// From the server: each candidate's state and whether it is in the answer.
    pub decisions: Option<Vec<Decision>>,
}

impl LookupView {
    /// The config-only view: `why` says why mirror health is unknown.
    pub fn config_only(explanation: Explanation, server: Option<String>, why: String) -> Self {
        LookupView {
            explanation,
            answered_by: "config",
            server,
            health_unknown: Some(why),
            note: None,
            mode: None,
            routing_generation: None,
            decisions: None,
        }
    }
}

impl std::fmt::Display for LookupView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let server = self.server.as_deref().unwrap_or("-");
        match (&self.health_unknown, &self.decisions) {
            (None, Some(decisions)) => {
                write!(f, "answer from the running server at {server}")?;
                if let Some(g) = self.routing_generation {
                    write!(f, " (routing table generation {g})")?;
                }
                writeln!(f, ", with mirror health as it sees it now")?;
                if let Some(n) = &self.note {
                    writeln!(f, "note: {n}")?;
                }
                let mode = self.mode.as_deref().unwrap_or("-");
                write_explanation(f, &self.explanation, Some((decisions, mode)))
            }
            (why, _) => {
                writeln!(
                    f,
                    "mirror health unknown: {}",
                    why.as_deref().unwrap_or("the running server was not asked")
                )?;
                writeln!(
                    f,
                    "config-only view: every mirror not drained in the config counts as up and verified"
                )?;
                write_explanation(f, &self.explanation, None)
            }
        }
    }
}

/// Why the running server's answer cannot be used: then mirror health is unknown.
#[derive(Debug, thiserror::Error)]
pub enum ServerAnswerError {
    #[error("no server answers at {base} ({detail})")]
    Unreachable { base: String, detail: String },
    #[error("the server at {base} did not answer (HTTP {status}: {body})")]
    Status {
        base: String,
        status: u16,
        body: String,
    },
    #[error("{base} does not answer as a mirrordns endpoint ({detail})")]
    NotAnEndpoint { base: String, detail: String },
    #[error("{0}")]
    Client(reqwest::Error),
    #[error("{}: {error}", .config.display())]
    Config {
        config: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "the server at {base} does not say which config file it serves (a mirrordns older than this one)"
    )]
    Unnamed { base: String },
    #[error("the server at {base} serves {theirs}, not {}", .ours.display())]
    OtherConfig {
        base: String,
        theirs: String,
        ours: PathBuf,
    },
}

/// Asks the server whose endpoint is at `addr` for its answer to a client at `ip`, provided
/// it serves the config file at `config` (the same file, symlinks resolved, as `/lookup`'s
/// `config_file` names it).
pub async fn ask_server(
    addr: SocketAddr,
    config: &Path,
    name: Option<&str>,
    ip: IpAddr,
) -> Result<LookupView, ServerAnswerError> {
    let server = Running::new(addr, std::time::Duration::from_secs(10))
        .map_err(|e| from_ask(e, format!("http://{addr}")))?;
    let base = server.base.clone();
    let ip_text = ip.to_string();
    let mut query = vec![("ip", ip_text.as_str())];
    if let Some(n) = name {
        query.push(("name", n));
    }
    let served: Lookup = server
        .get("/lookup", &query)
        .await
        .map_err(|e| from_ask(e, base.clone()))?;
    let ours = config
        .canonicalize()
        .map_err(|error| ServerAnswerError::Config {
            config: config.to_path_buf(),
            error,
        })?;
    let Some(theirs) = &served.config_file else {
        return Err(ServerAnswerError::Unnamed { base });
    };
    if Path::new(theirs) != ours {
        return Err(ServerAnswerError::OtherConfig {
            base,
            theirs: theirs.clone(),
            ours,
        });
    }
    let note = changed_since(&ours, served.config_loaded_at.as_deref());
    Ok(LookupView {
        explanation: served.explanation,
        answered_by: "server",
        server: Some(base),
        health_unknown: None,
        note,
        mode: Some(served.mode),
        routing_generation: Some(served.routing_generation),
        decisions: Some(served.decisions),
    })
}

/// The server at `base` could not be asked: said in terms of that server, not of one URL.
fn from_ask(e: AskError, base: String) -> ServerAnswerError {
    match e {
        AskError::Unreachable { detail, .. } => ServerAnswerError::Unreachable { base, detail },
        AskError::Status { status, body, .. } => ServerAnswerError::Status { base, status, body },
        AskError::Invalid { detail, .. } => ServerAnswerError::NotAnEndpoint { base, detail },
        AskError::Client(e) => ServerAnswerError::Client(e),
    }
}

/// A note when the file was written after the server loaded it: the answer is from the
/// config in force, which is no longer the file's.
fn changed_since(file: &Path, loaded_at: Option<&str>) -> Option<String> {
    let loaded = humantime::parse_rfc3339(loaded_at?).ok()?;
    let modified = std::fs::metadata(file).and_then(|m| m.modified()).ok()?;
    (modified > loaded).then(|| {
        format!(
            "{} changed after the server loaded it ({}); this is the answer of the config in force: `mirrordns reload` loads the file",
            file.display(),
            humantime::format_rfc3339_seconds(loaded)
        )
    })
}

/// The distance shown between a client and a mirror, to 0.1 km, when both are placed.
pub fn shown_distance(client: Option<(f64, f64)>, mirror: Option<(f64, f64)>) -> Option<f64> {
    let (a, b) = client.zip(mirror)?;
    Some((geo::distance_km(a, b) * 10.0).round() / 10.0)
}
