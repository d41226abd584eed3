//! The status page as a person sees it, in a real headless Chromium driven over the DevTools
//! protocol (`--remote-debugging-pipe`: no port, no extra package): countries coloured by
//! the mirror the live routing table really answers with, a drained mirror's countries
//! turning to the next one, the mirror holding a release up named, the fallback warning on
//! top, and no text drawn over other text at desktop and phone widths. Screenshots are kept
//! in a temporary directory whose path the test prints.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::common::mmdb::{build, place};
use crate::common::release;
use crate::common::*;
use mirrordns::daemon::Server;
use mirrordns::demo::files::FileServer;
use mirrordns::load::Loaded;

const V: &str = "tool/v3.0.0";

/// What the page shows, read in the browser after layout.
const PROBE: &str = r#"(() => {
  const rgb = el => el ? getComputedStyle(el).fill : null;
  const fills = {};
  for (const p of document.querySelectorAll('#map path[data-answer]')) fills[p.dataset.cc] = rgb(p);
  const legend = {};
  for (const li of document.querySelectorAll('#legend li[data-mirror]'))
    legend[li.dataset.mirror] = getComputedStyle(li.querySelector('.sw')).backgroundColor;
  for (const li of document.querySelectorAll('#legend li[data-answer]'))
    legend[li.dataset.answer] = getComputedStyle(li.querySelector('.sw')).backgroundColor;
  const dots = {};
  for (const c of document.querySelectorAll('#map circle')) dots[c.dataset.mirror] = c.dataset.state;
  const rows = {};
  for (const tr of document.querySelectorAll('#mirrors tr[data-mirror]'))
    rows[tr.dataset.mirror] = tr.querySelector('.state').textContent;
  const holding = [...document.querySelectorAll('.holding')].map(e => e.textContent);
  const w = document.getElementById('warnings');
  const wr = w && w.getBoundingClientRect();
  // Every line box of every visible text node; two from different nodes may not overlap.
  const boxes = [];
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walk.nextNode()) {
    const n = walk.currentNode;
    if (!n.textContent.trim()) continue;
    const r = document.createRange();
    r.selectNodeContents(n);
    for (const b of r.getClientRects())
      if (b.width > 0 && b.height > 0) boxes.push({t: n.textContent.trim().slice(0, 40), b});
  }
  const overlaps = [];
  for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
    const a = boxes[i].b, b = boxes[j].b;
    const x = Math.min(a.right, b.right) - Math.max(a.left, b.left);
    const y = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
    if (x > 1 && y > 1) overlaps.push([boxes[i].t, boxes[j].t]);
  }
  const m = document.getElementById('map');
  const map = m ? m.getBoundingClientRect() : {top: null, width: 0};
  return JSON.stringify({fills, legend, dots, rows, holding, overlaps, texts: boxes.length,
    warning: w ? w.innerText : null, warning_top: wr ? wr.top : null,
    map_top: map.top, map_width: map.width,
    page_width: document.documentElement.scrollWidth, view_width: innerWidth,
    shaded: document.querySelectorAll('#map path[data-answer]').length});
})()"#;

/// A headless Chromium with the DevTools protocol on two pipes (fd 3 in, fd 4 out).
struct Chromium {
    child: std::process::Child,
    to: std::io::PipeWriter,
    from: BufReader<std::io::PipeReader>,
    id: u64,
    _profile: tempfile::TempDir,
}

