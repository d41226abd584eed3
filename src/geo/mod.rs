//! Where a client is: the MaxMind database plus the operator's CIDR overrides.
//!
//! Two uses. At load time, [`GeoSource::compile`] walks every network of the database, paints
//! the overrides over it (longest prefix wins) and yields prefix tables that map every address to
//! a location id: the per-query path then never decodes MMDB records. For explanations
//! (`mirrordns lookup`), [`GeoSource::locate`] looks one address up directly and says which
//! network and source matched.
//!
//! The database is read into memory, not memory-mapped: a geoipupdate that rewrote the file in
//! place under a mapping would be undefined behaviour, and after compiling, only `lookup`
//! explanations need the reader at all. For those, the file loaded stays open: a file renamed
//! over it later (geoipupdate's way) leaves ours readable, and one rewritten in place is
//! noticed and not used, so an explanation never describes data the answers do not come from.

pub mod prefix;

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use rustc_hash::FxHashMap;
use serde::Deserialize;

use prefix::{Overlay, PrefixTable, Span, paint};

/// A two-letter upper-case code: ISO 3166-1 country or MaxMind continent.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code([u8; 2]);

impl Code {
    fn from_str_upper(s: &str) -> Option<Code> {
        let b = s.as_bytes();
        if b.len() == 2 && b.iter().all(u8::is_ascii_alphabetic) {
            Some(Code([b[0].to_ascii_uppercase(), b[1].to_ascii_uppercase()]))
        } else {
            None
        }
    }

    pub fn parse_country(s: &str) -> Option<Code> {
        Code::from_str_upper(s)
    }

    pub fn parse_continent(s: &str) -> Option<Code> {
        let c = Code::from_str_upper(s)?;
        const CONTINENTS: [&[u8; 2]; 7] = [b"AF", b"AN", b"AS", b"EU", b"NA", b"OC", b"SA"];
        CONTINENTS.contains(&&c.0).then_some(c)
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What we know of a place. All fields empty means "unknown location".
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Location {
    /// (latitude, longitude) in degrees.
    pub coords: Option<(f64, f64)>,
    pub country: Option<Code>,
    pub continent: Option<Code>,
}

impl Location {
    pub fn is_unknown(&self) -> bool {
        self.coords.is_none() && self.country.is_none() && self.continent.is_none()
    }

    /// A key that treats equal locations as equal (f64 is not Eq).
    fn key(&self) -> (Option<(u64, u64)>, Option<Code>, Option<Code>) {
        (
            self.coords.map(|(a, b)| (a.to_bits(), b.to_bits())),
            self.country,
            self.continent,
        )
    }
}

/// The operator's placement of a network, laid over the database (longest prefix wins).
#[derive(Debug, Clone)]
pub struct Override {
    pub network: IpNet,
    pub location: Location,
}

/// Why the database could not be used. The text names the file; the caller adds which config
/// key named it.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// The file could not be read.
    #[error("cannot open MaxMind database {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not a MaxMind DB.
    #[error("cannot open MaxMind database {}: {source}", path.display())]
    Format {
        path: PathBuf,
        source: maxminddb::MaxMindDbError,
    },
    /// A MaxMind DB without locations (ASN, ISP, ...).
    #[error(
        "{} is a `{kind}` database: expected a GeoIP2/GeoLite2 City or Country database",
        path.display()
    )]
    NotLocation { path: PathBuf, kind: String },
    /// The tree could not be walked while compiling.
    #[error("{}: {source}", path.display())]
    Walk {
        path: PathBuf,
        source: maxminddb::MaxMindDbError,
    },
    /// A network's record could not be decoded while compiling.
    #[error("{}: record for {network}: {source}", path.display())]
    Record {
        path: PathBuf,
        network: ipnetwork::IpNetwork,
        source: maxminddb::MaxMindDbError,
    },
    /// The database gave a network with an impossible prefix length.
    #[error(transparent)]
    Prefix(#[from] ipnet::PrefixLenError),
}

/// Where a location came from, for explanations.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Override,
    Database,
    /// Neither an override nor the database knows the address.
    None,
}

/// One address's location and the network that gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    pub location: Location,
    pub source: Source,
    pub network: Option<IpNet>,
}

/// The fields of a GeoIP2/GeoLite2 City or Country record that routing uses.
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow, default)]
    country: Option<CountryRecord<'a>>,
    #[serde(borrow, default)]
    continent: Option<ContinentRecord<'a>>,
    #[serde(default)]
    location: Option<LocationRecord>,
}

#[derive(Deserialize)]
struct CountryRecord<'a> {
    #[serde(default)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct ContinentRecord<'a> {
    #[serde(default)]
    code: Option<&'a str>,
}

