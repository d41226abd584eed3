//! Geo answers: a MaxMind database built by the test, overrides, both policies, ECS rules.

use crate::common::mmdb::{Place, build, lookup_country, place};
use crate::common::*;
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

/// `config()` with `drained = true` on the named mirrors.
fn config_draining(names: &[&str]) -> String {
    let mut c = config();
    for n in names {
        let at = format!("name = \"{n}\"\n");
        c = c.replacen(&at, &format!("{at}drained = true\n"), 1);
    }
    c
}

async fn get(ts: &TestServer, path: &str) -> String {
    mirrordns::health::http::install_crypto();
    let base = ts.server.http_addr().expect("http endpoint");
    let r = reqwest::get(format!("http://{base}{path}"))
        .await
        .expect("endpoint answers");
    assert_eq!(r.status(), 200, "{path}");
    r.text().await.expect("body")
}

fn fallthrough_metric(metrics: &str, service: &str) -> f64 {
    let prefix = format!("mirrordns_dns_fallthrough_total{{service=\"{service}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"))
        .parse()
        .expect("a number")
}

#[tokio::test]
async fn a_region_with_every_mirror_out_is_answered_from_past_its_list() {
    // Tokyo's list is ap-northeast then ap-south; Brazil's sa-east then us-east. Drain them:
    // both countries go on with `regions.default` (us-east, eu-west) instead of an empty
    // NOERROR that resolvers would cache.
    let ts = start(
        &config_draining(&["ap-northeast", "ap-south", "sa-east"]),
        ZONE,
        Some(database()),
    )
    .await;
    let c = "cdn.example.com.";
    let metrics = get(&ts, "/metrics").await;
    assert_eq!(fallthrough_metric(&metrics, "cdn.example.com"), 0.0);
    // Tokyo: both of its mirrors out, the default list answers (answers = 2).
    assert_eq!(
        a(&ts, c, "1.0.16.0", 24).await.0,
        ["192.0.2.10", "192.0.2.11"]
    );
    // Brazil: us-east is still on its list, so it answers alone; traffic stays in the list.
    assert_eq!(a(&ts, c, "177.5.0.0", 16).await.0, ["192.0.2.10"]);
    // AAAA for Tokyo: the default list's mirrors with IPv6, over TCP too.
    let q = query(c, RecordType::AAAA, Some(1232), Some(("1.0.16.0", 24)));
    for m in [udp(ts.addr, &q).await, tcp(ts.addr, &q).await] {
        assert_eq!(addrs(&m), ["2001:db8::10", "2001:db8::11"]);
    }
    let metrics = get(&ts, "/metrics").await;
    assert_eq!(
        fallthrough_metric(&metrics, "cdn.example.com"),
        3.0,
        "Tokyo's A and two AAAA answers came from past its list; Brazil's did not"
    );
    assert_eq!(fallthrough_metric(&metrics, "downloads.example.com"), 0.0);

    // `/lookup` names the mirrors that answered from past the list, and why.
    let l: serde_json::Value =
        serde_json::from_str(&get(&ts, "/lookup?ip=1.0.16.1&name=cdn.example.com").await)
            .expect("JSON");
    assert_eq!(l["fallthrough"], serde_json::json!(["A", "AAAA"]), "{l}");
    let used: Vec<(String, String)> = l["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .map(|d| {
            (
                d["mirror"].as_str().unwrap_or_default().to_string(),
                d["used"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(used[0], ("ap-northeast".into(), "drained".into()));
    assert_eq!(used[1], ("ap-south".into(), "drained".into()));
    assert!(used[2].0 == "us-east" && used[2].1.contains("past this client's list"));
    assert!(used[3].0 == "eu-west" && used[3].1.contains("past this client's list"));
    // The status page and /status say so too.
    let status: serde_json::Value = serde_json::from_str(&get(&ts, "/status").await).expect("JSON");
    let cdn = &status["services"][1];
    assert_eq!(cdn["name"], "cdn.example.com");
    assert!(cdn["fallthrough_lists"].as_u64() >= Some(1), "{cdn}");
    assert_eq!(cdn["fallthrough_answers"], 3);
    let page = get(&ts, "/").await;
    // In the warnings above the map, naming the service and how many client groups.
    let groups = cdn["fallthrough_lists"].as_u64().unwrap_or_default();
    let warning = format!(
        "<b>cdn.example.com</b>: every mirror listed for {groups} client group{} is out; they are answered from past their list.",
        if groups == 1 { "" } else { "s" }
    );
    assert!(page.contains(&warning), "status page:\n{page}");
}

#[tokio::test]
async fn nearest_never_answers_nothing_while_a_mirror_is_up() {
    // Unknown locations use `regions.default` (us-east, eu-west); drain both.
    let ts = start(
        &config_draining(&["us-east", "eu-west"]),
        ZONE,
        Some(database()),
    )
    .await;
    let d = "downloads.example.com.";
    let (got, _) = a(&ts, d, "10.1.2.0", 24).await;
    assert_eq!(
        got,
        ["192.0.2.12"],
        "configured order past the default list"
    );
    let metrics = get(&ts, "/metrics").await;
    assert_eq!(fallthrough_metric(&metrics, "downloads.example.com"), 1.0);
    // AAAA: only ap-northeast still has IPv6.
    let m = udp(
        ts.addr,
        &query(d, RecordType::AAAA, Some(1232), Some(("10.1.2.0", 24))),
    )
    .await;
    assert_eq!(addrs(&m), ["2001:db8::14"]);
}
