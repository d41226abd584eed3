//! The redirector's half of the routing table: which mirror may serve each file.
//!
//! DNS routes a whole hostname; a download is one file of one release. The health module
//! reports, per release content, which mirrors verified each file's SHA-256 ([`ReleaseFiles`]
//! in the [`HealthSnapshot`](super::HealthSnapshot)). [`build`] turns that into a [`Downloads`]
//! per redirected service, and [`Downloads::pick`] chooses, for a client's order of mirrors,
//! the first one that may serve the file. Everything here is pure data and pure functions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine;
use http::HeaderValue;
use smallvec::SmallVec;

use super::Eligibility;
use crate::config::{Config, Service};

/// One file of a release as the health module knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFacts {
    /// Relative to the origin's (and every mirror's) base URL.
    pub path: String,
    pub size: Option<u64>,
    pub sha256: [u8; 32],
    /// Mirrors that verified this file's bytes, sorted.
    pub on: Vec<usize>,
}

/// One content of a release path (a manifest), file by file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseFiles {
    /// The manifest path as configured (`releases`, `archive` or an on-call pin).
    pub release: String,
    pub version: String,
    pub published: Option<SystemTime>,
    /// The version is blocked in the admin-state file.
    pub blocked: bool,
    /// False for the content the release path had before its current one.
    pub current: bool,
    /// Verified only for the redirector (`archive`), never required.
    pub archive: bool,
    pub files: Vec<FileFacts>,
    /// Mirrors that verified every file, sorted.
    pub complete: Vec<usize>,
}

/// One file the redirector answers for.
#[derive(Debug, Clone)]
pub struct FileRoute {
    /// Index into [`Downloads::releases`].
    pub release: usize,
    pub size: Option<u64>,
    pub sha256: [u8; 32],
    /// Mirrors that verified it, sorted.
    pub on: Vec<usize>,
    /// The path as it goes into a URL (percent-encoded where needed).
    pub url_path: String,
    /// What a redirect sends, rendered once per table rather than per request.
    pub headers: FileHeaders,
}

/// A file's response headers, ready to send. `HeaderValue`s are shared bytes: a request clones
/// them without copying.
#[derive(Debug, Clone)]
pub struct FileHeaders {
    /// `sha-256=:<base64>:` (RFC 9530).
    pub repr_digest: HeaderValue,
    /// `SHA-256=<base64>` (RFC 3230).
    pub digest: HeaderValue,
    /// Per mirror of the config: `Location` to it, for those that verified the file.
    pub locations: Vec<Option<HeaderValue>>,
    /// Per mirror: its `Link` entry without `pri` (`<url>; rel=duplicate; geo=cc`).
    pub links: Vec<Option<Box<str>>>,
    /// `Location` to the origin, when it has a base URL.
    pub origin: Option<HeaderValue>,
}

/// A release as the redirector shows and counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRoute {
    pub release: String,
    pub version: String,
    pub published: Option<SystemTime>,
    pub blocked: bool,
    pub archive: bool,
    /// Verified on every mirror of the service that is live and not drained.
    pub ready_everywhere: bool,
    /// The directory its files are under, with a trailing slash ("" at the top).
    pub dir: String,
}

/// Where the `latest` alias points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Latest {
    /// Index into [`Downloads::releases`].
    pub release: usize,
    pub version: String,
    /// When the alias came to point here (carried from table to table while it stays).
    pub since: SystemTime,
}

/// One service's files, for its redirectors.
#[derive(Debug, Default)]
pub struct Downloads {
    pub files: HashMap<String, FileRoute>,
    /// Current contents first, in configured order, then previous ones.
    pub releases: Vec<ReleaseRoute>,
    /// Paths of blocked versions' files (410 Gone), unless another release lists them too.
    pub withdrawn: HashMap<String, usize>,
    pub latest: Option<Latest>,
    /// Per mirror of the config: live, not drained, not mismatched, and with a base URL.
    pub usable: Vec<bool>,
    /// Per mirror: its base URL with a trailing slash.
    pub bases: Vec<Option<String>>,
    /// `private, max-age=<service ttl>`.
    pub cache_control: Option<HeaderValue>,
    /// The origin's base URL with a trailing slash.
    pub origin: Option<String>,
}

/// The mirrors that may serve a file, in the client's order: on the stack for any usual
/// number of mirrors.
pub type Picks = SmallVec<[usize; 8]>;

/// Why a mirror is or is not used for a file, as `?mirrorlist` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Candidate {
    Used,
    /// Verified and usable, listed as a duplicate (`Link`, Metalink).
    Alternative,
    NotVerified,
    Unusable,
    NoBaseUrl,
}

