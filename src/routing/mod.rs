//! The routing table: what the DNS path answers for each service and client network.
//!
//! Two layers, rebuilt at different rates:
//! - [`ClientMap`] (per service, built once per config/geo load): prefix tables mapping every
//!   client address to a *candidate list*, the service's mirrors in that client's order of
//!   preference. Compiling it walks the whole geo database, so health changes never redo it.
//! - [`RoutingTable`] (rebuilt on every health change by the pure function [`build`]): for each
//!   service and candidate list, the addresses to answer with, given which mirrors are
//!   routable. The DNS path `load()`s it from an `ArcSwap` and does one prefix lookup plus one
//!   index per query.

mod answer_counts;
pub mod download_counts;
pub mod files;

pub use answer_counts::AnswerCounters;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, OnceLock};

use crate::config::{Config, Fallback, Policy, Service};
use crate::geo::prefix::{Hit, PrefixTable};
use crate::geo::{self, Location, LocationMap, UNKNOWN};
use crate::zone::{Name, ZoneSet};

/// One client network's ordered mirrors.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CandidateList {
    /// Indices into `Config::mirrors`, most preferred first. For `nearest`, only the
    /// [`nearest_kept`] nearest with IPv4 and those with IPv6: a full order per location would
    /// make almost every GeoLite2 location a list of its own (see [`ClientMap::reps`]).
    pub mirrors: Vec<usize>,
    /// The client's location was unknown, so this is the service's default order.
    pub unknown: bool,
}

/// Client address -> candidate list, for one service.
#[derive(Debug)]
pub struct ClientMap {
    v4: PrefixTable<u32>,
    v6: PrefixTable<u128>,
    pub lists: Vec<CandidateList>,
    /// Per list, where its clients are, as a point of [`geo::unit_vector`] (None when none of
    /// them has coordinates, and for default orders).
    /// - A `nearest` list holds the point of one client location it was made for. When every
    ///   mirror of a shortened list is out, the others are tried in their distance from here:
    ///   the locations sharing a list share their nearest mirrors, so this is their order
    ///   too, give or take mirrors at almost equal distances.
    /// - A `regions` list (one per list and continent) holds the centre of its client
    ///   locations: when every mirror the region lists is out, [`fallthrough`] tries the
    ///   others by their distance from it.
    pub reps: Vec<Option<[f64; 3]>>,
    /// Per list, every mirror of the service in the order its clients try them: the list,
    /// the rest of a shortened `nearest` list by distance, then [`fallthrough`]. Worked out
    /// on first use (only the redirector needs it) and kept with the map, so health
    /// changes never redo it.
    orders: OnceLock<Vec<Vec<usize>>>,
    /// Per country, the candidate lists its IPv4 networks map to and how many addresses each
    /// holds: what the status page's map shades countries by (see [`CountryShare`]).
    pub countries: Vec<CountryShare>,
}

/// IPv4 addresses of one country (as the geo data places them) that one candidate list
/// serves. Counted at compile time, as the location data is not kept after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountryShare {
    pub country: geo::Code,
    pub list: u32,
    pub addresses: u64,
}

/// A client's candidate list id and the ECS scope within which it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientHit {
    pub list: u32,
    /// Index into [`CONTINENTS`] (for answer metrics).
    pub continent: usize,
    pub scope: u8,
}

/// Mirrors of each address family a `nearest` service keeps per client list: enough for the
/// answer and two more to fail over to before the list's representative order is needed
/// ([`ClientMap::reps`]).
pub fn nearest_kept(service: &Service) -> usize {
    service.answers.saturating_add(2).min(service.mirrors.len())
}

/// A service's mirrors as (mirror index, point on the unit sphere), in configured order.
/// Config validation guarantees every mirror of a `nearest` service has a location; one
/// without would sort last.
fn mirror_points(service: &Service, config: &Config) -> Vec<(usize, Option<[f64; 3]>)> {
    service
        .mirrors
        .iter()
        .map(|&i| (i, config.mirrors[i].location.map(geo::unit_vector)))
        .collect()
}

