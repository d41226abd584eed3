use std::path::Path;

use super::*;
use crate::geo::GeoSource;

/// Six mirrors on the equator, 10° apart eastwards from 0°, and a client in Africa just west
/// of the first: its order by distance is m0, m1, ..., m5. The default order is the reverse,
/// so a failover that fell back to it instead of to distance would show; the region list for
/// Africa is m0, m1.
fn equator(policy: &str) -> (Config, ClientMap) {
    equator_with_v6(policy, &[])
}

/// [`equator`], with IPv6 addresses on the mirrors in `v6`.
fn equator_with_v6(policy: &str, v6: &[usize]) -> (Config, ClientMap) {
    let mut src = format!(
        "[server]\ndns-listen = [\"127.0.0.1:0\"]\nzones = [\"example.com.zone\"]\n\
         [[geo.override]]\nnetwork = \"198.51.100.0/24\"\n\
         location = {{ lat = 0.0, lon = -1.0, continent = \"AF\" }}\n\
         [[service]]\nname = \"downloads.example.com\"\npolicy = \"{policy}\"\nanswers = 1\n\
         mirrors = [\"m0\", \"m1\", \"m2\", \"m3\", \"m4\", \"m5\"]\n\
         [service.regions]\ndefault = [\"m5\", \"m4\", \"m3\", \"m2\", \"m1\", \"m0\"]\n\
         [service.regions.continent]\nAF = [\"m0\", \"m1\"]\n",
    );
    for i in 0..6 {
        src += &format!(
            "[[mirror]]\nname = \"m{i}\"\nipv4 = [\"192.0.2.{i}\"]\nlocation = {{ lat = 0.0, lon = {}.0 }}\n",
            i * 10
        );
        if v6.contains(&i) {
            src += &format!("ipv6 = [\"2001:db8::{i}\"]\n");
        }
    }
    let path = Path::new("/etc/mirrordns/test.toml");
    let config = Config::parse(path, &src).unwrap_or_else(|p| panic!("{p}"));
    let map = client_map(&config);
    (config, map)
}

/// The first service's client map, compiled from the config's overrides.
fn client_map(config: &Config) -> ClientMap {
    let database = config.geo.database.as_ref().map(|d| d.0.as_path());
    let locs = GeoSource::load(database, config.geo.overrides.clone())
        .and_then(|g| g.compile())
        .unwrap_or_else(|e| panic!("{e}"));
    compile_client_map(&config.services[0], config, &locs)
}

fn answer_with_out(config: &Config, map: &ClientMap, out: &[usize]) -> Vec<usize> {
    answer_of(config, map, out).a_mirrors
}

fn answer_of(config: &Config, map: &ClientMap, out: &[usize]) -> Answer {
    let health = HealthSnapshot {
        services: vec![
            (0..config.mirrors.len())
                .map(|m| {
                    if out.contains(&m) {
                        Eligibility::Out
                    } else {
                        Eligibility::Routable
                    }
                })
                .collect(),
        ],
        ..HealthSnapshot::default()
    };
    let hit = map.lookup("198.51.100.7".parse().unwrap());
    let mode = mode_of(0, config, &health);
    let points = mirror_points(&config.services[0], config);
    answer_for(map, hit.list as usize, 0, mode, config, &health, &points)
}

#[test]
fn a_nearest_list_keeps_the_answer_and_two_more() {
    let (config, map) = equator("nearest");
    let hit = map.lookup("198.51.100.7".parse().unwrap());
    assert_eq!(map.lists[hit.list as usize].mirrors, [0, 1, 2]);
    assert_eq!(nearest_kept(&config.services[0]), 3);
}

#[test]
fn failover_past_the_kept_mirrors_goes_on_by_distance() {
    let (config, map) = equator("nearest");
    assert_eq!(answer_with_out(&config, &map, &[]), [0]);
    assert_eq!(answer_with_out(&config, &map, &[0]), [1]);
    assert_eq!(answer_with_out(&config, &map, &[0, 1, 2]), [3]);
    assert_eq!(answer_with_out(&config, &map, &[0, 1, 2, 3]), [4]);
    assert_eq!(answer_with_out(&config, &map, &[0, 1, 2, 3, 4]), [5]);
}

