//! The monitoring files in contrib/ against a real server: every metric name and label the
//! Grafana dashboard (contrib/grafana/mirrordns.json), the alert rules
//! (contrib/prometheus/alerts.yml) and their unit tests (alerts_test.yml) use is in the
//! `/metrics` of a real mirrordns, scraped over HTTP in a state where every alert should fire:
//! a mirror serving a corrupted file (mismatch), a service whose only mirror is down (fallback),
//! a release not on every mirror, a rejected reload, a geo database built in 2023 and DNSSEC
//! signatures valid for 2 days. With promtool, the rules are checked, their unit tests run,
//! and a test generated from those real scrapes must fire exactly the alerts the state calls for.
//!
//! alerts.yml and alerts_test.yml are read line by line (`expr:`, `record:`, `- series:`,
//! `summary:`/`description:` lines), which their layout keeps to one item per line; promtool
//! checks them as YAML.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::process::http;
use crate::common::redirect::*;
use crate::common::{mmdb, require};

type Labels = BTreeMap<String, String>;

/// One sample of a scrape.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: Labels,
    value: f64,
}

/// A `/metrics` body as samples. The exposition format mirrordns writes: `name value` or
/// `name{k="v",...} value`, label values escaped with `\\`, `\"` and `\n`.
fn parse_scrape(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (head, value) = line.rsplit_once(' ').expect("sample line has a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|e| panic!("{line}: {e}")),
        };
        let (name, labels) = match head.split_once('{') {
            None => (head.to_string(), Labels::new()),
            Some((n, rest)) => (n.to_string(), parse_labels(rest.trim_end_matches('}'))),
        };
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

fn parse_labels(s: &str) -> Labels {
    let mut labels = Labels::new();
    let mut chars = s.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if key.is_empty() {
            return labels;
        }
        assert_eq!(chars.next(), Some('"'), "label {key} in {s}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(o) => value.push(o),
                    None => break,
                },
                '"' => break,
                o => value.push(o),
            }
        }
        labels.insert(key.trim_start_matches(',').to_string(), value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
}

