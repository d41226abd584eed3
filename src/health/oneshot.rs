//! `mirrordns verify`: fetch the manifests once, verify mirrors once, report file by file.
//! A release pipeline runs it as the gate before promotion.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::Semaphore;

use super::http::Endpoint;
use super::verify::{ReleaseOutcome, fetch_manifest, verify_release};
use crate::config::Config;
use crate::manifest::Manifest;

#[derive(Debug, Serialize)]
pub struct ReleaseView {
    pub path: String,
    pub version: Option<String>,
    pub files: usize,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct FileView {
    pub release: String,
    pub path: String,
    pub ok: bool,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct MirrorView {
    pub name: String,
    pub base_url: Option<String>,
    /// "verified", "mismatch", "incomplete" (missing files, errors), "previous" (still the
    /// previous content of a release), "static" (no base-url) or "drained".
    pub result: &'static str,
    pub files: Vec<FileView>,
}

#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub ok: bool,
    pub releases: Vec<ReleaseView>,
    pub mirrors: Vec<MirrorView>,
}

/// Verifies `only` (a mirror name) or every mirror. Errors are config-level (unknown mirror,
/// HTTP client set-up).
pub async fn verify(config: &Config, only: Option<&str>) -> Result<VerifyReport, String> {
    if let Some(n) = only
        && !config.mirrors.iter().any(|m| m.name == n)
    {
        return Err(format!(
            "no mirror named `{n}` in {}",
            config.path.display()
        ));
    }
    let mut releases: Vec<&String> = config.services.iter().flat_map(|s| &s.releases).collect();
    releases.sort();
    releases.dedup();
    let mut manifests: HashMap<String, Manifest> = HashMap::new();
    let mut views = Vec::new();
    let mut ok = true;
    if let Some(origin) = &config.origin {
        let ep = Endpoint::new(&config.health, &origin.base_url, None)?;
        for r in releases {
            match fetch_manifest(&ep, config, r).await {
                Ok(m) => {
                    views.push(ReleaseView {
                        path: r.clone(),
                        version: Some(m.version.clone()),
                        files: m.files.len(),
                        error: None,
                    });
                    manifests.insert(r.clone(), m);
                }
                Err(e) => {
                    ok = false;
                    views.push(ReleaseView {
                        path: r.clone(),
                        version: None,
                        files: 0,
                        error: Some(e.to_string()),
                    });
                }
            }
        }
    }
    let downloads = Arc::new(Semaphore::new(config.health.max_downloads));
    let mut mirrors = Vec::new();
    for (i, m) in config.mirrors.iter().enumerate() {
        if only.is_some_and(|n| n != m.name) {
            continue;
        }
        let mut view = MirrorView {
            name: m.name.clone(),
            base_url: m.base_url.as_ref().map(|u| u.to_string()),
            result: "verified",
            files: Vec::new(),
        };
        if m.drained {
            view.result = "drained";
            mirrors.push(view);
            continue;
        }
        let Some(base) = &m.base_url else {
            view.result = "static";
            mirrors.push(view);
            continue;
        };
        let ep = Endpoint::new(&config.health, base, m.probe_address)
            .map_err(|e| format!("mirror `{}`: {e}", m.name))?;
        let mut required: Vec<&String> = config
            .services
            .iter()
            .filter(|s| s.mirrors.contains(&i))
            .flat_map(|s| &s.releases)
            .collect();
        required.sort();
        required.dedup();
        for r in required {
            let Some(man) = manifests.get(r) else {
                view.result = "incomplete";
                continue;
            };
            let mut report = Vec::new();
            let outcome = verify_release(
                &ep,
                &config.health,
                man,
                None,
                &mut HashMap::new(),
                &downloads,
                true,
                &mut report,
            )
            .await;
            view.files.extend(report.into_iter().map(|f| FileView {
                release: r.clone(),
                path: f.path,
                ok: f.result.is_ok(),
                error: f.result.err().map(|e| e.to_string()),
            }));
            let result = match outcome {
                ReleaseOutcome::Verified(_) => "verified",
                ReleaseOutcome::Previous { .. } => "previous",
                ReleaseOutcome::Failed { mismatch: true, .. } => "mismatch",
                ReleaseOutcome::Failed { .. } => "incomplete",
            };
            // The worst result wins: mismatch > incomplete/previous > verified.
            if view.result != "mismatch" && result != "verified" {
                view.result = result;
            }
        }
        ok &= matches!(view.result, "verified" | "static");
        mirrors.push(view);
    }
    Ok(VerifyReport {
        ok,
        releases: views,
        mirrors,
    })
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.releases {
            match (&r.version, &r.error) {
                (_, Some(e)) => writeln!(f, "origin  {}  ERROR {e}", r.path)?,
                (Some(v), None) => writeln!(f, "origin  {}  {v}, {} files", r.path, r.files)?,
                (None, None) => writeln!(f, "origin  {}", r.path)?,
            }
        }
        for m in &self.mirrors {
            writeln!(
                f,
                "mirror  {}  {}  {}",
                m.name,
                m.base_url.as_deref().unwrap_or("-"),
                m.result
            )?;
            for file in &m.files {
                match &file.error {
                    None => writeln!(f, "  ok        {}", file.path)?,
                    Some(e) => writeln!(f, "  FAILED    {e}")?,
                }
            }
        }
        write!(
            f,
            "{}",
            if self.ok {
                "ok: every mirror verified"
            } else {
                "FAILED: not every mirror verified"
            }
        )
    }
}
