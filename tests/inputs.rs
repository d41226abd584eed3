//! Every input file broken the ways files break: empty, truncated, half-written (the right
//! size, zeros after the first half), binary garbage, huge.
//!
//! At start-up (`mirrordns check`, `serve` and `verify`, run as an operator runs them) each is
//! refused with an error naming the file, and its line where there is one, and a non-zero
//! exit. While serving, a reload that meets it (SIGHUP, `POST /reload`, the file watchers) is
//! rejected, counted and shown in `/status`, and real DNS queries keep getting the last good
//! answers. The state file is a cache: a broken one never stops a start.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::mmdb::{build, place};
use common::release;
use common::*;
use hickory_proto::rr::RecordType;
use mirrordns::demo::files::FileServer;

const EU: &str = "192.0.2.11";
const US: &str = "192.0.2.10";
const TOKYO: &str = "192.0.2.14";
const ORIGIN: &str = "192.0.2.1";

/// Deterministic bytes that are not UTF-8 and hold NULs: what a disk error or a wrong `cp`
/// leaves.
fn garbage(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9E37_79B9;
    let block: Vec<u8> = (0..len.min(64 << 10))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect();
    block.iter().copied().cycle().take(len).collect()
}

/// The first `num/den` of `good`, moved back so that the cut is inside a line.
fn cut_mid_line(good: &[u8], num: usize, den: usize) -> Vec<u8> {
    let mut p = good.len() * num / den;
    while p > 1 && (good[p - 1] == b'\n' || good[p] == b'\n') {
        p -= 1;
    }
    good[..p].to_vec()
}

/// Broken contents of one file, each with what is wrong with it.
type Variants = Vec<(&'static str, Vec<u8>)>;

/// The ways a file breaks, made from its good content; `huge` is the kind's own.
fn broken(good: &[u8], huge: Vec<u8>) -> Variants {
    let mut half = cut_mid_line(good, 1, 2);
    half.resize(good.len(), 0);
    vec![
        ("empty", Vec::new()),
        ("truncated", cut_mid_line(good, 2, 3)),
        ("half-written", half),
        ("binary garbage", garbage(4096)),
        ("huge", huge),
    ]
}

/// Text lines repeated to about `mb` megabytes.
fn lines(first: &[u8], line: &str, mb: usize) -> Vec<u8> {
    let mut v = first.to_vec();
    v.extend_from_slice(line.repeat((mb << 20) / line.len() + 1).as_bytes());
    v
}

fn london_db() -> Vec<u8> {
    build(&[("81.2.64.0/19", place("EU", "GB", 51.5, -0.13))])
}

fn tokyo_db() -> Vec<u8> {
    build(&[("81.2.64.0/19", place("AS", "JP", 35.7, 139.7))])
}

/// The binary's output and exit code, with a deadline; output is drained as it comes, so a
/// flood of errors cannot stall it.
struct Run {
    code: Option<i32>,
    out: String,
    err: String,
    took: Duration,
}

fn mirrordns(args: &[&str], secs: u64) -> Run {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mirrordns"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = r.read_to_end(&mut b);
            String::from_utf8_lossy(&b).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if started.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mirrordns {args:?} still running after {secs} s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        code,
        out: out.join().unwrap(),
        err: err.join().unwrap(),
        took: started.elapsed(),
    }
}