/// The `k` nearest of every mirror, as a kept list selects them.
fn nearest(points: &[(usize, Option<[f64; 3]>)], here: [f64; 3], k: usize) -> Vec<usize> {
    select(points, here, k, |_| true)
        .into_iter()
        .map(|(_, pos)| points[pos].0)
        .collect()
}

#[test]
fn ordering_by_chord_is_ordering_by_great_circle_distance() {
    // A small deterministic generator: the same points every run.
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut point = || (next() * 180.0 - 90.0, next() * 360.0 - 180.0);
    let mirrors: Vec<(f64, f64)> = (0..40).map(|_| point()).collect();
    let points: Vec<(usize, Option<[f64; 3]>)> = mirrors
        .iter()
        .enumerate()
        .map(|(i, &m)| (i, Some(geo::unit_vector(m))))
        .collect();
    for _ in 0..500 {
        let here = point();
        let mut by_haversine: Vec<usize> = (0..mirrors.len()).collect();
        by_haversine.sort_by(|&a, &b| {
            geo::distance_km(here, mirrors[a]).total_cmp(&geo::distance_km(here, mirrors[b]))
        });
        let u = geo::unit_vector(here);
        assert_eq!(by_distance(&points, u), by_haversine, "{here:?}");
        assert_eq!(nearest(&points, u, 3), by_haversine[..3], "{here:?}");
    }
}

#[test]
fn equal_distances_keep_the_configured_order() {
    let p = geo::unit_vector((10.0, 20.0));
    let points = [(7, Some(p)), (3, Some(p)), (5, None), (1, Some(p))];
    assert_eq!(by_distance(&points, p), [7, 3, 1, 5]);
    assert_eq!(nearest(&points, p, 2), [7, 3]);
}

#[test]
fn a_region_list_is_used_as_configured_while_it_has_a_mirror() {
    let (config, map) = equator("regions");
    let hit = map.lookup("198.51.100.7".parse().unwrap());
    assert_eq!(map.lists[hit.list as usize].mirrors, [0, 1]);
    assert_eq!(answer_with_out(&config, &map, &[]), [0]);
    let one_left = answer_of(&config, &map, &[0]);
    assert_eq!(one_left.a_mirrors, [1]);
    assert!(!one_left.a_fallthrough);
}

#[test]
fn an_exhausted_region_list_goes_on_with_the_default_list_first() {
    let (config, map) = equator("regions");
    // Both listed mirrors out: `regions.default` (m5 first) before distance (m2 would be next).
    let past = answer_of(&config, &map, &[0, 1]);
    assert_eq!(past.a_mirrors, [5]);
    assert!(past.a_fallthrough);
    assert_eq!(answer_with_out(&config, &map, &[0, 1, 5]), [4]);
}

#[test]
fn past_the_default_list_the_order_is_by_distance_then_as_configured() {
    let (mut config, _) = equator("regions");
    // m0..m3 form the default list now; m4 and m5 are left for distance.
    config.services[0].regions.default = Some(vec![3, 2, 1, 0]);
    let map = client_map(&config);
    let hit = map.lookup("198.51.100.7".parse().unwrap());
    let li = hit.list as usize;
    let here = map.reps[li].expect("a region list with a located client has a centre");
    assert_eq!(
        fallthrough(&map.lists[li], Some(here), &config.services[0], &config),
        [3, 2, 4, 5]
    );
    // Seen from the far side of the equator, distance puts m5 before m4.
    let far = geo::unit_vector((0.0, 80.0));
    assert_eq!(
        fallthrough(&map.lists[li], Some(far), &config.services[0], &config),
        [3, 2, 5, 4]
    );
    // With no default list and no location: the configured order.
    config.services[0].regions.default = None;
    assert_eq!(
        fallthrough(&map.lists[li], None, &config.services[0], &config),
        [2, 3, 4, 5]
    );
    assert_eq!(answer_with_out(&config, &map, &[0, 1, 2, 3]), [4]);
}

#[test]
fn no_family_is_left_empty_while_a_mirror_has_it() {
    // Only m4 and m5 have IPv6, and neither is on the Africa list.
    let (config, map) = equator_with_v6("regions", &[4, 5]);
    let a = answer_of(&config, &map, &[]);
    assert_eq!((a.a_mirrors, a.a_fallthrough), (vec![0], false));
    assert_eq!((a.aaaa_mirrors, a.aaaa_fallthrough), (vec![5], true));
    // Every mirror out: the fallback, not a fallthrough.
    let all: Vec<usize> = (0..6).collect();
    let none = answer_of(&config, &map, &all);
    assert!(none.a_mirrors.is_empty() && !none.a_fallthrough);
}

