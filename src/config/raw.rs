//! The config file exactly as written: serde structs that mirror the TOML.
//!
//! Nothing here is validated beyond TOML types; `config::validate` turns these into the typed
//! [`Config`](super::Config). Values that need a line number in a later error are kept
//! `Spanned`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawServer {
    /// Addresses to answer DNS on, UDP and TCP each.
    pub dns_listen: Spanned<Vec<Spanned<String>>>,
    /// Zone files (RFC 1035 master format), relative to the config file's directory.
    pub zones: Spanned<Vec<Spanned<String>>>,
    /// Largest UDP response we send, bytes (default 1232, the DNS flag day 2020 value).
    #[serde(default)]
    pub udp_payload_max: Option<Spanned<u16>>,
    /// How long an idle TCP connection stays open (default "10s").
    #[serde(default)]
    pub tcp_idle_timeout: Option<Spanned<String>>,
    /// Concurrent TCP connections across all listeners (default 1024).
    #[serde(default)]
    pub tcp_max_connections: Option<Spanned<usize>>,
    /// UDP receive buffer size requested per socket, bytes (default 8 MiB).
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
    #[serde(default)]
    pub policy: Option<Spanned<String>>,
    #[serde(default)]
    pub ttl: Option<Spanned<u32>>,
    #[serde(default)]
    pub answers: Option<Spanned<usize>>,
    pub mirrors: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub regions: Option<Spanned<RawRegions>>,
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
}