fn metrics(port: u16) -> Vec<Sample> {
    let (code, body) = http(port, "GET", "/metrics");
    assert_eq!(code, 200, "{body}");
    parse_scrape(&body)
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The server in the state every alert is about, and the scrapes taken of it.
struct Firing {
    /// Before the rejected reload.
    before: Vec<Sample>,
    /// After it, everything else unchanged.
    after: Vec<Sample>,
    /// Unix time of the second scrape.
    at: f64,
    /// `up` as a scraper saw it: scrapes while running, then after the server stopped.
    up: Vec<bool>,
    instance: String,
}

/// The redirector's four-mirror lab (good; corrupt: a flipped byte in v3.0.0; lagging: only
/// v2.0.0; archive: only v1.0.0), plus: `old.example.com` requiring v1.0.0 from `good` only
/// (so a release is ready everywhere; SERVFAIL as its fallback, not in force), `fallback.example.com` whose only mirror is down
/// (nothing listens at its address), a generated geo database, DNSSEC keys, and a `[cluster]`
/// whose Redis refuses (the instance verifies alone).
async fn firing() -> Firing {
    let lab = four_mirrors().await;
    std::fs::write(
        lab.dir.path().join("geo.mmdb"),
        mmdb::build(&[("81.2.69.0/24", mmdb::place("EU", "GB", 51.5, -0.13))]),
    )
    .unwrap();
    let keys = crate::dnssec::Keys::new(false);
    // A port that refuses: bound, its number taken, closed.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let top = format!(
        "\n[geo]\ndatabase = \"geo.mmdb\"\n{}",
        keys.section("signature-validity = \"2d\"\nrefresh = \"1d\"\n")
    );
    let config = format!(
        r#"{}
[[service]]
name = "old.example.com"
mirrors = ["good"]
releases = ["{}"]
fallback = "servfail"

[[service]]
name = "fallback.example.com"
mirrors = ["dead"]
releases = ["{}"]
fallback = "origin"

[[mirror]]
name = "dead"
ipv4 = ["192.0.2.99"]
location = {{ lat = 48.9, lon = 2.3 }}
base-url = "http://{dead}/"

[cluster]
redis = "redis://{dead}/0"
name = "contrib"
"#,
        lab.four_config("trusted-proxies = [\"127.0.0.0/8\"]", &top),
        manifest(V1),
        manifest(V2),
    );
    let (server, redirector) = lab.start(&config).await;
    let port = server.http_addr().unwrap().port();
    let instance = format!("127.0.0.1:{port}");

    // Wait for the states the alerts are about, as /status reports them.
    let states = || {
        let st = crate::common::process::status(port);
        let mut seen = BTreeMap::new();
        for s in st["services"].as_array().unwrap() {
            for m in s["mirrors"].as_array().unwrap() {
                seen.insert(
                    m["name"].as_str().unwrap().to_string(),
                    m["state"].as_str().unwrap().to_string(),
                );
            }
            if let Some(f) = s["fallback_in_force"].as_str() {
                seen.insert(
                    format!("fallback {}", s["name"].as_str().unwrap()),
                    f.into(),
                );
            }
            for r in s["releases"].as_array().unwrap() {
                if !r["ready_at"].is_null() {
                    seen.insert(
                        format!("ready {}", r["path"].as_str().unwrap()),
                        "yes".into(),
                    );
                }
            }
        }
        seen
    };
    let want = [
        ("good", "ready"),
        ("corrupt", "mismatch"),
        ("lagging", "lagging"),
        ("dead", "down"),
        ("fallback fallback.example.com", "origin"),
    ];
    wait(30, "mismatch, lagging, down and a fallback", states, |s| {
        want.iter()
            .all(|(k, v)| s.get(*k).map(String::as_str) == Some(*v))
            && s.contains_key(&format!("ready {}", manifest(V1)))
    });

    // Traffic, so that the per-answer and per-download families have samples.
    for _ in 0..3 {
        crate::common::london(server.dns_addrs()[0]).await;
    }
    let r = get_from(redirector, &format!("/{V1}/{TGZ}"), Some(GB));
    assert_eq!(r.status, 302, "{}", r.head);

    let before = metrics(port);
    // A reload of a config that does not load: rejected, the last good state keeps serving.
    let path = lab.dir.path().join("mirrordns.toml");
    std::fs::write(&path, format!("{config}\n[[mirror]]\nname = \"good\"\n")).unwrap();
    let (code, body) = http(port, "POST", "/reload");
    assert_eq!(code, 422, "the broken reload is rejected: {body}");
    let after = metrics(port);
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();

    // `up` is the scraper's own series: a scrape that answers, then none once stopped.
    let scrape_ok = || {
        std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))
            .is_ok()
            && http(port, "GET", "/metrics").0 == 200
    };
    let mut up = vec![scrape_ok(), scrape_ok()];
    server.shutdown().await;
    up.extend([scrape_ok(), scrape_ok(), scrape_ok(), scrape_ok()]);
    assert_eq!(up, [true, true, false, false, false, false]);
    Firing {
        before,
        after,
        at,
        up,
        instance,
    }
}

/// Metric names in a PromQL expression: `mirrordns_...` words (recording rules are named
/// `mirrordns:...` and are not metrics).
fn names_in(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while let Some(off) = expr[i..].find("mirrordns_") {
        let start = i + off;
        let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
        let mut end = start;
        while end < b.len() && word(b[end]) {
            end += 1;
        }
        let preceded = start > 0 && word(b[start - 1]);
        let name = &expr[start..end];
        if !preceded && !name.contains(':') {
            out.insert(name.to_string());
        }
        i = end;
    }
    out
}