#[test]
fn a_nearest_default_order_goes_on_past_itself() {
    // A client of unknown location gets `regions.default`; with all of it out, the rest.
    let (mut config, _) = equator("nearest");
    config.services[0].regions.default = Some(vec![5, 4]);
    let map = client_map(&config);
    let hit = map.lookup("203.0.113.9".parse().unwrap());
    let li = hit.list as usize;
    assert!(map.lists[li].unknown);
    let mut health = HealthSnapshot::static_config(&config);
    health.services[0][5] = Eligibility::Out;
    health.services[0][4] = Eligibility::Out;
    let points = mirror_points(&config.services[0], &config);
    let mode = mode_of(0, &config, &health);
    let ans = answer_for(&map, li, 0, mode, &config, &health, &points);
    assert_eq!((ans.a_mirrors, ans.a_fallthrough), (vec![0], true));
}

#[test]
fn a_nearest_list_keeps_the_nearest_of_each_family() {
    // Only the two farthest mirrors have IPv6: the list keeps them too, so AAAA answers come
    // from this client's own order (m4 before m5) with everything up.
    let (config, map) = equator_with_v6("nearest", &[4, 5]);
    let hit = map.lookup("198.51.100.7".parse().unwrap());
    assert_eq!(map.lists[hit.list as usize].mirrors, [0, 1, 2, 4, 5]);
    let all_up = answer_of(&config, &map, &[]);
    assert_eq!((all_up.a_mirrors, all_up.aaaa_mirrors), (vec![0], vec![4]));
    let m4_out = answer_of(&config, &map, &[4]);
    assert_eq!((m4_out.a_mirrors, m4_out.aaaa_mirrors), (vec![0], vec![5]));
}

#[test]
fn countries_count_their_ipv4_addresses_per_list() {
    let mut src = String::from(
        "[server]\ndns-listen = [\"127.0.0.1:0\"]\nzones = [\"example.com.zone\"]\n\
         [[geo.override]]\nnetwork = \"198.51.100.0/24\"\n\
         location = { lat = 0.0, lon = -1.0, country = \"GH\", continent = \"AF\" }\n\
         [[geo.override]]\nnetwork = \"203.0.113.0/25\"\n\
         location = { lat = 0.0, lon = 51.0, country = \"GH\", continent = \"AF\" }\n\
         [[geo.override]]\nnetwork = \"192.0.2.0/26\"\n\
         location = { lat = 0.0, lon = 49.0, country = \"KE\", continent = \"AF\" }\n\
         [[geo.override]]\nnetwork = \"2001:db8::/32\"\n\
         location = { lat = 0.0, lon = 49.0, country = \"SO\", continent = \"AF\" }\n\
         [[service]]\nname = \"downloads.example.com\"\nanswers = 1\nmirrors = [\"m0\", \"m5\"]\n",
    );
    for i in [0, 5] {
        src += &format!(
            "[[mirror]]\nname = \"m{i}\"\nipv4 = [\"192.0.2.{i}\"]\nlocation = {{ lat = 0.0, lon = {}.0 }}\n",
            i * 10
        );
    }
    let config = Config::parse(Path::new("/etc/mirrordns/test.toml"), &src)
        .unwrap_or_else(|p| panic!("{p}"));
    let map = client_map(&config);
    let list_of = |ip: &str| map.lookup(ip.parse().unwrap()).list;
    let (west, east) = (list_of("198.51.100.1"), list_of("203.0.113.1"));
    assert_ne!(west, east);
    assert_eq!(list_of("192.0.2.1"), east, "KE is nearest m5 too");
    let gh = |c: &str| geo::Code::parse_country(c).unwrap();
    let mut want = vec![
        CountryShare {
            country: gh("GH"),
            list: west,
            addresses: 256,
        },
        CountryShare {
            country: gh("GH"),
            list: east,
            addresses: 128,
        },
        CountryShare {
            country: gh("KE"),
            list: east,
            addresses: 64,
        },
    ];
    want.sort_by_key(|c| (c.country, c.list));
    // SO has only IPv6 networks: not counted.
    assert_eq!(map.countries, want);
}