/// How far a mirror's point is from `here`, for ordering only (a squared chord); a mirror
/// without a location is farther than any with one.
fn remoteness(here: [f64; 3], p: &Option<[f64; 3]>) -> f64 {
    p.map_or(f64::MAX, |p| geo::chord2(here, p))
}

/// Every mirror of `points`, nearest to `here` first; equal distances keep the configured order.
fn by_distance(points: &[(usize, Option<[f64; 3]>)], here: [f64; 3]) -> Vec<usize> {
    let mut all: Vec<(f64, usize)> = points
        .iter()
        .map(|(i, p)| (remoteness(here, p), *i))
        .collect();
    // Stable: equal distances keep the configured order.
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    all.into_iter().map(|(_, i)| i).collect()
}

/// (squared chord, position in `points`) of the `k` points nearest to `here` among those whose
/// mirror passes `keep`, nearest first; equal distances keep the configured order. A short
/// sorted array beats sorting every mirror when only the first few are kept.
fn select(
    points: &[(usize, Option<[f64; 3]>)],
    here: [f64; 3],
    k: usize,
    keep: impl Fn(usize) -> bool,
) -> Vec<(f64, usize)> {
    let mut best: Vec<(f64, usize)> = Vec::with_capacity(k + 1);
    for (pos, (i, p)) in points.iter().enumerate() {
        if !keep(*i) {
            continue;
        }
        let d = remoteness(here, p);
        if best.len() == k && best.last().is_none_or(|&(worst, _)| d >= worst) {
            continue;
        }
        let at = best.partition_point(|&(b, _)| b <= d);
        best.insert(at, (d, pos));
        best.truncate(k);
    }
    best
}

/// What a `nearest` client network keeps: its `k` nearest mirrors with IPv4 and its `k`
/// nearest with IPv6, together in distance order, so that A and AAAA answers both come from
/// the client's own order while the kept mirrors are up.
fn nearest_kept_list(
    points: &[(usize, Option<[f64; 3]>)],
    here: [f64; 3],
    k: usize,
    config: &Config,
) -> Vec<usize> {
    let mut both = select(points, here, k, |i| !config.mirrors[i].ipv4.is_empty());
    both.extend(select(points, here, k, |i| {
        !config.mirrors[i].ipv6.is_empty()
    }));
    both.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    both.dedup_by_key(|e| e.1);
    both.into_iter().map(|(_, pos)| points[pos].0).collect()
}

/// Values in a client map: the candidate list id, with the continent index in the top bits so
/// that one lookup answers both.
const CONTINENT_SHIFT: u32 = 28;
const LIST_MASK: u32 = (1 << CONTINENT_SHIFT) - 1;

impl ClientMap {
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> ClientHit {
        let Hit { value, scope } = match geo::canonical(ip) {
            IpAddr::V4(a) => self.v4.lookup(geo::v4_key(a)),
            IpAddr::V6(a) => self.v6.lookup(geo::v6_key(a)),
        };
        ClientHit {
            list: value & LIST_MASK,
            continent: (value >> CONTINENT_SHIFT) as usize,
            scope,
        }
    }

    /// Ranges in the IPv4 and IPv6 tables after merging.
    pub fn ranges(&self) -> (usize, usize) {
        (self.v4.len(), self.v6.len())
    }

    /// Every mirror of the service in list `li`'s order (see [`ClientMap::orders`]'s field).
    pub fn order(&self, li: usize, service: &Service, config: &Config) -> &[usize] {
        let all = self.orders.get_or_init(|| {
            let points = mirror_points(service, config);
            (0..self.lists.len())
                .map(|l| full_order(&self.lists[l], self.reps[l], &points, service, config))
                .collect()
        });
        all.get(li).map(Vec::as_slice).unwrap_or_default()
    }

    pub fn heap_bytes(&self) -> usize {
        self.v4.heap_bytes() + self.v6.heap_bytes()
    }
}

