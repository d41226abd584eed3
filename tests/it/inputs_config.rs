//! The operator's input files, the config, the zone files, the admin-state file and the geo
//! database, broken the ways files break: empty, truncated, half-written (the right size,
//! zeros after the first half), binary garbage, huge.
//!
//! At start-up (`mirrordns check` and `serve`, run as an operator runs them) each is refused
//! with an error naming the file, and its line where there is one, and a non-zero exit. While
//! serving, a reload that meets it (SIGHUP, `POST /reload`, the file watchers) is rejected,
//! counted and shown in `/status`, and real DNS queries keep getting the last good answers.
//! The files the prober reads and writes are in inputs_prober.rs.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::common::broken_files::{Variants, broken, garbage, lines};
use crate::common::config::ServerSection;
use crate::common::mmdb::{build, place};
use crate::common::process::{Serving, http, metric, mirrordns, status};
use crate::common::*;
use hickory_proto::rr::RecordType;

const EU: &str = "192.0.2.11";
const US: &str = "192.0.2.10";
const TOKYO: &str = "192.0.2.14";

fn london_db() -> Vec<u8> {
    build(&[("81.2.64.0/19", place("EU", "GB", 51.5, -0.13))])
}

fn tokyo_db() -> Vec<u8> {
    build(&[("81.2.64.0/19", place("AS", "JP", 35.7, 139.7))])
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

const RELOAD_ERRORS: &str = "mirrordns_config_reloads_total{result=\"error\"} ";
const RELOADS_OK: &str = "mirrordns_config_reloads_total{result=\"ok\"} ";

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
        ServerSection::http_port(port)
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

/// A zone file whose serial goes back is served (going back is sometimes meant), and the
/// reload warns with the file and the SOA's line, as other servers do: secondaries keep their
/// copy until the serial passes the old one.
#[test]
fn a_zone_serial_going_back_on_reload_is_a_warning_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg_path = write_files(&dir, &static_config(port, ""), ZONE, Some(london_db()));
    let zone_path = dir.path().join("example.com.zone");
    let mut srv = Serving::start_with_env(&cfg_path, port, &[("RUST_LOG", "warn")]);
    let soa_line = line_of(ZONE, "SOA");
    for (serial, what) in [("2026112702", "forward"), ("2026112600", "back")] {
        let zone = ZONE
            .replace("2026112701", serial)
            .replace("192.0.2.100", "192.0.2.102");
        std::fs::write(&zone_path, zone).unwrap();
        let generation = status(port)["config"]["generation"].as_u64().unwrap();
        srv.signal(libc::SIGHUP);
        srv.wait(
            &format!("the reload with the serial moved {what}"),
            10,
            |_| status(port)["config"]["generation"].as_u64().unwrap() > generation,
        );
        assert_eq!(
            status(port)["zones"][0]["serial"].as_u64().unwrap(),
            serial.parse::<u64>().unwrap(),
            "the new zone is served"
        );
    }
    let log = srv.stop();
    let want = format!(
        "{}:{soa_line}: the serial of zone `example.com.` went back from 2026112702 to 2026112600",
        zone_path.display()
    );
    assert!(log.contains(&want), "{want}\n{log}");
    assert_eq!(
        log.matches("went back").count(),
        1,
        "only the step back:\n{log}"
    );
}
