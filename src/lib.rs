//! mirrordns: an authoritative geo-DNS server that answers a download hostname with the
//! nearest mirror that is up and holds a byte-exact copy of the release.
//!
//! Modules in the order data flows:
//! - [`config`]: the TOML file -> a typed, validated [`config::Config`].
//! - [`zone`]: RFC 1035 zone files -> per-name nodes with pre-rendered RDATA.
//! - [`dnssec`]: zone keys (BIND key files, checked at config load) and zone signing.
//! - [`geo`]: the MaxMind database and CIDR overrides -> prefix tables of locations.
//! - [`load`]: the one loading path shared by `serve`, `check`, `lookup` and reload.
//! - [`manifest`]: release manifests (JSON or SHA256SUMS, optional minisign signature).
//! - [`health`]: liveness probes and byte-exact verification of mirrors -> health snapshots.
//! - [`cluster`]: several instances through Redis: verification results shared (health asks
//!   before downloading), cluster-wide admin entries, peers.
//! - [`admin`]: on-call actions from the watched admin-state file (drain, force-up, block),
//!   merged with the cluster's.
//! - [`routing`]: config + client maps + health snapshot -> the immutable [`routing::RoutingTable`].
//! - [`dns`]: query bytes + routing table -> response bytes, and the UDP/TCP listeners.
//! - [`daemon`]: the running server, its published table, reload and shutdown; `notify`
//!   tells systemd about them.
//! - [`monitor`]: the read-mostly handle the daemon gives the monitoring endpoint.
//! - [`demo`]: `mirrordns demo` and the loopback file server it (and the tests) use.
//! - [`redirect`]: the HTTP download redirector: per file, to the nearest mirror that
//!   verified it, from the same routing table.
//! - [`http`]: the monitoring endpoint (health, readiness, status JSON, metrics, status page).
//! - [`schema`]: the JSON documents `/status` and `/lookup`, one set of types for the server
//!   and the command line that reads them back.
//! - [`explain`]: "why this answer" for a client address.
//! - [`running`]: the running server asked over its endpoint, by `check --diff` and `lookup`.
//! - [`diff`]: `check --diff`, a reload's effect compared with the running server.
//! - [`cli`]: the `mirrordns` command line; [`cli_docs`] its completions and manual pages.

// Every unsafe block says why it is sound; the lint keeps new ones to that.
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod admin;
pub mod cli;
pub mod cli_docs;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod diag;
pub mod diff;
pub mod dns;
pub mod dnssec;
pub mod explain;
pub mod geo;
pub mod health;
pub mod http;
pub mod load;
pub mod manifest;
pub mod metrics;
pub mod monitor;
mod notify;
pub mod redirect;
pub mod routing;
pub mod running;
pub mod schema;
pub mod zone;