/// The order of a service's mirrors for a client at `loc`.
pub fn order(service: &Service, config: &Config, loc: &Location) -> CandidateList {
    if loc.is_unknown() {
        return CandidateList {
            mirrors: service.default_order().to_vec(),
            unknown: true,
        };
    }
    let mirrors = match service.policy {
        Policy::Regions => {
            let r = &service.regions;
            loc.country
                .and_then(|c| r.country.get(&c))
                .or_else(|| loc.continent.and_then(|c| r.continent.get(&c)))
                .map(|v| v.as_slice())
                .unwrap_or_else(|| service.default_order())
                .to_vec()
        }
        Policy::Nearest => match loc.coords {
            Some(here) => by_distance(&mirror_points(service, config), geo::unit_vector(here)),
            None => service.default_order().to_vec(),
        },
    };
    CandidateList {
        mirrors,
        unknown: false,
    }
}

/// Compiles one service's client map from the location map.
pub fn compile_client_map(service: &Service, config: &Config, locs: &LocationMap) -> ClientMap {
    let mut lists: Vec<CandidateList> = Vec::new();
    // Per list: for `nearest`, one location's point; for `regions`, the sum of its locations'
    // points (made a centre below).
    let mut reps: Vec<Option<[f64; 3]>> = Vec::new();
    // Keyed with a tag: for `nearest`, whether the list has a representative (a default order
    // that happens to equal a kept nearest list must not share its failover); for `regions`,
    // the continent, so that each list's centre is a region's and not the whole world's. The
    // continent is in every table value anyway, so this splits no prefix-table range.
    let mut index: HashMap<(CandidateList, u32), u32> = HashMap::new();
    let points = mirror_points(service, config);
    let kept = nearest_kept(service);
    let by_location: Vec<u32> = locs
        .locations
        .iter()
        .enumerate()
        .map(|(id, loc)| {
            let continent = loc
                .continent
                .and_then(|c| CONTINENTS.iter().position(|x| *x == c.as_str()))
                .unwrap_or(CONTINENTS.len() - 1) as u32;
            let (mut l, rep) = match (service.policy, loc.coords) {
                (Policy::Nearest, Some(here)) => (
                    CandidateList {
                        mirrors: nearest_kept_list(&points, geo::unit_vector(here), kept, config),
                        unknown: false,
                    },
                    Some(geo::unit_vector(here)),
                ),
                _ => (order(service, config, loc), None),
            };
            if id as u32 == UNKNOWN {
                l.unknown = true;
            }
            let tag = match service.policy {
                Policy::Nearest => u32::from(rep.is_some()),
                Policy::Regions => continent,
            };
            let unknown = l.unknown;
            let list = *index.entry((l.clone(), tag)).or_insert_with(|| {
                lists.push(l);
                reps.push(rep);
                (lists.len() - 1) as u32
            });
            if service.policy == Policy::Regions
                && !unknown
                && let Some(here) = loc.coords
            {
                let p = geo::unit_vector(here);
                let sum = reps[list as usize].get_or_insert([0.0; 3]);
                for (s, x) in sum.iter_mut().zip(p) {
                    *s += x;
                }
            }
            list.min(LIST_MASK) | (continent << CONTINENT_SHIFT)
        })
        .collect();
    if service.policy == Policy::Regions {
        for rep in &mut reps {
            *rep = rep.and_then(centre);
        }
    }
    ClientMap {
        v4: locs.v4.map_values(|id| by_location[id as usize]),
        v6: locs.v6.map_values(|id| by_location[id as usize]),
        countries: country_shares(locs, &by_location),
        lists,
        reps,
        orders: OnceLock::new(),
    }
}

