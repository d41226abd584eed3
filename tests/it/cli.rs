//! The `mirrordns` binary as an operator runs it: `check`, `lookup`, `verify`, `demo` and the
//! log it writes.

use std::process::Command;

use crate::common::config::{Config, strings};
use crate::common::*;

fn mirrordns(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mirrordns"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_accepts_the_shipped_config() {
    let (code, out, err) = mirrordns(&["check"]);
    assert_eq!((code, out.trim()), (0, "ok"), "{err}");
}

#[test]
fn check_lists_every_problem_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let zone = ZONE.replace(
        "mail        A     192.0.2.25",
        "mail        A     192.0.2.256",
    );
    let config = format!(
        "{}[geo]\ndatabase = \"missing.mmdb\"\n\n[[service]]\nname = \"downloads.example.net\"\nmirrors = [\"us-east\"]\n{MIRRORS}",
        server_section()
    );
    let path = write_files(&dir, &config, &zone, None);
    let (code, out, err) = mirrordns(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    let zone_path = dir.path().join("example.com.zone");
    let zone_line = zone
        .lines()
        .position(|l| l.contains("192.0.2.256"))
        .unwrap()
        + 1;
    assert!(
        err.contains(&format!(
            "{}:{zone_line}: A record data `192.0.2.256`",
            zone_path.display()
        )),
        "zone error names file and line:\n{err}"
    );
    let db_line = config
        .lines()
        .position(|l| l.contains("missing.mmdb"))
        .unwrap()
        + 1;
    assert!(
        err.contains(&format!(
            "{}:{db_line}: `geo.database`: cannot open",
            path.display()
        )),
        "database error names config line:\n{err}"
    );

    // Fix the zone: now the service outside every zone is reported with its line.
    let mut no_db = Config::parse(&config);
    no_db.table("geo").remove("database");
    let path = write_files(&dir, &no_db.to_string(), ZONE, None);
    let (code, _, err) = mirrordns(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    let config = std::fs::read_to_string(&path).unwrap();
    let svc_line = config
        .lines()
        .position(|l| l.contains("downloads.example.net"))
        .unwrap()
        + 1;
    assert!(
        err.contains(&format!(
            ":{svc_line}: `service.name`: `downloads.example.net.` is not inside any loaded zone"
        )),
        "{err}"
    );
}

#[test]
fn check_rejects_a_service_that_clashes_with_zone_records() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}[[service]]\nname = \"www.example.com\"\nmirrors = [\"us-east\"]\n{MIRRORS}",
        server_section()
    );
    let path = write_files(&dir, &config, ZONE, None);
    let (code, _, err) = mirrordns(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("already has A records"), "{err}");
}

