//! Reasons as operators read them in `/status`, the status page and the logs.

use super::http::ProbeError;
use crate::manifest::Manifest;

/// Why a liveness probe failed.
pub fn unreachable(e: &ProbeError) -> String {
    e.to_string()
}

/// Why verifying `m` failed. `has` lists the versions the mirror is known to hold; with
/// `superseded`, the origin published other content after the wrong bytes were read.
pub fn failed(e: &ProbeError, _m: &Manifest, _has: &[String], superseded: bool) -> String {
    if superseded {
        return format!("{e} (the origin has published new content since)");
    }
    e.to_string()
}

/// A mirror still on `previous`, the content the release path had before `m`: wholly, or
/// (`file`) in that file under the new manifest.
pub fn previous(m: &Manifest, _previous: Option<&Manifest>, file: Option<&str>) -> String {
    match file {
        None => format!("{}: still the previous release", m.release),
        Some(f) => format!(
            "{}: the new manifest is there, but {f} is still the previous release's",
            m.release
        ),
    }
}