/// The label matchers right after each metric name: (name, label, operator, value).
fn matchers_in(expr: &str) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for name in names_in(expr) {
        for (pos, _) in expr.match_indices(&name) {
            let rest = &expr[pos + name.len()..];
            let Some(body) = rest.strip_prefix('{') else {
                continue;
            };
            let body = &body[..body.find('}').expect("closed selector")];
            for m in body.split(',') {
                let m = m.trim();
                let op = ["=~", "!~", "!=", "="]
                    .into_iter()
                    .find(|op| m.contains(op))
                    .expect("a matcher");
                let (k, v) = m.split_once(op).unwrap();
                out.push((
                    name.clone(),
                    k.trim().into(),
                    op.into(),
                    v.trim().trim_matches('"').into(),
                ));
            }
        }
    }
    out
}

/// Labels in `by (...)` clauses.
fn grouping_in(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (pos, _) in expr.match_indices("by (") {
        let rest = &expr[pos + 4..];
        for l in rest[..rest.find(')').unwrap()].split(',') {
            out.insert(l.trim().to_string());
        }
    }
    out
}

/// Labels Prometheus adds to every series it scrapes (and `le`, a histogram bucket's).
const TARGET_LABELS: [&str; 2] = ["instance", "job"];

/// Checks one expression against a scrape: every metric exists; every label matched on or
/// grouped by is one of its metrics' labels; every `=` match names a value that occurs.
fn check_expr(expr: &str, scrape: &[Sample], what: &str) {
    let names = names_in(expr);
    let mut labels_of: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for s in scrape {
        labels_of
            .entry(&s.name)
            .or_default()
            .extend(s.labels.keys().map(String::as_str));
    }
    for n in &names {
        assert!(
            labels_of.contains_key(n.as_str()),
            "{what}: `{n}` is not in a real scrape of mirrordns (expression: {expr})"
        );
    }
    for (name, label, op, value) in matchers_in(expr) {
        if TARGET_LABELS.contains(&label.as_str()) {
            continue;
        }
        assert!(
            labels_of[name.as_str()].contains(label.as_str()),
            "{what}: `{name}` has no label `{label}` in a real scrape"
        );
        if op == "=" || op == "!=" {
            assert!(
                scrape
                    .iter()
                    .any(|s| s.name == name && s.labels.get(&label) == Some(&value)),
                "{what}: no `{name}` sample with {label}=\"{value}\" in a real scrape"
            );
        }
    }
    let all: BTreeSet<&str> = names
        .iter()
        .flat_map(|n| labels_of[n.as_str()].iter().copied())
        .collect();
    for l in grouping_in(expr) {
        assert!(
            TARGET_LABELS.contains(&l.as_str()) || all.contains(l.as_str()),
            "{what}: grouped by `{l}`, which none of {names:?} has"
        );
    }
}

fn dashboard() -> serde_json::Value {
    let text = std::fs::read_to_string(repo("contrib/grafana/mirrordns.json")).unwrap();
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every panel, those inside rows included.
fn panels(d: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner);
        }
    }
    out
}

/// (panel title, expression) of every query of the dashboard.
fn dashboard_exprs(d: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("?").to_string();
            out.push((title, t["expr"].as_str().expect("expr").to_string()));
        }
    }
    out
}

/// The dashboard's queries with Grafana's variables replaced, as Prometheus would get them.
fn as_sent(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__range", "1h")
        .replace("$instance", ".*")
}

/// The alert file's lines after `key:` (trimmed, quotes kept).
fn lines_after<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(key))
        .map(str::trim)
        .collect()
}

