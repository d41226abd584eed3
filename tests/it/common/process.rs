//! `mirrordns` run as an operator runs it: a command with its output and exit code, and
//! `mirrordns serve` as a child process, watched through its monitoring endpoint.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary's output and exit code, with a deadline; output is drained as it comes, so a
/// flood of errors cannot stall it.
pub struct Run {
    pub code: Option<i32>,
    pub out: String,
    pub err: String,
    pub took: Duration,
}

pub fn mirrordns(args: &[&str], secs: u64) -> Run {
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

/// A plain HTTP/1.0 request to the monitoring endpoint: (status, body).
pub fn http(port: u16, method: &str, path: &str) -> (u16, String) {
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

pub fn status(port: u16) -> serde_json::Value {
    serde_json::from_str(&http(port, "GET", "/status").1).unwrap()
}

/// A sample of `/metrics`, 0 if absent.
pub fn metric(port: u16, sample: &str) -> f64 {
    http(port, "GET", "/metrics")
        .1
        .lines()
        .find_map(|l| l.strip_prefix(sample))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A child process that is killed (by its PID) and reaped when dropped, so that a test that
/// fails half-way leaves nothing running (a leftover holding the test's stdout would keep a CI
/// pipe open until its time limit).
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Reaped {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

/// `mirrordns serve` as a child process, stopped with SIGTERM at the end of a test.
pub struct Serving {
    child: Child,
    pub port: u16,
    pub dns: SocketAddr,
    log: PathBuf,
}

impl Serving {
    /// Starts the binary on `config` (whose `http-listen` is `port`) and waits until it
    /// answers on its monitoring endpoint.
    pub fn start(config: &Path, port: u16) -> Serving {
        Self::start_with_env(config, port, &[])
    }

    /// [`Serving::start`] with extra environment variables (a service manager's, say).
    pub fn start_with_env(config: &Path, port: u16, env: &[(&str, &str)]) -> Serving {
        let log = config.with_extension("log");
        let child = Command::new(env!("CARGO_BIN_EXE_mirrordns"))
            .args(["serve", "--config", config.to_str().unwrap()])
            .envs(env.iter().copied())
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

    pub fn assert_running(&mut self) {
        if let Some(st) = self.child.try_wait().unwrap() {
            panic!(
                "mirrordns serve exited ({st}):\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let r = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(r, 0, "kill");
    }

    /// SIGTERM; it must exit 0 within 10 s.
    pub fn stop(mut self) -> String {
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
    pub fn wait(&mut self, what: &str, secs: u64, mut f: impl FnMut(&Serving) -> bool) {
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
