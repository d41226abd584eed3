use std::path::Path;

use super::*;

const GOOD: &str = r#"
[server]
dns-listen = ["127.0.0.1:5353", "[::1]:5353"]
zones = ["zones/example.com.zone"]

[geo]
[[geo.override]]
network = "10.20.0.0/16"
location = { lat = 50.1, lon = 8.7, country = "DE", continent = "EU" }

[[service]]
name = "downloads.example.com"
policy = "regions"
mirrors = ["us-east", "eu-west"]
[service.regions]
default = ["us-east", "eu-west"]
[service.regions.continent]
EU = ["eu-west", "us-east"]
[service.regions.country]
SA = ["eu-west"]

[[mirror]]
name = "us-east"
ipv4 = ["192.0.2.10"]
location = { lat = 38.9, lon = -77.0 }

[[mirror]]
name = "eu-west"
ipv4 = ["192.0.2.11"]
ipv6 = ["2001:db8::11"]
location = { lat = 50.1, lon = 8.7 }
"#;

fn parse(src: &str) -> Result<Config, Problems> {
    Config::parse(Path::new("/etc/mirrordns/test.toml"), src)
}

fn errors(src: &str) -> Vec<String> {
    parse(src)
        .map(|_| ())
        .expect_err("should be rejected")
        .0
        .iter()
        .map(|p| p.to_string())
        .collect()
}

#[test]
fn good_config_parses_and_resolves_paths() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.server.dns_listen.len(), 2);
    assert_eq!(
        c.server.zones[0].0,
        Path::new("/etc/mirrordns/zones/example.com.zone")
    );
    assert_eq!(c.services[0].policy, Policy::Regions);
    assert_eq!(c.services[0].mirrors, vec![0, 1]);
    assert_eq!(c.services[0].ttl, defaults::SERVICE_TTL);
    assert_eq!(
        c.geo.overrides[0].location.country,
        Code::parse_country("DE")
    );
    assert!(
        c.services[0]
            .regions
            .country
            .contains_key(&Code::parse_country("SA").unwrap())
    );
}

#[test]
fn shipped_example_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = root.join("config/mirrordns.toml");
    let c = Config::load(&path).unwrap_or_else(|p| panic!("{p}"));
    assert!(!c.services.is_empty());
}

#[test]
fn unknown_keys_are_rejected_in_every_table() {
    let tables = [
        ("[server]\n", "server"),
        ("[[geo.override]]\nnetwork = \"10.20.0.0/16\"\n", "override"),
        ("[service.regions]\n", "regions"),
        ("[[mirror]]\nname = \"eu-west\"\n", "mirror"),
    ];
    for (header, what) in tables {
        let src = GOOD.replacen(header, &format!("{header}bogus-key = 1\n"), 1);
        assert_ne!(src, GOOD, "{what}: header not found");
        let errs = errors(&src);
        assert!(errs[0].contains("bogus-key"), "{what}: {errs:?}");
        assert!(
            errs[0].starts_with("/etc/mirrordns/test.toml:"),
            "{what}: {errs:?}"
        );
    }
}

