//! `[cluster]`: several instances sharing verification results and on-call actions through
//! Redis. Without the section nothing is shared and nothing changes.

use toml::Spanned;

use super::{Validator, defaults, raw};

/// The `[cluster]` section.
#[derive(Clone, PartialEq, Eq)]
pub struct Cluster {
    /// `redis://[user][:password@]host[:port][/db]` or `rediss://...` (TLS, system roots).
    pub redis: String,
    /// This instance's name among its peers: who verified, who holds a lock, who wrote an
    /// admin entry.
    pub name: String,
    /// Put before every key, so that several clusters (or other programs) share one Redis.
    pub key_prefix: String,
    /// The key of the HMAC every shared result and admin entry carries; with it, what a
    /// Redis writer without the secret puts there is ignored.
    pub secret: Option<String>,
}

impl Cluster {
    /// The Redis URL with any password replaced, for logs and `/status`.
    pub fn redis_shown(&self) -> String {
        redact(&self.redis)
    }
}

impl std::fmt::Debug for Cluster {
    // The URL may hold the Redis password: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("redis", &self.redis_shown())
            .field("name", &self.name)
            .field("key_prefix", &self.key_prefix)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .finish()
    }
}

/// `url` with the password (the part between `:` and `@` of the authority) as `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// The machine's host name: the default instance name.
pub fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())?;
    let name = name.trim().to_string();
    (!name.is_empty()).then_some(name)
}

/// Why a word cannot be an instance name or a key prefix: Redis keys and `/status` carry
/// them, and logs print them.
fn bad_word(s: &str, max: usize) -> Option<String> {
    if s.len() > max {
        return Some(format!("longer than {max} characters"));
    }
    if let Some(c) = s.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Some(format!("contains {c:?}: no spaces or control characters"));
    }
    None
}

impl Validator<'_> {
    pub(super) fn cluster(&mut self, raw: Spanned<raw::RawCluster>) -> Option<Cluster> {
        let raw::RawCluster {
            redis,
            name,
            key_prefix,
            secret,
        } = raw.into_inner();
        let url = redis.get_ref().trim().to_string();
        let scheme_ok = ["redis://", "rediss://", "redis+unix://", "unix://"]
            .iter()
            .any(|s| url.starts_with(s));
        if !scheme_ok {
            self.err(
                &redis,
                "cluster.redis",
                format!(
                    "`{}` is not a Redis URL: expected redis://[:password@]host[:port][/db] or rediss://... for TLS",
                    redact(&url)
                ),
            );
            return None;
        }
        if let Err(e) = redis::Client::open(url.as_str()) {
            self.err(
                &redis,
                "cluster.redis",
                format!("`{}` is not a usable Redis URL: {e}", redact(&url)),
            );
            return None;
        }
        let name = match name {
            Some(n) => {
                let v = n.get_ref().trim().to_string();
                if v.is_empty() {
                    self.err(&n, "cluster.name", "must not be empty");
                    return None;
                }
                if let Some(why) = bad_word(&v, 64) {
                    self.err(&n, "cluster.name", format!("`{v}` {why}"));
                    return None;
                }
                v
            }
            None => match host_name() {
                Some(h) => h,
                None => {
                    self.err(
                        &redis,
                        "cluster.name",
                        "no host name to take as this instance's name: set `name`",
                    );
                    return None;
                }
            },
        };
        let key_prefix = match key_prefix {
            Some(p) => {
                let v = p.get_ref().clone();
                if let Some(why) = bad_word(&v, 128) {
                    self.err(&p, "cluster.key-prefix", format!("`{v}` {why}"));
                    return None;
                }
                v
            }
            None => defaults::CLUSTER_KEY_PREFIX.to_string(),
        };
        let secret = match secret {
            Some(sec) if sec.get_ref().len() < 16 => {
                self.err(
                    &sec,
                    "cluster.secret",
                    "must be at least 16 characters (e.g. `openssl rand -hex 32`)",
                );
                return None;
            }
            Some(sec) => Some(sec.into_inner()),
            None => None,
        };
        Some(Cluster {
            redis: url,
            name,
            key_prefix,
            secret,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redact("redis://:s3cret@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
        assert_eq!(
            redact("rediss://user:p@ss@redis.example:6380"),
            "rediss://user:***@redis.example:6380"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redact("redis://user@host/1"), "redis://user@host/1");
    }
}