/// [`ClientMap::countries`]: one pass over the IPv4 location table, summed per location
/// first (an array add per range: a GeoLite2-City table has millions of them), then per
/// country and list.
fn country_shares(locs: &LocationMap, by_location: &[u32]) -> Vec<CountryShare> {
    let mut per_location = vec![0u64; locs.locations.len()];
    for span in locs.v4.spans() {
        if let Some(n) = per_location.get_mut(span.value as usize) {
            let size = u64::try_from(span.end - span.start + 1).unwrap_or(u64::MAX);
            *n = n.saturating_add(size);
        }
    }
    let mut sums: HashMap<(geo::Code, u32), u64> = HashMap::new();
    for (id, &n) in per_location.iter().enumerate() {
        let (Some(country), Some(&value)) = (
            locs.locations.get(id).and_then(|l| l.country),
            by_location.get(id),
        ) else {
            continue;
        };
        if n > 0 {
            *sums.entry((country, value & LIST_MASK)).or_default() += n;
        }
    }
    let mut out: Vec<CountryShare> = sums
        .into_iter()
        .map(|((country, list), addresses)| CountryShare {
            country,
            list,
            addresses,
        })
        .collect();
    out.sort_by_key(|c| (c.country, c.list));
    out
}

/// The point on the unit sphere in the direction of a sum of points, None if they cancel out.
fn centre(sum: [f64; 3]) -> Option<[f64; 3]> {
    let len = geo::chord2(sum, [0.0; 3]).sqrt();
    (len > 1e-9).then(|| sum.map(|x| x / len))
}

/// A list's mirrors, then the rest of a shortened `nearest` list by distance from its
/// clients, then [`fallthrough`]: the order one client tries every mirror in.
fn full_order(
    list: &CandidateList,
    here: Option<[f64; 3]>,
    points: &[(usize, Option<[f64; 3]>)],
    service: &Service,
    config: &Config,
) -> Vec<usize> {
    let mut order = list.mirrors.clone();
    if let (Policy::Nearest, Some(h)) = (service.policy, here) {
        for m in by_distance(points, h) {
            if !order.contains(&m) {
                order.push(m);
            }
        }
    }
    order.extend(
        fallthrough(list, here, service, config)
            .into_iter()
            .filter(|m| !order.contains(m))
            .collect::<Vec<_>>(),
    );
    order
}

/// Whether a mirror may receive a service's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eligibility {
    /// Live, verified for every required release, not drained.
    Routable,
    /// Live but unverified or lagging: used only by `fallback = "live"`.
    Live,
    /// Down, mismatched, drained or unknown.
    Out,
}

/// Per service, per mirror eligibility, and per release content which mirrors verified
/// each file: the health module's output, routing's input.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HealthSnapshot {
    pub services: Vec<Vec<Eligibility>>,
    /// For the redirector; empty without probes.
    pub files: Arc<Vec<files::ReleaseFiles>>,
}

impl HealthSnapshot {
    /// Every mirror routable except drained ones: configs without health checks.
    pub fn static_config(config: &Config) -> Self {
        let row: Vec<Eligibility> = config
            .mirrors
            .iter()
            .map(|m| {
                if m.drained {
                    Eligibility::Out
                } else {
                    Eligibility::Routable
                }
            })
            .collect();
        HealthSnapshot {
            services: vec![row; config.services.len()],
            files: Arc::default(),
        }
    }

    fn get(&self, service: usize, mirror: usize) -> Eligibility {
        self.services
            .get(service)
            .and_then(|r| r.get(mirror))
            .copied()
            .unwrap_or(Eligibility::Out)
    }
}

/// Addresses for one candidate list, pre-rendered as RDATA.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub a: Vec<[u8; 4]>,
    pub aaaa: Vec<[u8; 16]>,
    /// The mirrors whose addresses are in `a` / `aaaa` (empty when the origin answers).
    pub a_mirrors: Vec<usize>,
    pub aaaa_mirrors: Vec<usize>,
    /// Every mirror of the client's own list was out for IPv4 / IPv6, so `a` / `aaaa` come
    /// from past it ([`fallthrough`]).
    pub a_fallthrough: bool,
    pub aaaa_fallthrough: bool,
    /// Answer SERVFAIL: no mirror is routable and the fallback says so.
    pub servfail: bool,
}

impl Answer {
    pub fn ipv4(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.a.iter().map(|b| Ipv4Addr::from(*b))
    }