fn alerts_text() -> String {
    std::fs::read_to_string(repo("contrib/prometheus/alerts.yml")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dashboard_and_alerts_use_only_what_a_real_server_exports() {
    let f = firing().await;
    let scrape = &f.after;

    // The dashboard: importable (a datasource input, the instance variable), the panels the
    // issue asks for, and every query over real names and labels.
    let d = dashboard();
    assert_eq!(d["__inputs"][0]["name"], "DS_PROMETHEUS");
    assert_eq!(d["__inputs"][0]["pluginId"], "prometheus");
    let vars = d["templating"]["list"].as_array().unwrap();
    assert!(vars.iter().any(|v| v["name"] == "instance"), "{vars:?}");
    let titles: BTreeSet<&str> = panels(&d)
        .iter()
        .filter_map(|p| p["title"].as_str())
        .collect();
    for want in [
        "Queries by rcode",
        "Queries by transport",
        "Answers by mirror",
        "Answers by client continent",
        "Mirror states",
        "Replication lag",
        "Release time to ready everywhere",
        "Downloads by mirror",
        "Downloads by release",
        "Reloads by result",
        "Response rate limiting",
        "DNSSEC signature expiry",
        "Services on fallback",
        "Geo database age",
        "Bytes downloaded to verify, by mirror",
        "Cluster: Redis and shared results",
    ] {
        assert!(titles.contains(want), "no panel `{want}` in {titles:?}");
    }
    for p in panels(&d).iter().filter(|p| p["type"] != "row") {
        assert_eq!(
            p["datasource"]["uid"], "${DS_PROMETHEUS}",
            "{}: the datasource is the import's input",
            p["title"]
        );
        for t in p["targets"].as_array().unwrap() {
            let e = t["expr"].as_str().unwrap();
            assert!(e.contains("instance=~\"$instance\""), "{}: {e}", p["title"]);
        }
    }
    let exprs = dashboard_exprs(&d);
    assert!(exprs.len() >= 20, "{exprs:?}");
    for (title, e) in &exprs {
        check_expr(e, scrape, &format!("dashboard panel `{title}`"));
    }

    // The alert rules.
    let alerts = alerts_text();
    let exprs = lines_after(&alerts, "expr:");
    assert_eq!(exprs.len(), 11, "3 thresholds and 8 alerts");
    for e in &exprs {
        check_expr(e, scrape, "alerts.yml");
    }

    // The unit tests' input series: real names and label names; the labels whose values are
    // fixed words (a state, a result, a fallback kind) with real values.
    let tests = std::fs::read_to_string(repo("contrib/prometheus/alerts_test.yml")).unwrap();
    let series = lines_after(&tests, "- series:");
    assert!(series.len() >= 10, "{series:?}");
    for s in series {
        let s = s.trim_matches('\'');
        if s.starts_with("up{") {
            continue;
        }
        let (name, rest) = s.split_once('{').unwrap();
        let labels = parse_labels(rest.trim_end_matches('}'));
        let of_name: Vec<&Sample> = scrape.iter().filter(|x| x.name == name).collect();
        assert!(
            !of_name.is_empty(),
            "alerts_test.yml: `{name}` is not exported"
        );
        for (k, v) in &labels {
            if TARGET_LABELS.contains(&k.as_str()) {
                continue;
            }
            assert!(
                of_name.iter().any(|x| x.labels.contains_key(k)),
                "alerts_test.yml: `{name}` has no label `{k}`"
            );
            if ["state", "result", "fallback"].contains(&k.as_str()) {
                assert!(
                    of_name.iter().any(|x| x.labels.get(k) == Some(v)),
                    "alerts_test.yml: `{name}` never has {k}=\"{v}\""
                );
            }
        }
    }

    // The state the alerts are about is what the scrape shows (so the checks above and the
    // promtool test below run on series that really are in a firing state).
    let one = |name: &str, labels: &[(&str, &str)]| {
        scrape
            .iter()
            .find(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .unwrap_or_else(|| panic!("no {name} {labels:?}"))
            .value
    };
    assert_eq!(
        one(
            "mirrordns_mirror_state",
            &[("mirror", "corrupt"), ("state", "mismatch")]
        ),
        1.0
    );
    assert_eq!(
        one(
            "mirrordns_service_fallback_in_force",
            &[("service", "fallback.example.com"), ("fallback", "origin")]
        ),
        1.0
    );
    assert_eq!(
        one(
            "mirrordns_service_fallback_in_force",
            &[("service", "downloads.example.com")]
        ),
        0.0
    );
    assert_eq!(
        one("mirrordns_config_reloads_total", &[("result", "error")]),
        1.0
    );
    assert_eq!(
        one("mirrordns_geo_database_build_timestamp_seconds", &[]),
        1_700_000_000.0,
        "the generated database's build_epoch"
    );
    let expiry = one(
        "mirrordns_dnssec_signature_expiry_seconds",
        &[("zone", "example.com.")],
    );
    assert!(expiry > 86_400.0 && expiry <= 2.0 * 86_400.0, "{expiry}");
    assert!(
        one(
            "mirrordns_release_waiting_seconds",
            &[("release", &manifest(V3))]
        ) >= 0.0
    );
    assert!(
        one(
            "mirrordns_release_ready_seconds",
            &[("release", &manifest(V1))]
        ) >= 0.0
    );
    assert_eq!(one("mirrordns_cluster_redis_connected", &[]), 0.0);
    assert!(f.up.iter().any(|u| !u));
}

/// A threshold from alerts.yml's recording rules: `expr: vector(A * B ...)` after its record.
fn threshold(alerts: &str, record: &str) -> f64 {
    let lines: Vec<&str> = alerts.lines().map(str::trim).collect();
    let i = lines
        .iter()
        .position(|l| *l == format!("- record: {record}"))
        .unwrap_or_else(|| panic!("no recording rule {record}"));
    let e = lines[i + 1]
        .strip_prefix("expr: vector(")
        .and_then(|e| e.strip_suffix(')'))
        .expect("a constant threshold");
    e.split('*')
        .map(|f| f.trim().parse::<f64>().expect("a number"))
        .product()
}

/// Each alert's annotations (summary, description) from alerts.yml, as YAML strings.
fn annotations(alerts: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut current = None;
    for l in alerts.lines().map(str::trim) {
        if let Some(a) = l.strip_prefix("- alert: ") {
            current = Some(a.to_string());
        }
        for key in ["summary", "description"] {
            if let (Some(a), Some(v)) = (&current, l.strip_prefix(&format!("{key}: "))) {
                out.entry(a.clone())
                    .or_default()
                    .push((key.to_string(), v.to_string()));
            }
        }
    }
    out
}

/// An annotation template filled in as Prometheus would for `labels`: the rules' templates
/// use `{{ $labels.NAME }}` only, so that their values can be known here.
fn fill(template: &str, labels: &Labels) -> String {
    let unquoted = template
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .expect("annotations are double-quoted YAML strings");
    let mut s = unquoted.replace("\\\"", "\"").replace("\\\\", "\\");
    while let Some(start) = s.find("{{ $labels.") {
        let end = start + s[start..].find("}}").expect("closed template") + 2;
        let name = s[start + 11..end - 2].trim();
        assert!(
            !s[start..end].contains('|'),
            "no template functions in annotations"
        );
        let v = labels.get(name).cloned().unwrap_or_default();
        s.replace_range(start..end, &v);
    }
    assert!(!s.contains("{{"), "only $labels in annotations: {s}");
    s
}

/// A YAML single-quoted scalar.
fn yaml_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn series_selector(name: &str, labels: &Labels) -> String {
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// Minutes the generated test runs after the second scrape: past the 6-hour release
/// threshold and every `for:`.
const MINUTES: u64 = 420;

/// How a scraped gauge moves while the scraped state lasts, per minute: the waiting and lag
/// gauges grow with the clock, signature expiry shrinks with it (no re-signing is modelled),
/// everything else stays. Absolute times are moved onto promtool's clock, which starts at 0
/// where the scrape was taken.
fn extrapolate(s: &Sample, at: f64) -> (f64, f64) {
    match s.name.as_str() {
        "mirrordns_release_waiting_seconds" => (s.value, 60.0),
        "mirrordns_replication_lag_seconds" if s.value > 0.0 => (s.value, 60.0),
        "mirrordns_dnssec_signature_expiry_seconds" => (s.value, -60.0),
        "mirrordns_geo_database_build_timestamp_seconds" => ((s.value - at).round(), 0.0),
        _ => (s.value, 0.0),
    }
}

fn number(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "Inf".into() } else { "-Inf".into() }
    } else {
        format!("{v}")
    }
}

/// The promtool test: the first scrape at 0m, the second from 1m on for `MINUTES`, and the
/// scraper's `up`. The expected alerts are worked out here from the second scrape and the
/// rule file's thresholds, each rule read the way its expression says.
fn generated_test(f: &Firing, rules: &[PathBuf]) -> (String, usize) {
    let alerts = alerts_text();
    let notes = annotations(&alerts);
    let target: Labels = [
        ("job".to_string(), "mirrordns".to_string()),
        ("instance".to_string(), f.instance.clone()),
    ]
    .into();
    let with_target = |l: &Labels| {
        let mut l = l.clone();
        l.extend(target.clone());
        l
    };
    let key = |s: &Sample| series_selector(&s.name, &with_target(&s.labels));
    let before: BTreeMap<String, f64> = f.before.iter().map(|s| (key(s), s.value)).collect();
    let files: String = rules
        .iter()
        .map(|r| format!("  - {}\n", yaml_quote(r.to_str().unwrap())))
        .collect();
    let mut y = format!(
        "# Generated by tests/it/contrib.rs from real scrapes of mirrordns.\nrule_files:\n{files}evaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n"
    );
    for s in &f.after {
        // The first scrape's value, on the same clock as the rest.
        let first = before.get(&key(s)).map_or("_".to_string(), |v| {
            let earlier = Sample {
                value: *v,
                ..s.clone()
            };
            number(extrapolate(&earlier, f.at).0)
        });
        let (v, step) = extrapolate(s, f.at);
        let values = format!("{first} {}{:+}x{}", number(v), step, MINUTES - 1);
        y += &format!(
            "      - series: {}\n        values: {}\n",
            yaml_quote(&key(s)),
            yaml_quote(&values)
        );
    }
    let t_end = MINUTES as f64;
    let value_at = |s: &Sample, minute: f64| {
        let (v, step) = extrapolate(s, f.at);
        v + step * (minute - 1.0)
    };
    let mut expected: BTreeMap<(&str, u64), Vec<Labels>> = BTreeMap::new();
    let mut push = |alert: &'static str, minute: u64, labels: Labels| {
        expected.entry((alert, minute)).or_default().push(labels);
    };
    let release = threshold(&alerts, "mirrordns:threshold:release_not_ready_seconds");
    let geo_age = threshold(&alerts, "mirrordns:threshold:geo_database_age_seconds");
    let expiry = threshold(
        &alerts,
        "mirrordns:threshold:dnssec_signature_expiry_seconds",
    );
    let end = MINUTES;
    for s in &f.after {
        let l = with_target(&s.labels);
        match s.name.as_str() {
            "mirrordns_service_fallback_in_force" if s.value == 1.0 => {
                push("MirrordnsServiceOnFallback", end, l)
            }
            "mirrordns_mirror_state"
                if s.value == 1.0
                    && s.labels.get("state").map(String::as_str) == Some("mismatch") =>
            {
                push("MirrordnsMirrorMismatch", end, l)
            }
            "mirrordns_release_waiting_seconds" if value_at(s, t_end) > release => {
                push("MirrordnsReleaseNotReady", end, l)
            }
            "mirrordns_geo_database_build_timestamp_seconds"
                if t_end * 60.0 - value_at(s, t_end) > geo_age =>
            {
                push("MirrordnsGeoDatabaseStale", end, l)
            }
            "mirrordns_dnssec_signature_expiry_seconds" if value_at(s, t_end) < expiry => {
                push("MirrordnsDnssecSignaturesExpiring", end, l)
            }
            "mirrordns_cluster_redis_connected" if s.value == 0.0 => {
                push("MirrordnsClusterRedisUnreachable", end, l)
            }
            // increase() over 15 minutes, 4 minutes after the counter moved between the
            // two scrapes.
            "mirrordns_config_reloads_total"
                if s.value > before.get(&key(s)).copied().unwrap_or(s.value) =>
            {
                push("MirrordnsReloadRejected", 5, l)
            }
            _ => {}
        }
    }
    // Every alert appears, with an empty expectation where nothing should fire.
    let all = [
        "MirrordnsServiceOnFallback",
        "MirrordnsMirrorMismatch",
        "MirrordnsReleaseNotReady",
        "MirrordnsGeoDatabaseStale",
        "MirrordnsDnssecSignaturesExpiring",
        "MirrordnsClusterRedisUnreachable",
    ];
    for a in all {
        expected.entry((a, end)).or_default();
    }
    expected.entry(("MirrordnsReloadRejected", 5)).or_default();
    let mut firing = 0;
    let mut tests = String::new();
    for ((alert, minute), list) in &expected {
        tests += &format!(
            "      - eval_time: {minute}m\n        alertname: {alert}\n        exp_alerts:{}\n",
            if list.is_empty() { " []" } else { "" }
        );
        for labels in list {
            firing += 1;
            let mut l = labels.clone();
            // Alert rules drop the metric name (compared, not selected) except == and <, >
            // filters, which keep the left side's labels; rules add their own labels.
            l.insert("severity".into(), severity(&alerts, alert));
            tests += "          - exp_labels:\n";
            for (k, v) in &l {
                tests += &format!("              {k}: {}\n", yaml_quote(v));
            }
            tests += "            exp_annotations:\n";
            for (k, t) in &notes[*alert] {
                tests += &format!("              {k}: {}\n", yaml_quote(&fill(t, &l)));
            }
        }
    }
    // Every dashboard query returns something from these series (see `dashboard_rules`).
    for i in 0..dashboard_exprs(&dashboard()).len() {
        tests += &format!(
            "      - eval_time: {end}m\n        alertname: DashboardQuery{i}\n        exp_alerts:\n          - exp_labels: {{}}\n"
        );
    }
    y += "    alert_rule_test:\n";
    y += &tests;
    // The scraper's view: `up` from the scrapes that answered, then failed.
    let ups: Vec<&str> = f.up.iter().map(|u| if *u { "1" } else { "0" }).collect();
    y += &format!(
        "  - interval: 1m\n    input_series:\n      - series: {}\n        values: {}\n    alert_rule_test:\n      - eval_time: {}m\n        alertname: MirrordnsDown\n        exp_alerts:\n          - exp_labels:\n",
        yaml_quote(&series_selector("up", &target)),
        yaml_quote(&ups.join(" ")),
        ups.len() - 1
    );
    let mut l = target.clone();
    l.insert("severity".into(), severity(&alerts, "MirrordnsDown"));
    for (k, v) in &l {
        y += &format!("              {k}: {}\n", yaml_quote(v));
    }
    y += "            exp_annotations:\n";
    for (k, t) in &notes["MirrordnsDown"] {
        y += &format!("              {k}: {}\n", yaml_quote(&fill(t, &l)));
    }
    (y, firing + 1)
}

/// A rule file with one alert per dashboard query, firing when the query returns any series:
/// promtool then parses each query (Grafana's variables filled in) and shows it has data.
fn dashboard_rules() -> String {
    let mut y = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, e)) in dashboard_exprs(&dashboard()).iter().enumerate() {
        y += &format!(
            "      - alert: DashboardQuery{i}\n        expr: {}\n",
            yaml_quote(&format!("count({}) >= 0", as_sent(e)))
        );
    }
    y
}

