//! The health-related parts of the config: `[origin]`, `[health]`, and each service's
//! `releases`, `fallback` and `lag-grace`.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::{Validator, defaults, parse_duration, raw};

/// The source of truth for releases.
#[derive(Debug, Clone)]
pub struct Origin {
    pub base_url: reqwest::Url,
    pub ipv4: Vec<Ipv4Addr>,
    pub ipv6: Vec<Ipv6Addr>,
    /// minisign public key (base64), checked at load.
    pub minisign_key: Option<String>,
}

/// What a service answers when none of its mirrors is routable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// The origin's own addresses.
    Origin,
    /// Mirrors that are up but unverified or lagging (never ones with a hash mismatch).
    Live,
    /// SERVFAIL, so resolvers try again later.
    Servfail,
}

impl Fallback {
    pub fn as_str(self) -> &'static str {
        match self {
            Fallback::Origin => "origin",
            Fallback::Live => "live",
            Fallback::Servfail => "servfail",
        }
    }
}

#[derive(Debug, Clone)]
pub struct HealthConfig {
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    pub reverify: Duration,
    pub state_file: Option<PathBuf>,
    pub state_max_age: Duration,
    pub download_timeout: Duration,
    pub max_downloads: usize,
    pub ca_file: Option<PathBuf>,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval: defaults::HEALTH_INTERVAL,
            timeout: defaults::HEALTH_TIMEOUT,
            rise: defaults::HEALTH_RISE,
            fall: defaults::HEALTH_FALL,
            reverify: defaults::HEALTH_REVERIFY,
            state_file: None,
            state_max_age: defaults::HEALTH_STATE_MAX_AGE,
            download_timeout: defaults::HEALTH_DOWNLOAD_TIMEOUT,
            max_downloads: defaults::HEALTH_MAX_DOWNLOADS,
            ca_file: None,
        }
    }
}

/// True if `p` is a safe relative path: no scheme, no leading slash, no `..`, no backslash.
pub fn is_safe_relative_path(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && !p.contains('\\')
        && !p.contains("://")
        && !p.contains('?')
        && !p.contains('#')
        && p.split('/')
            .all(|seg| !seg.is_empty() && seg != ".." && seg != ".")
}

