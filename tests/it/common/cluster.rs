//! Several mirrordns instances sharing one real `redis-server`, with mirrors served by a real
//! nginx whose access logs count what each mirror sent. Loopback only; every process is
//! started here and stopped by its PID.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mirrordns::daemon::Server;
use mirrordns::load::Loaded;

use super::release;
use super::*;

pub use super::mirrors::{EU, MANIFEST, US, V1};
pub const AP: &str = "192.0.2.12";
/// The mirrors, nearest to London first.
pub const MIRRORS: [&str; 3] = ["eu-west", "us-east", "ap-south"];

/// Whether both outside programs are here; the tests that need them are ignored otherwise.
pub fn tools() {
    require("redis-server", "--version", "redis-server");
    require("nginx", "-v", "nginx-light");
}

pub use super::process::Reaped as Proc;

/// A `redis-server` on a loopback port, no persistence.
pub struct Redis {
    pub port: u16,
    pub proc: Option<Proc>,
    dir: PathBuf,
}

impl Redis {
    pub fn start(dir: &Path) -> Redis {
        let port = free_port();
        let mut r = Redis {
            port,
            proc: None,
            dir: dir.to_path_buf(),
        };
        r.restart();
        r
    }

    /// Starts it (again, on the same port).
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
                "--dir",
            ])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.proc = Some(Proc(child));
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cmd(&["PING"]).as_deref() != Some("PONG") {
            assert!(Instant::now() < deadline, "redis-server did not answer");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it (SIGKILL to the PID this test started).
    pub fn stop(&mut self) {
        self.proc = None;
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// One command over RESP, written by hand so that the test does not share the server's
    /// client code. The reply's first line (simple string, integer, or the bulk's text).
    pub fn cmd(&self, args: &[&str]) -> Option<String> {
        use std::io::{BufRead, BufReader, Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).ok()?;
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).ok()?;
        let line = line.trim_end().to_string();
        match line.as_bytes().first()? {
            b'+' | b':' => Some(line[1..].to_string()),
            b'$' => {
                let n: i64 = line[1..].parse().ok()?;
                if n < 0 {
                    return None;
                }
                let mut buf = vec![0u8; n as usize + 2];
                r.read_exact(&mut buf).ok()?;
                buf.truncate(n as usize);
                String::from_utf8(buf).ok()
            }
            _ => Some(line),
        }
    }
}

/// nginx serving the origin and each mirror from its own directory on its own port, one
/// access log per site.
pub struct Nginx {
    _proc: Proc,
    dir: PathBuf,
    pub ports: Vec<(String, u16)>,
}

impl Nginx {
    pub fn start(dir: &Path, sites: &[&str]) -> Nginx {
        let mut servers = String::new();
        let mut ports = Vec::new();
        for s in sites {
            let port = free_port();
            servers.push_str(&format!(
                "server {{ listen 127.0.0.1:{port}; root {root}; access_log {log}; }}\n",
                root = dir.join(s).display(),
                log = dir.join(format!("{s}.log")).display()
            ));
            ports.push((s.to_string(), port));
        }
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/nginx-error.log;\n\
             events {{ worker_connections 256; }}\nhttp {{\n  access_log off;\n  keepalive_timeout 5s;\n\
             client_body_temp_path {d}/t1; proxy_temp_path {d}/t2; fastcgi_temp_path {d}/t3; uwsgi_temp_path {d}/t4; scgi_temp_path {d}/t5;\n\
             {servers}}}\n"
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("nginx-error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let n = Nginx {
            _proc: Proc(child),
            dir: dir.to_path_buf(),
            ports,
        };
        for (_, port) in &n.ports {
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", *port)).is_err() {
                assert!(Instant::now() < deadline, "nginx did not listen on {port}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        n
    }

    pub fn url(&self, site: &str) -> String {
        let port = self.ports.iter().find(|(s, _)| s == site).unwrap().1;
        format!("http://127.0.0.1:{port}/")
    }

    /// How many times `site` answered `method path` (path from the root, e.g.
    /// "tool/v1.8.2/x.zip") with 200, by its access log.
    pub fn count(&self, site: &str, method: &str, path: &str) -> usize {
        let log = std::fs::read_to_string(self.dir.join(format!("{site}.log"))).unwrap_or_default();
        let want = format!("\"{method} /{path} HTTP/1.1\" 200 ");
        log.lines().filter(|l| l.contains(&want)).count()
    }
}

/// An origin and three mirrors holding the release, behind nginx, and a Redis.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub nginx: Nginx,
    pub redis: Redis,
    /// A key prefix of this lab's own.
    pub prefix: String,
    /// `[cluster] secret` in every instance's config.
    pub secret: Option<String>,
}

impl Lab {
    pub fn new() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let mut sites = vec!["origin"];
        sites.extend(MIRRORS);
        for s in &sites {
            release::write(&dir.path().join(s), V1, "v1.8.2");
        }
        let redis_dir = dir.path().join("redis");
        std::fs::create_dir_all(&redis_dir).unwrap();
        let nginx = Nginx::start(dir.path(), &sites);
        let redis = Redis::start(&redis_dir);
        Lab {
            secret: None,
            prefix: format!("test{}:", std::process::id()),
            dir,
            nginx,
            redis,
        }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// Instance `name`'s config; `cluster` false leaves `[cluster]` out.
    pub fn config(&self, name: &str, cluster: bool) -> String {
        let cluster = if cluster {
            let secret = self
                .secret
                .as_ref()
                .map(|s| format!("secret = \"{s}\"\n"))
                .unwrap_or_default();
            format!(
                "[cluster]\nredis = \"{}\"\nname = \"{name}\"\nkey-prefix = \"{}\"\n{secret}",
                self.redis.url(),
                self.prefix
            )
        } else {
            String::new()
        };
        format!(
            r#"[server]
dns-listen = ["127.0.0.1:0"]
http-listen = "127.0.0.1:0"
zones = ["example.com.zone"]

{LONDON_OVERRIDE}
[origin]
base-url = "{origin}"
ipv4 = ["192.0.2.1"]

[health]
interval = "1s"
timeout = "2s"
rise = 1
fall = 2

[[service]]
name = "downloads.example.com"
mirrors = ["eu-west", "us-east", "ap-south"]
releases = ["{MANIFEST}"]

[[mirror]]
name = "eu-west"
ipv4 = ["{EU}"]
location = {{ lat = 50.1, lon = 8.7 }}
base-url = "{eu}"

[[mirror]]
name = "us-east"
ipv4 = ["{US}"]
location = {{ lat = 38.9, lon = -77.0 }}
base-url = "{us}"

[[mirror]]
name = "ap-south"
ipv4 = ["{AP}"]
location = {{ lat = 1.3, lon = 103.8 }}
base-url = "{ap}"

{cluster}"#,
            origin = self.nginx.url("origin"),
            eu = self.nginx.url("eu-west"),
            us = self.nginx.url("us-east"),
            ap = self.nginx.url("ap-south"),
        )
    }