    pub fn ipv6(&self) -> impl Iterator<Item = Ipv6Addr> + '_ {
        self.aaaa.iter().map(|b| Ipv6Addr::from(*b))
    }
}

/// Which way a service is answered at the moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// From routable mirrors.
    Mirrors,
    /// No mirror is routable: the service's fallback is in force.
    Fallback(Fallback),
}

#[derive(Debug, Clone)]
pub struct ServiceRoute {
    pub name: Name,
    pub ttl: u32,
    pub mode: Mode,
    /// Per mirror, as the health snapshot said when this table was built.
    pub eligibility: Vec<Eligibility>,
    pub map: Arc<ClientMap>,
    /// Indexed by candidate list id.
    pub answers: Vec<Answer>,
}

impl ServiceRoute {
    /// The answer for clients of unknown location: what a zone transfer carries for the
    /// service, since a secondary cannot answer by location.
    pub fn default_answer(&self) -> Option<&Answer> {
        let i = self.map.lists.iter().position(|l| l.unknown)?;
        self.answers.get(i)
    }
}

/// Everything the DNS path reads, swapped as one value.
#[derive(Debug)]
pub struct RoutingTable {
    pub generation: u64,
    /// When this table was built.
    pub built_at: std::time::SystemTime,
    pub config: Arc<Config>,
    pub zones: Arc<ZoneSet>,
    pub services: Vec<ServiceRoute>,
    pub answer_counts: Arc<AnswerCounters>,
    pub download_counts: Arc<download_counts::DownloadCounters>,
    /// Per service, its files for the redirector (None for services no redirector serves).
    pub downloads: Vec<Option<Arc<files::Downloads>>>,
    /// The signatures of signed zones and their services' answers (None without `[dnssec]`).
    pub dnssec: Option<Arc<crate::dnssec::signed::Signed>>,
}

impl RoutingTable {
    /// This table with refreshed signatures, as generation `generation`: routing unchanged.
    pub fn resigned(&self, generation: u64, now: std::time::SystemTime) -> Option<RoutingTable> {
        let old = self.dnssec.as_ref()?;
        let dnssec =
            old.signer
                .sign_table(&self.zones, &service_sets(&self.services), Some(old), now);
        Some(RoutingTable {
            generation,
            built_at: self.built_at,
            config: self.config.clone(),
            zones: self.zones.clone(),
            services: self.services.clone(),
            answer_counts: self.answer_counts.clone(),
            download_counts: self.download_counts.clone(),
            downloads: self.downloads.clone(),
            dnssec: Some(Arc::new(dnssec)),
        })
    }
}

/// The services' answers as the signer takes them.
fn service_sets(services: &[ServiceRoute]) -> Vec<crate::dnssec::signer::ServiceSets<'_>> {
    services
        .iter()
        .map(|r| crate::dnssec::signer::ServiceSets {
            name: &r.name,
            ttl: r.ttl,
            lists: r
                .answers
                .iter()
                .map(|a| (!a.servfail).then_some((&a.a[..], &a.aaaa[..])))
                .collect(),
            default: r.map.lists.iter().position(|l| l.unknown),
        })
        .collect()
}

/// What a routing table is built from besides health: loaded once per config.
#[derive(Debug)]
pub struct Inputs {
    pub config: Arc<Config>,
    pub zones: Arc<ZoneSet>,
    /// One per service, in config order.
    pub maps: Vec<Arc<ClientMap>>,
    pub answer_counts: Arc<AnswerCounters>,
    pub download_counts: Arc<download_counts::DownloadCounters>,
    /// The keys and signature cache, with `[dnssec]`.
    pub signer: Option<Arc<crate::dnssec::signed::Signer>>,
}

/// Continent label values, by index; the last is for unknown locations.
pub const CONTINENTS: [&str; 8] = ["AF", "AN", "AS", "EU", "NA", "OC", "SA", "unknown"];

