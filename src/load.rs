//! Loading everything a server needs from a config file: the one code path shared by `serve`,
//! `check`, `lookup` and reload, so that what `check` accepts is what `serve` runs.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Config, GeoConfig};
use crate::diag::{Problem, Problems};
use crate::geo::GeoSource;
use crate::routing::download_counts::DownloadCounters;
use crate::routing::{self, AnswerCounters, HealthSnapshot, Inputs, RoutingTable};
use crate::zone::{Name, ZoneSet};

/// A fully loaded, consistent set of inputs.
pub struct Loaded {
    pub config: Arc<Config>,
    /// What routing tables are built from (config, zones, client maps, counters).
    pub inputs: Arc<Inputs>,
    pub geo: GeoSource,
    /// How long compiling the geo data into client maps took.
    pub compile_time: Duration,
}

impl Loaded {
    /// Reads and checks config, zone files and geo data; compiles the client maps.
    pub fn from_file(path: &Path) -> Result<Loaded, Problems> {
        let config = Config::load(path)?;
        Loaded::from_config(config)
    }

    pub fn from_config(config: Config) -> Result<Loaded, Problems> {
        let mut problems = Vec::new();
        let zones = match ZoneSet::load(&config.server.zones, &config.path) {
            Ok(mut zones) => {
                for (i, s) in config.services.iter().enumerate() {
                    let Some(name) = Name::from_text(&s.name) else {
                        continue;
                    };
                    if let Err(e) = zones.attach_service(&name, i) {
                        problems.push(Problem::new(
                            &config.path,
                            Some(s.line),
                            Some("service.name"),
                            e.to_string(),
                        ));
                    }
                }
                problems.extend(keys_without_zone(&config, &zones));
                Some(zones)
            }
            Err(p) => {
                problems.extend(p);
                None
            }
        };
        // `watch` is the daemon's business: it decides when to load again, not what loads.
        let GeoConfig {
            database,
            overrides,
            watch: _,
        } = &config.geo;
        let database = database.as_ref().map(|(path, _line)| path.as_path());
        let geo = match GeoSource::load(database, overrides.clone()) {
            Ok(g) => Some(g),
            Err(e) => {
                problems.push(geo_problem(&config, e.to_string()));
                None
            }
        };
        if let Some(ca) = &config.health.ca_file {
            let ok = std::fs::read(ca)
                .map_err(|e| e.to_string())
                .and_then(|pem| {
                    reqwest::Certificate::from_pem(&pem)
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                });
            if let Err(e) = ok {
                problems.push(Problem::new(
                    &config.path,
                    None,
                    Some("health.ca-file"),
                    format!("{}: not a readable PEM certificate: {e}", ca.display()),
                ));
            }
        }
        let (Some(zones), Some(geo), true) = (zones, geo, problems.is_empty()) else {
            return Err(Problems(problems));
        };
        let started = Instant::now();
        let locations = geo
            .compile()
            .map_err(|e| geo_problem(&config, format!("cannot read the database: {e}")))?;
        let maps: Vec<Arc<routing::ClientMap>> = config
            .services
            .iter()
            .map(|s| Arc::new(routing::compile_client_map(s, &config, &locations)))
            .collect();
        for (s, m) in config.services.iter().zip(&maps) {
            let (v4, v6) = m.ranges();
            tracing::debug!(
                service = %s.name,
                lists = m.lists.len(),
                ranges_v4 = v4,
                ranges_v6 = v6,
                kib = m.heap_bytes() / 1024,
                "client map"
            );
        }
        let answer_counts = Arc::new(AnswerCounters::new(&config));
        let download_counts = Arc::new(DownloadCounters::new(&config));
        let config = Arc::new(config);
        let signer = signer_for(&config);
        Ok(Loaded {
            config: config.clone(),
            inputs: Arc::new(Inputs {
                config,
                zones: Arc::new(zones),
                maps,
                answer_counts,
                download_counts,
                signer,
            }),
            geo,
            compile_time: started.elapsed(),
        })
    }

    /// Counts answers on into `old` (or a copy of it by name when services or mirrors
    /// changed), so that a reload never sets a counter back.
    pub fn continue_counters(&mut self, old: &RoutingTable) {
        let i = &self.inputs;
        self.inputs = Arc::new(Inputs {
            config: i.config.clone(),
            zones: i.zones.clone(),
            maps: i.maps.clone(),
            answer_counts: AnswerCounters::continue_from(&old.answer_counts, &self.config),
            download_counts: DownloadCounters::continue_from(&old.download_counts, &self.config),
            // The same keys and periods keep the signer, and with it the signatures already
            // made: a reload does not re-sign what did not change.
            signer: match (&i.signer, old.dnssec.as_ref().map(|d| &d.signer)) {
                (Some(new), Some(old)) if new.same_as(old) => Some(old.clone()),
                (new, _) => new.clone(),
            },
        });
    }

    /// Warns about every zone whose file's serial is lower, in RFC 1982 arithmetic, than the
    /// one `old` was loaded from: secondaries take a zone only when its serial moves forward, so
    /// they keep the old copy. Not an error: going back is sometimes done on purpose, and a
    /// signed zone's served serial is managed anyway (`[dnssec] serial`).
    pub fn warn_serials_going_back(&self, old: &RoutingTable) {
        for z in self.inputs.zones.zones() {
            let Some(before) = old.zones.zones().iter().find(|o| o.origin == z.origin) else {
                continue;
            };
            if crate::dnssec::serial::greater(before.serial, z.serial) {
                tracing::warn!(
                    "{}:{}: the serial of zone `{}` went back from {} to {}: secondaries keep \
                     their copy until the serial passes {}",
                    z.file.display(),
                    z.soa_line,
                    z.origin,
                    before.serial,
                    z.serial,
                    before.serial
                );
            }
        }
    }

    /// A routing table with every mirror routable but drained ones (no health information).
    pub fn table(&self, generation: u64) -> RoutingTable {
        self.table_with(&HealthSnapshot::static_config(&self.config), generation)
    }

    pub fn table_with(&self, health: &HealthSnapshot, generation: u64) -> RoutingTable {
        routing::build(&self.inputs, health, generation)
    }
}

/// Each DNSSEC key signs the zone whose apex is its owner: a key for any other name is a
/// mistake (a typo in the zone, a key for another server), named by its `dnssec.keys` line.
fn keys_without_zone(config: &Config, zones: &ZoneSet) -> Vec<Problem> {
    let Some(dnssec) = &config.dnssec else {
        return Vec::new();
    };
    dnssec
        .keys
        .iter()
        .zip(&dnssec.key_lines)
        .filter(|(key, _)| !zones.zones().iter().any(|z| z.origin == key.owner))
        .map(|(key, &line)| {
            Problem::new(
                &config.path,
                Some(line),
                Some("dnssec.keys"),
                format!(
                    "{}: key for {} but no zone has that apex",
                    key.file.display(),
                    key.owner
                ),
            )
        })
        .collect()
}

/// A geo data problem, named by the config line and key that chose the database: geo itself
/// knows files, not config.
fn geo_problem(config: &Config, message: String) -> Problem {
    let line = config.geo.database.as_ref().map(|d| d.1);
    Problem::new(&config.path, line, Some("geo.database"), message)
}

/// The signer for the config's `[dnssec]` keys (checked against the zones at load).
fn signer_for(config: &Config) -> Option<Arc<crate::dnssec::signed::Signer>> {
    let d = config.dnssec.as_ref()?;
    Some(Arc::new(crate::dnssec::signed::Signer::new(
        d.keys.clone(),
        d.signature_validity,
        d.refresh,
        d.serial,
    )))
}