#[test]
fn lookup_json_explains_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::mmdb::build(&[(
        "81.2.64.0/19",
        crate::common::mmdb::place("EU", "GB", 51.5, -0.13),
    )]);
    let config = format!(
        "{}[geo]\ndatabase = \"geo.mmdb\"\n[[service]]\nname = \"downloads.example.com\"\nmirrors = [\"us-east\", \"eu-west\", \"ap-northeast\"]\n{MIRRORS}",
        server_section()
    );
    let path = write_files(&dir, &config, ZONE, Some(db));
    let (code, out, err) = mirrordns(&[
        "lookup",
        "--config",
        path.to_str().unwrap(),
        "--json",
        "81.2.70.7",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON object");
    assert_eq!(v["location"]["source"], "database");
    assert_eq!(v["location"]["country"], "GB");
    assert_eq!(v["location"]["continent"], "EU");
    assert_eq!(v["location"]["network"], "81.2.64.0/19");
    let order: Vec<&str> = v["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["mirror"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["eu-west", "us-east", "ap-northeast"]);
    assert_eq!(
        v["answer"],
        serde_json::json!(["192.0.2.11", "2001:db8::11"])
    );
    assert_eq!(v["scope"], 19);

    // Human output for an unknown address.
    let (code, out, _) = mirrordns(&[
        "lookup",
        "--config",
        path.to_str().unwrap(),
        "--name",
        "downloads.example.com",
        "10.0.0.1",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("unknown"), "{out}");
    assert!(out.contains("192.0.2.10"), "{out}");

    let (code, _, err) = mirrordns(&[
        "lookup",
        "--config",
        path.to_str().unwrap(),
        "--name",
        "nope.example.com",
        "10.0.0.1",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("no service named"), "{err}");
}

/// A release gate that checks nothing must not pass: every mirror of the shipped config is
/// static, so `verify` says there is nothing to verify, and why, and exits 2.
#[test]
fn verify_with_nothing_to_verify_fails_and_says_why() {
    let (code, out, err) = mirrordns(&["verify"]);
    assert_eq!(code, 2, "{out}{err}");
    let last = out.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        "FAILED: nothing to verify: in config/mirrordns.toml: every mirror is static (no base-url); \
         there is no [origin] to fetch release manifests from"
    );
    let eu = out
        .lines()
        .find(|l| l.contains(" eu-west "))
        .unwrap_or_default();
    assert!(
        eu.contains(" unknown ") && eu.ends_with("static (no base-url)"),
        "in the server's words: {out}"
    );
    assert!(!out.contains("verified"), "{out}");

    let (code, out, err) = mirrordns(&["verify", "--json"]);
    assert_eq!(code, 2, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON object");
    assert_eq!(v["ok"], false);
    assert!(
        v["nothing_to_verify"]
            .as_str()
            .is_some_and(|s| s.contains("every mirror is static")),
        "{out}"
    );
    assert_eq!(v["mirrors"][0]["result"], "unknown");
    assert!(err.contains("error: nothing to verify: "), "{err}");

    let (code, out, _) = mirrordns(&["verify", "--mirror", "eu-west"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("FAILED: nothing to verify: in config/mirrordns.toml: mirror `eu-west` is static (no base-url)"),
        "{out}"
    );
}

/// The shipped config with DNS on `port`, the endpoint on `http` (0: an ephemeral port) and
/// an absolute zone path, written into `dir`.
fn shipped_config(dir: &std::path::Path, port: u16, http: u16) -> std::path::PathBuf {
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/mirrordns.toml"
    ))
    .unwrap();
    let mut config = Config::parse(&shipped);
    let server = config.server();
    server.insert("dns-listen".into(), strings([&format!("127.0.0.1:{port}")]));
    server.insert("http-listen".into(), format!("127.0.0.1:{http}").into());
    server.insert(
        "zones".into(),
        strings([concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/zones/example.com.zone"
        )]),
    );
    let path = dir.join("mirrordns.toml");
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

/// Sends `signal` and asserts the process exits 0 within `secs`.
fn stop_cleanly(child: &mut std::process::Child, signal: &str, secs: u64) {
    Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status} after {signal}");
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "did not stop within {secs} s of {signal}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The README's first steps, as an operator runs them: `mirrordns serve`, `dig` with two client
/// subnets gets two mirrors, SIGTERM stops the server cleanly.
#[test]
#[ignore = "needs dig (dnsutils); `cargo test -- --ignored` runs it, as CI does"]
fn serve_answers_dig_and_stops_on_sigterm() {
    require("dig", "-v", "dnsutils");
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let path = shipped_config(dir.path(), port, 0);
    let mut child = crate::common::process::Reaped(
        Command::new(env!("CARGO_BIN_EXE_mirrordns"))
            .args(["serve", "--config", path.to_str().unwrap()])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let dig = |subnet: &str| {
        let out = Command::new("dig")
            .args([
                "@127.0.0.1",
                "-p",
                &port.to_string(),
                "+short",
                "+tries=1",
                "+time=1",
            ])
            .arg(format!("+subnet={subnet}"))
            .arg("downloads.example.com")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // Until the server listens, dig times out or, once the port refuses, says so: anything but
    // an address is the server not being up yet (a busy machine takes seconds).
    let mut london = String::new();
    for _ in 0..150 {
        london = dig("81.2.69.0/24");
        if london.parse::<std::net::Ipv4Addr>().is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let tokyo = dig("1.0.16.0/24");
    assert_eq!(london, "192.0.2.11");
    assert_eq!(tokyo, "192.0.2.14");
    stop_cleanly(&mut child, "-TERM", 5);
    std::net::UdpSocket::bind(("127.0.0.1", port)).expect("port free again");
}

/// `mirrordns demo` as a child process, with its printed summary.
struct Demo {
    child: std::process::Child,
    text: String,
    dns: u16,
    http: u16,
    _dir: tempfile::TempDir,
}

impl Demo {
    /// Starts the demo (with `env` added) and reads its summary, printed once the first probe
    /// round is done.
    fn start(env: &[(&str, &str)]) -> Demo {
        let dns = free_port();
        let http = free_port();
        let dir = tempfile::tempdir().unwrap();
        let path = shipped_config(dir.path(), dns, http);
        let mut child = Command::new(env!("CARGO_BIN_EXE_mirrordns"))
            .args(["demo", "--config", path.to_str().unwrap()])
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut text = String::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !text.contains("Ctrl-C stops the demo") {
            let mut line = String::new();
            if std::io::BufRead::read_line(&mut out, &mut line).unwrap_or(0) == 0 {
                break;
            }
            text.push_str(&line);
            assert!(
                std::time::Instant::now() < deadline,
                "demo did not start: {text}"
            );
        }
        Demo {
            child,
            text,
            dns,
            http,
            _dir: dir,
        }
    }

    /// The printed line that runs `mirrordns <command>`.
    fn command(&self, command: &str) -> String {
        self.text
            .lines()
            .find(|l| l.contains(&format!(" {command} --config ")))
            .unwrap_or_else(|| panic!("no `{command}` line in:\n{}", self.text))
            .trim()
            .to_string()
    }

    fn stop(mut self) {
        stop_cleanly(&mut self.child, "-INT", 10);
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        // A failed assertion must not leave the demo running (a clean stop has reaped it).
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `line` in a POSIX shell, from a directory where nothing relative would resolve.
fn sh(line: &str) -> (i32, String, String) {
    let out = Command::new("sh")
        .args(["-c", line])
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The numbers in a JSON document that are not whole, with where they are.
fn fractions(v: &serde_json::Value, at: &str, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Number(n) if !(n.is_i64() || n.is_u64()) => {
            out.push((at.to_string(), n.to_string()))
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                fractions(x, &format!("{at}[{i}]"), out);
            }
        }
        serde_json::Value::Object(o) => {
            for (k, x) in o {
                fractions(x, &format!("{at}.{k}"), out);
            }
        }
        _ => {}
    }
}

/// The README's first command: `mirrordns demo` shows only the good mirror getting traffic,
/// lists every mirror of its config with its state (the drained ones too), and its `/status`
/// carries no float noise.
#[test]
fn demo_routes_every_client_to_the_one_good_mirror() {
    let demo = Demo::start(&[]);
    let text = &demo.text;
    assert!(text.contains("eu-west       ready"), "{text}");
    assert!(text.contains("us-east       mismatch"), "{text}");
    assert!(text.contains("ap-northeast  lagging"), "{text}");
    assert!(text.contains("ap-south      drained "), "{text}");
    assert!(text.contains("sa-east       drained "), "{text}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], demo.dns).into();
    for subnet in ["81.2.69.0", "8.8.8.0", "1.0.16.0"] {
        let q = query(
            "downloads.example.com.",
            hickory_proto::rr::RecordType::A,
            Some(1232),
            Some((subnet, 24)),
        );
        let m = rt.block_on(udp(addr, &q));
        assert_eq!(
            addrs(&m),
            ["192.0.2.11"],
            "client {subnet}: the demo's printed promise"
        );
    }
    // Issue #17's report: cdn.example.com (regions) lists ap-northeast (lagging) then
    // ap-south (drained) for Tokyo, and sa-east (drained) then us-east (corrupted) for
    // Brazil. Both go on past their list to the good mirror instead of an empty answer.
    for subnet in ["1.0.16.0", "177.1.0.0"] {
        let q = query(
            "cdn.example.com.",
            hickory_proto::rr::RecordType::A,
            Some(1232),
            Some((subnet, 24)),
        );
        let m = rt.block_on(udp(addr, &q));
        assert_eq!(addrs(&m), ["192.0.2.11"], "cdn.example.com for {subnet}");
    }
    let metrics = crate::common::process::metric(
        demo.http,
        "mirrordns_dns_fallthrough_total{service=\"cdn.example.com\"}",
    );
    assert_eq!(
        metrics, 2.0,
        "both answers counted as past the client's list"
    );

    // Probe latencies and lags in /status: at most 3 decimals, still numbers.
    let (code, body) = crate::common::process::http(demo.http, "GET", "/status");
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut found = Vec::new();
    fractions(&status, "", &mut found);
    let latencies = found.iter().filter(|(at, _)| at.ends_with(".latency_ms"));
    assert!(
        latencies.count() >= 3,
        "a latency per probed mirror: {found:?}"
    );
    for (at, n) in &found {
        let decimals = n.split_once('.').map_or(0, |(_, d)| d.len());
        assert!(decimals <= 3, "{at} = {n} in {body}");
    }
    demo.stop();
}

/// The demo's printed `lookup` and `verify` run as written, although the binary is not on
/// PATH (as under `cargo run`): `lookup` gets the running server's answer, in which the
/// corrupted mirror nearest to the client is not the answer, and says it asked the server;
/// `verify` reports each mirror in the server's words.
#[test]
fn demo_commands_run_as_written_and_lookup_asks_the_running_server() {
    let demo = Demo::start(&[("PATH", "/usr/bin:/bin")]);
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_mirrordns"))
        .canonicalize()
        .unwrap();
    let lookup = demo.command("lookup");
    assert!(
        lookup.starts_with(&format!("{} lookup --config ", exe.display())),
        "the full path of the binary: {lookup}"
    );
    assert!(lookup.contains(" 8.8.8.8"), "{lookup}");

    let (code, out, err) = sh(&lookup);
    assert_eq!(code, 0, "{out}{err}");
    let first = out.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!(
            "answer from the running server at http://127.0.0.1:{} (routing table generation ",
            demo.http
        )),
        "{out}"
    );
    let line = |name: &str| {
        out.lines()
            .find(|l| l.contains(&format!(". {name} (")))
            .unwrap_or_default()
            .split_whitespace()
            .skip(4)
            .collect::<Vec<_>>()
            .join(" ")
    };
    // us-east is the nearest to a client in California, and corrupted.
    assert!(
        out.contains("  1. us-east ("),
        "us-east first by distance: {out}"
    );
    assert_eq!(line("us-east"), "mismatch not used", "{out}");
    assert_eq!(line("ap-northeast"), "lagging not used", "{out}");
    assert_eq!(line("eu-west"), "ready in the answer", "{out}");
    assert!(out.contains("\nanswer A    192.0.2.11\n"), "{out}");
    assert!(!out.contains("health unknown"), "{out}");

    // The same as JSON: every key of the config-only view, and the server's decisions.
    let config = lookup
        .split_whitespace()
        .skip_while(|w| *w != "--config")
        .nth(1)
        .unwrap()
        .to_string();
    let (code, out, err) = mirrordns(&["lookup", "--config", &config, "--json", "8.8.8.8"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON object");
    assert_eq!(v["answered_by"], "server");
    assert_eq!(v["server"], format!("http://127.0.0.1:{}", demo.http));
    assert_eq!(v["health_unknown"], serde_json::Value::Null);
    assert_eq!(v["a"], serde_json::json!(["192.0.2.11"]));
    assert_eq!(v["candidates"][0]["mirror"], "us-east");
    assert_eq!(v["location"]["country"], "US");
    assert_eq!(v["decisions"][0]["state"], "mismatch");
    assert_eq!(v["mode"], "mirrors");

    assert_eq!(v["note"], serde_json::Value::Null);

    // Edited but not reloaded: still the server's answer (it is what DNS answers), with a note.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("# edited\n");
    std::fs::write(&config, text).unwrap();
    let (code, out, err) = sh(&lookup);
    assert_eq!(code, 0, "{err}");
    let canonical = std::path::Path::new(&config).canonicalize().unwrap();
    assert_eq!(
        out.lines().nth(1).unwrap_or_default().split(" (").next(),
        Some(
            format!(
                "note: {} changed after the server loaded it",
                canonical.display()
            )
            .as_str()
        ),
        "{out}"
    );
    assert!(out.contains("\nanswer A    192.0.2.11\n"), "{out}");

    // A copy is another file than the one the demo serves: its view is the config's own, and
    // it says which config the server at that address serves.
    let copy = std::path::Path::new(&config).with_file_name("other.toml");
    std::fs::copy(&config, &copy).unwrap();
    let (code, out, err) = mirrordns(&["lookup", "--config", copy.to_str().unwrap(), "8.8.8.8"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!(
            "mirror health unknown: the server at http://127.0.0.1:{} serves {}, not ",
            demo.http,
            canonical.display()
        )),
        "{out}"
    );
    assert!(
        out.contains("\nanswer A    192.0.2.10\n"),
        "config-only: {out}"
    );

    let (code, out, err) = sh(&demo.command("verify"));
    assert_eq!(code, 1, "{out}{err}");
    let state = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("mirror  {name} ")))
            .and_then(|l| l.split_whitespace().nth(3))
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(state("eu-west"), "ready", "{out}");
    assert_eq!(state("us-east"), "mismatch", "{out}");
    assert_eq!(state("ap-northeast"), "lagging", "{out}");
    assert_eq!(
        out.lines().last().unwrap_or_default(),
        "FAILED: 1 of 3 mirrors ready (us-east mismatch, ap-northeast lagging)"
    );
    demo.stop();
}

/// With nothing listening at `http-listen`, `lookup` says that mirror health is unknown and
/// why, and shows the config-only view (the nearest mirror by the config alone).
#[test]
fn lookup_without_a_server_says_mirror_health_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    let path = shipped_config(dir.path(), free_port(), http);
    let started = std::time::Instant::now();
    let (code, out, err) = mirrordns(&["lookup", "--config", path.to_str().unwrap(), "8.8.8.8"]);
    assert_eq!(code, 0, "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let mut lines = out.lines();
    assert!(
        lines.next().unwrap_or_default().starts_with(&format!(
            "mirror health unknown: no server answers at http://127.0.0.1:{http} ("
        )),
        "{out}"
    );
    assert_eq!(
        lines.next().unwrap_or_default(),
        "config-only view: every mirror not drained in the config counts as up and verified"
    );
    assert!(out.contains("\nanswer A    192.0.2.10\n"), "{out}");

    let (code, out, _) = mirrordns(&[
        "lookup",
        "--config",
        path.to_str().unwrap(),
        "--json",
        "8.8.8.8",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON object");
    assert_eq!(v["answered_by"], "config");
    assert_eq!(v["server"], format!("http://127.0.0.1:{http}"));
    assert!(
        v["health_unknown"]
            .as_str()
            .is_some_and(|s| s.starts_with("no server answers at ")),
        "{out}"
    );
    assert_eq!(
        v["answer"],
        serde_json::json!(["192.0.2.10", "2001:db8::10"])
    );
    assert_eq!(v["decisions"], serde_json::Value::Null);
}

/// `--offline` never connects to `http-listen`; without it, `lookup` does, and something there
/// that is not a mirrordns endpoint gets the config-only view with the reason.
#[test]
fn lookup_offline_does_not_ask_and_a_stranger_on_the_port_is_not_trusted() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let http = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    // Accepts and hangs up at once: a port held by something other than mirrordns.
    let stranger = {
        let (accepted, stop) = (accepted.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        accepted.fetch_add(1, Ordering::Relaxed);
                        drop(conn);
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
                }
            }
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let path = shipped_config(dir.path(), free_port(), http);
    let config = path.to_str().unwrap();

    let (code, out, err) = mirrordns(&["lookup", "--config", config, "--offline", "8.8.8.8"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("mirror health unknown: --offline: the running server was not asked\n"),
        "{out}"
    );
    assert!(out.contains("\nanswer A    192.0.2.10\n"), "{out}");
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(accepted.load(Ordering::Relaxed), 0, "--offline connected");

    let (code, out, err) = mirrordns(&["lookup", "--config", config, "8.8.8.8"]);
    assert_eq!(code, 0, "{err}");
    assert!(accepted.load(Ordering::Relaxed) >= 1, "lookup did not ask");
    assert!(
        out.starts_with(&format!(
            "mirror health unknown: http://127.0.0.1:{http} does not answer as a mirrordns endpoint ("
        )),
        "{out}"
    );
    stop.store(true, Ordering::Relaxed);
    stranger.join().unwrap();
}

/// Log lines written to a pipe or a file are plain text: no colour escape codes, even with
/// NO_COLOR unset.
#[test]
fn logs_to_a_pipe_or_a_file_have_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    let path = shipped_config(dir.path(), free_port(), http);
    let mut child = crate::common::process::Reaped(
        Command::new(env!("CARGO_BIN_EXE_mirrordns"))
            .args(["serve", "--config", path.to_str().unwrap()])
            .env_remove("NO_COLOR")
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut log = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !String::from_utf8_lossy(&log).contains("serving") {
        assert!(std::time::Instant::now() < deadline, "no `serving` line");
        if std::io::BufRead::read_until(&mut err, b'\n', &mut log).unwrap_or(0) == 0 {
            break;
        }
    }
    stop_cleanly(&mut child, "-TERM", 10);
    std::io::Read::read_to_end(&mut err, &mut log).unwrap();
    let text = String::from_utf8_lossy(&log);
    assert!(text.contains(" loaded "), "{text}");
    assert!(!log.contains(&0x1b), "ESC in the log to a pipe:\n{text:?}");

    // To a file, as a service manager or `2>log` writes it.
    let serving =
        crate::common::process::Serving::start_with_env(&path, http, &[("RUST_LOG", "info")]);
    let text = serving.stop();
    assert!(text.contains("shutting down"), "{text}");
    assert!(!text.contains('\u{1b}'), "ESC in the log file:\n{text:?}");
}

/// The commands of the real clap definition (not a list kept here, which would miss a new one).
fn subcommands() -> Vec<String> {
    let names: Vec<String> = mirrordns::cli_docs::command()
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| c.get_name().to_string())
        .collect();
    assert!(names.iter().any(|n| n == "serve"), "{names:?}");
    names
}

fn completion_script(shell: &str) -> String {
    let (code, out, err) = mirrordns(&["completions", shell]);
    assert_eq!(code, 0, "{err}");
    out
}

#[test]
fn completion_scripts_name_every_command() {
    for shell in ["bash", "zsh", "fish"] {
        let script = completion_script(shell);
        for c in subcommands() {
            assert!(script.contains(&c), "{shell} completions lack `{c}`");
        }
        // Options of a command come from the same definition.
        assert!(script.contains("log-format"), "{shell}: no --log-format");
    }
    let (code, _, err) = mirrordns(&["completions", "tcsh"]);
    assert_eq!(code, 2, "an unknown shell is a usage error: {err}");
}

/// Writes the script to a file and has the shell parse it without running it (`-n`).
fn shell_parses(shell: &str, script: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("mirrordns.{shell}"));
    std::fs::write(&path, script).unwrap();
    let out = Command::new(shell)
        .arg("-n")
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", missing(shell, shell)));
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{shell} -n rejects the completion script: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bash_accepts_the_bash_completion_script() {
    // bash is Debian's essential shell: no tool to install.
    shell_parses("bash", &completion_script("bash"));
}

#[test]
#[ignore = "needs zsh (zsh); `cargo test -- --ignored` runs it, as CI does"]
fn zsh_accepts_the_zsh_completion_script() {
    require("zsh", "--version", "zsh");
    shell_parses("zsh", &completion_script("zsh"));
}

#[test]
#[ignore = "needs fish (fish); `cargo test -- --ignored` runs it, as CI does"]
fn fish_accepts_the_fish_completion_script() {
    require("fish", "--version", "fish");
    shell_parses("fish", &completion_script("fish"));
}

#[test]
fn man_page_lists_every_command_and_the_pages_exist() {
    // roff writes a hyphen as `\-`; compared as text here, rendered by man(1) below.
    let (code, page, err) = mirrordns(&["man"]);
    assert_eq!(code, 0, "{err}");
    let page = page.replace("\\-", "-");
    assert!(page.contains(".TH mirrordns 1 "), "{page}");
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = mirrordns(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    for c in subcommands() {
        assert!(
            page.contains(&format!("mirrordns-{c}(1)")),
            "no `{c}` in mirrordns(1)"
        );
        let sub = std::fs::read_to_string(dir.path().join(format!("mirrordns-{c}.1")))
            .unwrap_or_else(|e| panic!("mirrordns-{c}.1: {e}"))
            .replace("\\-", "-");
        assert!(sub.contains(&format!(".TH mirrordns-{c} 1 ")), "{sub}");
        assert!(
            sub.contains(&format!("mirrordns {c}")),
            "synopsis of {c}: {sub}"
        );
    }
    // Commands of commands (`mirrordns admin drain`) have pages too.
    for c in mirrordns::cli_docs::command().get_subcommands() {
        for s in c.get_subcommands().filter(|s| s.get_name() != "help") {
            let name = format!("mirrordns-{}-{}.1", c.get_name(), s.get_name());
            assert!(dir.path().join(&name).exists(), "no {name}");
        }
    }
    let main = std::fs::read_to_string(dir.path().join("mirrordns.1")).unwrap();
    assert_eq!(
        main.replace("\\-", "-"),
        page,
        "--dir writes the same main page"
    );
}

/// What `man -l` shows, as plain text.
fn rendered(page: &std::path::Path) -> String {
    let out = Command::new("man")
        .arg("-l")
        .arg(page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .expect("man runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.is_empty(),
        "man -l {}: {err}",
        page.display()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs man (man-db) and groff (groff-base); `cargo test -- --ignored` runs it, as CI does"]
fn man_pages_render_with_man_and_groff() {
    require("man", "--version", "man-db");
    require("groff", "--version", "groff-base");
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = mirrordns(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let main = rendered(&dir.path().join("mirrordns.1"));
    assert!(main.contains("NAME") && main.contains("SYNOPSIS"), "{main}");
    for c in subcommands() {
        assert!(
            main.contains(&format!("mirrordns-{c}(1)")),
            "{c} in:\n{main}"
        );
        let sub = rendered(&dir.path().join(format!("mirrordns-{c}.1")));
        assert!(sub.contains(&format!("mirrordns-{c}")), "{sub}");
    }
    // groff's own warnings (bad requests, unknown escapes) on every page.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let out = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && err.is_empty(),
            "groff {}: {err}",
            path.display()
        );
    }
}
