//! Several instances, one cluster: verification results and on-call actions shared through
//! Redis (`[cluster]`).
//!
//! Nothing on the query path touches Redis. The health module asks this handle for a peer's
//! result before downloading and publishes its own after; a background task ([`run`])
//! keeps the heartbeat, reads the peers and the cluster-wide admin entries. Every Redis
//! call is bounded by [`OP_TIMEOUT`]; when Redis cannot be reached the instance works alone,
//! as without `[cluster]`, and picks sharing up again when it comes back.

pub mod admin;
pub mod command;
pub mod record;
mod task;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime};

use redis::aio::MultiplexedConnection;
use tracing::{info, warn};

use crate::config::Cluster as ClusterConfig;
pub use record::{AdminKind, AdminRecord, PeerRecord, VerifyRecord};
pub use task::run;

/// The longest any one Redis call may take before Redis counts as unreachable.
pub const OP_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a verification lock lives unless renewed; its holder renews it every third of
/// this, so a crashed holder blocks the others for at most this long.
pub const LOCK_TTL: Duration = Duration::from_secs(15);
/// How often the admin entries and peers are read (entries apply within a second).
pub const POLL_EVERY: Duration = Duration::from_millis(500);
/// How often this instance writes its heartbeat; a peer unheard of for
/// [`PEER_GONE_AFTER`] is no longer listed.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
pub const PEER_GONE_AFTER: Duration = Duration::from_secs(30);
/// Between connection attempts while Redis is unreachable.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);

/// The Redis keys of one cluster.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    /// One mirror's verification of one manifest digest (hex).
    pub fn result(&self, mirror: &str, digest: &str) -> String {
        format!("{}verify:{mirror}:{digest}", self.prefix)
    }

    /// Who is verifying one mirror's copy of one manifest digest now.
    pub fn lock(&self, mirror: &str, digest: &str) -> String {
        format!("{}lock:{mirror}:{digest}", self.prefix)
    }

    /// The cluster-wide admin entries (a hash).
    pub fn admin(&self) -> String {
        format!("{}admin", self.prefix)
    }

    /// Heartbeats (a hash by instance name).
    pub fn peers(&self) -> String {
        format!("{}peers", self.prefix)
    }
}

/// Counts for `/metrics`.
#[derive(Debug, Default)]
pub struct ClusterCounters {
    /// Peer results used instead of a download.
    pub adopted: AtomicU64,
    /// Peer results found but not used (stale, other manifest, validators changed, ...).
    pub not_adopted: AtomicU64,
    /// Own results written for the peers.
    pub published: AtomicU64,
    /// Times a peer held the lock and this instance waited for its result.
    pub waited: AtomicU64,
    /// Times Redis became unreachable.
    pub outages: AtomicU64,
}

/// A peer seen through its heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub version: String,
    pub last_seen: SystemTime,
}

/// What `/status` shows of the cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterState {
    /// Since when Redis has been unreachable (None: reachable, or never tried).
    pub down_since: Option<SystemTime>,
    pub last_error: Option<(SystemTime, String)>,
    /// Peers heard from within [`PEER_GONE_AFTER`], this instance included.
    pub peers: Vec<Peer>,
    /// Cluster-wide admin entries as last read (kept while Redis is unreachable).
    pub admin: Vec<AdminRecord>,
    /// Admin entries in Redis that could not be read, by field.
    pub admin_errors: Vec<String>,
}

/// The handle every user of the cluster gets.
pub struct Cluster {
    pub config: ClusterConfig,
    pub keys: Keys,
    client: redis::Client,
    conn: tokio::sync::Mutex<Conn>,
    connected: AtomicBool,
    pub counters: ClusterCounters,
    state: Mutex<ClusterState>,
    started: SystemTime,
}

#[derive(Default)]
struct Conn {
    live: Option<MultiplexedConnection>,
    last_attempt: Option<Instant>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("[cluster] redis `{url}`: {error}")]
    Url { url: String, error: String },
}

/// The outcome of asking for a verification lock.
pub enum Lock {
    /// This instance verifies; dropping the guard releases the lock.
    Acquired(LockGuard),
    /// A peer is verifying.
    Held { by: String },
    /// Redis cannot be reached: verify alone.
    Unavailable,
}

