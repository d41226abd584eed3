//! Geo answers: a MaxMind database built by the test, overrides, both policies, ECS rules.

mod common;

use common::mmdb::{Place, build, lookup_country, place};
use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use mirrordns::dns::Event;

fn database() -> Vec<u8> {
    build(&[
        ("81.2.64.0/19", place("EU", "GB", 51.5, -0.13)),
        ("1.0.16.0/20", place("AS", "JP", 35.68, 139.76)),
        ("8.8.8.0/24", place("NA", "US", 37.4, -122.1)),
        ("177.0.0.0/8", place("SA", "BR", -23.55, -46.63)),
        ("103.1.0.0/16", place("AS", "SG", 1.29, 103.85)),
        ("95.0.0.0/12", place("AS", "SA", 24.7, 46.7)),
        // A record with country and continent but no coordinates.
        (
            "200.0.0.0/8",
            Place {
                continent: Some("SA"),
                country: Some("AR"),
                coords: None,
            },
        ),
        // A record with nothing we can use (like registered_country-only entries).
        ("1.1.1.0/24", Place::default()),
        ("2a02:c7c::/32", place("EU", "GB", 51.5, -0.1)),
    ])
}

fn config() -> String {
    format!(
        r#"{}
[geo]
database = "geo.mmdb"
[[geo.override]]
network = "81.2.69.0/24"
location = {{ lat = 35.7, lon = 139.7, country = "JP", continent = "AS" }}

[[service]]
name = "downloads.example.com"
policy = "nearest"
ttl = 30
mirrors = ["us-east", "eu-west", "ap-south", "sa-east", "ap-northeast"]
[service.regions]
default = ["us-east", "eu-west"]

[[service]]
name = "cdn.example.com"
policy = "regions"
ttl = 60
answers = 2
mirrors = ["us-east", "eu-west", "ap-south", "sa-east", "ap-northeast"]
[service.regions]
default = ["us-east", "eu-west"]
[service.regions.continent]
EU = ["eu-west", "us-east"]
AS = ["ap-south", "ap-northeast"]
SA = ["sa-east", "us-east"]
[service.regions.country]
JP = ["ap-northeast", "ap-south"]
SA = ["eu-west", "us-east"]
{MIRRORS}"#,
        server_section()
    )
}

