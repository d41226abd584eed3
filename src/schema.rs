//! The JSON documents the monitoring endpoint serves and the command line reads back:
//! `/status` ([`Status`], read by `check --diff`) and `/lookup` ([`Lookup`], read by
//! `mirrordns lookup` and `check --diff`). One set of types for both sides: the server
//! serialises them, the clients deserialise the same ones, so a field cannot be renamed on
//! one side only.
//!
//! The documents only ever gain fields (docs/monitoring.md documents them). Reading one:
//! - a field this build does not know (a newer server's) is ignored;
//! - a field this build knows must be there, `null` for an empty `Option` included (serde on
//!   its own reads a missing `Option` as `None`, which would turn a renamed field into "no
//!   value"): a missing one is an error naming it, so a client tells the operator the server
//!   does not answer as expected rather than reporting a difference that is not there;
//! - so a field added from now on carries `#[serde(default)]` and says so, for the document
//!   of a server older than it still to read. `fallthrough`, `config_file` and
//!   `config_loaded_at` are such fields.

mod redirect;

use serde::{Deserialize, Deserializer, Serialize};

pub use redirect::{DownloadCount, LatestView, MirrorCandidate, MirrorList, RedirectView};

use crate::health::state::MirrorState;

/// To 3 decimals: a millisecond of a duration in seconds, a microsecond of a latency in
/// milliseconds. Anything finer is clock noise, and binary fractions print as
/// `0.5835779999999999` otherwise. Still a JSON number.
fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn ser_round3<S: serde::Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(round3(*x))
}

fn ser_round3_opt<S: serde::Serializer>(x: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match x {
        Some(x) => s.serialize_some(&round3(*x)),
        None => s.serialize_none(),
    }
}

/// An `Option` field that must be present (as `null` when empty): with `deserialize_with`,
/// serde reports a missing field instead of reading it as `None`.
fn required<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d)
}

