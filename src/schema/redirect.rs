//! The redirector's JSON documents: `/<path>?mirrorlist` with `Accept: application/json`
//! ([`MirrorList`]), and its part of `/status` ([`RedirectView`]).

use serde::{Deserialize, Serialize};

/// Every candidate mirror for one file, in the client's order, and why each is or is not used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MirrorList {
    /// Relative to the origin's base URL.
    pub path: String,
    pub release: String,
    pub version: String,
    pub size: Option<u64>,
    pub sha256: String,
    /// The client address the order was worked out for.
    pub client: String,
    pub mirrors: Vec<MirrorCandidate>,
    /// Where the file is sent when no mirror qualifies (null without an origin base-url).
    #[serde(deserialize_with = "super::required")]
    pub origin: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MirrorCandidate {
    pub name: String,
    #[serde(deserialize_with = "super::required")]
    pub url: Option<String>,
    #[serde(deserialize_with = "super::required")]
    pub country: Option<String>,
    /// "used", "alternative", or why not.
    pub state: String,
    pub used: bool,
}

/// One `[[redirect]]` in `/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedirectView {
    pub service: String,
    pub listen: Vec<String>,
    pub tls_listen: Vec<String>,
    #[serde(deserialize_with = "super::required")]
    pub latest: Option<LatestView>,
    /// Downloads per configured release (and "none": unlisted paths sent to the origin).
    pub downloads_by_release: Vec<DownloadCount>,
    /// Downloads per mirror ("origin" for the origin).
    pub downloads_by_mirror: Vec<DownloadCount>,
    /// Range requests not starting at byte 0: resumed or segmented, not counted as downloads.
    pub partial_requests: u64,
    pub files: usize,
    pub withdrawn_files: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatestView {
    /// The alias, e.g. "tool/latest".
    pub alias: String,
    /// null while no release is ready everywhere.
    #[serde(deserialize_with = "super::required")]
    pub release: Option<String>,
    #[serde(deserialize_with = "super::required")]
    pub version: Option<String>,
    #[serde(deserialize_with = "super::required")]
    pub since: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DownloadCount {
    pub name: String,
    pub count: u64,
}
