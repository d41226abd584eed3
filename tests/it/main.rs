//! The integration tests: one crate, so that the shared helpers in `common` are compiled once
//! rather than once per test file. Each module is one area; `cargo test --test it <module>::`
//! runs one of them.

mod common;
mod tls_server;

mod admin;
mod cli;
mod cluster;
mod contrib;
mod differential;
mod dnssec;
mod dnssec_keys;
mod dnssec_validate;
mod dnssec_zone;
mod geo_answers;
mod health;
mod hostile;
mod inputs_config;
mod inputs_prober;
mod interop;
mod ixfr;
mod monitoring;
mod notify;
mod protect;
mod redirect;
mod redirect_http;
mod redirect_tls;
mod reload;
mod reload_health;
mod reload_scrape;
mod repair;
mod status_page;
mod swap;
mod syncing;
mod systemd;
mod tcp_flood;
mod tsig_time;
mod udp_worker;
mod zone_answers;
