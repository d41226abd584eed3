//! The config file exactly as written: serde structs that mirror the TOML.
//!
//! Nothing here is validated beyond TOML types; `config::validate` turns these into the typed
//! [`Config`](super::Config). Values that need a line number in a later error are kept
//! `Spanned`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

// The field docs name each default by its constant.
#[cfg(doc)]
use super::defaults;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawConfig {
    pub server: Spanned<RawServer>,
    #[serde(default)]
    pub geo: Option<RawGeo>,
    #[serde(default, rename = "service")]
    pub services: Vec<Spanned<RawService>>,
    #[serde(default, rename = "mirror")]
    pub mirrors: Vec<Spanned<RawMirror>>,
    #[serde(default)]
    pub origin: Option<Spanned<RawOrigin>>,
    #[serde(default)]
    pub health: Option<Spanned<RawHealth>>,
    #[serde(default)]
    pub rate_limit: Option<RawRateLimit>,
    #[serde(default)]
    pub cookies: Option<RawCookies>,
    #[serde(default)]
    pub transfer: Option<RawTransfer>,
    #[serde(default, rename = "redirect")]
    pub redirects: Vec<Spanned<RawRedirect>>,
    #[serde(default)]
    pub dnssec: Option<Spanned<RawDnssec>>,
    #[serde(default)]
    pub cluster: Option<Spanned<RawCluster>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawCluster {
    /// A `redis://` or `rediss://` URL, password in it if Redis needs one.
    pub redis: Spanned<String>,
    /// This instance's name; default: the host name.
    #[serde(default)]
    pub name: Option<Spanned<String>>,
    /// Default [`defaults::CLUSTER_KEY_PREFIX`].
    #[serde(default)]
    pub key_prefix: Option<Spanned<String>>,
    /// HMAC key for shared results and admin entries; default: none (unsigned).
    #[serde(default)]
    pub secret: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawDnssec {
    /// BIND key pairs by their `.private` files (the `.key` file beside each), relative to the
    /// config file's directory.
    pub keys: Spanned<Vec<Spanned<String>>>,
    /// How long a signature is valid; default [`defaults::DNSSEC_SIGNATURE_VALIDITY`].
    #[serde(default)]
    pub signature_validity: Option<Spanned<String>>,
    /// How often signatures are made again; default [`defaults::dnssec_refresh`] (half of
    /// `signature-validity`).
    #[serde(default)]
    pub refresh: Option<Spanned<String>>,
    /// "keep", "increment" or "unixtime"; default [`defaults::DNSSEC_SERIAL`].
    #[serde(default)]
    pub serial: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRedirect {
    /// The service whose mirrors, policy, releases and health it uses.
    pub service: Spanned<String>,
    /// Plain-HTTP addresses.
    #[serde(default)]
    pub listen: Vec<Spanned<String>>,
    /// HTTPS addresses; need `tls-cert` and `tls-key`.
    #[serde(default)]
    pub tls_listen: Vec<Spanned<String>>,
    /// PEM certificate chain, re-read on reload.
    #[serde(default)]
    pub tls_cert: Option<Spanned<String>>,
    /// PEM private key, re-read on reload.
    #[serde(default)]
    pub tls_key: Option<Spanned<String>>,
    /// Peers whose `Forwarded` / `X-Forwarded-For` is believed (default: none).
    #[serde(default)]
    pub trusted_proxies: Vec<Spanned<String>>,
    /// Path prefix that always means the newest release ready everywhere (default: none).
    #[serde(default)]
    pub latest: Option<Spanned<String>>,
    /// "not-found" or "origin"; default [`defaults::REDIRECT_UNLISTED`].
    #[serde(default)]
    pub unlisted: Option<Spanned<String>>,
    /// Host names answered; others get 421 (default: any).
    #[serde(default)]
    pub hosts: Vec<Spanned<String>>,
    /// Concurrent connections; default [`defaults::REDIRECT_MAX_CONNECTIONS`].
    #[serde(default)]
    pub max_connections: Option<Spanned<usize>>,
    /// How long a connection may sit idle or sending its request head; default
    /// [`defaults::REDIRECT_IDLE_TIMEOUT`].
    #[serde(default)]
    pub idle_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRateLimit {
    /// Default [`defaults::RATE_LIMIT_ENABLED`].
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Identical responses per second to one client network; default
    /// [`defaults::RATE_LIMIT_RESPONSES_PER_SECOND`].
    #[serde(default)]
    pub responses_per_second: Option<Spanned<u32>>,
    /// Every n-th limited response is sent truncated instead of dropped; default
    /// [`defaults::RATE_LIMIT_SLIP`].
    #[serde(default)]
    pub slip: Option<Spanned<u32>>,
    /// Bits of the IPv4 client network a flow is counted over; default
    /// [`defaults::RATE_LIMIT_IPV4_PREFIX`].
    #[serde(default)]
    pub ipv4_prefix: Option<Spanned<u8>>,
    /// Bits of the IPv6 client network a flow is counted over; default
    /// [`defaults::RATE_LIMIT_IPV6_PREFIX`].
    #[serde(default)]
    pub ipv6_prefix: Option<Spanned<u8>>,
    /// Flow buckets, a power of two; default [`defaults::RATE_LIMIT_TABLE_SIZE`].
    #[serde(default)]
    pub table_size: Option<Spanned<usize>>,
    /// Client networks never limited; default [`defaults::RATE_LIMIT_EXEMPT`].
    #[serde(default)]
    pub exempt: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawCookies {
    /// 32 hex digits; default: random per process.
    #[serde(default)]
    pub secret: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawTransfer {
    /// Client networks allowed to transfer zones (default: none).
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
    /// Secondaries sent a NOTIFY when a zone changes: "ip:port", or a bare IP for port 53
    /// (default: none).
    #[serde(default)]
    pub notify: Vec<Spanned<String>>,
    /// Versions of each zone kept for incremental transfers (IXFR); default
    /// [`defaults::IXFR_JOURNAL`]; 0 turns IXFR off (a full transfer every time).
    #[serde(default)]
    pub ixfr_journal: Option<Spanned<i64>>,
    #[serde(default)]
    pub tsig: Option<Spanned<RawTsig>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawTsig {
    pub name: Spanned<String>,
    /// "hmac-sha256" or "hmac-sha512"; default [`defaults::TSIG_ALGORITHM`].
    #[serde(default)]
    pub algorithm: Option<Spanned<String>>,
    /// base64, as `tsig-keygen` and `openssl rand -base64 32` print it.
    pub secret: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawOrigin {
    /// Where release manifests are published (the source of truth).
    pub base_url: Spanned<String>,
    /// Addresses answered when a service falls back to the origin.
    #[serde(default)]
    pub ipv4: Vec<Spanned<String>>,
    #[serde(default)]
    pub ipv6: Vec<Spanned<String>>,
    /// minisign public key; when set, every manifest needs a valid `.minisig` signature.
    #[serde(default)]
    pub minisign_key: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawHealth {
    /// Liveness probe and manifest fetch period; default [`defaults::HEALTH_INTERVAL`].
    #[serde(default)]
    pub interval: Option<Spanned<String>>,
    /// Per-request timeout for probes; default [`defaults::HEALTH_TIMEOUT`].
    #[serde(default)]
    pub timeout: Option<Spanned<String>>,
    /// Consecutive successes before a down mirror is up again; default [`defaults::HEALTH_RISE`].
    #[serde(default)]
    pub rise: Option<Spanned<u32>>,
    /// Consecutive failures before an up mirror is down; default [`defaults::HEALTH_FALL`].
    #[serde(default)]
    pub fall: Option<Spanned<u32>>,
    /// Full re-verification period; default [`defaults::HEALTH_REVERIFY`].
    #[serde(default)]
    pub reverify: Option<Spanned<String>>,
    /// Where probe results persist across restarts (default: none).
    #[serde(default)]
    pub state_file: Option<Spanned<String>>,
    /// A state file older than this is ignored at start-up; default
    /// [`defaults::HEALTH_STATE_MAX_AGE`].
    #[serde(default)]
    pub state_max_age: Option<Spanned<String>>,
    /// Time allowed for one file download during verification; default
    /// [`defaults::HEALTH_DOWNLOAD_TIMEOUT`].
    #[serde(default)]
    pub download_timeout: Option<Spanned<String>>,
    /// Concurrent file downloads across all mirrors; default [`defaults::HEALTH_MAX_DOWNLOADS`].
    #[serde(default)]
    pub max_downloads: Option<Spanned<usize>>,
    /// Extra CA certificate (PEM) trusted for probes, besides the system roots.
    #[serde(default)]
    pub ca_file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawServer {
    /// Addresses to answer DNS on, UDP and TCP each.
    pub dns_listen: Spanned<Vec<Spanned<String>>>,
    /// Zone files (RFC 1035 master format), relative to the config file's directory.
    pub zones: Spanned<Vec<Spanned<String>>>,
    /// Largest UDP response we send, bytes; default [`defaults::SERVER_UDP_PAYLOAD_MAX`].
    #[serde(default)]
    pub udp_payload_max: Option<Spanned<u16>>,
    /// How long an idle TCP connection stays open; default [`defaults::SERVER_TCP_IDLE_TIMEOUT`].
    #[serde(default)]
    pub tcp_idle_timeout: Option<Spanned<String>>,
    /// Concurrent TCP connections across all listeners; default
    /// [`defaults::SERVER_TCP_MAX_CONNECTIONS`].
    #[serde(default)]
    pub tcp_max_connections: Option<Spanned<usize>>,
    /// On-call actions (drain, force-up, block) applied without a reload; watched.
    #[serde(default)]
    pub admin_state: Option<Spanned<String>>,
    /// Reload by itself when a zone file changes; default [`defaults::SERVER_WATCH_ZONES`].
    #[serde(default)]
    pub watch_zones: Option<bool>,
    /// UDP worker threads (one SO_REUSEPORT socket each) per listen address; default
    /// [`defaults::server_udp_workers`].
    #[serde(default)]
    pub udp_workers: Option<Spanned<usize>>,
    /// The monitoring endpoint ("" turns it off); default [`defaults::SERVER_HTTP_LISTEN`].
    #[serde(default)]
    pub http_listen: Option<Spanned<String>>,
    /// Concurrent TCP connections from one client address; default
    /// [`defaults::SERVER_TCP_MAX_PER_CLIENT`].
    #[serde(default)]
    pub tcp_max_per_client: Option<Spanned<usize>>,
    /// UDP receive buffer size requested per socket, bytes; default
    /// [`defaults::SERVER_UDP_RECV_BUFFER`].
    #[serde(default)]
    pub udp_recv_buffer: Option<Spanned<usize>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawGeo {
    /// MaxMind DB file (GeoIP2/GeoLite2 City or Country schema).
    #[serde(default)]
    pub database: Option<Spanned<String>>,
    #[serde(default, rename = "override")]
    pub overrides: Vec<Spanned<RawOverride>>,
    /// Reload by itself when the database file is replaced; default [`defaults::GEO_WATCH`].
    #[serde(default)]
    pub watch: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawOverride {
    pub network: Spanned<String>,
    pub location: Spanned<RawLocation>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawLocation {
    #[serde(default)]
    pub lat: Option<f64>,
    #[serde(default)]
    pub lon: Option<f64>,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub continent: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawService {
    pub name: Spanned<String>,
    /// "nearest" or "regions"; default [`defaults::SERVICE_POLICY`].
    #[serde(default)]
    pub policy: Option<Spanned<String>>,
    /// TTL of geo answers, seconds; default [`defaults::SERVICE_TTL`].
    #[serde(default)]
    pub ttl: Option<Spanned<u32>>,
    /// Mirrors per answer; default [`defaults::SERVICE_ANSWERS`].
    #[serde(default)]
    pub answers: Option<Spanned<usize>>,
    pub mirrors: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub regions: Option<Spanned<RawRegions>>,
    /// Manifests every routable mirror must hold, relative to `[origin] base-url`.
    #[serde(default)]
    pub releases: Vec<Spanned<String>>,
    /// Older manifests verified at lower priority for the redirector; never required.
    #[serde(default)]
    pub archive: Vec<Spanned<String>>,
    /// "origin", "live" or "servfail": what to answer when no mirror is routable; default
    /// [`defaults::service_fallback`].
    #[serde(default)]
    pub fallback: Option<Spanned<String>>,
    /// How long a mirror still verified for the previous release stays routable; default
    /// [`defaults::SERVICE_LAG_GRACE`].
    #[serde(default)]
    pub lag_grace: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRegions {
    #[serde(default)]
    pub default: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub continent: BTreeMap<Spanned<String>, Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub country: BTreeMap<Spanned<String>, Spanned<Vec<Spanned<String>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawMirror {
    pub name: Spanned<String>,
    #[serde(default)]
    pub ipv4: Vec<Spanned<String>>,
    #[serde(default)]
    pub ipv6: Vec<Spanned<String>>,
    #[serde(default)]
    pub location: Option<Spanned<RawLocation>>,
    /// Where the mirror serves release files; without it the mirror is static (never probed).
    #[serde(default)]
    pub base_url: Option<Spanned<String>>,
    /// Connect here instead of resolving the URL's host (Host header and TLS name unchanged).
    #[serde(default)]
    pub probe_address: Option<Spanned<String>>,
    /// Take the mirror out of every answer; default [`defaults::MIRROR_DRAINED`].
    #[serde(default)]
    pub drained: Option<bool>,
}