#[derive(Deserialize)]
struct LocationRecord {
    #[serde(default)]
    latitude: Option<f64>,
    #[serde(default)]
    longitude: Option<f64>,
}

impl Record<'_> {
    fn location(&self) -> Location {
        let coords = self
            .location
            .as_ref()
            .and_then(|l| match (l.latitude, l.longitude) {
                (Some(lat), Some(lon))
                    if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) =>
                {
                    Some((lat, lon))
                }
                _ => None,
            });
        Location {
            coords,
            country: self
                .country
                .as_ref()
                .and_then(|c| c.iso_code)
                .and_then(Code::parse_country),
            continent: self
                .continent
                .as_ref()
                .and_then(|c| c.code)
                .and_then(Code::parse_continent),
        }
    }
}

/// The geo inputs, loaded and checked.
pub struct GeoSource {
    db: Option<(PathBuf, maxminddb::Reader<Vec<u8>>)>,
    /// The database file as loaded (also once the reader is released; `locate` reads it again).
    file: Option<LoadedFile>,
    overrides: Vec<Override>,
    /// The database's build time (its metadata's `build_epoch`, Unix seconds), kept apart
    /// because the reader is released after compiling: the metrics show how old it is.
    built: Option<u64>,
}

/// The file a database was read from, kept open so that its content can be read again.
struct LoadedFile {
    file: std::fs::File,
    /// Size and modification time when it was read: a write since changes them. (Not the
    /// change time: a rename over the file unlinks it, which changes that too.)
    identity: (u64, i64, i64),
}

impl LoadedFile {
    fn identity(file: &std::fs::File) -> std::io::Result<(u64, i64, i64)> {
        use std::os::unix::fs::MetadataExt;
        let m = file.metadata()?;
        Ok((m.len(), m.mtime(), m.mtime_nsec()))
    }

    /// Opens and reads a database file whole.
    fn read(path: &Path) -> std::io::Result<(LoadedFile, Vec<u8>)> {
        let file = std::fs::File::open(path)?;
        // Taken before reading: a write during the read makes the content unusable later.
        let identity = LoadedFile::identity(&file)?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut &file, &mut bytes)?;
        Ok((LoadedFile { file, identity }, bytes))
    }

    /// The content as it was loaded, unless the file was written to since.
    fn reread(&self) -> Option<maxminddb::Reader<Vec<u8>>> {
        use std::os::unix::fs::FileExt;
        if LoadedFile::identity(&self.file).ok()? != self.identity {
            return None;
        }
        let mut bytes = vec![0u8; usize::try_from(self.identity.0).ok()?];
        self.file.read_exact_at(&mut bytes, 0).ok()?;
        maxminddb::Reader::from_source(bytes).ok()
    }
}

/// Location ids for every address, from [`GeoSource::compile`].
pub struct LocationMap {
    pub v4: PrefixTable<u32>,
    pub v6: PrefixTable<u128>,
    /// Indexed by location id; id 0 is the unknown location.
    pub locations: Vec<Location>,
    /// Networks the database held (before merging), for reporting.
    pub networks: usize,
}

pub const UNKNOWN: u32 = 0;