/// An alert's `severity` label in alerts.yml.
fn severity(alerts: &str, alert: &str) -> String {
    let lines: Vec<&str> = alerts.lines().map(str::trim).collect();
    let i = lines
        .iter()
        .position(|l| *l == format!("- alert: {alert}"))
        .unwrap_or_else(|| panic!("no alert {alert}"));
    lines[i..]
        .iter()
        .find_map(|l| l.strip_prefix("severity: "))
        .expect("a severity")
        .to_string()
}

fn promtool(args: &[&str], dir: &Path) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
#[ignore = "needs promtool (prometheus); `cargo test -- --ignored` runs it, as CI does"]
fn promtool_checks_the_rules_and_passes_their_unit_tests() {
    require("promtool", "--version", "prometheus");
    let dir = repo("contrib/prometheus");
    let out = promtool(&["check", "rules", "alerts.yml"], &dir);
    assert!(out.contains("SUCCESS: 11 rules found"), "{out}");
    let out = promtool(&["test", "rules", "alerts_test.yml"], &dir);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs promtool (prometheus); `cargo test -- --ignored` runs it, as CI does"]
async fn alerts_fire_on_a_test_generated_from_real_scrapes() {
    require("promtool", "--version", "prometheus");
    let f = firing().await;
    let dir = tempfile::tempdir().unwrap();
    let dash = dir.path().join("dashboard_rules.yml");
    std::fs::write(&dash, dashboard_rules()).unwrap();
    let rules = [repo("contrib/prometheus/alerts.yml"), dash];
    let (test, firing) = generated_test(&f, &rules);
    // One alert for each condition set up: fallback, mismatch, two releases waiting (v3.0.0
    // on every service's mirrors, v2.0.0 on the dead one), the geo database, DNSSEC, the
    // rejected reload, the cluster's Redis refusing, and the scrape failing.
    for want in [
        "alertname: MirrordnsServiceOnFallback\n        exp_alerts:\n",
        "alertname: MirrordnsMirrorMismatch\n        exp_alerts:\n",
        "alertname: MirrordnsReleaseNotReady\n        exp_alerts:\n",
        "alertname: MirrordnsGeoDatabaseStale\n        exp_alerts:\n",
        "alertname: MirrordnsDnssecSignaturesExpiring\n        exp_alerts:\n",
        "alertname: MirrordnsReloadRejected\n        exp_alerts:\n",
        "alertname: MirrordnsClusterRedisUnreachable\n        exp_alerts:\n",
        "alertname: MirrordnsDown\n",
    ] {
        assert!(
            test.contains(want),
            "the generated test expects no {want}\n{test}"
        );
    }
    assert!(test.contains("mirror: 'corrupt'"), "{test}");
    assert!(test.contains("service: 'fallback.example.com'"), "{test}");
    assert!(
        test.contains(&format!("release: '{}'", manifest(V3))),
        "{test}"
    );
    assert_eq!(firing, 9, "{test}");
    let path = dir.path().join("generated_test.yml");
    std::fs::write(&path, &test).unwrap();
    let out = promtool(&["test", "rules", "generated_test.yml"], dir.path());
    assert!(out.contains("SUCCESS"), "{out}");

    // The expectations are compared: the same test expecting the mismatch on the good mirror
    // instead fails.
    let (from, to) = ("mirror: 'corrupt'", "mirror: 'good'");
    assert_eq!(test.matches(from).count(), 1, "{test}");
    let wrong = dir.path().join("wrong_test.yml");
    std::fs::write(&wrong, test.replace(from, to)).unwrap();
    let out = Command::new("promtool")
        .args(["test", "rules", "wrong_test.yml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "promtool passed a test that expects the mismatch alert for the good mirror"
    );
}
