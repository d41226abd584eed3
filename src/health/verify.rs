//! Fetching manifests from the origin and verifying a release on a mirror: shared by the
//! prober and `mirrordns verify`.

use std::collections::HashMap;

use tokio::sync::Semaphore;

use super::http::{self, Endpoint, ProbeError, Validators};
use crate::config::{Config, HealthConfig};
use crate::manifest::{self, Manifest, ManifestError, release_dir};

/// Largest manifest or signature we accept.
pub const MANIFEST_CAP: u64 = 16 << 20;
const SIGNATURE_CAP: u64 = 16 << 10;

#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Probe(#[from] ProbeError),
    #[error("{0}")]
    Manifest(#[from] ManifestError),
}

impl FetchError {
    pub fn is_signature(&self) -> bool {
        matches!(self, FetchError::Manifest(ManifestError::Signature { .. }))
    }
}

/// Fetches and checks one release manifest from the origin. For SHA256SUMS, file sizes come
/// from the origin's Content-Length.
pub async fn fetch_manifest(
    ep: &Endpoint,
    config: &Config,
    release: &str,
) -> Result<Manifest, FetchError> {
    let origin = config
        .origin
        .as_ref()
        .ok_or_else(|| ManifestError::Invalid {
            release: release.to_string(),
            message: "no [origin] configured".into(),
        })?;
    let timeout = config.health.timeout;
    let url = ep.url(release)?;
    let (bytes, _) = http::fetch(ep, &url, MANIFEST_CAP, timeout).await?;
    if let Some(key) = &origin.minisign_key {
        let sig_url = ep.url(&format!("{release}.minisig"))?;
        let sig = match http::fetch(ep, &sig_url, SIGNATURE_CAP, timeout).await {
            Ok((s, _)) => s,
            Err(e) => {
                return Err(ManifestError::Signature {
                    release: release.to_string(),
                    message: format!("no signature: {e}"),
                }
                .into());
            }
        };
        let sig = String::from_utf8_lossy(&sig);
        manifest::verify_signature(release, &bytes, &sig, key)?;
    }
    let mut m = manifest::parse(release, &bytes)?;
    let dir = release_dir(release);
    for f in m.files.iter_mut().filter(|f| f.size.is_none()) {
        let u = ep.url(&format!("{dir}{}", f.path))?;
        let v = http::head(ep, &u, timeout).await?;
        let len = v.length.ok_or_else(|| ManifestError::Invalid {
            release: release.to_string(),
            message: format!(
                "{}: the origin sent no Content-Length to take the size from",
                f.path
            ),
        })?;
        f.size = Some(len);
    }
    Ok(m)
}

/// How one file fared on a mirror.
#[derive(Debug, Clone)]
pub struct FileResult {
    pub path: String,
    pub result: Result<Validators, ProbeError>,
}

/// The outcome of verifying one release on one mirror.
#[derive(Debug, Clone)]
pub enum ReleaseOutcome {
    /// Every file matched.
    Verified(HashMap<String, Validators>),
    /// The mirror serves the previous content of this release path: not synced yet. With
    /// `file`, its manifest is already the new one but that file is still the previous
    /// release's (a sync tool that writes the manifest before the files it lists).
    Previous { file: Option<String> },
    /// Something failed; `mismatch` when it served wrong bytes.
    Failed { error: ProbeError, mismatch: bool },
}

/// What every verification of one mirror shares.
pub struct Verifier<'a> {
    pub ep: &'a Endpoint,
    pub hc: &'a HealthConfig,
    /// The `max-downloads` limit, shared by every mirror.
    pub downloads: &'a Semaphore,
    /// Try and report every file (`mirrordns verify`); otherwise the first failure ends a
    /// release (the prober retries next round).
    pub keep_going: bool,
}