impl Chromium {
    fn start() -> Chromium {
        let (cmd_r, cmd_w) = std::io::pipe().unwrap();
        let (out_r, out_w) = std::io::pipe().unwrap();
        let profile = tempfile::tempdir().unwrap();
        let mut cmd = std::process::Command::new(chromium());
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--remote-debugging-pipe",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        use std::os::fd::AsRawFd;
        let (r, w) = (cmd_r.as_raw_fd(), out_w.as_raw_fd());
        // SAFETY: between fork and exec only fcntl and dup2 run, which are async-signal-safe.
        // They put the pipe ends where Chromium's --remote-debugging-pipe expects them, by
        // way of copies above 10: an end may itself be fd 3 or 4 (dup2 onto itself would keep
        // close-on-exec, and the first dup2 could overwrite the other end). dup2 leaves the
        // final copies without close-on-exec.
        unsafe {
            cmd.pre_exec(move || {
                let r = libc::fcntl(r, libc::F_DUPFD_CLOEXEC, 10);
                let w = libc::fcntl(w, libc::F_DUPFD_CLOEXEC, 10);
                if r < 0 || w < 0 || libc::dup2(r, 3) < 0 || libc::dup2(w, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("chromium starts");
        drop((cmd_r, out_w));
        Chromium {
            child,
            to: cmd_w,
            from: BufReader::new(out_r),
            id: 0,
            _profile: profile,
        }
    }

    fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> u64 {
        self.id += 1;
        let mut msg = json!({"id": self.id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to.write_all(&bytes).expect("chromium reads commands");
        self.id
    }

    fn next(&mut self) -> Value {
        let mut buf = Vec::new();
        let n = self.from.read_until(0, &mut buf).expect("chromium answers");
        assert!(n > 0, "chromium closed the pipe");
        buf.pop();
        serde_json::from_slice(&buf).expect("a JSON message")
    }

    /// Sends a command and returns its result (events before it are passed by).
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.send(session, method, params);
        loop {
            let m = self.next();
            if m["id"] == id {
                assert!(m.get("error").is_none(), "{method}: {m}");
                return m["result"].clone();
            }
        }
    }

    fn wait_event(&mut self, session: &str, method: &str) {
        loop {
            let m = self.next();
            if m["method"] == method && m["sessionId"] == session {
                return;
            }
        }
    }

    /// Loads `url` at `width` x `height` (as a phone when `mobile`), saves a full-page
    /// screenshot to `shot`, and returns what [`PROBE`] read.
    fn view(
        &mut self,
        url: &str,
        width: u32,
        height: u32,
        mobile: bool,
        shot: &std::path::Path,
    ) -> Value {
        let target = self.call(None, "Target.createTarget", json!({"url": "about:blank"}));
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        let session = attached["sessionId"].as_str().unwrap().to_string();
        let s = Some(session.as_str());
        self.call(
            s,
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        );
        self.call(s, "Page.enable", json!({}));
        self.call(s, "Page.navigate", json!({"url": url}));
        self.wait_event(&session, "Page.loadEventFired");
        let probe = self.call(
            s,
            "Runtime.evaluate",
            json!({"expression": PROBE, "returnByValue": true}),
        );
        let png = self.call(
            s,
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png["data"].as_str().unwrap())
            .unwrap();
        std::fs::write(shot, bytes).unwrap();
        self.call(
            None,
            "Target.closeTarget",
            json!({"targetId": target["targetId"]}),
        );
        serde_json::from_str(probe["result"]["value"].as_str().expect("probe ran")).unwrap()
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromium() -> &'static str {
    ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| installed(c, "--version", "chromium"))
        .unwrap_or_else(|| panic!("{}", missing("chromium", "chromium")))
}

/// Loads the page at desktop and phone sizes in one browser, off the async workers (the
/// server answers on the runtime's other thread), killed if it takes over a minute.
async fn look(url: String, shots: std::path::PathBuf, tag: &'static str) -> [Value; 2] {
    let done = Arc::new(AtomicBool::new(false));
    let job = tokio::task::spawn_blocking({
        let done = done.clone();
        move || {
            let mut b = Chromium::start();
            let pid = b.child.id();
            let watchdog = std::thread::spawn({
                let done = done.clone();
                move || {
                    let until = Instant::now() + Duration::from_secs(60);
                    while Instant::now() < until {
                        if done.load(Ordering::Relaxed) {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    // SAFETY: plain kill(2) of the child this test started, by its pid.
                    unsafe {
                        libc::kill(pid as i32, libc::SIGKILL);
                    }
                }
            });
            // The overlap check itself, on text drawn over text on purpose.
            let bad = "data:text/html,<p style='position:absolute;top:0'>one line</p>\
                       <p style='position:absolute;top:0;left:5px'>another</p>";
            let seen = b.view(bad, 390, 844, true, &shots.join("self-check.png"));
            assert_eq!(
                seen["overlaps"],
                json!([["one line", "another"]]),
                "the overlap check sees overlapping text"
            );
            let desk = shots.join(format!("{tag}-desktop-1280.png"));
            let phone = shots.join(format!("{tag}-phone-390.png"));
            let out = [
                b.view(&url, 1280, 900, false, &desk),
                b.view(&url, 390, 844, true, &phone),
            ];
            println!(
                "screenshots: {}\n             {}",
                desk.display(),
                phone.display()
            );
            done.store(true, Ordering::Relaxed);
            let _ = watchdog.join();
            out
        }
    });
    job.await.expect("the browser session finished")
}

struct Setup {
    dir: tempfile::TempDir,
    origin: FileServer,
    eu: FileServer,
    us: FileServer,
    ap: FileServer,
}

impl Setup {
    async fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        for d in ["origin", "eu", "us", "ap"] {
            release::write(&dir.path().join(d), V, "v3.0.0");
        }
        // ap-northeast holds wrong bytes: it holds the release up and is out of answers.
        release::corrupt(&dir.path().join(format!("ap/{V}/tool-linux-amd64.tar.gz")));
        let start = |d: &str| {
            let p = dir.path().join(d);
            async move { FileServer::start(&p).await.unwrap() }
        };
        Setup {
            origin: start("origin").await,
            eu: start("eu").await,
            us: start("us").await,
            ap: start("ap").await,
            dir,
        }
    }

    /// Three services: `downloads` (nearest, all three mirrors), `cdn` (regions: Asia listed
    /// to ap-northeast alone) and `edge` (ap-northeast only: its fallback answers).
    async fn start(&self) -> (Server, String) {
        let db = build(&[
            ("81.2.64.0/19", place("EU", "GB", 51.5, -0.13)),
            ("2.0.0.0/12", place("EU", "FR", 48.9, 2.35)),
            ("8.8.0.0/16", place("NA", "US", 37.4, -122.1)),
            ("24.0.0.0/12", place("NA", "CA", 43.7, -79.4)),
            ("1.0.16.0/20", place("AS", "JP", 35.68, 139.76)),
            ("177.0.0.0/8", place("SA", "BR", -23.55, -46.63)),
        ]);
        let cfg = format!(
            r#"[server]
dns-listen = ["127.0.0.1:0"]
http-listen = "127.0.0.1:0"
zones = ["example.com.zone"]
admin-state = "admin-state.toml"
[geo]
database = "geo.mmdb"
[origin]
base-url = "{origin}"
ipv4 = ["192.0.2.1"]
[health]
interval = "100ms"
timeout = "1s"
fall = 2
[[service]]
name = "downloads.example.com"
mirrors = ["eu-west", "us-east", "ap-northeast"]
releases = ["{V}/manifest.json"]
[[service]]
name = "cdn.example.com"
policy = "regions"
mirrors = ["eu-west", "us-east", "ap-northeast"]
releases = ["{V}/manifest.json"]
[service.regions]
default = ["us-east", "eu-west"]
[service.regions.continent]
AS = ["ap-northeast"]
[[service]]
name = "edge.example.com"
mirrors = ["ap-northeast"]
releases = ["{V}/manifest.json"]
fallback = "origin"
[[mirror]]
name = "eu-west"
ipv4 = ["192.0.2.11"]
location = {{ lat = 50.1, lon = 8.7 }}
base-url = "{eu}"
[[mirror]]
name = "us-east"
ipv4 = ["192.0.2.10"]
location = {{ lat = 38.9, lon = -77.0 }}
base-url = "{us}"
[[mirror]]
name = "ap-northeast"
ipv4 = ["192.0.2.14"]
location = {{ lat = 35.7, lon = 139.7 }}
base-url = "{ap}"
"#,
            origin = self.origin.url(),
            eu = self.eu.url(),
            us = self.us.url(),
            ap = self.ap.url(),
        );
        let path = write_files(&self.dir, &cfg, ZONE, Some(db));
        let server = Server::start(Loaded::from_file(&path).unwrap_or_else(|p| panic!("{p}")))
            .await
            .unwrap();
        let base = format!("http://{}", server.http_addr().expect("http endpoint"));
        (server, base)
    }

    /// Drains a mirror through the on-call admin-state file (written aside, then renamed).
    fn drain(&self, mirror: &str) {
        let tmp = self.dir.path().join("admin-state.toml.tmp");
        std::fs::write(
            &tmp,
            format!("[[mirror]]\nname = \"{mirror}\"\naction = \"drain\"\nreason = \"test\"\n"),
        )
        .unwrap();
        std::fs::rename(tmp, self.dir.path().join("admin-state.toml")).unwrap();
    }
}

async fn status(base: &str) -> Value {
    mirrordns::health::http::install_crypto();
    let body = reqwest::get(format!("{base}/status"))
        .await
        .expect("status answers")
        .text()
        .await
        .unwrap();
    serde_json::from_str(&body).expect("status is JSON")
}

async fn wait_status(base: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = status(base).await;
        if ok(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "waited for {what}: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn state(s: &Value, service: usize, mirror: &str) -> String {
    s["services"][service]["mirrors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == mirror)
        .map(|m| m["state"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

/// What a person checks on both screens: no text over text, nothing wider than the screen
/// but the tables' own scroll areas, the warning above the map.
fn assert_readable(seen: &[Value; 2]) {
    for (v, (size, width)) in seen.iter().zip([("1280x900", 1280.0), ("390x844", 390.0)]) {
        assert!(
            v["texts"].as_u64().unwrap() > 50,
            "{size}: text laid out: {v}"
        );
        assert_eq!(v["overlaps"], json!([]), "{size}: overlapping text");
        // Against the screen's width: a phone's layout viewport grows to fit wide content.
        assert!(
            v["page_width"].as_f64().is_some_and(|w| w <= width),
            "{size}: the page scrolls sideways: {v}"
        );
        assert!(v["map_width"].as_f64().unwrap() > 300.0, "{size}: {v}");
    }
}

fn colour_of<'a>(v: &'a Value, cc: &str, mirror: &str) -> (&'a Value, &'a Value) {
    (&v["fills"][cc], &v["legend"][mirror])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium (chromium); `cargo test -- --ignored` runs it, as CI does"]
async fn the_page_shows_the_live_answers_rollout_and_warnings_in_chromium() {
    chromium();
    let s = Setup::new().await;
    let (server, base) = s.start().await;
    let shots = tempfile::Builder::new()
        .prefix("mirrordns-status-page-")
        .tempdir()
        .unwrap()
        .keep();
    println!("screenshots in {}", shots.display());
    wait_status(
        &base,
        "eu-west and us-east ready, ap-northeast mismatch",
        |st| {
            state(st, 0, "eu-west") == "ready"
                && state(st, 0, "us-east") == "ready"
                && state(st, 0, "ap-northeast") == "mismatch"
        },
    )
    .await;

    let seen = look(format!("{base}/"), shots.clone(), "before").await;
    assert_readable(&seen);
    let desk = &seen[0];
    // Each country in the colour of the mirror its networks get from the live table.
    for (cc, mirror) in [
        ("GB", "eu-west"),
        ("FR", "eu-west"),
        ("US", "us-east"),
        ("CA", "us-east"),
        ("BR", "us-east"),
        // Tokyo's nearest is out: the table answers with the next nearest, Frankfurt.
        ("JP", "eu-west"),
    ] {
        let (fill, legend) = colour_of(desk, cc, mirror);
        assert!(fill.is_string(), "{cc} shaded: {desk}");
        assert_eq!(fill, legend, "{cc} in {mirror}'s colour: {desk}");
    }
    assert_eq!(desk["shaded"], 6, "only countries with networks: {desk}");
    assert_ne!(desk["legend"]["eu-west"], desk["legend"]["us-east"]);
    assert_eq!(desk["dots"]["ap-northeast"], "mismatch", "{desk}");
    // The release waits for ap-northeast, and says so by name.
    assert_eq!(desk["holding"], json!(["ap-northeast"]), "{desk}");
    // edge's only mirror is out: its fallback answers, said above the map; cdn's Asian
    // clients go past their list.
    let warning = desk["warning"].as_str().expect("a warning");
    assert!(
        warning.contains("edge.example.com") && warning.contains("fallback origin"),
        "{warning}"
    );
    assert!(warning.contains("cdn.example.com"), "{warning}");
    assert!(
        desk["warning_top"].as_f64() < desk["map_top"].as_f64(),
        "{desk}"
    );

    // The map of another service, chosen by link: cdn lists Asia to ap-northeast alone.
    let cdn = look(
        format!("{base}/?service=cdn.example.com"),
        shots.clone(),
        "cdn",
    )
    .await;
    assert_readable(&cdn);
    assert_eq!(
        cdn[0]["fills"]["GB"], cdn[0]["legend"]["us-east"],
        "default list first: {}",
        cdn[0]
    );

    // edge answers by its fallback: every country in the origin's colour.
    let edge = look(
        format!("{base}/?service=edge.example.com"),
        shots.clone(),
        "edge",
    )
    .await;
    for cc in ["GB", "US", "JP"] {
        let (fill, legend) = colour_of(&edge[1], cc, "origin");
        assert!(legend.is_string(), "origin in the legend: {}", edge[1]);
        assert_eq!(fill, legend, "{cc} answered by the origin: {}", edge[1]);
    }

    // us-east drained on call: its countries turn to the mirror the table answers with now.
    s.drain("us-east");
    wait_status(&base, "us-east out of downloads' answers", |st| {
        st["services"][0]["mirrors"][1]["routable"] == false
    })
    .await;
    let after = look(format!("{base}/"), shots.clone(), "drained").await;
    assert_readable(&after);
    let desk = &after[0];
    for cc in ["US", "CA", "BR", "GB", "JP"] {
        let (fill, legend) = colour_of(desk, cc, "eu-west");
        assert_eq!(fill, legend, "{cc} now eu-west: {desk}");
    }
    assert_eq!(desk["dots"]["us-east"], "drained", "{desk}");
    assert_eq!(desk["rows"]["us-east"], "drained", "{desk}");
    server.shutdown().await;
}
