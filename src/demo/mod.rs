//! `mirrordns demo`: the shipped config plus, on loopback, an origin and three mirrors serving
//! a release generated at start-up. eu-west is good, us-east serves a corrupted file and
//! ap-northeast lags behind (it only has the previous release); the shipped config's other
//! mirrors are drained. `dig` shows that only the good mirror gets traffic, and `mirrordns
//! lookup` and `mirrordns verify` (printed so that they run as written) show why.

pub mod files;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use toml::{Table, Value};

use crate::daemon::Server;
use crate::diag::Problems;
use crate::load::Loaded;
use crate::manifest::hex;
use files::FileServer;

/// Why the demo could not start. The causes of `Read` and `Parse` are `source`s rather than
/// part of the text: the command line prints the chain (`reading FILE: No such file ...`).
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("reading {}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing {}", .path.display())]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error(transparent)]
    Write(#[from] toml::ser::Error),
    /// The demo's own config was rejected: a bug in the demo or a broken shipped config.
    #[error("{0}")]
    Config(Problems),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

const CURRENT: &str = "v1.1.0";
const PREVIOUS: &str = "v1.0.0";

/// Deterministic filler bytes, different per file.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes release `version` (files, SHA256SUMS sidecar, manifest.json) under `root/tool/`.
pub fn write_release(root: &Path, version: &str, seed: u64) -> std::io::Result<()> {
    let dir = root.join("tool").join(version);
    std::fs::create_dir_all(&dir)?;
    let files = [
        ("tool-linux-amd64.tar.gz", bytes(seed, 3 << 20)),
        ("tool-darwin-arm64.tar.gz", bytes(seed + 1, 2 << 20)),
        ("tool-windows-amd64.zip", bytes(seed + 2, 2 << 20)),
    ];
    let mut sums = String::new();
    let mut entries = Vec::new();
    for (name, data) in &files {
        std::fs::write(dir.join(name), data)?;
        let h = hex(&Sha256::digest(data));
        sums.push_str(&format!("{h}  {name}\n"));
        entries.push(serde_json::json!({"path": name, "size": data.len(), "sha256": h}));
    }
    std::fs::write(dir.join("SHA256SUMS"), &sums)?;
    entries.push(serde_json::json!({
        "path": "SHA256SUMS",
        "size": sums.len(),
        "sha256": hex(&Sha256::digest(sums.as_bytes())),
    }));
    let manifest = serde_json::json!({
        "version": version,
        "published": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        "files": entries,
    });
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec_pretty(&manifest)?,
    )
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), target)?;
        }
    }
    Ok(())
}