async fn a(ts: &TestServer, name: &str, subnet: &str, prefix: u8) -> (Vec<String>, u8) {
    let m = udp(
        ts.addr,
        &query(name, RecordType::A, Some(1232), Some((subnet, prefix))),
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    let (_, _, scope) = ecs(&m).expect("ECS echoed");
    (addrs(&m), scope)
}

#[test]
fn the_test_database_reads_back() {
    let db = database();
    assert_eq!(
        lookup_country(&db, "81.2.70.1".parse().unwrap()).as_deref(),
        Some("GB")
    );
    assert_eq!(
        lookup_country(&db, "2a02:c7c::1".parse().unwrap()).as_deref(),
        Some("GB")
    );
    assert_eq!(lookup_country(&db, "10.0.0.1".parse().unwrap()), None);
}

#[tokio::test]
async fn nearest_mirror_by_client_subnet() {
    let ts = start(&config(), ZONE, Some(database())).await;
    let d = "downloads.example.com.";
    // London -> Frankfurt. The DB network 81.2.64.0/19 is split by the /24 override, so the
    // largest network around 81.2.70.0 with one answer is 81.2.70.0/23.
    assert_eq!(
        a(&ts, d, "81.2.70.0", 24).await,
        (vec!["192.0.2.11".into()], 23)
    );
    // Tokyo, California, Sao Paulo, Singapore.
    assert_eq!(
        a(&ts, d, "1.0.16.0", 24).await,
        (vec!["192.0.2.14".into()], 20)
    );
    assert_eq!(a(&ts, d, "8.8.8.0", 24).await.0, ["192.0.2.10"]);
    assert_eq!(
        a(&ts, d, "177.5.0.0", 16).await,
        (vec!["192.0.2.13".into()], 8)
    );
    assert_eq!(a(&ts, d, "103.1.2.0", 24).await.0, ["192.0.2.12"]);
}

#[tokio::test]
async fn override_beats_database() {
    let ts = start(&config(), ZONE, Some(database())).await;
    // 81.2.69.0/24 is London in the DB but Tokyo by override.
    assert_eq!(
        a(&ts, "downloads.example.com.", "81.2.69.0", 24).await,
        (vec!["192.0.2.14".into()], 24)
    );
}

#[tokio::test]
async fn regions_policy_country_then_continent_then_default() {
    let ts = start(&config(), ZONE, Some(database())).await;
    let c = "cdn.example.com.";
    // Country JP beats continent AS; answers = 2.
    assert_eq!(
        a(&ts, c, "1.0.16.0", 24).await.0,
        ["192.0.2.14", "192.0.2.12"]
    );
    // Singapore: continent AS.
    assert_eq!(
        a(&ts, c, "103.1.0.0", 24).await.0,
        ["192.0.2.12", "192.0.2.14"]
    );
    // Country SA (Saudi Arabia) is not continent SA (South America).
    assert_eq!(
        a(&ts, c, "95.1.0.0", 16).await.0,
        ["192.0.2.11", "192.0.2.10"]
    );
    // Argentina: no coordinates, continent SA.
    assert_eq!(
        a(&ts, c, "200.1.0.0", 16).await.0,
        ["192.0.2.13", "192.0.2.10"]
    );
    // US: no country or continent entry -> default.
    assert_eq!(
        a(&ts, c, "8.8.8.0", 24).await.0,
        ["192.0.2.10", "192.0.2.11"]
    );
}

#[tokio::test]
async fn unknown_locations_use_the_default_order_and_are_counted() {
    let ts = start(&config(), ZONE, Some(database())).await;
    let d = "downloads.example.com.";
    let before = ts.server.stats().get(Event::UnknownLocation);
    // Private address: not in the DB.
    assert_eq!(a(&ts, d, "10.1.2.0", 24).await.0, ["192.0.2.10"]);
    // A record without location fields: unknown, like the unlisted space around it (1.1.0.0/16).
    assert_eq!(
        a(&ts, d, "1.1.1.0", 24).await,
        (vec!["192.0.2.10".into()], 16)
    );
    // Argentina has no coordinates: nearest falls back to the default order.
    assert_eq!(a(&ts, d, "200.1.0.0", 16).await.0, ["192.0.2.10"]);
    // No ECS: the source address (127.0.0.1) is unknown.
    let m = udp(ts.addr, &query(d, RecordType::A, None, None)).await;
    assert_eq!(addrs(&m), ["192.0.2.10"]);
    let after = ts.server.stats().get(Event::UnknownLocation);
    assert_eq!(
        after - before,
        3,
        "private, empty record and no-ECS lookups counted"
    );
}

#[tokio::test]
async fn aaaa_skips_mirrors_without_ipv6() {
    let ts = start(&config(), ZONE, Some(database())).await;
    let d = "downloads.example.com.";
    let m = udp(
        ts.addr,
        &query(d, RecordType::AAAA, Some(1232), Some(("81.2.70.0", 24))),
    )
    .await;
    assert_eq!(addrs(&m), ["2001:db8::11"]);
    // Brazil: sa-east has no IPv6, so the next nearest with IPv6 (us-east) answers.
    let m = udp(
        ts.addr,
        &query(d, RecordType::AAAA, Some(1232), Some(("177.0.0.0", 16))),
    )
    .await;
    assert_eq!(addrs(&m), ["2001:db8::10"]);
    // IPv6 client subnet.
    let m = udp(
        ts.addr,
        &query(d, RecordType::A, Some(1232), Some(("2a02:c7c:1::", 48))),
    )
    .await;
    assert_eq!(addrs(&m), ["192.0.2.11"]);
    assert_eq!(ecs(&m).map(|e| e.2), Some(32));
}

#[tokio::test]
async fn ecs_echo_scope_zero_and_static_names() {
    let ts = start(&config(), ZONE, Some(database())).await;
    let m = tcp(
        ts.addr,
        &query(
            "downloads.example.com.",
            RecordType::A,
            Some(1232),
            Some(("1.0.16.0", 24)),
        ),
    )
    .await;
    let (addr, source, scope) = ecs(&m).unwrap();
    assert_eq!(
        (addr.to_string().as_str(), source, scope),
        ("1.0.16.0", 24, 20)
    );
    // A static name does not depend on location: scope 0.
    let m = udp(
        ts.addr,
        &query(
            "www.example.com.",
            RecordType::A,
            Some(1232),
            Some(("1.0.16.0", 24)),
        ),
    )
    .await;
    assert_eq!(ecs(&m).map(|e| e.2), Some(0));
    // Source prefix 0: the answer for the source address, scope 0.
    let m = udp(
        ts.addr,
        &query(
            "downloads.example.com.",
            RecordType::A,
            Some(1232),
            Some(("0.0.0.0", 0)),
        ),
    )
    .await;
    assert_eq!(addrs(&m), ["192.0.2.10"]);
    assert_eq!(ecs(&m).map(|e| e.2), Some(0));
}

#[tokio::test]
async fn malformed_ecs_is_formerr() {
    let ts = start(&config(), ZONE, Some(database())).await;
    let cases: [(&str, Vec<u8>); 5] = [
        ("unknown family", vec![0, 3, 24, 0, 1, 0, 16]),
        (
            "prefix longer than IPv4 allows",
            vec![0, 1, 33, 0, 1, 0, 16, 0, 0],
        ),
        (
            "address bits beyond the prefix",
            vec![0, 1, 20, 0, 1, 0, 17],
        ),
        (
            "address longer than the prefix needs",
            vec![0, 1, 16, 0, 1, 0, 16],
        ),
        ("option shorter than its header", vec![0, 1]),
    ];
    for (what, data) in cases {
        let q = raw_query("downloads.example.com", 1, &[(8, data)]);
        for r in [udp_raw(ts.addr, &q).await, tcp_raw(ts.addr, &q).await] {
            let r = r.unwrap_or_else(|| panic!("{what}: no answer"));
            assert_eq!(rcode(&r), 1, "{what}: FORMERR");
            // The reply keeps an OPT record, so the client knows EDNS was understood.
            assert_eq!(
                u16::from_be_bytes([r[10], r[11]]),
                1,
                "{what}: OPT in reply"
            );
        }
    }
    // Two ECS options.
    let ok = vec![0, 1, 24, 0, 1, 0, 16];
    let q = raw_query(
        "downloads.example.com",
        1,
        &[(8, ok.clone()), (8, ok.clone())],
    );
    assert_eq!(rcode(&udp_raw(ts.addr, &q).await.unwrap()), 1);
    // The valid one alone is fine.
    let q = raw_query("downloads.example.com", 1, &[(8, ok)]);
    let m = hickory_proto::op::Message::from_vec(&udp_raw(ts.addr, &q).await.unwrap()).unwrap();
    assert_eq!(addrs(&m), ["192.0.2.14"]);
}