impl Validator<'_> {
    pub(super) fn url(&mut self, s: &Spanned<String>, key: &str) -> Option<reqwest::Url> {
        let mut text = s.get_ref().clone();
        // A base URL names a directory: "https://m.example.com/pub" means ".../pub/".
        if !text.ends_with('/') {
            text.push('/');
        }
        match reqwest::Url::parse(&text) {
            Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => {
                Some(u)
            }
            Ok(_) => {
                self.err(
                    s,
                    key,
                    format!("`{}` is not an http:// or https:// URL", s.get_ref()),
                );
                None
            }
            Err(e) => {
                self.err(s, key, format!("`{}` is not a URL: {e}", s.get_ref()));
                None
            }
        }
    }

    pub(super) fn duration(
        &mut self,
        s: Option<Spanned<String>>,
        key: &str,
        default: Duration,
    ) -> Duration {
        match s {
            None => default,
            Some(s) => match parse_duration(s.get_ref()) {
                Ok(d) => d,
                Err(e) => {
                    self.err(&s, key, e.to_string());
                    default
                }
            },
        }
    }

    pub(super) fn origin(&mut self, raw: Spanned<raw::RawOrigin>) -> Origin {
        let raw::RawOrigin {
            base_url,
            ipv4,
            ipv6,
            minisign_key,
        } = raw.into_inner();
        let url = self.url(&base_url, "origin.base-url");
        let v4 = self.addresses(&ipv4, "origin.ipv4", "IPv4");
        let v6 = self.addresses(&ipv6, "origin.ipv6", "IPv6");
        let key = minisign_key.and_then(|k| {
            match minisign_verify::PublicKey::from_base64(k.get_ref().trim()) {
                Ok(_) => Some(k.get_ref().trim().to_string()),
                Err(e) => {
                    self.err(
                        &k,
                        "origin.minisign-key",
                        format!("not a minisign public key: {e}"),
                    );
                    None
                }
            }
        });
        Origin {
            base_url: url
                .unwrap_or_else(|| reqwest::Url::parse("http://invalid./").expect("static URL")),
            ipv4: v4,
            ipv6: v6,
            minisign_key: key,
        }
    }

    pub(super) fn health(&mut self, raw: Option<Spanned<raw::RawHealth>>) -> HealthConfig {
        let d = HealthConfig::default();
        let Some(raw) = raw else { return d };
        let raw::RawHealth {
            interval,
            timeout,
            rise,
            fall,
            reverify,
            state_file,
            state_max_age,
            download_timeout,
            max_downloads,
            ca_file,
        } = raw.into_inner();
        let positive =
            |v: &mut Validator<'_>, s: Option<Spanned<String>>, key: &str, default: Duration| {
                let span = s.as_ref().map(|x| x.span());
                let out = v.duration(s, key, default);
                if out.is_zero()
                    && let Some(span) = span
                {
                    let line = crate::diag::line_of(v.src, span.start);
                    v.problems.push(crate::diag::Problem::new(
                        v.path,
                        Some(line),
                        Some(key),
                        "must be longer than zero",
                    ));
                }
                out
            };
        let interval = positive(self, interval, "health.interval", d.interval);
        let timeout = positive(self, timeout, "health.timeout", d.timeout);
        let reverify = positive(self, reverify, "health.reverify", d.reverify);
        let state_max_age = self.duration(state_max_age, "health.state-max-age", d.state_max_age);
        let download_timeout = positive(
            self,
            download_timeout,
            "health.download-timeout",
            d.download_timeout,
        );
        let count =
            |v: &mut Validator<'_>, s: Option<Spanned<u32>>, key: &str, default: u32| match s {
                Some(x) if *x.get_ref() == 0 => {
                    v.err(&x, key, "must be at least 1");
                    default
                }
                Some(x) => *x.get_ref(),
                None => default,
            };
        let rise = count(self, rise, "health.rise", d.rise);
        let fall = count(self, fall, "health.fall", d.fall);
        let max_downloads = match max_downloads {
            Some(x) if *x.get_ref() == 0 => {
                self.err(&x, "health.max-downloads", "must be at least 1");
                d.max_downloads
            }
            Some(x) => *x.get_ref(),
            None => d.max_downloads,
        };
        let ca_file = ca_file.map(|c| self.resolve(c.get_ref()));
        HealthConfig {
            interval,
            timeout,
            rise,
            fall,
            reverify,
            state_file: state_file.map(|s| self.resolve(s.get_ref())),
            state_max_age,
            download_timeout,
            max_downloads,
            ca_file,
        }
    }

    /// Manifest paths of a service's `releases` or `archive`: relative to the origin.
    pub(super) fn release_paths(
        &mut self,
        n: &str,
        key: &str,
        list: Vec<Spanned<String>>,
        origin: Option<&Origin>,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for r in &list {
            if is_safe_relative_path(r.get_ref()) {
                out.push(r.get_ref().clone());
            } else {
                self.err(
                    r,
                    &format!("service `{n}`: {key}"),
                    format!(
                        "`{}` is not a path relative to [origin] base-url (no leading /, no ..)",
                        r.get_ref()
                    ),
                );
            }
        }
        if let Some(first) = list.first()
            && origin.is_none()
        {
            self.err(
                first,
                &format!("service `{n}`: {key}"),
                "needs an [origin] section with the base-url the manifests are published under",
            );
        }
        out
    }

    pub(super) fn service_health(
        &mut self,
        n: &str,
        releases: Vec<Spanned<String>>,
        fallback: Option<Spanned<String>>,
        lag_grace: Option<Spanned<String>>,
        origin: Option<&Origin>,
    ) -> (Vec<String>, Fallback, Duration) {
        let out = self.release_paths(n, "releases", releases, origin);
        let origin_has_addrs = origin.is_some_and(|o| !o.ipv4.is_empty() || !o.ipv6.is_empty());
        let fallback = match fallback {
            None => defaults::service_fallback(origin_has_addrs),
            Some(f) => match f.get_ref().as_str() {
                "origin" if origin_has_addrs => Fallback::Origin,
                "origin" => {
                    self.err(
                        &f,
                        &format!("service `{n}`: fallback"),
                        "\"origin\" needs [origin] ipv4 or ipv6 addresses to answer with",
                    );
                    Fallback::Live
                }
                "live" => Fallback::Live,
                "servfail" => Fallback::Servfail,
                other => {
                    self.err(
                        &f,
                        &format!("service `{n}`: fallback"),
                        format!("`{other}` is not a fallback: expected \"origin\", \"live\" or \"servfail\""),
                    );
                    Fallback::Live
                }
            },
        };
        let lag_grace = self.duration(
            lag_grace,
            &format!("service `{n}`: lag-grace"),
            defaults::SERVICE_LAG_GRACE,
        );
        (out, fallback, lag_grace)
    }
}