impl Candidate {
    pub fn as_str(self) -> &'static str {
        match self {
            Candidate::Used => "used",
            Candidate::Alternative => "alternative",
            Candidate::NotVerified => "has not verified this file",
            Candidate::Unusable => "down, drained or serving wrong bytes",
            Candidate::NoBaseUrl => "no base-url: never probed, cannot be redirected to",
        }
    }
}

impl Downloads {
    /// Whether mirror `m` may serve `f` now.
    pub fn serves(&self, f: &FileRoute, m: usize) -> bool {
        self.usable.get(m).copied().unwrap_or(false) && f.on.binary_search(&m).is_ok()
    }

    /// The mirrors that may serve `f`, in the client's `order`: the first is the one to
    /// redirect to. An IPv6 client gets mirrors with IPv6 addresses first when any of them
    /// qualifies; a client is never refused for its address family alone.
    pub fn pick(&self, f: &FileRoute, order: &[usize], config: &Config, v6: bool) -> Picks {
        let mut out: Picks = order
            .iter()
            .copied()
            .filter(|&m| self.serves(f, m))
            .collect();
        if v6 {
            let has_v6 = |m: &usize| !config.mirrors[*m].ipv6.is_empty();
            if out.iter().any(has_v6) {
                // Stable: each group keeps the client's order.
                out.sort_by_key(|m| !has_v6(m));
            }
        }
        out
    }

    /// The release `latest` points at and the file under it, for a path under the alias.
    pub fn resolve_latest<'a>(&'a self, rest: &str) -> Option<(&'a str, &'a FileRoute)> {
        let l = self.latest.as_ref()?;
        let r = self.releases.get(l.release)?;
        let (key, f) = self.files.get_key_value(&format!("{}{rest}", r.dir))?;
        (f.release == l.release).then_some((key.as_str(), f))
    }

    /// Each mirror of `order` and why it is or is not used for `f`.
    pub fn explain(
        &self,
        f: &FileRoute,
        order: &[usize],
        config: &Config,
        v6: bool,
    ) -> Vec<(usize, Candidate)> {
        let picked = self.pick(f, order, config, v6);
        order
            .iter()
            .map(|&m| {
                let c = if picked.first() == Some(&m) {
                    Candidate::Used
                } else if picked.contains(&m) {
                    Candidate::Alternative
                } else if self.bases.get(m).is_none_or(Option::is_none) {
                    Candidate::NoBaseUrl
                } else if !self.usable.get(m).copied().unwrap_or(false) {
                    Candidate::Unusable
                } else {
                    Candidate::NotVerified
                };
                (m, c)
            })
            .collect()
    }
}

fn with_slash(s: &str) -> String {
    if s.ends_with('/') {
        s.to_string()
    } else {
        format!("{s}/")
    }
}

/// A file's headers: the digests, and `Location` and `Link` for each mirror that verified it.
fn file_headers(config: &Config, d: &Downloads, f: &FileFacts) -> FileHeaders {
    let b64 = base64::engine::general_purpose::STANDARD.encode(f.sha256);
    let path = url_path(&f.path);
    let value = |s: String| HeaderValue::from_maybe_shared(bytes::Bytes::from(s)).ok();
    let mut locations = vec![None; config.mirrors.len()];
    let mut links = vec![None; config.mirrors.len()];
    for &m in &f.on {
        let Some(base) = d.bases.get(m).and_then(Option::as_deref) else {
            continue;
        };
        let url = format!("{base}{path}");
        let geo = config.mirrors[m]
            .country
            .map(|cc| format!("; geo={}", cc.as_str().to_ascii_lowercase()))
            .unwrap_or_default();
        links[m] = Some(format!("<{url}>; rel=duplicate{geo}").into_boxed_str());
        locations[m] = value(url);
    }
    FileHeaders {
        repr_digest: value(format!("sha-256=:{b64}:")).unwrap_or(HeaderValue::from_static("")),
        digest: value(format!("SHA-256={b64}")).unwrap_or(HeaderValue::from_static("")),
        locations,
        links,
        origin: d.origin.as_ref().and_then(|o| value(format!("{o}{path}"))),
    }
}

/// Percent-encodes what may not stand in a URL path as it is; `/` stays.
pub fn url_path(path: &str) -> String {
    const KEEP: &[u8] = b"-._~/!$&'()*+,;=:@";
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || KEEP.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The newest release that is ready everywhere and not blocked: by `published`, then by
/// configured order (earlier wins a tie, as the config lists the newest first or alone).
fn newest_ready(releases: &[ReleaseRoute]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, r) in releases.iter().enumerate() {
        if !r.ready_everywhere || r.blocked {
            continue;
        }
        best = match best {
            None => Some(i),
            Some(b) if r.published > releases[b].published => Some(i),
            keep => keep,
        };
    }
    best
}

