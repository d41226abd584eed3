//! `mirrordns check --diff`: what a reload would change compared with the running server
//! (asked over its monitoring endpoint): services, mirrors, zone serials, and for a sample of
//! client networks, which candidate orders move.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

use serde_json::Value;

use crate::explain::explain;
use crate::load::Loaded;

/// Client addresses sampled across the address space, plus the first address of every
/// override network in the new config.
fn sample(loaded: &Loaded) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = (1..=223u32)
        .step_by(3)
        .map(|a| IpAddr::from([a as u8, (a * 7 % 256) as u8, (a * 13 % 256) as u8, 1]))
        .collect();
    for p in [
        "2001:4860::1",
        "2a02:c7c::1",
        "2400:cb00::1",
        "2800:3f0::1",
        "2c0f:fb50::1",
        "2600:1f18::1",
    ] {
        if let Ok(ip) = p.parse() {
            v.push(ip);
        }
    }
    v.extend(
        loaded
            .config
            .geo
            .overrides
            .iter()
            .map(|o| o.network.network()),
    );
    v.sort();
    v.dedup();
    v
}

/// The running server, asked over its monitoring endpoint: by `check --diff` and by
/// `lookup`.
pub struct Running {
    client: reqwest::Client,
    /// `http://ADDR`, as shown to operators.
    pub base: String,
}

/// Why the running server could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// Nothing answered at the address (refused, unreachable, timed out): no server there.
    #[error("{url}: {detail}")]
    Unreachable { url: String, detail: String },
    /// A server answered with an error status; its body says why.
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    /// Something answered, but not with the document asked for.
    #[error("{url}: {detail}")]
    Invalid { url: String, detail: String },
}

impl Running {
    /// `timeout` bounds each whole request; connecting gets at most 2 s of it, so that an
    /// address where nothing listens (or a dropped packet) is found out quickly.
    pub fn new(addr: SocketAddr, timeout: std::time::Duration) -> Result<Running, String> {
        crate::health::http::install_crypto();
        let client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(timeout.min(std::time::Duration::from_secs(2)))
            .timeout(timeout)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Running {
            client,
            base: format!("http://{addr}"),
        })
    }

    /// GET `path` with `query` (encoded here), parsed as `T`.
    pub async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, AskError> {
        let invalid = |url: &str, detail: String| AskError::Invalid {
            url: url.to_string(),
            detail,
        };
        let url = reqwest::Url::parse_with_params(&format!("{}{path}", self.base), query)
            .map_err(|e| invalid(&self.base, e.to_string()))?;
        let shown = url.to_string();
        let r = self.client.get(url).send().await.map_err(|e| {
            // The innermost cause ("Connection refused (os error 111)") is what an operator
            // acts on; the outer layers only repeat the URL.
            let mut detail = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                detail = s.to_string();
                src = s.source();
            }
            if e.is_connect() || e.is_timeout() {
                AskError::Unreachable {
                    url: shown.clone(),
                    detail,
                }
            } else {
                invalid(&shown, detail)
            }
        })?;
        let status = r.status();
        let body = r
            .bytes()
            .await
            .map_err(|e| invalid(&shown, e.to_string()))?;
        if !status.is_success() {
            return Err(AskError::Status {
                url: shown,
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body).trim_end().to_string(),
            });
        }
        serde_json::from_slice(&body).map_err(|e| invalid(&shown, e.to_string()))
    }
}

