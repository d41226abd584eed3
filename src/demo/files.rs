//! A small HTTP/1.1 static file server on loopback, for `mirrordns demo` and for tests that
//! need real mirrors and a real origin.
//!
//! It serves files from a directory with Content-Length and an ETag derived from size and
//! modification time, one request per connection. Knobs make it misbehave the ways real
//! mirrors do (error status, slow responses, truncated or over-long bodies, redirects, huge
//! headers, slow-drip bodies), so tests exercise the prober against real sockets.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Ways to misbehave. Default: a well-behaved server.
#[derive(Debug, Clone, Default)]
pub struct Knobs {
    /// Answer every request with this status and an empty body.
    pub status: Option<u16>,
    /// Wait this long before answering.
    pub delay: Option<Duration>,
    /// Send the right Content-Length but close after this many body bytes.
    pub truncate_after: Option<u64>,
    /// Send no Content-Length; the body ends when the connection closes.
    pub no_length: bool,
    /// Bytes appended to every body (with `no_length`, a body longer than the file).
    pub append: Vec<u8>,
    /// When set, `truncate_after`, `no_length` and `append` apply only to paths ending so.
    pub only_path: Option<String>,
    /// Requests for a path starting with `.0` get a 302 to `.1` + the rest of the path.
    pub redirects: Vec<(String, String)>,
    /// Before a 200's own headers end, this many `X-Pad-N` header lines of about this many
    /// bytes each: a broken proxy or a hostile mirror flooding the client's header parser.
    pub pad_headers: Option<(u64, usize)>,
    /// Send the body this many bytes at a time with this pause in between: every read makes
    /// progress, the whole file takes far longer. Limited by `only_path` like `truncate_after`.
    pub drip: Option<(usize, Duration)>,
}

/// A running file server; stops when dropped.
pub struct FileServer {
    addr: SocketAddr,
    root: PathBuf,
    knobs: Arc<Mutex<Knobs>>,
    requests: Arc<std::sync::atomic::AtomicU64>,
    sent: Arc<std::sync::atomic::AtomicU64>,
    last_host: Arc<Mutex<Option<String>>>,
    token: CancellationToken,
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

impl FileServer {
    /// Serves `root` on an ephemeral port of 127.0.0.1.
    pub async fn start(root: &Path) -> std::io::Result<FileServer> {
        FileServer::start_on(root, "127.0.0.1:0".parse().expect("static address")).await
    }