/// The downloads of service `si`, from the files health reported and which mirrors are
/// usable (`eligibility`, after on-call actions). `previous` carries `latest`'s `since`.
pub fn build(
    config: &Config,
    si: usize,
    eligibility: &[Eligibility],
    releases: &[ReleaseFiles],
    previous: Option<&Downloads>,
    now: SystemTime,
) -> Downloads {
    let service = &config.services[si];
    let bases: Vec<Option<String>> = config
        .mirrors
        .iter()
        .map(|m| m.base_url.as_ref().map(|u| with_slash(u.as_str())))
        .collect();
    let origin = config
        .origin
        .as_ref()
        .map(|o| with_slash(o.base_url.as_str()));
    let usable: Vec<bool> = (0..config.mirrors.len())
        .map(|m| {
            service.mirrors.contains(&m)
                && bases[m].is_some()
                && eligibility.get(m).is_some_and(|e| *e != Eligibility::Out)
        })
        .collect();
    let mine = |r: &ReleaseFiles| is_of(service, &r.release);
    // Current contents first, so that their files win a path both list.
    let ordered: Vec<&ReleaseFiles> = releases
        .iter()
        .filter(|r| r.current && mine(r))
        .chain(releases.iter().filter(|r| !r.current && mine(r)))
        .collect();
    let mut d = Downloads {
        usable,
        bases,
        cache_control: HeaderValue::from_str(&format!("private, max-age={}", service.ttl)).ok(),
        origin,
        ..Downloads::default()
    };
    for r in ordered {
        let ri = d.releases.len();
        let live_mirrors = service.mirrors.iter().filter(|&&m| d.usable[m]);
        let ready_everywhere = r.current
            && live_mirrors.clone().count() > 0
            && live_mirrors
                .clone()
                .all(|m| r.complete.binary_search(m).is_ok());
        d.releases.push(ReleaseRoute {
            release: r.release.clone(),
            version: r.version.clone(),
            published: r.published,
            blocked: r.blocked,
            archive: r.archive,
            ready_everywhere,
            dir: crate::manifest::release_dir(&r.release).to_string(),
        });
        for f in &r.files {
            if r.blocked {
                d.withdrawn.entry(f.path.clone()).or_insert(ri);
                continue;
            }
            if d.files.contains_key(&f.path) {
                continue;
            }
            let headers = file_headers(config, &d, f);
            d.files.insert(
                f.path.clone(),
                FileRoute {
                    release: ri,
                    size: f.size,
                    sha256: f.sha256,
                    on: f.on.clone(),
                    url_path: url_path(&f.path),
                    headers,
                },
            );
        }
    }
    let files = &d.files;
    d.withdrawn.retain(|p, _| !files.contains_key(p));
    d.latest = newest_ready(&d.releases).map(|ri| {
        let r = &d.releases[ri];
        let since = previous
            .and_then(|p| p.latest.as_ref().map(|l| (l, &p.releases[l.release])))
            .filter(|(l, pr)| l.version == r.version && pr.release == r.release)
            .map_or(now, |(l, _)| l.since);
        Latest {
            release: ri,
            version: r.version.clone(),
            since,
        }
    });
    d
}

/// Whether a release path belongs to a service: configured there (`releases`, `archive`).
/// On-call pins are a service's too; they come through `releases_of` in health, and are
/// reported with the service's name in [`ReleaseFiles::release`] only when configured, so
/// a pin outside the config is served if any service lists it.
fn is_of(service: &Service, release: &str) -> bool {
    service.releases.iter().any(|r| r == release) || service.archive.iter().any(|r| r == release)
}

/// Per redirected service: its downloads. Services no redirector serves get none.
pub fn build_all(
    config: &Config,
    eligibility: &[Vec<Eligibility>],
    releases: &Arc<Vec<ReleaseFiles>>,
    previous: Option<&[Option<Arc<Downloads>>]>,
    now: SystemTime,
) -> Vec<Option<Arc<Downloads>>> {
    (0..config.services.len())
        .map(|si| {
            if !config.redirects.iter().any(|r| r.service == si) {
                return None;
            }
            let prev = previous.and_then(|p| p.get(si)).and_then(Option::as_deref);
            let elig = eligibility.get(si).map(Vec::as_slice).unwrap_or_default();
            Some(Arc::new(build(config, si, elig, releases, prev, now)))
        })
        .collect()
}

#[cfg(test)]
mod tests;