/// `/status`: what the server believes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub started_at: String,
    pub ready: bool,
    /// What `/readyz` still waits for (empty when ready).
    pub waiting_for: Vec<String>,
    pub config: ConfigView,
    pub routing: RoutingView,
    pub dns: DnsView,
    pub services: Vec<ServiceView>,
    pub zones: Vec<ZoneView>,
    pub admin: AdminView,
    /// The download redirectors (`[[redirect]]`). Added after the first release: defaults
    /// to none when reading an older server's document.
    #[serde(default)]
    pub redirects: Vec<RedirectView>,
    /// Signing counts, with `[dnssec]` (added after the first release).
    #[serde(default)]
    pub dnssec: Option<SigningView>,
    /// With `[cluster]`: Redis, the peers, what was shared (added after the first release).
    #[serde(default)]
    pub cluster: Option<ClusterView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterView {
    /// This instance's name.
    pub name: String,
    /// The Redis URL, password hidden.
    pub redis: String,
    pub key_prefix: String,
    /// Whether the last Redis call succeeded.
    pub connected: bool,
    /// Since when Redis has been unreachable (verifying alone meanwhile).
    #[serde(deserialize_with = "required")]
    pub down_since: Option<String>,
    #[serde(deserialize_with = "required")]
    pub last_error: Option<ReloadError>,
    /// Instances heard from in the last 30 s, this one included.
    pub peers: Vec<PeerView>,
    pub results_adopted: u64,
    pub results_not_adopted: u64,
    pub results_published: u64,
    pub lock_waits: u64,
    pub outages: u64,
    /// Cluster admin entries in Redis that could not be read.
    pub admin_errors: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerView {
    pub name: String,
    pub version: String,
    pub last_seen: String,
}

/// Where an admin entry comes from: the admin-state file, or `mirrordns admin` through the
/// cluster (with who wrote it, and when).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum AdminSourceView {
    #[default]
    File,
    Cluster {
        by: String,
        at: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminView {
    #[serde(deserialize_with = "required")]
    pub path: Option<String>,
    /// Every entry in the file, with its expiry; `in_force` tells which apply now.
    pub mirrors: Vec<AdminMirrorView>,
    pub blocks: Vec<AdminBlockView>,
    pub pins: Vec<AdminPinView>,
    /// The last rejected admin-state file (the previous one stays in force).
    #[serde(deserialize_with = "required")]
    pub error: Option<ReloadError>,
}

/// An on-call action on a mirror, as the admin-state file words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdminAction {
    Drain,
    ForceUp,
}

/// Times of admin entries are to the second, as the file gives them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminMirrorView {
    pub mirror: String,
    pub action: AdminAction,
    #[serde(deserialize_with = "required")]
    pub until: Option<String>,
    #[serde(deserialize_with = "required")]
    pub reason: Option<String>,
    pub in_force: bool,
    /// Added with `[cluster]`: an older server's entries all come from the file.
    #[serde(default)]
    pub source: AdminSourceView,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminBlockView {
    pub version: String,
    #[serde(deserialize_with = "required")]
    pub until: Option<String>,
    #[serde(deserialize_with = "required")]
    pub reason: Option<String>,
    pub in_force: bool,
    /// Added with `[cluster]`: an older server's entries all come from the file.
    #[serde(default)]
    pub source: AdminSourceView,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminPinView {
    pub service: String,
    pub release: String,
    #[serde(deserialize_with = "required")]
    pub until: Option<String>,
    #[serde(deserialize_with = "required")]
    pub reason: Option<String>,
    pub in_force: bool,
    /// Added with `[cluster]`: an older server's entries all come from the file.
    #[serde(default)]
    pub source: AdminSourceView,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZoneView {
    pub origin: String,
    pub serial: u32,
    pub file: String,
    pub records: usize,
    /// Signing, for a zone with `[dnssec]` keys. Added after the first release: defaults to
    /// none when reading an older server's document.
    #[serde(default)]
    pub dnssec: Option<ZoneSigningView>,
    /// The last NOTIFY to each secondary in `[transfer] notify`. Added after the first
    /// release: empty when reading an older server's document.
    #[serde(default)]
    pub notify: Vec<NotifyView>,
    /// The last transfers served (at most 16), oldest first. Added after the first release.
    #[serde(default)]
    pub transfers: Vec<TransferView>,
}

/// The last NOTIFY of a zone to one secondary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotifyView {
    /// The secondary, as configured ("192.0.2.54:53").
    pub address: String,
    /// The serial the last NOTIFY carried.
    pub serial: u32,
    /// When it was last sent (null: not yet).
    #[serde(deserialize_with = "required")]
    pub at: Option<String>,
    pub acknowledged: bool,
    /// Sends of the last NOTIFY (retries included).
    pub attempts: u32,
    /// "acked", "refused", "timeout" or "error" (null: no result yet).
    #[serde(deserialize_with = "required")]
    pub last_result: Option<String>,
}

/// A zone transfer served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferView {
    pub client: String,
    pub at: String,
    /// "AXFR" or "IXFR".
    pub kind: String,
    /// The serial the secondary said it held (IXFR only; added after the first release).
    #[serde(default)]
    pub from_serial: Option<u32>,
    /// The serial it was sent (added after the first release; 0 when read from an older
    /// server).
    #[serde(default)]
    pub serial: u32,
}

/// A signed zone's keys and when its signatures expire and are made again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZoneSigningView {
    pub keys: Vec<KeyView>,
    /// The soonest expiry of any signature served for the zone (its geo answers included).
    pub expires_at: String,
    pub expires_in_seconds: f64,
    /// When the next signatures are due to be made again.
    pub refresh_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyView {
    pub tag: u16,
    pub algorithm: u8,
    /// "KSK" (flags 257, signs DNSKEY, CDS and CDNSKEY; also the rest when it is the only
    /// role, a CSK) or "ZSK".
    pub role: String,
    pub file: String,
}

/// Signature counts since start, with `[dnssec]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SigningView {
    pub signatures_made: u64,
    /// RRsets whose signatures a table build took from the cache instead of signing.
    pub signatures_reused: u64,
    pub failures: u64,
    #[serde(deserialize_with = "required")]
    pub last_error: Option<ReloadError>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigView {
    pub path: String,
    pub generation: u64,
    pub loaded_at: String,
    /// The last rejected reload since this config was loaded: when and why.
    #[serde(deserialize_with = "required")]
    pub last_reload_error: Option<ReloadError>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReloadError {
    pub at: String,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutingView {
    pub generation: u64,
    pub swapped_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DnsView {
    pub listen: Vec<String>,
    pub queries: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceView {
    pub name: String,
    /// `Policy::as_str`: "nearest" or "regions".
    pub policy: String,
    pub ttl: u32,
    pub answers: usize,
    /// Manifest paths every routable mirror must hold.
    pub required_releases: Vec<String>,
    /// `Fallback::as_str`: "origin", "live" or "servfail".
    pub fallback: String,
    /// The fallback answering now because no mirror is routable, else null.
    #[serde(deserialize_with = "required")]
    pub fallback_in_force: Option<String>,
    /// Client groups (candidate lists) whose every listed mirror is out, answered now from
    /// past their own list (`regions.default`, then by distance, then configured order).
    pub fallthrough_lists: usize,
    /// Answers served from past the client's own list since the server started
    /// (`mirrordns_dns_fallthrough_total`).
    pub fallthrough_answers: u64,
    pub releases: Vec<ReleaseView>,
    pub mirrors: Vec<MirrorView>,
    /// Per entry of `releases`, in its order: where each mirror of the service stands with
    /// the current content. Added after the first release: empty from an older server.
    #[serde(default)]
    pub rollout: Vec<RolloutView>,
}

/// One release's rollout over a service's mirrors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutView {
    pub release: String,
    pub mirrors: Vec<RolloutMirrorView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutMirrorView {
    pub mirror: String,
    /// When the mirror last verified the release's current content (a re-verification moves
    /// it), null while it has not.
    #[serde(deserialize_with = "required")]
    pub verified_at: Option<String>,
    /// Not ready everywhere yet, and this mirror is one it waits for: probed, not drained in
    /// the config, and without the current content verified.
    pub holding_up: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseView {
    pub path: String,
    #[serde(deserialize_with = "required")]
    pub version: Option<String>,
    #[serde(deserialize_with = "required")]
    pub digest: Option<String>,
    #[serde(deserialize_with = "required")]
    pub published: Option<String>,
    /// When we saw the origin's content change to this version.
    #[serde(deserialize_with = "required")]
    pub changed_at: Option<String>,
    /// When every mirror that must hold it had verified it.
    #[serde(deserialize_with = "required")]
    pub ready_at: Option<String>,
    /// Seconds from publication (or change) to global readiness.
    #[serde(serialize_with = "ser_round3_opt", deserialize_with = "required")]
    pub ready_after_seconds: Option<f64>,
    /// Seconds waited so far for global readiness, while not ready.
    #[serde(serialize_with = "ser_round3_opt", deserialize_with = "required")]
    pub waiting_seconds: Option<f64>,
    /// The last manifest fetch or signature error (the last good manifest stays in force).
    #[serde(deserialize_with = "required")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MirrorView {
    pub name: String,
    pub ipv4: Vec<String>,
    pub ipv6: Vec<String>,
    pub state: MirrorState,
    /// Whether this service routes to it now.
    pub routable: bool,
    /// Why it is in this state (mismatch detail, last error), empty when ready.
    pub reason: String,
    #[serde(deserialize_with = "required")]
    pub base_url: Option<String>,
    #[serde(deserialize_with = "required")]
    pub last_probe: Option<String>,
    #[serde(serialize_with = "ser_round3_opt", deserialize_with = "required")]
    pub latency_ms: Option<f64>,
    pub verified_versions: Vec<String>,
    /// Seconds this mirror has lacked the current release (0 when it holds it).
    #[serde(serialize_with = "ser_round3")]
    pub lag_seconds: f64,
    #[serde(deserialize_with = "required")]
    pub last_error: Option<String>,
}

/// Where a client was placed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocationView {
    /// "override", "database" or "unknown".
    pub source: String,
    #[serde(deserialize_with = "required")]
    pub network: Option<String>,
    #[serde(deserialize_with = "required")]
    pub country: Option<String>,
    #[serde(deserialize_with = "required")]
    pub continent: Option<String>,
    #[serde(deserialize_with = "required")]
    pub lat: Option<f64>,
    #[serde(deserialize_with = "required")]
    pub lon: Option<f64>,
}

/// A mirror of the service, in the order tried for this client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateView {
    pub mirror: String,
    #[serde(deserialize_with = "required")]
    pub distance_km: Option<f64>,
    pub ipv4: Vec<String>,
    pub ipv6: Vec<String>,
}

/// "Why this answer" for one client address, from a config and a routing table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    pub client: String,
    pub service: String,
    /// `Policy::as_str`.
    pub policy: String,
    pub location: LocationView,
    /// True when the service's default order was used because the location is unknown.
    pub unknown_location: bool,
    pub candidates: Vec<CandidateView>,
    /// Every address answered: A then AAAA.
    pub answer: Vec<String>,
    pub a: Vec<String>,
    pub aaaa: Vec<String>,
    pub ttl: u32,
    /// ECS scope prefix length a query from this client's subnet gets.
    pub scope: u8,
    /// Families ("A", "AAAA") for which every mirror of this client's own list is out, so the
    /// answer comes from past it: `regions.default`, then by distance, then configured order.
    /// Added after the rest: empty from a server older than it.
    #[serde(default)]
    pub fallthrough: Vec<String>,
}

/// A candidate as the running server decided it (`/lookup`'s `decisions`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub mirror: String,
    #[serde(deserialize_with = "required")]
    pub distance_km: Option<f64>,
    pub state: MirrorState,
    /// "answer" if in the A or AAAA answer; else why not: the state ("down", "lagging",
    /// "mismatch", "drained", "unknown", "verifying"), "no address", "no IPv4 address (AAAA
    /// only)", "beyond `answers`", or "answer, past this client's list ..." for a mirror
    /// answering from past the client's own list.
    pub used: String,
}

/// `/lookup`: the explanation against the live table, each candidate's state and whether it
/// is used, and which config it comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lookup {
    #[serde(flatten)]
    pub explanation: Explanation,
    /// "mirrors", or "fallback: <fallback>" when no mirror of the service is routable.
    pub mode: String,
    pub routing_generation: u64,
    pub decisions: Vec<Decision>,
    /// The config file in force, absolute with symlinks resolved as the server sees it:
    /// `mirrordns lookup` compares it with the file it was given to tell whether this server
    /// serves that config (a relative path in `/status` depends on the server's directory).
    /// Always set by this server; absent (None) from servers older than it.
    #[serde(default)]
    pub config_file: Option<String>,
    /// When it was loaded: a file changed after this is not in force yet. As `config_file`.
    #[serde(default)]
    pub config_loaded_at: Option<String>,
}

#[cfg(test)]
mod tests;