/// The demo's config: the shipped one with an origin, releases, three probed mirrors and the
/// rest drained. Written to a file so `mirrordns verify --config` can use it too.
fn demo_config(
    shipped: &Path,
    origin: &str,
    mirrors: &[(&str, &str)],
    out: &Path,
) -> Result<(), DemoError> {
    let reading = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DemoError::Read { path, source }
    };
    let shipped = &shipped.canonicalize().map_err(reading(shipped))?;
    let text = std::fs::read_to_string(shipped).map_err(reading(shipped))?;
    let mut t: Table = toml::from_str(&text).map_err(|source| DemoError::Parse {
        path: shipped.clone(),
        source,
    })?;
    let base = shipped.parent().unwrap_or(Path::new("."));
    // Zone paths are relative to the shipped config's directory; make them absolute.
    if let Some(Value::Table(server)) = t.get_mut("server")
        && let Some(Value::Array(zones)) = server.get_mut("zones")
    {
        for z in zones.iter_mut() {
            if let Value::String(p) = z {
                *p = base.join(&*p).display().to_string();
            }
        }
    }
    let mut o = Table::new();
    o.insert("base-url".into(), Value::String(origin.into()));
    o.insert(
        "ipv4".into(),
        Value::Array(vec![Value::String("192.0.2.1".into())]),
    );
    t.insert("origin".into(), Value::Table(o));
    let mut h = Table::new();
    h.insert("interval".into(), Value::String("2s".into()));
    h.insert("timeout".into(), Value::String("2s".into()));
    t.insert("health".into(), Value::Table(h));
    let release = format!("tool/{CURRENT}/manifest.json");
    let archive = format!("tool/{PREVIOUS}/manifest.json");
    if let Some(Value::Array(services)) = t.get_mut("service") {
        for s in services.iter_mut() {
            if let Value::Table(s) = s {
                s.insert(
                    "releases".into(),
                    Value::Array(vec![Value::String(release.clone())]),
                );
                s.insert(
                    "archive".into(),
                    Value::Array(vec![Value::String(archive.clone())]),
                );
            }
        }
    }
    // The download redirector on the first service, on a port the system picks.
    let mut r = Table::new();
    r.insert(
        "service".into(),
        Value::String("downloads.example.com".into()),
    );
    r.insert(
        "listen".into(),
        Value::Array(vec![Value::String("127.0.0.1:0".into())]),
    );
    r.insert("latest".into(), Value::String("tool/latest".into()));
    t.insert("redirect".into(), Value::Array(vec![Value::Table(r)]));
    if let Some(Value::Array(ms)) = t.get_mut("mirror") {
        for m in ms.iter_mut() {
            let Value::Table(m) = m else { continue };
            let name = m
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            match mirrors.iter().find(|(n, _)| *n == name) {
                Some((_, url)) => {
                    m.insert("base-url".into(), Value::String((*url).into()));
                }
                None => {
                    m.insert("drained".into(), Value::Boolean(true));
                }
            }
        }
    }
    std::fs::write(out, toml::to_string(&t)?)?;
    Ok(())
}

/// How to run this binary again from a shell, as written: `mirrordns` when that name on
/// PATH is this very file, else its full path (under `cargo run` it is not on PATH).
fn program() -> String {
    let Ok(me) = std::env::current_exe().and_then(|p| p.canonicalize()) else {
        return "mirrordns".into();
    };
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .filter_map(|dir| dir.join("mirrordns").canonicalize().ok())
            .next()
            .is_some_and(|first| first == me)
    });
    if on_path {
        "mirrordns".into()
    } else {
        shell_word(&me.display().to_string())
    }
}

