//! `mirrordns verify`: fetch the manifests once, verify mirrors once, report file by file.
//! A release pipeline runs it as the gate before promotion.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::Semaphore;

use super::ClientsError;
use super::http::{Endpoint, ProbeError};
use super::state::MirrorState;
use super::verify::{ReleaseOutcome, Verifier, fetch_manifest, verify_release};
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
    /// In the server's words (`/status`): "ready" (every required release verified),
    /// "mismatch" (wrong bytes), "lagging" (a file missing or cut short, or still the previous
    /// content), "down" (could not be read: connection, TLS, timeout, HTTP error), "drained",
    /// or "unknown" (not verified: static, in no service with `releases`, or the origin's
    /// manifest could not be fetched).
    pub result: MirrorState,
    /// Why, when not ready: the first problem of its worst release.
    pub reason: String,
    pub files: Vec<FileView>,
    /// Whether its files were checked (not drained, static or without releases).
    #[serde(skip)]
    checked: bool,
}

#[derive(Debug, Serialize)]
pub struct VerifyReport {
    /// True when at least one mirror was verified and every mirror verified is ready, with
    /// every manifest fetched.
    pub ok: bool,
    /// Why there was nothing to verify, when there was nothing (the gate then fails: a gate
    /// that checked nothing must not pass).
    pub nothing_to_verify: Option<String>,
    pub releases: Vec<ReleaseView>,
    pub mirrors: Vec<MirrorView>,
}

impl VerifyReport {
    /// 0: every mirror verified is ready; 1: one is not, or a manifest could not be fetched;
    /// 2: nothing to verify (usage errors exit 2 as well, before there is a report).
    pub fn exit_code(&self) -> u8 {
        match (&self.nothing_to_verify, self.ok) {
            (Some(_), _) => 2,
            (None, true) => 0,
            (None, false) => 1,
        }
    }
}

/// One release's outcome on a mirror in the server's words, with the reason.
fn state_of(outcome: &ReleaseOutcome, release: &str) -> (MirrorState, String) {
    match outcome {
        ReleaseOutcome::Verified(_) => (MirrorState::Ready, String::new()),
        ReleaseOutcome::Previous { file: None } => (
            MirrorState::Lagging,
            format!("{release}: still the previous release"),
        ),
        ReleaseOutcome::Previous { file: Some(f) } => (
            MirrorState::Lagging,
            format!(
                "{release}: the new manifest is there, but {f} is still the previous release's"
            ),
        ),
        ReleaseOutcome::Failed { error, mismatch } => {
            let state = if *mismatch || error.is_mismatch() {
                MirrorState::Mismatch
            } else if error.is_syncing() || matches!(error, ProbeError::Status { status: 404, .. })
            {
                // As the prober sees it: a sync that has not brought the file yet.
                MirrorState::Lagging
            } else {
                MirrorState::Down
            };
            (state, error.to_string())
        }
    }
}

/// How bad a state is for the gate, so that the worst of a mirror's releases is shown.
fn severity(s: MirrorState) -> u8 {
    match s {
        MirrorState::Ready | MirrorState::Drained => 0,
        MirrorState::Unknown | MirrorState::Verifying => 1,
        MirrorState::Lagging => 2,
        MirrorState::Down => 3,
        MirrorState::Mismatch => 4,
    }
}

/// Why `verify` could not check anything: its errors are config-level, not verdicts.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("no mirror named `{name}` in {}", .config.display())]
    NoMirror { name: String, config: PathBuf },
    #[error(transparent)]
    Client(#[from] ClientsError),
}