/// Where a client's list goes on when every mirror in it is out: the `regions.default` list,
/// then every mirror by distance from `here` (the list's clients, when known), then the
/// configured order. Each mirror once, and none of `list`.
pub fn fallthrough(
    list: &CandidateList,
    here: Option<[f64; 3]>,
    service: &Service,
    config: &Config,
) -> Vec<usize> {
    let mut order: Vec<usize> = Vec::with_capacity(service.mirrors.len());
    let by_distance_here = here.map(|h| by_distance(&mirror_points(service, config), h));
    let stages = [
        service.regions.default.as_deref().unwrap_or_default(),
        by_distance_here.as_deref().unwrap_or_default(),
        &service.mirrors,
    ];
    for i in stages.into_iter().flatten().copied() {
        if !list.mirrors.contains(&i) && !order.contains(&i) {
            order.push(i);
        }
    }
    order
}

/// The orders `pick` may go on in past a candidate list, computed only when needed.
struct Beyond<'a> {
    list: &'a CandidateList,
    here: Option<[f64; 3]>,
    /// The rest of a shortened `nearest` list, by distance from `here`: still the client's own
    /// order.
    own: Option<Vec<usize>>,
    /// [`fallthrough`].
    past: Option<Vec<usize>>,
    points: &'a [(usize, Option<[f64; 3]>)],
}

impl Beyond<'_> {
    fn own(&mut self, service: &Service) -> &[usize] {
        let (here, points, policy) = (self.here, self.points, service.policy);
        self.own.get_or_insert_with(|| match (policy, here) {
            (Policy::Nearest, Some(h)) => by_distance(points, h),
            _ => Vec::new(),
        })
    }

    fn past(&mut self, service: &Service, config: &Config) -> &[usize] {
        let (list, here) = (self.list, self.here);
        self.past
            .get_or_insert_with(|| fallthrough(list, here, service, config))
    }
}

/// The first `answers` mirrors of `list` that pass `ok` and have addresses of each family.
/// - A shortened `nearest` list that cannot fill the answer while other mirrors could goes on
///   in the list's own order: the service's mirrors by distance from its clients.
/// - A list that has no mirror of a family left goes on [`fallthrough`], so that a client
///   is never answered with nothing while some mirror could serve it. A `regions` list with
///   one mirror left answers with it alone: traffic stays in its region while it can.
fn pick(
    list: &CandidateList,
    beyond: &mut Beyond<'_>,
    service: &Service,
    config: &Config,
    ok: impl Fn(usize) -> bool,
) -> Answer {
    let mut ans = Answer::default();
    let shortened = list.mirrors.len() < service.mirrors.len();
    for v6 in [false, true] {
        let usable = |i: usize| {
            let m = &config.mirrors[i];
            ok(i)
                && !if v6 {
                    m.ipv6.is_empty()
                } else {
                    m.ipv4.is_empty()
                }
        };
        let mut chosen: Vec<usize> = list
            .mirrors
            .iter()
            .copied()
            .filter(|&i| usable(i))
            .take(service.answers)
            .collect();
        let more_usable = |n: usize| service.mirrors.iter().filter(|&&i| usable(i)).count() > n;
        if chosen.len() < service.answers && shortened && more_usable(chosen.len()) {
            let more: Vec<usize> = beyond
                .own(service)
                .iter()
                .copied()
                .filter(|&i| !list.mirrors.contains(&i) && usable(i))
                .take(service.answers - chosen.len())
                .collect();
            chosen.extend(more);
        }
        let past = chosen.is_empty() && more_usable(0);
        if past {
            chosen = beyond
                .past(service, config)
                .iter()
                .copied()
                .filter(|&i| usable(i))
                .take(service.answers)
                .collect();
        }
        for i in chosen {
            let m = &config.mirrors[i];
            if v6 {
                ans.aaaa.extend(m.ipv6.iter().map(|a| a.octets()));
                ans.aaaa_mirrors.push(i);
                ans.aaaa_fallthrough = past;
            } else {
                ans.a.extend(m.ipv4.iter().map(|a| a.octets()));
                ans.a_mirrors.push(i);
                ans.a_fallthrough = past;
            }
        }
    }
    ans
}