impl GeoSource {
    /// Opens the database, if there is one, and takes the overrides.
    pub fn load(database: Option<&Path>, overrides: Vec<Override>) -> Result<GeoSource, GeoError> {
        let Some(path) = database else {
            return Ok(GeoSource {
                db: None,
                file: None,
                overrides,
                built: None,
            });
        };
        let (file, bytes) = LoadedFile::read(path).map_err(|source| GeoError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let reader = maxminddb::Reader::from_source(bytes).map_err(|source| GeoError::Format {
            path: path.to_path_buf(),
            source,
        })?;
        let kind = &reader.metadata().database_type;
        if !(kind.contains("City") || kind.contains("Country")) {
            return Err(GeoError::NotLocation {
                path: path.to_path_buf(),
                kind: kind.clone(),
            });
        }
        let built = Some(reader.metadata().build_epoch);
        Ok(GeoSource {
            db: Some((path.to_path_buf(), reader)),
            file: Some(file),
            overrides,
            built,
        })
    }

    /// Database type and build time, for logs.
    pub fn describe(&self) -> String {
        match &self.db {
            None => format!("no database, {} overrides", self.overrides.len()),
            Some((path, r)) => format!(
                "{} ({}, built {}), {} overrides",
                path.display(),
                r.metadata().database_type,
                r.metadata().build_epoch,
                self.overrides.len()
            ),
        }
    }

    /// When the database was built (Unix seconds), None without one.
    pub fn built(&self) -> Option<u64> {
        self.built
    }

    /// Drops the in-memory database once it is compiled: serving needs only the compiled
    /// tables, and a GeoLite2-City file would otherwise double the server's memory.
    pub fn release_database(&mut self) {
        self.db = None;
    }

    /// Looks one address up: the longest matching override, else the database (read again
    /// from the file as loaded if it was released; not at all if that file was rewritten in
    /// place since, as its data is then not what the answers come from).
    pub fn locate(&self, ip: IpAddr) -> Located {
        if self.db.is_none()
            && let Some(reader) = self.file.as_ref().and_then(LoadedFile::reread)
        {
            let tmp = GeoSource {
                db: Some((PathBuf::new(), reader)),
                file: None,
                overrides: self.overrides.clone(),
                built: self.built,
            };
            return tmp.locate(ip);
        }
        let ip = canonical(ip);
        if let Some(o) = self
            .overrides
            .iter()
            .filter(|o| o.network.contains(&ip))
            .max_by_key(|o| o.network.prefix_len())
        {
            return Located {
                location: o.location,
                source: Source::Override,
                network: Some(o.network),
            };
        }
        if let Some((_, reader)) = &self.db
            && let Ok(result) = reader.lookup(ip)
        {
            let network = result
                .network()
                .ok()
                .and_then(|n| IpNet::new(n.network(), n.prefix()).ok());
            if let Ok(Some(rec)) = result.decode::<Record>() {
                let location = rec.location();
                let source = if location.is_unknown() {
                    Source::None
                } else {
                    Source::Database
                };
                return Located {
                    location,
                    source,
                    network,
                };
            }
            return Located {
                location: Location::default(),
                source: Source::None,
                network,
            };
        }
        Located {
            location: Location::default(),
            source: Source::None,
            network: None,
        }
    }

    /// Compiles database + overrides into prefix tables of location ids.
    pub fn compile(&self) -> Result<LocationMap, GeoError> {
        let mut locations = vec![Location::default()];
        let mut ids: HashMap<_, u32> = HashMap::new();
        ids.insert(Location::default().key(), UNKNOWN);
        let mut intern = |loc: Location, locations: &mut Vec<Location>| -> u32 {
            *ids.entry(loc.key()).or_insert_with(|| {
                locations.push(loc);
                (locations.len() - 1) as u32
            })
        };
        // Shortest prefix first, so that painting leaves the longest prefix on top.
        let mut overrides: Vec<&Override> = self.overrides.iter().collect();
        overrides.sort_by_key(|o| o.network.prefix_len());
        let mut top4 = Vec::new();
        let mut top6 = Vec::new();
        for o in overrides {
            let id = intern(o.location, &mut locations);
            let (start, end) = bounds(o.network);
            let span = Span {
                start,
                end,
                value: id,
            };
            match o.network {
                IpNet::V4(_) => top4.push(span),
                IpNet::V6(_) => top6.push(span),
            }
        }
        // The walk feeds each family's table as it goes (overrides laid over on the way): the
        // database's millions of networks are never held as a list.
        let mut v4: Overlay<u32> = Overlay::new(paint(top4), UNKNOWN);
        let mut v6: Overlay<u128> = Overlay::new(paint(top6), UNKNOWN);
        let mut networks = 0;
        let (v4, v6) = if let Some((path, reader)) = &self.db {
            // Many networks share one data record; decode each record once. Neighbouring
            // networks in tree order usually share it, so the last one is checked before the
            // map (whose random probes into a few MB were most of the compile time).
            let mut by_offset: FxHashMap<usize, u32> = FxHashMap::default();
            let mut last: Option<(usize, u32)> = None;
            let mut walk = |cidr: &str,
                            out: &mut dyn FnMut(Span),
                            locations: &mut Vec<Location>|
             -> Result<(), GeoError> {
                let Ok(net) = cidr.parse() else {
                    return Ok(());
                };
                let iter = match reader.within(net, Default::default()) {
                    Ok(i) => i,
                    // An IPv4-only database has no IPv6 tree.
                    Err(_) if cidr.contains(':') => return Ok(()),
                    Err(source) => {
                        return Err(GeoError::Walk {
                            path: path.clone(),
                            source,
                        });
                    }
                };
                let walk_error = |source| GeoError::Walk {
                    path: path.clone(),
                    source,
                };
                for item in iter {
                    let item = item.map_err(walk_error)?;
                    let Some(offset) = item.offset() else {
                        continue;
                    };
                    let n = item.network().map_err(walk_error)?;
                    let cached = match last {
                        Some((o, id)) if o == offset => Some(id),
                        _ => by_offset.get(&offset).copied(),
                    };
                    let id = match cached {
                        Some(id) => id,
                        None => {
                            let loc = match item.decode::<Record>() {
                                Ok(Some(r)) => r.location(),
                                Ok(None) => Location::default(),
                                Err(source) => {
                                    return Err(GeoError::Record {
                                        path: path.clone(),
                                        network: n,
                                        source,
                                    });
                                }
                            };
                            let id = intern(loc, locations);
                            by_offset.insert(offset, id);
                            id
                        }
                    };
                    last = Some((offset, id));
                    let (start, end) = match n {
                        ipnetwork::IpNetwork::V4(n) => {
                            bounds(IpNet::V4(ipnet::Ipv4Net::new(n.network(), n.prefix())?))
                        }
                        ipnetwork::IpNetwork::V6(n) => {
                            let net = ipnet::Ipv6Net::new(n.network(), n.prefix())?;
                            // The IPv4 subtree of an IPv6 database is compiled from the IPv4 walk.
                            if cidr.contains(':') && n.prefix() >= 96 && is_v4_subtree(n.network())
                            {
                                continue;
                            }
                            bounds(IpNet::V6(net))
                        }
                    };
                    networks += 1;
                    out(Span {
                        start,
                        end,
                        value: id,
                    });
                }
                Ok(())
            };
            walk("0.0.0.0/0", &mut |s| v4.push(s), &mut locations)?;
            let v4 = v4.finish();
            walk("::/0", &mut |s| v6.push(s), &mut locations)?;
            (v4, v6.finish())
        } else {
            (v4.finish(), v6.finish())
        };
        Ok(LocationMap {
            v4,
            v6,
            locations,
            networks,
        })
    }
}

fn is_v4_subtree(a: Ipv6Addr) -> bool {
    a.segments()[..6] == [0; 6]
}

/// First and last address of a network, as integers.
fn bounds(n: IpNet) -> (u128, u128) {
    match n {
        IpNet::V4(n) => (
            u32::from(n.network()) as u128,
            u32::from(n.broadcast()) as u128,
        ),
        IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
    }
}

/// IPv4-mapped IPv6 addresses (from dual-stack sockets) are IPv4 clients.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// A (lat, lon) point in degrees as a point on the unit sphere. The straight-line distance
/// between two such points grows with their great-circle distance, so comparing squared chords
/// ([`chord2`]) orders points exactly as [`distance_km`] does, with no trigonometry per pair.
pub fn unit_vector(p: (f64, f64)) -> [f64; 3] {
    let (lat, lon) = (p.0.to_radians(), p.1.to_radians());
    [lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()]
}

/// Squared straight-line distance between two points of [`unit_vector`].
pub fn chord2(a: [f64; 3], b: [f64; 3]) -> f64 {
    let d = [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
    d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
}

/// Great-circle distance in kilometres (haversine) between two (lat, lon) points in degrees.
pub fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lon1) = (a.0.to_radians(), a.1.to_radians());
    let (lat2, lon2) = (b.0.to_radians(), b.1.to_radians());
    let dlat = lat2 - lat1;
    let dlon = lon2 - lon1;
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().clamp(0.0, 1.0).asin()
}

