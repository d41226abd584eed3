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

async fn get(client: &reqwest::Client, url: String) -> Result<Value, String> {
    let r = client
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !r.status().is_success() {
        return Err(format!("{url}: HTTP {}", r.status().as_u16()));
    }
    let body = r.bytes().await.map_err(|e| format!("{url}: {e}"))?;
    serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))
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
    crate::health::http::install_crypto();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let base = format!("http://{addr}");
    let running = get(&client, format!("{base}/status")).await?;
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
            let Ok(old) = get(&client, format!("{base}/lookup?ip={ip}&name={}", s.name)).await
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