/// Verifies `m` on `v`'s mirror. Files in `done` already matched and are skipped.
/// `previous` is the content the release path had before `m`, if it changed while we watched.
pub async fn verify_release(
    v: &Verifier<'_>,
    m: &Manifest,
    previous: Option<&Manifest>,
    done: &mut HashMap<String, Validators>,
    report: &mut Vec<FileResult>,
) -> ReleaseOutcome {
    let Verifier {
        ep,
        hc,
        downloads: _,
        keep_going,
    } = *v;
    // The mirror's copy of the manifest must be the origin's.
    let murl = match ep.url(&m.release) {
        Ok(u) => u,
        Err(error) => {
            return ReleaseOutcome::Failed {
                error,
                mismatch: false,
            };
        }
    };
    match http::fetch(ep, &murl, MANIFEST_CAP, hc.timeout).await {
        Ok((bytes, seen)) => {
            use sha2::Digest;
            let d: [u8; 32] = sha2::Sha256::digest(&bytes).into();
            if d != m.digest {
                if Some(d) == previous.map(|p| p.digest) {
                    return ReleaseOutcome::Previous { file: None };
                }
                let error = ProbeError::Hash {
                    path: m.release.clone(),
                    expected: manifest::hex(&m.digest),
                    actual: manifest::hex(&d),
                    seen: Box::new(seen),
                };
                report.push(FileResult {
                    path: m.release.clone(),
                    result: Err(error.clone()),
                });
                return ReleaseOutcome::Failed {
                    error,
                    mismatch: true,
                };
            }
        }
        Err(error) => {
            report.push(FileResult {
                path: m.release.clone(),
                result: Err(error.clone()),
            });
            return ReleaseOutcome::Failed {
                error,
                mismatch: false,
            };
        }
    }
    let dir = release_dir(&m.release);
    let mut first_err: Option<ProbeError> = None;
    let mut mismatch = false;
    for f in &m.files {
        if done.contains_key(&f.path) {
            continue;
        }
        let Some(size) = f.size else { continue };
        let url = match ep.url(&format!("{dir}{}", f.path)) {
            Ok(u) => u,
            Err(e) => {
                first_err.get_or_insert(e);
                break;
            }
        };
        let result = v.download(&url, &f.path, size, &f.sha256).await;
        report.push(FileResult {
            path: f.path.clone(),
            result: result.clone(),
        });
        match result {
            Ok(v) => {
                done.insert(f.path.clone(), v);
            }
            Err(e) if v.previous_file(&e, previous, &url, &f.path).await => {
                return ReleaseOutcome::Previous {
                    file: Some(f.path.clone()),
                };
            }
            Err(e) => {
                mismatch |= e.is_mismatch();
                first_err.get_or_insert(e);
                if !keep_going {
                    break;
                }
            }
        }
    }
    match first_err {
        None => ReleaseOutcome::Verified(std::mem::take(done)),
        Some(error) => ReleaseOutcome::Failed { error, mismatch },
    }
}

impl Verifier<'_> {
    /// One file checked against a manifest entry, within the `max-downloads` limit.
    async fn download(
        &self,
        url: &reqwest::Url,
        path: &str,
        size: u64,
        sha256: &[u8; 32],
    ) -> Result<Validators, ProbeError> {
        let _permit = self.downloads.acquire().await;
        let hc = self.hc;
        http::verify_file(
            self.ep,
            url,
            path,
            size,
            sha256,
            hc.timeout,
            hc.download_timeout,
        )
        .await
    }

    /// Whether `e`, for `path`, is because the mirror still has the file the previous content
    /// listed there: that SHA-256 (the size alone says too little). A file of the previous
    /// size where the new one differs is downloaded once more to hash it against the previous
    /// entry.
    async fn previous_file(
        &self,
        e: &ProbeError,
        previous: Option<&Manifest>,
        url: &reqwest::Url,
        path: &str,
    ) -> bool {
        let Some(old) = previous.and_then(|p| p.files.iter().find(|f| f.path == path)) else {
            return false;
        };
        match e {
            ProbeError::Hash { actual, .. } => *actual == manifest::hex(&old.sha256),
            ProbeError::Size { actual, .. } => match old.size {
                Some(size) if size.to_string() == *actual => {
                    self.download(url, path, size, &old.sha256).await.is_ok()
                }
                _ => false,
            },
            _ => false,
        }
    }
}
