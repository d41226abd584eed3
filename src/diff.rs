//! `mirrordns check --diff`: what a reload would change compared with the running server
//! (asked over its monitoring endpoint): services, mirrors, zone serials, and for a sample of
//! client networks, which candidate orders move.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

use crate::explain::explain;
use crate::health::state::MirrorState;
use crate::load::Loaded;
use crate::running::{AskError, Running};
use crate::schema::{Lookup, MirrorView, ServiceView, Status};

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

/// An old value as the report has always printed it: JSON text, so strings quoted and an
/// absent value `null` (as when it read the document untyped). Kept so that the report reads
/// the same to anyone who parses it.
fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Compares `loaded` with the server whose endpoint is at `addr`; returns the report.
pub async fn diff(loaded: &Loaded, addr: SocketAddr) -> Result<String, AskError> {
    let server = Running::new(addr, std::time::Duration::from_secs(30))?;
    let running: Status = server.get("/status", &[]).await?;
    let cfg = &loaded.config;
    let mut out = String::new();
    let mut changes = 0;

    // Services.
    let old_services: BTreeMap<&str, &ServiceView> = running
        .services
        .iter()
        .map(|s| (s.name.as_str(), s))
        .collect();
    for s in &cfg.services {
        let policy = s.policy.as_str();
        let mirrors: Vec<String> = s
            .mirrors
            .iter()
            .map(|&i| cfg.mirrors[i].name.clone())
            .collect();
        match old_services.get(s.name.as_str()) {
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
                if old.policy != policy {
                    what.push(format!("policy {} -> {policy}", json(&old.policy)));
                }
                if old.ttl != s.ttl {
                    what.push(format!("ttl {} -> {}", old.ttl, s.ttl));
                }
                if old.answers != s.answers {
                    what.push(format!("answers {} -> {}", old.answers, s.answers));
                }
                if old.fallback != s.fallback.as_str() {
                    what.push(format!(
                        "fallback {} -> {}",
                        json(&old.fallback),
                        s.fallback.as_str()
                    ));
                }
                let old_m: Vec<&str> = old.mirrors.iter().map(|m| m.name.as_str()).collect();
                if old_m != mirrors {
                    what.push(format!(
                        "mirrors [{}] -> [{}]",
                        old_m.join(", "),
                        mirrors.join(", ")
                    ));
                }
                if old.required_releases != s.releases {
                    what.push(format!(
                        "releases [{}] -> [{}]",
                        old.required_releases.join(", "),
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
        if !cfg.services.iter().any(|s| s.name == *name) {
            changes += 1;
            let _ = writeln!(out, "- service {name}");
        }
    }

    // Mirrors (addresses and base URLs as the running server reports them).
    let old_mirrors: BTreeMap<&str, &MirrorView> = old_services
        .values()
        .flat_map(|s| &s.mirrors)
        .map(|m| (m.name.as_str(), m))
        .collect();
    for m in &cfg.mirrors {
        let v4: Vec<String> = m.ipv4.iter().map(|a| a.to_string()).collect();
        let v6: Vec<String> = m.ipv6.iter().map(|a| a.to_string()).collect();
        let url = m.base_url.as_ref().map(|u| u.to_string());
        match old_mirrors.get(m.name.as_str()) {
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
                if old.ipv4 != v4 || old.ipv6 != v6 {
                    what.push(format!(
                        "addresses {:?} -> {:?}",
                        old.ipv4.iter().chain(&old.ipv6).collect::<Vec<_>>(),
                        v4.iter().chain(&v6).collect::<Vec<_>>()
                    ));
                }
                if old.base_url != url {
                    what.push(format!(
                        "base-url {} -> {}",
                        json(&old.base_url),
                        url.as_deref().unwrap_or("none (static)")
                    ));
                }
                if (old.state == MirrorState::Drained) != m.drained {
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
        if !cfg.mirrors.iter().any(|m| m.name == *name) {
            changes += 1;
            let _ = writeln!(out, "- mirror {name}");
        }
    }

    // Zones and serials.
    let old_zones: BTreeMap<&str, u32> = running
        .zones
        .iter()
        .map(|z| (z.origin.as_str(), z.serial))
        .collect();
    for z in loaded.inputs.zones.zones() {
        let origin = z.origin.to_string();
        match old_zones.get(origin.as_str()) {
            None => {
                changes += 1;
                let _ = writeln!(out, "+ zone {origin} serial {}", z.serial);
            }
            Some(&old) if old != z.serial => {
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
            .any(|z| z.origin.to_string() == *origin)
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
        if !old_services.contains_key(s.name.as_str()) {
            continue;
        }
        for ip in &samples {
            let Ok(new) = explain(&table, &loaded.geo, Some(&s.name), *ip) else {
                continue;
            };
            let ip = ip.to_string();
            let old = match server
                .get::<Lookup>("/lookup", &[("ip", &ip), ("name", &s.name)])
                .await
            {
                Ok(old) => old,
                // A document that does not read would otherwise count as every order moving.
                Err(e @ AskError::Invalid { .. }) => return Err(e),
                Err(_) => continue,
            };
            let old_order: Vec<&str> = old
                .explanation
                .candidates
                .iter()
                .map(|c| c.mirror.as_str())
                .collect();
            let new_order: Vec<&str> = new.candidates.iter().map(|c| c.mirror.as_str()).collect();
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