#[test]
fn semantic_errors_name_line_and_key() {
    let src = GOOD.replace(
        "mirrors = [\"us-east\", \"eu-west\"]",
        "mirrors = [\"us-east\", \"eu-wets\"]",
    );
    let errs = errors(&src);
    let line = src.lines().position(|l| l.contains("eu-wets")).unwrap() + 1;
    assert!(
        errs.iter().any(|e| e.starts_with(&format!(
            "/etc/mirrordns/test.toml:{line}: `service `downloads.example.com`: mirrors`"
        )) && e.contains("mirror `eu-wets` is not defined")),
        "{errs:?}"
    );

    let src = GOOD.replace("10.20.0.0/16", "10.20.0.1/16");
    let errs = errors(&src);
    assert!(
        errs.iter()
            .any(|e| e.contains("host bits") && e.contains("10.20.0.0/16")),
        "{errs:?}"
    );

    let src = GOOD.replace(
        "lat = 50.1, lon = 8.7, country",
        "lat = 150.1, lon = 8.7, country",
    );
    assert!(errors(&src).iter().any(|e| e.contains("not a latitude")));

    let src = GOOD.replace("\"127.0.0.1:5353\"", "\"127.0.0.1\"");
    assert!(errors(&src).iter().any(|e| e.contains("server.dns-listen")));

    let src = GOOD.replace("policy = \"regions\"", "policy = \"closest\"");
    assert!(
        errors(&src)
            .iter()
            .any(|e| e.contains("expected \"nearest\" or \"regions\""))
    );

    let src = GOOD.replace(
        "[service.regions.continent]\nEU",
        "[service.regions.continent]\nEX",
    );
    assert!(
        errors(&src)
            .iter()
            .any(|e| e.contains("not a continent code"))
    );

    let src = GOOD.replace("ipv4 = [\"192.0.2.10\"]", "ipv4 = [\"192.0.2.300\"]");
    assert!(
        errors(&src)
            .iter()
            .any(|e| e.contains("not an IPv4 address"))
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let src = GOOD
        .replace("ipv4 = [\"192.0.2.10\"]", "ipv4 = [\"nope\"]")
        .replace("10.20.0.0/16", "10.20.0.0/40");
    assert_eq!(errors(&src).len(), 2);
}

#[test]
fn syntax_errors_carry_a_line() {
    let errs = errors("[server]\ndns-listen = [\"127.0.0.1:53\"\nzones = []\n");
    assert!(errs[0].starts_with("/etc/mirrordns/test.toml:"), "{errs:?}");
}

#[test]
fn durations() {
    assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
    assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    assert!(parse_duration("10").is_err());
    assert!(parse_duration("s").is_err());
    assert!(parse_duration("").is_err());
}

#[test]
fn notify_takes_socket_addresses_and_bare_ips_for_port_53() {
    let src = format!(
        "{GOOD}\n[transfer]\nallow = [\"192.0.2.54/32\"]\nnotify = [\"192.0.2.54:5353\", \"192.0.2.55\", \"[2001:db8::54]:53\", \"2001:db8::55\"]\n"
    );
    let cfg = parse(&src).unwrap();
    let want: Vec<std::net::SocketAddr> = [
        "192.0.2.54:5353",
        "192.0.2.55:53",
        "[2001:db8::54]:53",
        "[2001:db8::55]:53",
    ]
    .iter()
    .map(|a| a.parse().unwrap())
    .collect();
    assert_eq!(cfg.transfer.notify, want);
    assert!(parse(GOOD).unwrap().transfer.notify.is_empty());

    let src = format!("{GOOD}\n[transfer]\nnotify = [\"192.0.2.54:53\",\n  \"ns2.example.net\"]\n");
    let line = src
        .lines()
        .position(|l| l.contains("ns2.example.net"))
        .unwrap()
        + 1;
    let errs = errors(&src);
    assert!(
        errs.iter().any(|e| e.starts_with(&format!(
            "/etc/mirrordns/test.toml:{line}: `transfer.notify`"
        )) && e.contains("`ns2.example.net` is not an address")),
        "{errs:?}"
    );
}

#[test]
fn cluster_section_is_read_and_checked() {
    let c = parse(&format!(
        "{GOOD}\n[cluster]\nredis = \"redis://:pw@127.0.0.1:6380/2\"\nname = \"ns1\"\n"
    ))
    .unwrap();
    let cl = c.cluster.unwrap();
    assert_eq!(cl.name, "ns1");
    assert_eq!(cl.key_prefix, defaults::CLUSTER_KEY_PREFIX);
    assert_eq!(cl.redis_shown(), "redis://:***@127.0.0.1:6380/2");
    assert!(!format!("{cl:?}").contains("pw"));
    assert!(parse(GOOD).unwrap().cluster.is_none());
    // The host name is the default instance name.
    let c = parse(&format!(
        "{GOOD}\n[cluster]\nredis = \"rediss://r.example:6380\"\n"
    ))
    .unwrap();
    assert_eq!(Some(c.cluster.unwrap().name), host_name());
    for (section, key, says) in [
        (
            "redis = \"http://127.0.0.1:6379\"",
            "cluster.redis",
            "is not a Redis URL",
        ),
        (
            "redis = \"redis://127.0.0.1:notaport\"",
            "cluster.redis",
            "not a usable Redis URL",
        ),
        (
            "redis = \"redis://h\"\nname = \"ns 1\"",
            "cluster.name",
            "no spaces",
        ),
        (
            "redis = \"redis://h\"\nname = \"\"",
            "cluster.name",
            "must not be empty",
        ),
        (
            "redis = \"redis://h\"\nsecret = \"short\"",
            "cluster.secret",
            "at least 16",
        ),
        (
            "redis = \"redis://h\"\nkey-prefix = \"a b\"",
            "cluster.key-prefix",
            "no spaces",
        ),
        ("name = \"ns1\"", "", "missing field `redis`"),
    ] {
        let e = errors(&format!("{GOOD}\n[cluster]\n{section}\n"));
        assert!(
            e.iter()
                .any(|e| e.contains(key) && e.contains(says) && e.contains("test.toml:")),
            "{section}: {e:?}"
        );
    }
}