/// `path:LINE:` somewhere in `text`.
fn names_line(text: &str, path: &Path) -> bool {
    let p = format!("{}:", path.display());
    text.match_indices(&p)
        .any(|(i, _)| text[i + p.len()..].starts_with(|c: char| c.is_ascii_digit()))
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

/// A free loopback port for the monitoring endpoint, which the test must know in advance.
/// A plain HTTP/1.0 request to the monitoring endpoint: (status, body).
fn http(port: u16, method: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn status(port: u16) -> serde_json::Value {
    serde_json::from_str(&http(port, "GET", "/status").1).unwrap()
}

/// A sample of `/metrics`, 0 if absent.
fn metric(port: u16, sample: &str) -> f64 {
    http(port, "GET", "/metrics")
        .1
        .lines()
        .find_map(|l| l.strip_prefix(sample))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

const RELOAD_ERRORS: &str = "mirrordns_config_reloads_total{result=\"error\"} ";
const RELOADS_OK: &str = "mirrordns_config_reloads_total{result=\"ok\"} ";

/// `mirrordns serve` as a child process, stopped with SIGTERM at the end of a test.
struct Serving {
    child: Child,
    port: u16,
    dns: SocketAddr,
    log: PathBuf,
}

impl Serving {
    /// Starts the binary on `config` (whose `http-listen` is `port`) and waits until it
    /// answers on its monitoring endpoint.
    fn start(config: &Path, port: u16) -> Serving {
        let log = config.with_extension("log");
        let child = Command::new(env!("CARGO_BIN_EXE_mirrordns"))
            .args(["serve", "--config", config.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut s = Serving {
            child,
            port,
            dns: ([127, 0, 0, 1], 0).into(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            s.assert_running();
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "serve did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        s.dns = status(port)["dns"]["listen"][0]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        s
    }

    fn assert_running(&mut self) {
        if let Some(st) = self.child.try_wait().unwrap() {
            panic!(
                "mirrordns serve exited ({st}):\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let r = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(r, 0, "kill");
    }

    /// SIGTERM; it must exit 0 within 10 s.
    fn stop(mut self) -> String {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                assert!(st.success(), "exit status {st} after SIGTERM:\n{log}");
                return log;
            }
            assert!(Instant::now() < deadline, "no exit within 10 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (bounded) until `f` holds.
    fn wait(&mut self, what: &str, secs: u64, mut f: impl FnMut(&Serving) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            self.assert_running();
            if f(self) {
                return;
            }
            assert!(Instant::now() < deadline, "waited {secs} s for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        // A failed test must not leave the server running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn answers(rt: &tokio::runtime::Runtime, dns: SocketAddr) -> (Vec<String>, Vec<String>) {
    let www = rt.block_on(udp(
        dns,
        &query("www.example.com.", RecordType::A, None, None),
    ));
    (rt.block_on(london(dns)), addrs(&www))
}

/// Static mirrors, a London database, and an admin-state file.
fn static_config(port: u16, extra_server: &str) -> String {
    format!(
        "{}{extra_server}[geo]\ndatabase = \"geo.mmdb\"\n\n[[service]]\nname = \"downloads.example.com\"\nmirrors = [\"us-east\", \"eu-west\", \"ap-northeast\"]\n{MIRRORS}",
        server_section().replace(
            "127.0.0.1:0\"\nzones",
            &format!("127.0.0.1:{port}\"\nzones")
        )
    )
}

/// The broken versions of the config and of the zone file.
fn config_and_zone<'a>(
    config: &str,
    cfg_path: &'a Path,
    zone_path: &'a Path,
) -> Vec<(&'static str, &'a Path, Variants)> {
    vec![
        (
            "config",
            cfg_path,
            broken(
                config.as_bytes(),
                lines(config.as_bytes(), "what is this line\n", 4),
            ),
        ),
        (
            "zone",
            zone_path,
            broken(
                ZONE.as_bytes(),
                lines(ZONE.as_bytes(), "bad A 300.1.1.1\n", 4),
            ),
        ),
    ]
}

/// Start-up: `check` refuses every broken config, zone file and geo database, naming the file
/// (and line); `serve` refuses to start on the same files.
#[test]
fn check_and_serve_refuse_broken_inputs_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = static_config(free_port(), "");
    let cfg_path = write_files(&dir, &config, ZONE, Some(london_db()));
    let zone_path = dir.path().join("example.com.zone");
    let db_path = dir.path().join("geo.mmdb");
    let db_line = line_of(&config, "geo.mmdb");
    let cfg = cfg_path.to_str().unwrap();
    assert_eq!(mirrordns(&["check", "--config", cfg], 30).code, Some(0));

    let mut kinds = config_and_zone(&config, &cfg_path, &zone_path);
    kinds.push((
        "geo database",
        &db_path,
        broken(&london_db(), garbage(32 << 20)),
    ));
    for (kind, path, variants) in kinds {
        let good = std::fs::read(path).unwrap();
        for (what, bytes) in variants {
            std::fs::write(path, &bytes).unwrap();
            let r = mirrordns(&["check", "--config", cfg], 60);
            let case = format!("{kind} {what}: exit {:?}\n{}", r.code, r.err);
            assert_eq!(r.code, Some(1), "{case}");
            assert!(r.out.is_empty(), "{case}: stdout {}", r.out);
            assert!(!r.err.contains("panicked"), "{case}");
            // A report a person can read, however big the file.
            assert!(
                r.err.len() < 16 << 10,
                "{kind} {what}: {} bytes",
                r.err.len()
            );
            assert!(
                r.took < Duration::from_secs(30),
                "{case}: took {:?}",
                r.took
            );
            match kind {
                // The database is named through the config line that names it.
                "geo database" => assert!(
                    r.err.contains(&format!(
                        "{}:{db_line}: `geo.database`: cannot",
                        cfg_path.display()
                    )) && r.err.contains(&db_path.display().to_string()),
                    "{case}"
                ),
                _ => assert!(r.err.contains(&path.display().to_string()), "{case}"),
            }
            // Text cut or padded part-way names the line it breaks on.
            if kind != "geo database" && matches!(what, "truncated" | "half-written" | "huge") {
                assert!(names_line(&r.err, path), "{case}");
            }
            if kind == "zone" && what == "huge" {
                assert!(
                    r.err.contains("stopped reading here after 50 problems"),
                    "{case}"
                );
            }
            // `serve` loads with the same code: it refuses to start, with the same report.
            if what == "binary garbage" {
                let s = mirrordns(&["serve", "--config", cfg], 30);
                assert_eq!(s.code, Some(1), "serve on {kind} {what}:\n{}", s.err);
                let first = r.err.lines().next().unwrap();
                assert!(s.err.contains(first), "serve: {}\ncheck: {first}", s.err);
            }
        }
        std::fs::write(path, good).unwrap();
    }
    assert_eq!(mirrordns(&["check", "--config", cfg], 30).code, Some(0));
}

/// While serving: a broken config or zone file is rejected on SIGHUP and on `POST /reload`,
/// counted, shown with its file and line, and the answers stay; a broken admin-state file is
/// rejected by its watcher and the drain it held stays in force.
#[test]
fn reloads_of_broken_config_zone_and_admin_files_keep_the_last_good_state() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = static_config(port, "admin-state = \"admin.toml\"\n");
    let cfg_path = write_files(&dir, &config, ZONE, Some(london_db()));
    let zone_path = dir.path().join("example.com.zone");
    let admin_path = dir.path().join("admin.toml");
    // On-call has drained eu-west: London gets us-east.
    let admin = "[[mirror]]\nname = \"eu-west\"\naction = \"drain\"\nreason = \"disk swap\"\n";
    std::fs::write(&admin_path, admin).unwrap();
    let mut srv = Serving::start(&cfg_path, port);
    let good = (vec![US.to_string()], vec!["192.0.2.100".to_string()]);
    srv.wait("the drain to apply", 10, |s| answers(&rt, s.dns) == good);

    let mut sighup = true;
    for (kind, path, variants) in config_and_zone(&config, &cfg_path, &zone_path) {
        let good_bytes = std::fs::read(path).unwrap();
        for (what, bytes) in variants {
            let case = format!("{kind} {what}");
            let errors = metric(port, RELOAD_ERRORS);
            let generation = status(port)["config"]["generation"].clone();
            std::fs::write(path, &bytes).unwrap();
            // Alternate the two ways an operator reloads.
            if sighup {
                srv.signal(libc::SIGHUP);
            } else {
                let (code, body) = http(port, "POST", "/reload");
                assert_eq!(code, 422, "{case}: {body}");
                assert!(body.contains(&path.display().to_string()), "{case}: {body}");
            }
            sighup = !sighup;
            srv.wait(&format!("{case}: the rejection to be counted"), 30, |_| {
                metric(port, RELOAD_ERRORS) > errors
            });
            let st = status(port);
            let err = st["config"]["last_reload_error"]["error"]
                .as_str()
                .unwrap_or_default();
            assert!(err.contains(&path.display().to_string()), "{case}: {err}");
            if matches!(what, "truncated" | "half-written" | "huge") {
                assert!(names_line(err, path), "{case}: {err}");
            }
            assert!(
                err.len() < 16 << 10,
                "{case}: {} bytes in /status",
                err.len()
            );
            assert_eq!(st["config"]["generation"], generation, "{case}");
            assert_eq!(answers(&rt, srv.dns), good, "{case}: answers changed");
            std::fs::write(path, &good_bytes).unwrap();
        }
    }

    // The admin-state file is watched (every second) and applied without a reload.
    let admin_error = |s: &Serving| -> (String, String) {
        let e = &status(s.port)["admin"]["error"];
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        (text(&e["at"]), text(&e["error"]))
    };
    let mut variants = broken(
        admin.as_bytes(),
        lines(admin.as_bytes(), "# a log written to the wrong file\n", 2),
    );
    // Last: the one that is not an error.
    variants.rotate_left(1);
    for (what, bytes) in variants {
        let case = format!("admin-state {what}");
        let (before, _) = admin_error(&srv);
        std::fs::write(&admin_path, &bytes).unwrap();
        if what == "empty" {
            // An empty file is how on-call clears every entry (a missing file, too).
            srv.wait(&format!("{case}: the drain to be lifted"), 10, |s| {
                answers(&rt, s.dns).0 == [EU]
            });
            assert_eq!(admin_error(&srv).1, "", "{case}");
            break;
        }
        let rejected = metric(port, "mirrordns_admin_state_rejected_total");
        srv.wait(&format!("{case}: the rejection"), 10, |s| {
            let (at, err) = admin_error(s);
            at != before && err.contains(&admin_path.display().to_string())
        });
        assert_eq!(
            metric(port, "mirrordns_admin_state_rejected_total"),
            rejected + 1.0,
            "{case}: counted"
        );
        // `check` (run before every start) fails on it too, naming the file.
        let r = mirrordns(&["check", "--config", cfg_path.to_str().unwrap()], 30);
        assert_eq!(r.code, Some(1), "{case}: {}", r.err);
        assert!(
            r.err.contains(&admin_path.display().to_string()),
            "{case}: {}",
            r.err
        );
        let err = admin_error(&srv).1;
        if matches!(what, "truncated" | "half-written") {
            assert!(names_line(&err, &admin_path), "{case}: {err}");
        }
        if what == "huge" {
            assert!(
                err.contains("larger than the 1048576 bytes"),
                "{case}: {err}"
            );
        }
        // The drain stays in force.
        assert_eq!(answers(&rt, srv.dns), good, "{case}");
    }
    std::fs::write(&admin_path, admin).unwrap();
    srv.wait("the drain again", 10, |s| answers(&rt, s.dns) == good);
    // Nothing got in the way of a good reload afterwards.
    let ok = metric(port, RELOADS_OK);
    assert_eq!(http(port, "POST", "/reload").0, 200);
    assert_eq!(metric(port, RELOADS_OK), ok + 1.0);
    assert_eq!(answers(&rt, srv.dns), good);
    srv.stop();
}

/// The geo database replaced under a running server, in place (the same inode truncated and
/// rewritten) and by rename (geoipupdate's way), with garbage and with truncated copies of a
/// valid database: the watcher's reloads are rejected, answers stay, `/lookup` never
/// explains them with data they do not come from, and the server never falls over. A
/// complete database written in place in two steps is picked up once whole.
#[test]
fn geo_database_replaced_in_place_or_by_rename() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = static_config(port, "");
    let cfg_path = write_files(&dir, &config, ZONE, Some(london_db()));
    let db = dir.path().join("geo.mmdb");
    let db_line = line_of(&config, "geo.mmdb");
    let mut srv = Serving::start(&cfg_path, port);
    let good = (vec![EU.to_string()], vec!["192.0.2.100".to_string()]);
    assert_eq!(answers(&rt, srv.dns), good);

    let in_place = |bytes: &[u8]| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&db)
            .unwrap();
        f.write_all(bytes).unwrap();
    };
    let by_rename = |bytes: &[u8]| {
        std::fs::write(dir.path().join("geo.mmdb.tmp"), bytes).unwrap();
        std::fs::rename(dir.path().join("geo.mmdb.tmp"), &db).unwrap();
    };
    let tokyo = tokyo_db();
    // (what, written in place, content). Every watcher tick is 2 s: the list is short.
    let cases: Vec<(&str, bool, Vec<u8>)> = vec![
        ("garbage", false, garbage(4096)),
        (
            "a truncated copy of another database",
            true,
            tokyo[..tokyo.len() * 2 / 3].to_vec(),
        ),
        (
            "a truncated copy of another database",
            false,
            tokyo[..tokyo.len() - 7].to_vec(),
        ),
        ("garbage", true, garbage(4096)),
        ("huge garbage", false, garbage(32 << 20)),
    ];
    for (i, (what, in_place_write, bytes)) in cases.into_iter().enumerate() {
        let case = format!(
            "{what} {}",
            if in_place_write {
                "in place"
            } else {
                "by rename"
            }
        );
        let errors = metric(port, RELOAD_ERRORS);
        if in_place_write {
            in_place(&bytes);
        } else {
            by_rename(&bytes);
        }
        srv.wait(&format!("{case}: the watcher's rejection"), 15, |_| {
            metric(port, RELOAD_ERRORS) > errors
        });
        if i == 0 {
            // An operator's reload meets the same file and says so.
            let (code, body) = http(port, "POST", "/reload");
            assert_eq!(code, 422, "{body}");
        }
        let st = status(port);
        let err = st["config"]["last_reload_error"]["error"]
            .as_str()
            .unwrap_or_default();
        assert!(
            err.contains(&format!("{}:{db_line}: `geo.database`", cfg_path.display()))
                && err.contains(&db.display().to_string()),
            "{case}: {err}"
        );
        assert_eq!(answers(&rt, srv.dns), good, "{case}: answers changed");
        // The explanation matches the answer: the loaded database, or none at all.
        let (code, body) = http(port, "GET", "/lookup?ip=81.2.69.160");
        assert_eq!(code, 200, "{case}: {body}");
        let l: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(l["answer"][0], EU, "{case}: {l}");
        let loc = &l["location"];
        assert!(
            loc["source"] != "database" || loc["country"] == "GB",
            "{case}: /lookup explains with data the answers do not come from: {loc}"
        );
        if !in_place_write {
            // The file loaded is still ours to read: geoipupdate's way changes nothing.
            assert_eq!(loc["country"], "GB", "{case}: {loc}");
        }
    }

    // A valid database written in place in two steps (a `cp` caught half-way): the half is
    // rejected, the whole is used.
    let errors = metric(port, RELOAD_ERRORS);
    in_place(&tokyo[..tokyo.len() / 2]);
    srv.wait("the half database's rejection", 15, |_| {
        metric(port, RELOAD_ERRORS) > errors
    });
    // Past the reload that read the half file (see the report on the watcher's race).
    std::thread::sleep(Duration::from_millis(200));
    std::fs::OpenOptions::new()
        .append(true)
        .open(&db)
        .unwrap()
        .write_all(&tokyo[tokyo.len() / 2..])
        .unwrap();
    srv.wait("the whole Tokyo database", 15, |s| {
        answers(&rt, s.dns).0 == [TOKYO]
    });
    assert!(status(port)["config"]["last_reload_error"].is_null());
    // And back by rename.
    by_rename(&london_db());
    srv.wait("London again", 15, |s| answers(&rt, s.dns) == good);
    srv.stop();
}

/// A probed mirror, an origin, and a state file at `state.json`.
fn probed_config(port: u16, origin: &FileServer, eu: &FileServer) -> String {
    format!(
        r#"{}
[[geo.override]]
network = "81.2.69.0/24"
location = {{ lat = 51.5, lon = -0.13, country = "GB", continent = "EU" }}

[origin]
base-url = "{}"
ipv4 = ["{ORIGIN}"]

[health]
interval = "100ms"
timeout = "2s"
state-file = "state.json"

[[service]]
name = "downloads.example.com"
mirrors = ["eu-west"]
releases = ["tool/v1.8.2/manifest.json"]

[[mirror]]
name = "eu-west"
ipv4 = ["{EU}"]
location = {{ lat = 50.1, lon = 8.7 }}
base-url = "{}"
"#,
        server_section().replace(
            "127.0.0.1:0\"\nzones",
            &format!("127.0.0.1:{port}\"\nzones")
        ),
        origin.url(),
        eu.url()
    )
}

/// An origin and one mirror (eu-west) on loopback, both holding release v1.8.2.
fn origin_and_mirror(
    rt: &tokio::runtime::Runtime,
    dir: &tempfile::TempDir,
) -> (FileServer, FileServer) {
    for d in ["origin", "eu"] {
        release::write(&dir.path().join(d), "tool/v1.8.2", "v1.8.2");
    }
    let start = |d: &str| rt.block_on(FileServer::start(&dir.path().join(d))).unwrap();
    (start("origin"), start("eu"))
}

/// The state file is a cache: empty, truncated, half-written, garbage or huge, it never stops
/// a start. It is ignored (logged), the fallback answers until the first probe round, as
/// without a state file, and it is written whole again. A good one also survives a restart
/// that ends before the first probe round.
#[test]
fn a_broken_state_file_never_stops_a_start() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (origin, eu) = origin_and_mirror(&rt, &dir);
    let port = free_port();
    let cfg_path = write_files(&dir, &probed_config(port, &origin, &eu), ZONE, None);
    let state = dir.path().join("state.json");

    // A good state file, from a run that verified eu-west.
    let mut srv = Serving::start(&cfg_path, port);
    srv.wait("eu-west verified", 15, |s| {
        rt.block_on(london(s.dns)) == [EU]
    });
    srv.stop();
    let good = std::fs::read(&state).unwrap();
    let saved: serde_json::Value = serde_json::from_slice(&good).unwrap();

    // From now on the origin and the mirror take 1.5 s to answer: what a new start answers
    // first can only come from the state file or the fallback.
    origin.set(|k| k.delay = Some(Duration::from_millis(1500)));
    eu.set(|k| k.delay = Some(Duration::from_millis(1500)));

    // Two restarts in a row, each stopped before its first probe round: the saved state
    // routes both times.
    for run in 1..=2 {
        let mut srv = Serving::start(&cfg_path, port);
        assert_eq!(
            rt.block_on(london(srv.dns)),
            [EU],
            "restart {run}: the saved state routes before the first probe round"
        );
        assert_eq!(status(port)["ready"], true, "restart {run}");
        srv.assert_running();
        srv.stop();
        // Saved again, as old as it was: a restart loop cannot outrun state-max-age.
        let now: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
        assert_eq!(now["written"], saved["written"], "restart {run}");
        assert_eq!(now["releases"], saved["releases"], "restart {run}");
        // Whole seconds apart, so a re-stamped file would show.
        std::thread::sleep(Duration::from_millis(1100));
    }

    let mut huge = br#"{"written": "2026-11-27T10:00:00Z", "releases": {}, "mirrors": {"#.to_vec();
    huge.resize(24 << 20, b' ');
    for (what, bytes) in broken(&good, huge) {
        std::fs::write(&state, &bytes).unwrap();
        let mut srv = Serving::start(&cfg_path, port);
        // Started, answering by fallback as if there were no state file, and not ready.
        assert_eq!(rt.block_on(london(srv.dns)), [ORIGIN], "{what}");
        let st = status(port);
        assert_eq!(st["ready"], false, "{what}: {st}");
        assert!(
            st["waiting_for"].to_string().contains("probe round"),
            "{what}: {st}"
        );
        srv.assert_running();
        let log = srv.stop();
        assert!(
            log.contains("not using a saved probe state") && log.contains("state.json"),
            "{what}: the log says why:\n{log}"
        );
        // Written whole again, by the server.
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap())
            .unwrap_or_else(|e| panic!("{what}: state file not rewritten: {e}"));
        assert!(v["mirrors"].is_object(), "{what}: {v}");
    }
}

/// Manifests, JSON and SHA256SUMS, broken at the origin: `verify` names the manifest (and
/// line) and exits 1; a running server keeps the last good manifest, counts the failure and
/// shows it per release, and keeps answering with the mirror verified against it.
#[test]
fn broken_manifests_are_named_and_the_last_good_one_stays_in_force() {
    const JSON: &str = "tool/v1.8.2/manifest.json";
    const SUMS: &str = "tool/v1.8.2/SHA256SUMS";
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (origin, eu) = origin_and_mirror(&rt, &dir);
    let port = free_port();
    let config = probed_config(port, &origin, &eu).replace(
        &format!("releases = [\"{JSON}\"]"),
        &format!("releases = [\"{JSON}\", \"{SUMS}\"]\nfallback = \"origin\""),
    );
    let cfg_path = write_files(&dir, &config, ZONE, None);
    let cfg = cfg_path.to_str().unwrap();
    let manifest_variants = |rel: &str| {
        let good = std::fs::read(dir.path().join("origin").join(rel)).unwrap();
        // Over the 16 MB a manifest may have.
        let huge = lines(&good, "\n", 17);
        (good.clone(), broken(&good, huge))
    };

    // `mirrordns verify` (the release pipeline's gate).
    let v = mirrordns(&["verify", "--config", cfg], 60);
    assert_eq!(v.code, Some(0), "{}{}", v.out, v.err);
    for rel in [JSON, SUMS] {
        let path = dir.path().join("origin").join(rel);
        let (good, variants) = manifest_variants(rel);
        for (what, bytes) in variants {
            std::fs::write(&path, &bytes).unwrap();
            let v = mirrordns(&["verify", "--config", cfg], 60);
            let case = format!("{rel} {what}: exit {:?}\n{}{}", v.code, v.out, v.err);
            assert_eq!(v.code, Some(1), "{case}");
            let line = v
                .out
                .lines()
                .find(|l| l.contains(&format!("{rel}  ERROR ")));
            assert!(
                line.is_some_and(|l| l.rsplit("  ERROR ").next().unwrap().contains(rel)),
                "{case}"
            );
            if rel == JSON && matches!(what, "truncated" | "half-written") {
                assert!(v.out.contains(&format!("{rel}: line ")), "{case}");
            }
            if what == "huge" {
                assert!(
                    v.out.contains("larger than the 16777216 bytes allowed"),
                    "{case}"
                );
            }
        }
        std::fs::write(&path, good).unwrap();
    }

    // While serving. First a start with a broken manifest: it serves, by fallback.
    let json_path = dir.path().join("origin").join(JSON);
    let (good_json, _) = manifest_variants(JSON);
    std::fs::write(&json_path, garbage(4096)).unwrap();
    let mut srv = Serving::start(&cfg_path, port);
    let release_error = |rel: &str| -> String {
        let st = status(port);
        st["services"][0]["releases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["path"] == rel)
            .and_then(|r| r["error"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    srv.wait("the manifest error in /status", 10, |_| {
        release_error(JSON).contains("not UTF-8 text")
    });
    assert_eq!(rt.block_on(london(srv.dns)), [ORIGIN]);
    std::fs::write(&json_path, &good_json).unwrap();
    srv.wait("eu-west verified", 15, |s| {
        rt.block_on(london(s.dns)) == [EU]
    });

    for rel in [JSON, SUMS] {
        let path = dir.path().join("origin").join(rel);
        let (good, variants) = manifest_variants(rel);
        for (what, bytes) in variants {
            let case = format!("{rel} {what}");
            srv.wait(&format!("{case}: a clean start"), 10, |_| {
                release_error(rel).is_empty()
            });
            let failures = metric(port, "mirrordns_manifest_failures_total ");
            std::fs::write(&path, &bytes).unwrap();
            srv.wait(&format!("{case}: the error in /status"), 10, |_| {
                release_error(rel).contains(rel)
            });
            assert!(
                metric(port, "mirrordns_manifest_failures_total ") > failures,
                "{case}"
            );
            // Several probe rounds against the broken manifest change nothing.
            for _ in 0..5 {
                assert_eq!(rt.block_on(london(srv.dns)), [EU], "{case}");
                std::thread::sleep(Duration::from_millis(60));
            }
            std::fs::write(&path, &good).unwrap();
        }
    }
    srv.stop();
}