    pub async fn start_on(root: &Path, addr: SocketAddr) -> std::io::Result<FileServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let knobs = Arc::new(Mutex::new(Knobs::default()));
        let requests = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let token = CancellationToken::new();
        let last_host = Arc::new(Mutex::new(None));
        let (k, r, t, dir, lh, out) = (
            knobs.clone(),
            requests.clone(),
            token.clone(),
            root.to_path_buf(),
            last_host.clone(),
            sent.clone(),
        );
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = t.cancelled() => break,
                    a = listener.accept() => match a { Ok(x) => x, Err(_) => continue },
                };
                r.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let knobs = k.lock().map(|g| g.clone()).unwrap_or_default();
                let dir = dir.clone();
                let t = t.clone();
                let lh = lh.clone();
                let out = out.clone();
                tokio::spawn(async move {
                    let mut s = Counted {
                        s: stream,
                        sent: &out,
                    };
                    tokio::select! {
                        _ = t.cancelled() => {}
                        _ = serve(&mut s, &dir, knobs, &lh) => {}
                    }
                });
            }
        });
        Ok(FileServer {
            addr,
            root: root.to_path_buf(),
            knobs,
            requests,
            sent,
            last_host,
            token,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Changes how the server behaves from the next request on.
    pub fn set(&self, f: impl FnOnce(&mut Knobs)) {
        if let Ok(mut k) = self.knobs.lock() {
            f(&mut k);
        }
    }

    /// The Host header of the latest request.
    pub fn last_host(&self) -> Option<String> {
        self.last_host.lock().ok().and_then(|h| h.clone())
    }

    /// Connections accepted so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Bytes handed to the kernel on every connection so far (heads and bodies): how much a
    /// client let a misbehaving server push at it.
    pub fn bytes_sent(&self) -> u64 {
        self.sent.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A connection that counts what it writes.
struct Counted<'a> {
    s: TcpStream,
    sent: &'a std::sync::atomic::AtomicU64,
}

impl Counted<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.s.read(buf).await
    }

    async fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        // Chunked so that a client hanging up mid-way leaves an honest count.
        for c in buf.chunks(64 * 1024) {
            self.s.write_all(c).await?;
            self.sent
                .fetch_add(c.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        self.s.shutdown().await
    }
}

async fn serve(
    s: &mut Counted<'_>,
    root: &Path,
    k: Knobs,
    last_host: &Mutex<Option<String>>,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await?;
        if n == 0 || head.len() > 16 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let mut parts = text.lines().next().unwrap_or_default().split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let host = text.lines().find_map(|l| {
        l.split_once(':')
            .filter(|(k, _)| k.eq_ignore_ascii_case("host"))
            .map(|(_, v)| v.trim().to_string())
    });
    if let Ok(mut h) = last_host.lock() {
        *h = host;
    }
    if let Some(d) = k.delay {
        tokio::time::sleep(d).await;
    }
    if let Some(code) = k.status {
        let resp =
            format!("HTTP/1.1 {code} Status\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return s.write_all(resp.as_bytes()).await;
    }
    let path = target
        .split('?')
        .next()
        .unwrap_or("/")
        .trim_start_matches('/')
        .to_string();
    for (from, to) in &k.redirects {
        if let Some(rest) = path.strip_prefix(from.as_str()) {
            let resp = format!(
                "HTTP/1.1 302 Found\r\nLocation: {to}{rest}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            return s.write_all(resp.as_bytes()).await;
        }
    }
    let k = match &k.only_path {
        Some(suffix) if !path.ends_with(suffix.as_str()) => Knobs {
            truncate_after: None,
            no_length: false,
            append: Vec::new(),
            drip: None,
            ..k
        },
        _ => k,
    };
    let file = root.join(&path);
    let meta = if path.split('/').any(|seg| seg == "..") {
        None
    } else {
        tokio::fs::metadata(&file).await.ok()
    };
    let Some(meta) = meta.filter(|m| m.is_file()) else {
        return s
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
    };
    let len = meta.len() + k.append.len() as u64;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default();
    let etag = format!("\"{:x}-{:x}\"", meta.len(), mtime.as_nanos());
    let length = if k.no_length {
        String::new()
    } else {
        format!("Content-Length: {len}\r\n")
    };
    s.write_all(b"HTTP/1.1 200 OK\r\n").await?;
    if let Some((lines, bytes)) = k.pad_headers {
        let value = "a".repeat(bytes);
        for i in 0..lines {
            s.write_all(format!("X-Pad-{i}: {value}\r\n").as_bytes())
                .await?;
        }
    }
    let resp = format!("{length}ETag: {etag}\r\nConnection: close\r\n\r\n");
    s.write_all(resp.as_bytes()).await?;
    if method == "HEAD" {
        return Ok(());
    }
    let mut f = tokio::fs::File::open(&file).await?;
    let mut sent: u64 = 0;
    let mut chunk = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        let mut n = n as u64;
        if let Some(cut) = k.truncate_after {
            n = n.min(cut.saturating_sub(sent));
            if n == 0 {
                return Ok(());
            }
        }
        match k.drip {
            Some((step, pause)) => {
                for piece in chunk[..n as usize].chunks(step.max(1)) {
                    s.write_all(piece).await?;
                    tokio::time::sleep(pause).await;
                }
            }
            None => s.write_all(&chunk[..n as usize]).await?,
        }
        sent += n;
    }
    s.write_all(&k.append).await?;
    s.shutdown().await
}