/// Verifies `only` (a mirror name) or every mirror.
pub async fn verify(config: &Config, only: Option<&str>) -> Result<VerifyReport, VerifyError> {
    if let Some(n) = only
        && !config.mirrors.iter().any(|m| m.name == n)
    {
        return Err(VerifyError::NoMirror {
            name: n.to_string(),
            config: config.path.clone(),
        });
    }
    let mut releases: Vec<&String> = config.services.iter().flat_map(|s| &s.releases).collect();
    releases.sort();
    releases.dedup();
    let mut manifests: HashMap<String, Manifest> = HashMap::new();
    let mut views = Vec::new();
    let mut ok = true;
    if let Some(origin) = &config.origin {
        let ep =
            Endpoint::new(&config.health, &origin.base_url, None).map_err(ClientsError::Origin)?;
        for r in &releases {
            match fetch_manifest(&ep, config, r).await {
                Ok(m) => {
                    views.push(ReleaseView {
                        path: r.to_string(),
                        version: Some(m.version.clone()),
                        files: m.files.len(),
                        error: None,
                    });
                    manifests.insert(r.to_string(), m);
                }
                Err(e) => {
                    ok = false;
                    views.push(ReleaseView {
                        path: r.to_string(),
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
    let mut checked = 0usize;
    for (i, m) in config.mirrors.iter().enumerate() {
        if only.is_some_and(|n| n != m.name) {
            continue;
        }
        let mut view = MirrorView {
            name: m.name.clone(),
            base_url: m.base_url.as_ref().map(|u| u.to_string()),
            result: MirrorState::Ready,
            reason: String::new(),
            files: Vec::new(),
            checked: false,
        };
        if m.drained {
            view.result = MirrorState::Drained;
            view.reason = "drained in config".into();
            mirrors.push(view);
            continue;
        }
        let Some(base) = &m.base_url else {
            view.result = MirrorState::Unknown;
            view.reason = "static (no base-url)".into();
            mirrors.push(view);
            continue;
        };
        let mut required: Vec<&String> = config
            .services
            .iter()
            .filter(|s| s.mirrors.contains(&i))
            .flat_map(|s| &s.releases)
            .collect();
        required.sort();
        required.dedup();
        if required.is_empty() {
            view.result = MirrorState::Unknown;
            view.reason = "in no service that lists `releases`".into();
            mirrors.push(view);
            continue;
        }
        checked += 1;
        view.checked = true;
        let ep = Endpoint::new(&config.health, base, m.probe_address).map_err(|error| {
            ClientsError::Mirror {
                name: m.name.clone(),
                error,
            }
        })?;
        for r in required {
            let (state, reason) = match manifests.get(r) {
                None => (
                    MirrorState::Unknown,
                    format!("{r}: the origin's manifest could not be fetched"),
                ),
                Some(man) => {
                    let mut report = Vec::new();
                    let v = Verifier {
                        ep: &ep,
                        hc: &config.health,
                        downloads: &downloads,
                        keep_going: true,
                    };
                    let outcome =
                        verify_release(&v, man, None, &mut HashMap::new(), &mut report).await;
                    view.files.extend(report.into_iter().map(|f| FileView {
                        release: r.clone(),
                        path: f.path,
                        ok: f.result.is_ok(),
                        error: f.result.err().map(|e| e.to_string()),
                    }));
                    state_of(&outcome, r)
                }
            };
            if severity(state) > severity(view.result) {
                view.result = state;
                view.reason = reason;
            }
        }
        ok &= view.result == MirrorState::Ready;
        mirrors.push(view);
    }
    let nothing_to_verify = (checked == 0).then(|| nothing_to_verify(config, only, &mirrors));
    Ok(VerifyReport {
        ok: ok && nothing_to_verify.is_none(),
        nothing_to_verify,
        releases: views,
        mirrors,
    })
}

/// Why no mirror could be verified, as specifically as the config allows.
fn nothing_to_verify(config: &Config, only: Option<&str>, mirrors: &[MirrorView]) -> String {
    let mut why = Vec::new();
    let first = mirrors.first().map(|m| m.reason.as_str());
    match (only, first) {
        (Some(n), _) => why.push(format!(
            "mirror `{n}` is {}",
            first.unwrap_or("not in the config")
        )),
        (None, Some(r)) if mirrors.len() > 1 && mirrors.iter().all(|m| m.reason == r) => {
            why.push(format!("every mirror is {r}"))
        }
        (None, _) => why.extend(
            mirrors
                .iter()
                .map(|m| format!("{} is {}", m.name, m.reason)),
        ),
    }
    if config.origin.is_none() {
        why.push("there is no [origin] to fetch release manifests from".into());
    } else if config.services.iter().all(|s| s.releases.is_empty()) {
        why.push("no service lists `releases`".into());
    }
    format!("in {}: {}", config.path.display(), why.join("; "))
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
        let name_w = self.mirrors.iter().map(|m| m.name.len()).max().unwrap_or(0);
        let url_w = self
            .mirrors
            .iter()
            .map(|m| m.base_url.as_deref().map_or(1, str::len))
            .max()
            .unwrap_or(0);
        for m in &self.mirrors {
            let line = format!(
                "mirror  {:<name_w$}  {:<url_w$}  {:<9}  {}",
                m.name,
                m.base_url.as_deref().unwrap_or("-"),
                m.result.as_str(),
                m.reason
            );
            writeln!(f, "{}", line.trim_end())?;
            for file in &m.files {
                match &file.error {
                    None => writeln!(f, "  ok        {}", file.path)?,
                    Some(e) => writeln!(f, "  FAILED    {e}")?,
                }
            }
        }
        if let Some(why) = &self.nothing_to_verify {
            return write!(f, "FAILED: nothing to verify: {why}");
        }
        let checked: Vec<&MirrorView> = self.mirrors.iter().filter(|m| m.checked).collect();
        let ready = checked
            .iter()
            .filter(|m| m.result == MirrorState::Ready)
            .count();
        // Drained mirrors take no traffic, so leaving them out is expected; the others
        // that were not verified are named, so that an `ok` never hides them.
        let unverified: Vec<String> = self
            .mirrors
            .iter()
            .filter(|m| !m.checked && m.result != MirrorState::Drained)
            .map(|m| format!("{} ({})", m.name, m.reason))
            .collect();
        if self.ok && unverified.is_empty() {
            write!(
                f,
                "ok: every mirror verified and ready ({ready} of {ready})"
            )?;
        } else if self.ok {
            write!(f, "ok: every mirror checked is ready ({ready} of {ready})")?;
        } else {
            let not: Vec<String> = checked
                .iter()
                .filter(|m| m.result != MirrorState::Ready)
                .map(|m| format!("{} {}", m.name, m.result.as_str()))
                .collect();
            write!(f, "FAILED: {ready} of {} mirrors ready", checked.len())?;
            if !not.is_empty() {
                write!(f, " ({})", not.join(", "))?;
            }
            if self.releases.iter().any(|r| r.error.is_some()) {
                write!(
                    f,
                    "; a release manifest could not be fetched from the origin"
                )?;
            }
        }
        if !unverified.is_empty() {
            write!(f, "; not checked: {}", unverified.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REL: &str = "tool/v1/manifest.json";

    fn failed(error: ProbeError) -> ReleaseOutcome {
        let mismatch = error.is_mismatch();
        ReleaseOutcome::Failed { error, mismatch }
    }

    #[test]
    fn outcomes_in_the_servers_words() {
        let url = "http://m/tool/v1/a.tgz".to_string();
        let cases = [
            (ReleaseOutcome::Verified(HashMap::new()), MirrorState::Ready),
            (
                ReleaseOutcome::Previous { file: None },
                MirrorState::Lagging,
            ),
            (
                failed(ProbeError::Hash {
                    path: "a.tgz".into(),
                    expected: "ab".into(),
                    actual: "cd".into(),
                    seen: Box::default(),
                }),
                MirrorState::Mismatch,
            ),
            (
                failed(ProbeError::Status {
                    url: url.clone(),
                    status: 404,
                }),
                MirrorState::Lagging,
            ),
            (
                failed(ProbeError::Short {
                    path: "a.tgz".into(),
                    expected: 10,
                    got: 5,
                }),
                MirrorState::Lagging,
            ),
            (
                failed(ProbeError::Status {
                    url: url.clone(),
                    status: 503,
                }),
                MirrorState::Down,
            ),
            (
                failed(ProbeError::Connect {
                    url,
                    detail: "refused".into(),
                }),
                MirrorState::Down,
            ),
        ];
        for (outcome, want) in cases {
            let (got, reason) = state_of(&outcome, REL);
            assert_eq!(got, want, "{outcome:?}");
            assert_eq!(reason.is_empty(), want == MirrorState::Ready, "{reason}");
        }
    }

    fn view(name: &str, result: MirrorState, reason: &str, checked: bool) -> MirrorView {
        MirrorView {
            name: name.into(),
            base_url: checked.then(|| format!("http://{name}/")),
            result,
            reason: reason.into(),
            files: Vec::new(),
            checked,
        }
    }

    #[test]
    fn the_summary_names_what_was_not_checked_and_the_exit_code_follows() {
        let ok = VerifyReport {
            ok: true,
            nothing_to_verify: None,
            releases: Vec::new(),
            mirrors: vec![
                view("eu", MirrorState::Ready, "", true),
                view("ap", MirrorState::Unknown, "static (no base-url)", false),
                view("sa", MirrorState::Drained, "drained in config", false),
            ],
        };
        let text = ok.to_string();
        assert!(
            text.ends_with(
                "ok: every mirror checked is ready (1 of 1); not checked: ap (static (no base-url))"
            ),
            "{text}"
        );
        assert_eq!(ok.exit_code(), 0);
        let bad = VerifyReport {
            ok: false,
            mirrors: vec![
                view("eu", MirrorState::Ready, "", true),
                view("us", MirrorState::Mismatch, "a.tgz: sha256 mismatch", true),
            ],
            ..ok
        };
        let text = bad.to_string();
        assert!(
            text.ends_with("FAILED: 1 of 2 mirrors ready (us mismatch)"),
            "{text}"
        );
        assert!(!text.contains("verified"), "{text}");
        assert_eq!(bad.exit_code(), 1);
        let none = VerifyReport {
            ok: false,
            nothing_to_verify: Some("in x.toml: every mirror is static (no base-url)".into()),
            releases: Vec::new(),
            mirrors: Vec::new(),
        };
        assert_eq!(none.exit_code(), 2);
        assert!(
            none.to_string()
                .starts_with("FAILED: nothing to verify: in x.toml")
        );
    }
}