/// The answer for candidate list `li` of `map` in the service's current mode. `points`:
/// the service's [`mirror_points`].
fn answer_for(
    map: &ClientMap,
    li: usize,
    si: usize,
    mode: Mode,
    config: &Config,
    health: &HealthSnapshot,
    points: &[(usize, Option<[f64; 3]>)],
) -> Answer {
    let service = &config.services[si];
    let list = &map.lists[li];
    let mut beyond = Beyond {
        list,
        here: map.reps.get(li).copied().flatten(),
        own: None,
        past: None,
        points,
    };
    match mode {
        Mode::Mirrors => pick(list, &mut beyond, service, config, |i| {
            health.get(si, i) == Eligibility::Routable
        }),
        Mode::Fallback(Fallback::Live) => pick(list, &mut beyond, service, config, |i| {
            health.get(si, i) != Eligibility::Out
        }),
        Mode::Fallback(Fallback::Origin) => {
            let o = config.origin.as_ref();
            Answer {
                a: o.map(|o| o.ipv4.iter().map(|a| a.octets()).collect())
                    .unwrap_or_default(),
                aaaa: o
                    .map(|o| o.ipv6.iter().map(|a| a.octets()).collect())
                    .unwrap_or_default(),
                ..Answer::default()
            }
        }
        Mode::Fallback(Fallback::Servfail) => Answer {
            servfail: true,
            ..Answer::default()
        },
    }
}

/// A service falls back only when none of its mirrors is routable.
fn mode_of(si: usize, config: &Config, health: &HealthSnapshot) -> Mode {
    let service = &config.services[si];
    if service
        .mirrors
        .iter()
        .any(|&m| health.get(si, m) == Eligibility::Routable)
    {
        Mode::Mirrors
    } else {
        Mode::Fallback(service.fallback)
    }
}

/// Builds a routing table: a pure function of config, compiled client maps, zones and health.
pub fn build(inputs: &Inputs, health: &HealthSnapshot, generation: u64) -> RoutingTable {
    build_after(inputs, health, generation, None)
}

/// [`build`], carrying from the table it replaces what is kept while it holds (since when
/// `latest` has pointed where it does).
pub fn build_after(
    inputs: &Inputs,
    health: &HealthSnapshot,
    generation: u64,
    previous: Option<&RoutingTable>,
) -> RoutingTable {
    let Inputs {
        config,
        zones,
        maps,
        answer_counts,
        download_counts,
        signer,
    } = inputs;
    let services: Vec<ServiceRoute> = config
        .services
        .iter()
        .zip(maps)
        .enumerate()
        .map(|(si, (s, map))| {
            let mode = mode_of(si, config, health);
            let points = mirror_points(s, config);
            ServiceRoute {
                // Validated at load: every service name is a valid domain name.
                name: Name::from_text(&s.name).unwrap_or_else(|| Name::from_wire(Name::ROOT)),
                ttl: s.ttl,
                mode,
                eligibility: (0..config.mirrors.len())
                    .map(|m| health.get(si, m))
                    .collect(),
                map: map.clone(),
                answers: (0..map.lists.len())
                    .map(|li| answer_for(map, li, si, mode, config, health, &points))
                    .collect(),
            }
        })
        .collect();
    let now = std::time::SystemTime::now();
    let downloads = files::build_all(
        config,
        &health.services,
        &health.files,
        previous.map(|p| p.downloads.as_slice()),
        now,
    );
    // Signing is the one part of a build that is not a pure function of its inputs (the time,
    // and ECDSA's random nonce); answers read what it made.
    let dnssec = signer.as_ref().map(|sg| {
        Arc::new(sg.sign_table(
            zones,
            &service_sets(&services),
            previous.and_then(|p| p.dnssec.as_deref()),
            now,
        ))
    });
    RoutingTable {
        generation,
        built_at: now,
        downloads,
        dnssec,
        config: config.clone(),
        zones: zones.clone(),
        services,
        answer_counts: answer_counts.clone(),
        download_counts: download_counts.clone(),
    }
}

#[cfg(test)]
mod tests;