/// `s` as one word for a POSIX shell: as is when it holds nothing the shell would read
/// differently, else single-quoted.
fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%=,".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Runs the demo until Ctrl-C.
pub async fn run(shipped: PathBuf) -> Result<(), DemoError> {
    let work = tempfile::Builder::new()
        .prefix("mirrordns-demo-")
        .tempdir()?;
    let w = work.path();
    let origin_dir = w.join("origin");
    write_release(&origin_dir, PREVIOUS, 1)?;
    write_release(&origin_dir, CURRENT, 2)?;
    // Good: a full copy.
    copy_dir(&origin_dir, &w.join("eu-west"))?;
    // Corrupted: one byte flipped in the current release.
    copy_dir(&origin_dir, &w.join("us-east"))?;
    let bad = w
        .join("us-east/tool")
        .join(CURRENT)
        .join("tool-linux-amd64.tar.gz");
    let mut data = std::fs::read(&bad)?;
    data[1000] ^= 0x01;
    std::fs::write(&bad, data)?;
    // Lagging: only the previous release so far.
    copy_dir(
        &origin_dir.join("tool").join(PREVIOUS),
        &w.join("ap-northeast/tool").join(PREVIOUS),
    )?;

    let origin = FileServer::start(&origin_dir).await?;
    let eu = FileServer::start(&w.join("eu-west")).await?;
    let us = FileServer::start(&w.join("us-east")).await?;
    let ap = FileServer::start(&w.join("ap-northeast")).await?;
    let config_path = w.join("mirrordns-demo.toml");
    demo_config(
        &shipped,
        &origin.url(),
        &[
            ("eu-west", &eu.url()),
            ("us-east", &us.url()),
            ("ap-northeast", &ap.url()),
        ],
        &config_path,
    )?;
    // Listen for Ctrl-C before saying it stops the demo: a SIGINT that arrives between the
    // printout and the listener would otherwise kill the process without a clean stop.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let loaded = Loaded::from_file(&config_path).map_err(DemoError::Config)?;
    let server = Server::start(loaded).await?;
    let port = server.dns_addrs()[0].port();
    // Wait (bounded) for the first probe round so the printout shows real states.
    for _ in 0..100 {
        if server
            .with_health(|_, st| st.first_round_done)
            .await
            .unwrap_or(true)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The coordinator publishes a debounced moment after the state changes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let states = server
        .with_health(|cfg, st| {
            (0..cfg.mirrors.len())
                .map(|i| {
                    let m = &cfg.mirrors[i];
                    let state = crate::health::state::mirror_state(cfg, st, i);
                    let reason = if m.drained {
                        "drained in the demo's config: out of every answer, not probed".into()
                    } else {
                        st.mirrors[i].reason()
                    };
                    format!("  {:<13} {:<10} {reason}", m.name, state.as_str())
                        .trim_end()
                        .to_string()
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .await
        .unwrap_or_default();
    let http = match server.http_addr() {
        Some(a) => format!(", status page http://{a}/"),
        None => String::new(),
    };
    let redirect = server
        .redirect_addrs()
        .first()
        .and_then(|a| a.plain.first().copied())
        .map(|a| {
            format!(
                "Downloads, file by file, from the mirror that verified that file (the redirector on {a}):\n\
                 \x20 curl -sI http://{a}/tool/{CURRENT}/tool-linux-amd64.tar.gz    # 302 to eu-west, the only verified copy\n\
                 \x20 curl -sI -H 'X-Forwarded-For: 1.0.16.1' http://{a}/tool/{PREVIOUS}/tool-linux-amd64.tar.gz   # (loopback is no proxy: your own address decides)\n\
                 \x20 curl -s  http://{a}/tool/{PREVIOUS}/tool-linux-amd64.tar.gz?mirrorlist   # every mirror and why\n\
                 \x20 curl -s  http://{a}/tool/latest/SHA256SUMS.meta4               # Metalink: aria2c fetches and checks it\n\n"
            )
        })
        .unwrap_or_default();
    let me = program();
    let config = shell_word(&config_path.display().to_string());
    println!(
        "mirrordns demo: DNS on 127.0.0.1:{port}{http}, origin {origin}, release {CURRENT}\n\nmirrors:\n{states}\n\n\
         Only eu-west holds a byte-exact copy, so every client gets it:\n\
         \x20 dig @127.0.0.1 -p {port} downloads.example.com A +subnet=81.2.69.0/24 +short   # London: eu-west 192.0.2.11\n\
         \x20 dig @127.0.0.1 -p {port} downloads.example.com A +subnet=8.8.8.0/24 +short     # US: us-east is corrupted -> 192.0.2.11\n\
         \x20 dig @127.0.0.1 -p {port} downloads.example.com A +subnet=1.0.16.0/24 +short    # Tokyo: ap-northeast lags -> 192.0.2.11\n\n\
         {redirect}Why, from this server and from the mirrors themselves:\n\
         \x20 {me} lookup --config {config} 8.8.8.8   # the US client's candidates, each with its state\n\
         \x20 {me} verify --config {config}           # file by file; exits 1: us-east mismatch, ap-northeast lagging\n\n\
         Ctrl-C stops the demo.",
        origin = origin.url(),
    );
    interrupt.recv().await;
    server.shutdown().await;
    drop((origin, eu, us, ap));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::shell_word;

    #[test]
    fn shell_words_survive_a_shell() {
        assert_eq!(
            shell_word("/tmp/mirrordns-demo-Ab1/x.toml"),
            "/tmp/mirrordns-demo-Ab1/x.toml"
        );
        assert_eq!(shell_word("/home/a b/mirrordns"), "'/home/a b/mirrordns'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        assert_eq!(shell_word(""), "''");
    }
}
