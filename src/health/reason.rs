//! Reasons as operators read them in `/status`, the status page and the logs: what the finding
//! means first ("does not have v1.9.0 yet", "wrong bytes in v1.8.2"), then the technical
//! detail (URL, file, sizes, hashes) that says exactly what was seen.

use super::http::ProbeError;
use crate::manifest::Manifest;

/// Why a liveness probe failed.
pub fn unreachable(e: &ProbeError) -> String {
    let what = match e {
        ProbeError::Timeout { .. } => "not answering in time",
        ProbeError::Connect { .. } | ProbeError::Tls { .. } => "unreachable",
        ProbeError::Redirect { .. } => "redirects elsewhere",
        ProbeError::Status { .. } => "server error",
        _ => "unusable answer",
    };
    format!("{what}: {e}")
}

/// Why verifying `m` failed. `has` lists the versions the mirror is known to hold; with
/// `superseded`, the origin published other content after the wrong bytes were read.
pub fn failed(e: &ProbeError, m: &Manifest, has: &[String], superseded: bool) -> String {
    let v = &m.version;
    if superseded {
        return format!(
            "probably synced a release newer than {v}: {e} (the origin has published new content since)"
        );
    }
    match e {
        ProbeError::Status { status: 404, url } if url.ends_with(&m.release) => {
            let others: Vec<&str> = has.iter().filter(|h| *h != v).map(String::as_str).collect();
            if others.is_empty() {
                format!("does not have {v} yet: {e}")
            } else {
                format!(
                    "does not have {v} yet (has only {}): {e}",
                    others.join(", ")
                )
            }
        }
        ProbeError::Status { status: 404, .. } => format!("a file of {v} is missing: {e}"),
        ProbeError::Hash { .. } | ProbeError::Size { .. } => format!("wrong bytes in {v}: {e}"),
        ProbeError::Short { .. } | ProbeError::Changed { .. } => {
            format!("still syncing {v}: {e}")
        }
        ProbeError::Timeout { .. }
        | ProbeError::Stalled { .. }
        | ProbeError::DownloadTimeout { .. } => format!("too slow to verify {v}: {e}"),
        ProbeError::Connect { .. } | ProbeError::Tls { .. } => format!("unreachable: {e}"),
        ProbeError::Redirect { .. } => format!("redirects elsewhere: {e}"),
        ProbeError::Status { .. } | ProbeError::Body { .. } => {
            format!("cannot verify {v}: {e}")
        }
    }
}

/// A mirror still on `previous`, the content the release path had before `m`: wholly, or
/// (`file`) in that file under the new manifest.
pub fn previous(m: &Manifest, previous: Option<&Manifest>, file: Option<&str>) -> String {
    let v = &m.version;
    let was = match previous {
        Some(p) if p.version != *v => format!("{}'s", p.version),
        _ => "the previous release's".to_string(),
    };
    match file {
        None => format!("does not have {v} yet: its {} is still {was}", m.release),
        Some(f) => format!("still syncing {v}: the new manifest is there, but {f} is still {was}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(version: &str) -> Manifest {
        Manifest {
            release: "tool/stable/manifest.json".into(),
            version: version.into(),
            published: None,
            files: Vec::new(),
            digest: [0; 32],
        }
    }

    #[test]
    fn a_release_not_there_yet_says_which_the_mirror_has() {
        let m = manifest("v1.9.0");
        let e = ProbeError::Status {
            url: "http://m/tool/stable/manifest.json".into(),
            status: 404,
        };
        assert_eq!(
            failed(&e, &m, &["v1.8.2".into(), "v1.9.0".into()], false),
            "does not have v1.9.0 yet (has only v1.8.2): http://m/tool/stable/manifest.json: HTTP 404"
        );
        assert_eq!(
            failed(&e, &m, &[], false),
            "does not have v1.9.0 yet: http://m/tool/stable/manifest.json: HTTP 404"
        );
        let file = ProbeError::Status {
            url: "http://m/tool/stable/tool.zip".into(),
            status: 404,
        };
        assert_eq!(
            failed(&file, &m, &[], false),
            "a file of v1.9.0 is missing: http://m/tool/stable/tool.zip: HTTP 404"
        );
    }

    #[test]
    fn wrong_short_and_slow_lead_with_what_they_mean() {
        let m = manifest("v1.9.0");
        let hash = ProbeError::Hash {
            path: "tool.zip".into(),
            expected: "ab".into(),
            actual: "cd".into(),
            seen: Box::default(),
        };
        assert_eq!(
            failed(&hash, &m, &[], false),
            "wrong bytes in v1.9.0: tool.zip: sha256 mismatch: expected ab, got cd"
        );
        assert!(failed(&hash, &m, &[], true).starts_with("probably synced a release newer"));
        let short = ProbeError::Short {
            path: "tool.zip".into(),
            expected: 10,
            got: 4,
        };
        assert!(failed(&short, &m, &[], false).starts_with("still syncing v1.9.0: tool.zip: "));
        let slow = ProbeError::Stalled {
            url: "u".into(),
            idle: 1.0,
            got: 1,
            size: 2,
        };
        assert!(failed(&slow, &m, &[], false).starts_with("too slow to verify v1.9.0: u: "));
        let down = ProbeError::Connect {
            url: "u".into(),
            detail: "refused".into(),
        };
        assert_eq!(
            unreachable(&down),
            "unreachable: u: connection failed: refused"
        );
    }

    #[test]
    fn the_previous_release_is_named() {
        let m = manifest("v1.9.0");
        let p = manifest("v1.8.2");
        assert_eq!(
            previous(&m, Some(&p), None),
            "does not have v1.9.0 yet: its tool/stable/manifest.json is still v1.8.2's"
        );
        assert_eq!(
            previous(&m, Some(&p), Some("tool.zip")),
            "still syncing v1.9.0: the new manifest is there, but tool.zip is still v1.8.2's"
        );
        assert!(previous(&m, None, None).ends_with("still the previous release's"));
    }
}
