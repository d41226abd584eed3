//! The `mirrordns` binary as an operator runs it: `check` and `lookup`.

mod common;

use std::process::Command;

use common::*;

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
    let path = write_files(
        &dir,
        &config.replace("database = \"missing.mmdb\"\n", ""),
        ZONE,
        None,
    );
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
    let db = common::mmdb::build(&[("81.2.64.0/19", common::mmdb::place("EU", "GB", 51.5, -0.13))]);
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

/// The shipped config with DNS on `port`, the endpoint on an ephemeral port and an absolute
/// zone path, written into `dir`.
fn shipped_config(dir: &std::path::Path, port: u16) -> std::path::PathBuf {
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/mirrordns.toml"
    ))
    .unwrap();
    let config = shipped
        .replace("127.0.0.1:5353", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:9153", "127.0.0.1:0")
        .replace(
            "../zones/example.com.zone",
            concat!(env!("CARGO_MANIFEST_DIR"), "/zones/example.com.zone"),
        );
    let path = dir.join("mirrordns.toml");
    std::fs::write(&path, config).unwrap();
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
fn serve_answers_dig_and_stops_on_sigterm() {
    if !installed("dig", "-v", "dnsutils") {
        return;
    }
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let path = shipped_config(dir.path(), port);
    let mut child = Command::new(env!("CARGO_BIN_EXE_mirrordns"))
        .args(["serve", "--config", path.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
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
    let mut london = String::new();
    for _ in 0..50 {
        london = dig("81.2.69.0/24");
        if !london.is_empty() && !london.contains("timed out") {
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

/// The README's first command: `mirrordns demo` shows only the good mirror getting traffic.
#[test]
fn demo_routes_every_client_to_the_one_good_mirror() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let path = shipped_config(dir.path(), port);
    let mut child = Command::new(env!("CARGO_BIN_EXE_mirrordns"))
        .args(["demo", "--config", path.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The demo prints its summary once the first probe round is done.
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
    assert!(text.contains("eu-west       ready"), "{text}");
    assert!(text.contains("us-east       mismatch"), "{text}");
    assert!(text.contains("ap-northeast  lagging"), "{text}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
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
    stop_cleanly(&mut child, "-INT", 10);
}