    /// Writes instance `name`'s config (and the zone) and returns its path.
    pub fn write_config(&self, name: &str, cluster: bool) -> PathBuf {
        let d = self.path(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("example.com.zone"), ZONE).unwrap();
        let p = d.join("mirrordns.toml");
        std::fs::write(&p, self.config(name, cluster)).unwrap();
        p
    }

    /// `mirrordns admin ARGS` with ns1's config, as on-call staff run it; it must succeed.
    pub fn admin(&self, args: &[&str]) -> super::process::Run {
        let config = self.path("ns1/mirrordns.toml");
        let mut all = vec!["admin", "--config", config.to_str().unwrap()];
        all.extend_from_slice(args);
        let run = super::process::mirrordns(&all, 10);
        assert_eq!(run.code, Some(0), "mirrordns {all:?}: {}", run.err);
        run
    }

    /// Starts instances ns1..nsN in this process.
    pub async fn start(&self, n: usize, cluster: bool) -> Vec<Server> {
        let mut out = Vec::new();
        for i in 1..=n {
            let p = self.write_config(&format!("ns{i}"), cluster);
            let s = Server::start(Loaded::from_file(&p).unwrap_or_else(|e| panic!("{e}")))
                .await
                .unwrap();
            out.push(s);
        }
        out
    }

    /// GETs of each release file and of the manifest, per mirror, summed over mirrors.
    pub fn gets(&self, mirror: &str) -> Vec<(String, usize)> {
        let mut names: Vec<String> = release::files("v1.8.2")
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        names.push("manifest.json".into());
        names
            .into_iter()
            .map(|n| {
                let c = self.nginx.count(mirror, "GET", &format!("{V1}/{n}"));
                (n, c)
            })
            .collect()
    }
}

/// The London answer of each instance.
pub async fn answers(servers: &[Server]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for s in servers {
        out.push(london(s.dns_addrs()[0]).await);
    }
    out
}

/// Polls until every instance answers London with `want`; how long it took.
pub async fn all_answer(servers: &[Server], want: &[&str], secs: u64) -> Duration {
    let started = Instant::now();
    loop {
        let a = answers(servers).await;
        if a.iter().all(|x| x == want) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(secs),
            "waited {secs} s for every instance to answer {want:?}; they answer {a:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A sample of an instance's `/metrics` (the whole line up to the value), 0 when absent.
pub async fn metric_of(server: &Server, sample: &str) -> f64 {
    super::mirrors::monitoring(server, "/metrics")
        .await
        .lines()
        .find_map(|l| l.strip_prefix(sample))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

pub async fn status_of(server: &Server) -> serde_json::Value {
    serde_json::from_str(&super::mirrors::monitoring(server, "/status").await).unwrap()
}

/// Each mirror's state as `/status` shows it on `server`.
pub async fn states(server: &Server) -> Vec<(String, String)> {
    let st = status_of(server).await;
    st["services"][0]["mirrors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_string(),
                m["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}