/// Integer forms used by the prefix tables.
pub fn v4_key(ip: Ipv4Addr) -> u32 {
    u32::from(ip)
}

pub fn v6_key(ip: Ipv6Addr) -> u128 {
    u128::from(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_is_symmetric_and_plausible() {
        let london = (51.5, -0.13);
        let frankfurt = (50.1, 8.7);
        let tokyo = (35.7, 139.7);
        let lf = distance_km(london, frankfurt);
        assert!((600.0..700.0).contains(&lf), "{lf}");
        assert!((distance_km(frankfurt, london) - lf).abs() < 1e-9);
        assert!(distance_km(london, tokyo) > 9000.0);
    }

    #[test]
    fn load_errors_name_the_file() {
        let missing = Path::new("/nonexistent/GeoLite2-City.mmdb");
        let e = GeoSource::load(Some(missing), Vec::new())
            .err()
            .expect("a missing file is an error");
        assert!(matches!(e, GeoError::Open { .. }), "{e:?}");
        assert!(
            e.to_string()
                .starts_with("cannot open MaxMind database /nonexistent/GeoLite2-City.mmdb: "),
            "{e}"
        );

        let dir = std::env::temp_dir().join(format!("mirrordns-geo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let garbage = dir.join("garbage.mmdb");
        std::fs::write(&garbage, b"not a MaxMind database").expect("write");
        let e = GeoSource::load(Some(&garbage), Vec::new())
            .err()
            .expect("garbage is an error");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(matches!(e, GeoError::Format { .. }), "{e:?}");
        assert!(
            e.to_string().starts_with(&format!(
                "cannot open MaxMind database {}: ",
                garbage.display()
            )),
            "{e}"
        );
    }

    #[test]
    fn codes() {
        assert_eq!(
            Code::parse_continent("eu").map(|c| c.to_string()),
            Some("EU".into())
        );
        assert!(Code::parse_continent("XX").is_none());
        assert!(Code::parse_country("DEU").is_none());
    }
}