impl Cluster {
    pub fn new(config: &ClusterConfig) -> Result<Cluster, ClusterError> {
        // rediss:// needs a process-wide rustls provider; the probes' clients name theirs.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = redis::Client::open(config.redis.as_str()).map_err(|e| ClusterError::Url {
            url: config.redis_shown(),
            error: e.to_string(),
        })?;
        Ok(Cluster {
            keys: Keys::new(&config.key_prefix),
            config: config.clone(),
            client,
            conn: tokio::sync::Mutex::new(Conn::default()),
            connected: AtomicBool::new(false),
            counters: ClusterCounters::default(),
            state: Mutex::new(ClusterState::default()),
            started: SystemTime::now(),
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Seals `doc` with `[cluster] secret`, if there is one.
    pub fn seal<T: record::Sealed>(&self, doc: &mut T) {
        if let Some(k) = &self.config.secret {
            doc.seal(k.as_bytes());
        }
    }

    /// Whether `doc` may be believed: always without a secret, else only when sealed with it.
    pub fn trusts<T: record::Sealed>(&self, doc: &T) -> bool {
        self.config
            .secret
            .as_ref()
            .is_none_or(|k| doc.sealed_with(k.as_bytes()))
    }

    /// Whether the last Redis call succeeded.
    pub fn connected(&self) -> bool {
        self.connected.load(Relaxed)
    }

    pub fn state(&self) -> ClusterState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn with_state(&self, f: impl FnOnce(&mut ClusterState)) {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// A connection, made again (at most once per [`RECONNECT_EVERY`]) after a failure.
    async fn connection(&self) -> Option<MultiplexedConnection> {
        let mut c = self.conn.lock().await;
        if let Some(live) = &c.live {
            return Some(live.clone());
        }
        if c.last_attempt
            .is_some_and(|t| t.elapsed() < RECONNECT_EVERY)
        {
            return None;
        }
        c.last_attempt = Some(Instant::now());
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(OP_TIMEOUT))
            .set_response_timeout(Some(OP_TIMEOUT));
        let made = tokio::time::timeout(
            OP_TIMEOUT * 2,
            self.client
                .get_multiplexed_async_connection_with_config(&cfg),
        )
        .await;
        match made {
            Ok(Ok(conn)) => {
                c.live = Some(conn.clone());
                Some(conn)
            }
            Ok(Err(e)) => {
                drop(c);
                self.failed(&e.to_string());
                None
            }
            Err(_) => {
                drop(c);
                self.failed("no connection within the time limit");
                None
            }
        }
    }

    /// Runs one command, bounded in time; None (Redis unreachable, logged once per outage)
    /// on any failure.
    pub(crate) async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Option<T> {
        let mut conn = self.connection().await?;
        match tokio::time::timeout(OP_TIMEOUT, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => {
                self.succeeded();
                Some(v)
            }
            Ok(Err(e)) => {
                // A reply of the wrong type is our bug or a foreign key, not an outage.
                if e.kind() == redis::ErrorKind::UnexpectedReturnType
                    || e.kind() == redis::ErrorKind::Parse
                {
                    warn!(error = %e, "unexpected Redis reply");
                    return None;
                }
                self.conn.lock().await.live = None;
                self.failed(&e.to_string());
                None
            }
            Err(_) => {
                self.conn.lock().await.live = None;
                self.failed("no reply within the time limit");
                None
            }
        }
    }

    fn succeeded(&self) {
        if !self.connected.swap(true, Relaxed) {
            let mut was_down = false;
            self.with_state(|s| was_down = s.down_since.take().is_some());
            if was_down {
                info!(redis = %self.config.redis_shown(), "Redis reachable again: sharing verification results and admin entries");
            } else {
                info!(redis = %self.config.redis_shown(), name = %self.name(), "joined the cluster");
            }
        }
    }

    fn failed(&self, error: &str) {
        let now = SystemTime::now();
        self.connected.store(false, Relaxed);
        // One outage from the first failure to the next success, however many calls fail.
        let mut first = false;
        self.with_state(|s| {
            s.last_error = Some((now, error.to_string()));
            first = s.down_since.is_none();
            s.down_since.get_or_insert(now);
        });
        if first {
            self.counters.outages.fetch_add(1, Relaxed);
            warn!(redis = %self.config.redis_shown(), %error, "Redis unreachable: verifying alone, keeping the cluster's admin entries until they expire");
        }
    }

    /// A peer's (or our own earlier) result for `mirror` and `digest` (hex); None when there
    /// is none, it cannot be read, or Redis is unreachable.
    pub async fn result(&self, mirror: &str, digest: &str) -> Option<VerifyRecord> {
        let raw: Option<String> = self
            .query(redis::cmd("GET").arg(self.keys.result(mirror, digest)))
            .await?;
        let raw = raw?;
        match serde_json::from_str(&raw) {
            Ok(r) => Some(r),
            Err(e) => {
                warn!(mirror, error = %e, "unreadable verification result in Redis: ignored");
                None
            }
        }
    }

    /// Stores this instance's result for the others, kept for `keep`.
    pub async fn publish(&self, rec: &VerifyRecord, keep: Duration) {
        let mut rec = rec.clone();
        self.seal(&mut rec);
        let Ok(json) = serde_json::to_string(&rec) else {
            return;
        };
        let key = self.keys.result(&rec.mirror, &rec.manifest_sha256);
        let done: Option<()> = self
            .query(
                redis::cmd("SET")
                    .arg(key)
                    .arg(json)
                    .arg("EX")
                    .arg(keep.as_secs().max(1)),
            )
            .await;
        if done.is_some() {
            self.counters.published.fetch_add(1, Relaxed);
        }
    }

    /// Asks for the lock on verifying `mirror`'s copy of `digest`.
    pub async fn lock(self: &std::sync::Arc<Self>, mirror: &str, digest: &str) -> Lock {
        let key = self.keys.lock(mirror, digest);
        let mut token = [0u8; 8];
        let _ = getrandom::fill(&mut token);
        let value = record::lock_value(self.name(), u64::from_le_bytes(token));
        let set: Option<Option<String>> = self
            .query(
                redis::cmd("SET")
                    .arg(&key)
                    .arg(&value)
                    .arg("NX")
                    .arg("PX")
                    .arg(LOCK_TTL.as_millis() as u64),
            )
            .await;
        match set {
            None => Lock::Unavailable,
            Some(Some(_)) => Lock::Acquired(LockGuard::new(self.clone(), key, value)),
            Some(None) => {
                let holder: Option<Option<String>> = self.query(redis::cmd("GET").arg(&key)).await;
                match holder {
                    None => Lock::Unavailable,
                    Some(h) => Lock::Held {
                        by: h
                            .as_deref()
                            .map(record::lock_holder)
                            .unwrap_or("?")
                            .to_string(),
                    },
                }
            }
        }
    }

    /// Whether the lock on `mirror`'s copy of `digest` is still held by anyone.
    pub async fn locked(&self, mirror: &str, digest: &str) -> Option<bool> {
        self.query::<bool>(redis::cmd("EXISTS").arg(self.keys.lock(mirror, digest)))
            .await
    }
}

/// Renews a held lock while alive and releases it when dropped, both only if the lock is
/// still this holder's (compare-and-act in one Lua script, so an expired lock taken over by
/// a peer is left alone).
pub struct LockGuard {
    renew: tokio::task::JoinHandle<()>,
    cluster: std::sync::Arc<Cluster>,
    key: String,
    value: String,
}

const RENEW: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

impl LockGuard {
    fn new(cluster: std::sync::Arc<Cluster>, key: String, value: String) -> LockGuard {
        let (c, k, v) = (cluster.clone(), key.clone(), value.clone());
        let renew = tokio::spawn(async move {
            loop {
                tokio::time::sleep(LOCK_TTL / 3).await;
                let _: Option<i64> = c
                    .query(
                        redis::cmd("EVAL")
                            .arg(RENEW)
                            .arg(1)
                            .arg(&k)
                            .arg(&v)
                            .arg(LOCK_TTL.as_millis() as u64),
                    )
                    .await;
            }
        });
        LockGuard {
            renew,
            cluster,
            key,
            value,
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.renew.abort();
        let (c, k, v) = (
            self.cluster.clone(),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.value),
        );
        // Released in the background: a drop cannot wait, and an unreleased lock only expires
        // (as it does when the runtime is already gone).
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            let _: Option<i64> = c
                .query(redis::cmd("EVAL").arg(RELEASE).arg(1).arg(&k).arg(&v))
                .await;
        });
    }
}

pub(crate) fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
