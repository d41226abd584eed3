//! Release manifests: what the origin says a release is, file by file.
//!
//! Two formats. JSON: `{"version": "v1.8.2", "published": "<RFC 3339>", "files": [{"path",
//! "size", "sha256"}]}`. SHA256SUMS as sha256sum and GoReleaser write it: `<hex>  <path>` per
//! line (`*` before the path for binary mode); sizes are then taken from the origin's
//! Content-Length. Paths are relative to the manifest's own directory and may not escape it.
//! An optional minisign signature (`<manifest>.minisig`) is checked before anything is parsed.

use std::time::SystemTime;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::is_safe_relative_path;

/// One file a mirror must serve byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Relative to the manifest's directory.
    pub path: String,
    /// None until known (SHA256SUMS: from the origin's Content-Length).
    pub size: Option<u64>,
    pub sha256: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The manifest's path relative to the origin base URL.
    pub release: String,
    pub version: String,
    pub published: Option<SystemTime>,
    pub files: Vec<FileEntry>,
    /// SHA-256 of the manifest bytes: identifies this content of the release path.
    pub digest: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("{release}: line {line}: {message}")]
    Line {
        release: String,
        line: usize,
        message: String,
    },
    #[error("{release}: {message}")]
    Invalid { release: String, message: String },
    #[error("{release}: signature check failed: {message}")]
    Signature { release: String, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonManifest {
    version: String,
    #[serde(default)]
    published: Option<String>,
    files: Vec<JsonFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonFile {
    path: String,
    size: u64,
    sha256: String,
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 64 hex digits as 32 bytes (a SHA-256 digest or an HMAC-SHA256 tag).
pub fn parse_sha256(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let hi = (chunk[0] as char).to_digit(16)?;
        let lo = (chunk[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// The directory part of a release path ("tool/v1.8.2/manifest.json" -> "tool/v1.8.2/").
pub fn release_dir(release: &str) -> &str {
    match release.rfind('/') {
        Some(i) => &release[..=i],
        None => "",
    }
}

/// Checks a detached minisign signature over the manifest bytes.
pub fn verify_signature(
    release: &str,
    bytes: &[u8],
    sig: &str,
    public_key: &str,
) -> Result<(), ManifestError> {
    let fail = |message: String| ManifestError::Signature {
        release: release.to_string(),
        message,
    };
    let pk = minisign_verify::PublicKey::from_base64(public_key)
        .map_err(|e| fail(format!("public key: {e}")))?;
    let sig = minisign_verify::Signature::decode(sig)
        .map_err(|e| fail(format!("malformed .minisig: {e}")))?;
    pk.verify(bytes, &sig, false)
        .map_err(|e| fail(e.to_string()))
}

/// Parses manifest bytes fetched from `release` (format chosen by content).
pub fn parse(release: &str, bytes: &[u8]) -> Result<Manifest, ManifestError> {
    let invalid = |message: String| ManifestError::Invalid {
        release: release.to_string(),
        message,
    };
    let text = std::str::from_utf8(bytes).map_err(|_| invalid("not UTF-8 text".into()))?;
    let digest: [u8; 32] = Sha256::digest(bytes).into();
    let trimmed = text.trim_start();
    let (version, published, files) = if trimmed.starts_with('{') {
        let m: JsonManifest = serde_json::from_str(text).map_err(|e| ManifestError::Line {
            release: release.to_string(),
            line: e.line(),
            message: e.to_string(),
        })?;
        let published = match m.published {
            Some(p) => Some(
                humantime::parse_rfc3339_weak(&p)
                    .map_err(|e| invalid(format!("`published` is not an RFC 3339 time: {e}")))?,
            ),
            None => None,
        };
        let mut files = Vec::new();
        for f in m.files {
            let sha256 = parse_sha256(&f.sha256.to_ascii_lowercase()).ok_or_else(|| {
                invalid(format!(
                    "{}: `{}` is not a SHA-256 in hex",
                    f.path, f.sha256
                ))
            })?;
            files.push(FileEntry {
                path: f.path,
                size: Some(f.size),
                sha256,
            });
        }
        (m.version, published, files)
    } else {
        let mut files = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            let bad = |message: &str| ManifestError::Line {
                release: release.to_string(),
                line: i + 1,
                message: message.to_string(),
            };
            let (hash, rest) = line
                .split_once(' ')
                .ok_or_else(|| bad("expected `<sha256 hex>  <path>`"))?;
            let path = rest
                .strip_prefix(' ')
                .or_else(|| rest.strip_prefix('*'))
                .ok_or_else(|| bad("expected two spaces (or ` *`) between hash and path"))?;
            let sha256 = parse_sha256(&hash.to_ascii_lowercase())
                .ok_or_else(|| bad("not a SHA-256 in hex"))?;
            files.push(FileEntry {
                path: path.to_string(),
                size: None,
                sha256,
            });
        }
        // SHA256SUMS carries no version: the release's directory name stands in for it.
        let dir = release_dir(release).trim_end_matches('/');
        let version = dir
            .rsplit('/')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or(release);
        (version.to_string(), None, files)
    };
    if files.is_empty() {
        return Err(invalid("lists no files".into()));
    }
    let mut seen = std::collections::HashSet::new();
    for f in &files {
        if !is_safe_relative_path(&f.path) {
            return Err(invalid(format!(
                "file path `{}` is not relative to the manifest's directory (no leading /, no ..)",
                f.path
            )));
        }
        if !seen.insert(&f.path) {
            return Err(invalid(format!("file `{}` is listed twice", f.path)));
        }
    }
    Ok(Manifest {
        release: release.to_string(),
        version,
        published,
        files,
        digest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn json_manifest() {
        let j = format!(
            r#"{{"version": "v1.8.2", "published": "2026-11-20T10:00:00Z", "files": [{{"path": "tool.tar.gz", "size": 4, "sha256": "{H}"}}]}}"#
        );
        let m = parse("tool/v1.8.2/manifest.json", j.as_bytes()).unwrap();
        assert_eq!(m.version, "v1.8.2");
        assert_eq!(m.files[0].size, Some(4));
        assert_eq!(hex(&m.files[0].sha256), H);
        assert!(m.published.is_some());
    }

    #[test]
    fn sha256sums() {
        let s = format!("{H}  tool.tar.gz\n{H} *tool.tar.gz.sig\n");
        let m = parse("tool/v1.8.2/SHA256SUMS", s.as_bytes()).unwrap();
        assert_eq!(m.version, "v1.8.2");
        assert_eq!(m.files.len(), 2);
        assert_eq!(m.files[1].path, "tool.tar.gz.sig");
        assert_eq!(m.files[0].size, None);
    }

    #[test]
    fn errors_name_the_line() {
        let s = format!("{H}  ok\nnot-a-hash  x\n");
        let e = parse("r/SHA256SUMS", s.as_bytes()).unwrap_err();
        assert_eq!(e.to_string(), "r/SHA256SUMS: line 2: not a SHA-256 in hex");
        let e = parse("r/m.json", b"{\"version\": \"v\",\n \"files\": 3}").unwrap_err();
        assert!(e.to_string().starts_with("r/m.json: line 2:"), "{e}");
    }

    #[test]
    fn paths_may_not_escape() {
        for p in ["../etc/passwd", "/abs", "a/../../b", "a\\b"] {
            let s = format!("{H}  {p}\n");
            assert!(parse("r/SHA256SUMS", s.as_bytes()).is_err(), "{p}");
        }
    }
}