fn list(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Compares `loaded` with the server whose endpoint is at `addr`; returns the report.
pub async fn diff(loaded: &Loaded, addr: SocketAddr) -> Result<String, String> {
    let server = Running::new(addr, std::time::Duration::from_secs(30))?;
    let running: Value = server
        .get("/status", &[])
        .await
        .map_err(|e| e.to_string())?;
    let cfg = &loaded.config;
    let mut out = String::new();
    let mut changes = 0;

    // Services.
    let old_services: BTreeMap<String, &Value> = running["services"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| (s["name"].as_str().unwrap_or("").to_string(), s))
                .collect()
        })
        .unwrap_or_default();
    for s in &cfg.services {
        let policy = match s.policy {
            crate::config::Policy::Nearest => "nearest",
            crate::config::Policy::Regions => "regions",
        };
        let mirrors: Vec<String> = s
            .mirrors
            .iter()
            .map(|&i| cfg.mirrors[i].name.clone())
            .collect();
        match old_services.get(&s.name) {
            None => {
                changes += 1;
                let _ = writeln!(
                    out,
                    "+ service {} (policy {policy}, mirrors {})",
                    s.name,
                    mirrors.join(", ")
                );
            }
            Some(old) => {
                let mut what = Vec::new();
                if old["policy"] != policy {
                    what.push(format!("policy {} -> {policy}", old["policy"]));
                }
                if old["ttl"] != s.ttl {
                    what.push(format!("ttl {} -> {}", old["ttl"], s.ttl));
                }
                if old["answers"] != s.answers {
                    what.push(format!("answers {} -> {}", old["answers"], s.answers));
                }
                if old["fallback"] != s.fallback.as_str() {
                    what.push(format!(
                        "fallback {} -> {}",
                        old["fallback"],
                        s.fallback.as_str()
                    ));
                }
                let old_m: Vec<String> = old["mirrors"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|m| m["name"].as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                if old_m != mirrors {
                    what.push(format!(
                        "mirrors [{}] -> [{}]",
                        old_m.join(", "),
                        mirrors.join(", ")
                    ));
                }
                let old_r = list(&old["required_releases"]);
                if old_r != s.releases {
                    what.push(format!(
                        "releases [{}] -> [{}]",
                        old_r.join(", "),
                        s.releases.join(", ")
                    ));
                }
                if !what.is_empty() {
                    changes += 1;
                    let _ = writeln!(out, "~ service {}: {}", s.name, what.join("; "));
                }
            }
        }
    }
    for name in old_services.keys() {
        if !cfg.services.iter().any(|s| &s.name == name) {
            changes += 1;
            let _ = writeln!(out, "- service {name}");
        }
    }

    // Mirrors (addresses and base URLs as the running server reports them).
    let mut old_mirrors: BTreeMap<String, &Value> = BTreeMap::new();
    for s in old_services.values() {
        for m in s["mirrors"].as_array().into_iter().flatten() {
            old_mirrors.insert(m["name"].as_str().unwrap_or("").to_string(), m);
        }
    }
    for m in &cfg.mirrors {
        let v4: Vec<String> = m.ipv4.iter().map(|a| a.to_string()).collect();
        let v6: Vec<String> = m.ipv6.iter().map(|a| a.to_string()).collect();
        let url = m.base_url.as_ref().map(|u| u.to_string());
        match old_mirrors.get(&m.name) {
            None => {
                changes += 1;
                let _ = writeln!(
                    out,
                    "+ mirror {} ({})",
                    m.name,
                    v4.iter().chain(&v6).cloned().collect::<Vec<_>>().join(", ")
                );
            }
            Some(old) => {
                let mut what = Vec::new();
                if list(&old["ipv4"]) != v4 || list(&old["ipv6"]) != v6 {
                    what.push(format!(
                        "addresses {:?} -> {:?}",
                        list(&old["ipv4"])
                            .into_iter()
                            .chain(list(&old["ipv6"]))
                            .collect::<Vec<_>>(),
                        v4.iter().chain(&v6).collect::<Vec<_>>()
                    ));
                }
                if old["base_url"].as_str().map(str::to_owned) != url {
                    what.push(format!(
                        "base-url {} -> {}",
                        old["base_url"],
                        url.as_deref().unwrap_or("none (static)")
                    ));
                }
                if (old["state"] == "drained") != m.drained {
                    what.push(if m.drained {
                        "drained".into()
                    } else {
                        "undrained".to_string()
                    });
                }
                if !what.is_empty() {
                    changes += 1;
                    let _ = writeln!(out, "~ mirror {}: {}", m.name, what.join("; "));
                }
            }
        }
    }
    for name in old_mirrors.keys() {
        if !cfg.mirrors.iter().any(|m| &m.name == name) {
            changes += 1;
            let _ = writeln!(out, "- mirror {name}");
        }
    }

    // Zones and serials.
    let old_zones: BTreeMap<String, u64> = running["zones"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|z| {
                    (
                        z["origin"].as_str().unwrap_or("").to_string(),
                        z["serial"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    for z in loaded.inputs.zones.zones() {
        let origin = z.origin.to_string();
        match old_zones.get(&origin) {
            None => {
                changes += 1;
                let _ = writeln!(out, "+ zone {origin} serial {}", z.serial);
            }
            Some(&old) if old != z.serial as u64 => {
                changes += 1;
                let _ = writeln!(out, "~ zone {origin}: serial {old} -> {}", z.serial);
            }
            Some(_) => {}
        }
    }
    for origin in old_zones.keys() {
        if !loaded
            .inputs
            .zones
            .zones()
            .iter()
            .any(|z| &z.origin.to_string() == origin)
        {
            changes += 1;
            let _ = writeln!(out, "- zone {origin}");
        }
    }

    // Candidate orders for sampled client networks.
    let table = loaded.table(0);
    let mut moved = 0;
    let samples = sample(loaded);
    for s in &cfg.services {
        if !old_services.contains_key(&s.name) {
            continue;
        }
        for ip in &samples {
            let Ok(new) = explain(&table, &loaded.geo, Some(&s.name), *ip) else {
                continue;
            };
            let ip = ip.to_string();
            let Ok(old) = server
                .get::<Value>("/lookup", &[("ip", &ip), ("name", &s.name)])
                .await
            else {
                continue;
            };
            let old_order: Vec<String> = old["candidates"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|c| c["mirror"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let new_order: Vec<String> = new.candidates.iter().map(|c| c.mirror.clone()).collect();
            if old_order != new_order {
                moved += 1;
                let _ = writeln!(
                    out,
                    "~ {} for {ip}: [{}] -> [{}]",
                    s.name,
                    old_order.join(", "),
                    new_order.join(", ")
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "{changes} config change(s); {moved} of {} sampled client networks change their mirror order",
        samples.len() * cfg.services.len()
    );
    Ok(out)
}
