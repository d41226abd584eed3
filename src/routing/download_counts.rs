//! Downloads the redirector sent, by service, mirror, client continent and release, and
//! range requests that resume rather than start a download. Kept through reloads like the
//! DNS answer counts ([`DownloadCounters::continue_from`]), so that they only ever grow.

use std::sync::Arc;

use super::CONTINENTS;
use crate::config::Config;
use crate::metrics::Counters;

/// Per config: downloads redirected and partial range requests, per redirected service.
#[derive(Debug)]
pub struct DownloadCounters {
    services: Vec<Dims>,
    mirrors: Vec<String>,
    counts: Counters,
}

/// One service's slice of the counters.
#[derive(Debug, Clone, PartialEq)]
struct Dims {
    name: String,
    /// Configured `releases` then `archive`, then "none" (a redirect to the origin for a path
    /// in no manifest).
    releases: Vec<String>,
    offset: usize,
}

/// One counted value with its labels, for `/metrics` and `/status`.
#[derive(Debug, Clone, PartialEq)]
pub struct Count<'a> {
    pub service: &'a str,
    /// None: the origin.
    pub mirror: Option<&'a str>,
    pub continent: &'static str,
    pub release: &'a str,
    pub value: u64,
}

/// The `release` label of a redirect to the origin of a path in no manifest.
pub const NO_RELEASE: &str = "none";

impl DownloadCounters {
    pub fn new(config: &Config) -> Self {
        let mirrors: Vec<String> = config.mirrors.iter().map(|m| m.name.clone()).collect();
        let mut offset = 0;
        let mut services = Vec::new();
        for (si, s) in config.services.iter().enumerate() {
            // Every service gets a slice (empty when no redirector serves it), so that a
            // service index is a slice index.
            let mut releases: Vec<String> = Vec::new();
            if config.redirects.iter().any(|r| r.service == si) {
                for r in s.releases.iter().chain(&s.archive) {
                    if !releases.contains(r) {
                        releases.push(r.clone());
                    }
                }
                releases.push(NO_RELEASE.to_string());
            }
            let len = (mirrors.len() + 1) * CONTINENTS.len() * releases.len() + 1;
            services.push(Dims {
                name: s.name.clone(),
                releases,
                offset,
            });
            offset += len;
        }
        DownloadCounters {
            services,
            mirrors,
            counts: Counters::new(offset),
        }
    }

    /// The counters for `config` after a reload: `old` itself when nothing they are keyed by
    /// changed, else new ones holding `old`'s counts under the labels that remain.
    pub fn continue_from(old: &Arc<DownloadCounters>, config: &Config) -> Arc<DownloadCounters> {
        let new = DownloadCounters::new(config);
        if new.services == old.services && new.mirrors == old.mirrors {
            return old.clone();
        }
        for c in old.downloads() {
            let Some(si) = new.services.iter().position(|s| s.name == c.service) else {
                continue;
            };
            let mirror = match c.mirror {
                Some(m) => match new.mirrors.iter().position(|x| x == m) {
                    Some(i) => Some(i),
                    None => continue,
                },
                None => None,
            };
            let cont = CONTINENTS.iter().position(|x| *x == c.continent);
            let rel = new.services[si]
                .releases
                .iter()
                .position(|r| r == c.release);
            if let (Some(cont), Some(rel)) = (cont, rel) {
                new.counts.add(new.slot(si, mirror, cont, rel), c.value);
            }
        }
        for (si, s) in old.services.iter().enumerate() {
            if let Some(nsi) = new.services.iter().position(|x| x.name == s.name) {
                new.counts.add(new.partial_slot(nsi), old.partial(si));
            }
        }
        Arc::new(new)
    }

    fn slot(&self, si: usize, mirror: Option<usize>, continent: usize, release: usize) -> usize {
        let d = &self.services[si];
        let m = mirror.unwrap_or(self.mirrors.len());
        d.offset + 1 + (m * CONTINENTS.len() + continent) * d.releases.len() + release
    }

    fn partial_slot(&self, si: usize) -> usize {
        self.services[si].offset
    }

    /// The index of a configured release path for service `si` (the "none" label otherwise).
    pub fn release_index(&self, si: usize, release: Option<&str>) -> usize {
        let Some(d) = self.services.get(si) else {
            return 0;
        };
        release
            .and_then(|r| d.releases.iter().position(|x| x == r))
            .unwrap_or(d.releases.len().saturating_sub(1))
    }

    /// One download of service `si` sent to `mirror` (None: the origin).
    pub fn download(&self, si: usize, mirror: Option<usize>, continent: usize, release: usize) {
        if self
            .services
            .get(si)
            .is_some_and(|d| release < d.releases.len())
            && mirror.is_none_or(|m| m < self.mirrors.len())
            && continent < CONTINENTS.len()
        {
            self.counts
                .add(self.slot(si, mirror, continent, release), 1);
        }
    }

    /// One range request of service `si` that does not start at byte 0.
    pub fn partial_request(&self, si: usize) {
        if si < self.services.len() {
            self.counts.add(self.partial_slot(si), 1);
        }
    }

    pub fn partial(&self, si: usize) -> u64 {
        if si < self.services.len() {
            self.counts.get(self.partial_slot(si))
        } else {
            0
        }
    }

    /// Every download count above zero.
    pub fn downloads(&self) -> Vec<Count<'_>> {
        let mut out = Vec::new();
        for (si, d) in self.services.iter().enumerate() {
            for m in 0..=self.mirrors.len() {
                for (ci, cont) in CONTINENTS.iter().enumerate() {
                    for (ri, rel) in d.releases.iter().enumerate() {
                        let mirror = (m < self.mirrors.len()).then_some(m);
                        let value = self.counts.get(self.slot(si, mirror, ci, ri));
                        if value > 0 {
                            out.push(Count {
                                service: &d.name,
                                mirror: mirror.map(|m| self.mirrors[m].as_str()),
                                continent: cont,
                                release: rel,
                                value,
                            });
                        }
                    }
                }
            }
        }
        out
    }

    /// The names of the services with a redirector, with their partial range requests.
    pub fn partials(&self) -> Vec<(&str, u64)> {
        self.services
            .iter()
            .enumerate()
            .filter(|(_, d)| !d.releases.is_empty())
            .map(|(si, d)| (d.name.as_str(), self.partial(si)))
            .collect()
    }
}
