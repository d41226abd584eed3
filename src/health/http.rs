//! HTTP for probes: client construction, capped fetches, and streaming SHA-256 verification.
//!
//! Every failure is a typed [`ProbeError`] whose text says exactly what went wrong (which file,
//! expected and actual size or hash), because that text is what an operator reads in logs and
//! `/status`. Bodies are never buffered past what the manifest allows.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use reqwest::{Client, StatusCode, Url};
use sha2::{Digest, Sha256};

use crate::config::HealthConfig;
use crate::manifest::hex;

/// Redirect hops followed within one mirror.
const MAX_REDIRECTS: usize = 5;

/// Why a probe client cannot be built. The cause is already in the text, so it is not also
/// given as `source` (a printed chain would repeat it).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot use probe port {port} with {base}")]
    ProbePort { port: u16, base: Url },
    #[error("cannot read CA file {}: {error}", .path.display())]
    CaRead {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("CA file {}: {error}", .path.display())]
    CaParse {
        path: PathBuf,
        error: reqwest::Error,
    },
    #[error("cannot build HTTP client: {0}")]
    Build(reqwest::Error),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProbeError {
    #[error("{url}: timed out after {secs:.1} s")]
    Timeout { url: String, secs: f64 },
    #[error(
        "{url}: timed out: download-timeout of {limit:.1} s reached with {got} of {size} bytes received"
    )]
    DownloadTimeout {
        url: String,
        limit: f64,
        got: u64,
        size: u64,
    },
    #[error("{url}: timed out: no data for {idle:.1} s with {got} of {size} bytes received")]
    Stalled {
        url: String,
        idle: f64,
        got: u64,
        size: u64,
    },
    #[error("{url}: connection failed: {detail}")]
    Connect { url: String, detail: String },
    #[error("{url}: TLS failed: {detail}")]
    Tls { url: String, detail: String },
    #[error("{url}: redirect refused: {detail}")]
    Redirect { url: String, detail: String },
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: {detail}")]
    Body { url: String, detail: String },
    #[error("{path}: size mismatch: expected {expected} bytes, got {actual}")]
    Size {
        path: String,
        expected: u64,
        actual: String,
        /// What the mirror sent with the wrong file: a later HEAD that differs shows it
        /// was replaced. (Boxed: it would make every probe result twice as large.)
        seen: Box<Validators>,
    },
    /// Fewer bytes than the manifest says: most likely a sync writing the file in place.
    #[error("{path}: incomplete: {got} of {expected} bytes (still being synced?)")]
    Short {
        path: String,
        expected: u64,
        got: u64,
    },
    /// Other bytes than the manifest's, but the file changed while it was read: a sync at work.
    #[error("{path}: changed while being read (still being synced?)")]
    Changed { path: String },
    #[error("{path}: sha256 mismatch: expected {expected}, got {actual}")]
    Hash {
        path: String,
        expected: String,
        actual: String,
        /// As for `Size`.
        seen: Box<Validators>,
    },
}

impl ProbeError {
    /// Wrong bytes (as opposed to a mirror that is unreachable or not synced yet).
    pub fn is_mismatch(&self) -> bool {
        matches!(self, ProbeError::Size { .. } | ProbeError::Hash { .. })
    }

    /// Other bytes than the manifest's, as a sync in progress leaves them: a file cut short,
    /// or one that changed while it was read.
    pub fn is_syncing(&self) -> bool {
        matches!(self, ProbeError::Short { .. } | ProbeError::Changed { .. })
    }

    /// A short, fixed reason for metrics and the status table.
    pub fn reason(&self) -> &'static str {
        match self {
            ProbeError::Timeout { .. }
            | ProbeError::DownloadTimeout { .. }
            | ProbeError::Stalled { .. } => "timeout",
            ProbeError::Connect { .. } => "connect",
            ProbeError::Tls { .. } => "tls",
            ProbeError::Redirect { .. } => "redirect",
            ProbeError::Status { status: 404, .. } => "missing",
            ProbeError::Status { .. } => "http-status",
            ProbeError::Body { .. } => "body",
            ProbeError::Size { .. } => "size-mismatch",
            ProbeError::Short { .. } => "incomplete",
            ProbeError::Changed { .. } => "changed",
            ProbeError::Hash { .. } => "hash-mismatch",
        }
    }
}

/// Installs ring as rustls' crypto provider (once per process).
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Whether an error in reqwest's source chain is rustls' (hyper-rustls hands it over wrapped
/// in an `io::Error`, whose `source` skips the wrapped error itself).
fn is_tls_error(e: &(dyn std::error::Error + 'static)) -> bool {
    e.is::<rustls::Error>()
        || e.downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .is_some_and(|inner| inner.is::<rustls::Error>())
}

fn classify(url: &Url, e: &reqwest::Error, timeout: Duration) -> ProbeError {
    // The URL is in the error already; keeping it out of the detail also keeps a URL that
    // happens to contain "tls" or "certificate" from deciding the classification.
    let mut detail = e.to_string();
    if let Some(u) = e.url() {
        detail = detail.replace(&format!(" for url ({u})"), "");
    }
    let mut tls = false;
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        tls |= is_tls_error(s);
        detail = format!("{detail}: {s}");
        src = s.source();
    }
    let url = url.to_string();
    if e.is_timeout() {
        ProbeError::Timeout {
            url,
            secs: timeout.as_secs_f64(),
        }
    } else if e.is_redirect() {
        ProbeError::Redirect { url, detail }
    } else if tls || detail.contains("certificate") {
        ProbeError::Tls { url, detail }
    } else if e.is_connect() {
        ProbeError::Connect { url, detail }
    } else if detail.contains("message head is too large") {
        // hyper stops reading a response head at about 400 KB or 100 header lines.
        ProbeError::Body {
            url,
            detail: format!("response headers too large: {detail}"),
        }
    } else {
        ProbeError::Body { url, detail }
    }
}

/// A redirect that reached us instead of being followed: its target is not an HTTP URL the
/// client can follow (`file:`, `ftp:`, garbage), so the policy never saw it. Refused like any
/// redirect that leaves the mirror's scheme, host and port.
fn unfollowed_redirect(url: &Url, resp: &reqwest::Response) -> Option<ProbeError> {
    if !matches!(resp.status().as_u16(), 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let to = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned())
        .unwrap_or_else(|| "nowhere (no Location header)".into());
    Some(ProbeError::Redirect {
        url: url.to_string(),
        detail: format!(
            "HTTP {} to {to}: only redirects within the same scheme, host and port are followed",
            resp.status().as_u16()
        ),
    })
}

/// Where probes for one base URL go: a client plus the effective base URL.
///
/// With a `probe_address`, connections go to that IP and port while the TLS name stays the
/// URL's host and the Host header stays the URL's authority. (A resolver override alone
/// cannot do this: HTTP clients take the port from the URL, so the URL's port is replaced
/// with the probe port and the Host header is set explicitly.)
#[derive(Clone)]
pub struct Endpoint {
    client: Client,
    base: Url,
    host: Option<reqwest::header::HeaderValue>,
    /// Body bytes received by [`fetch`] and [`verify_file`] (`mirrordns_verify_bytes_total`).
    received: Option<Arc<AtomicU64>>,
}

impl Endpoint {
    /// Counts the body bytes this endpoint receives into `c` from now on.
    pub fn counting(mut self, c: Arc<AtomicU64>) -> Endpoint {
        self.received = Some(c);
        self
    }

    fn received(&self, n: usize) {
        if let Some(c) = &self.received {
            c.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        }
    }

    pub fn new(
        cfg: &HealthConfig,
        base: &Url,
        probe_address: Option<SocketAddr>,
    ) -> Result<Endpoint, ClientError> {
        install_crypto();
        let policy = reqwest::redirect::Policy::custom(|attempt| {
            let first = attempt.previous().first().cloned();
            match first {
                _ if attempt.previous().len() > MAX_REDIRECTS => {
                    attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
                }
                Some(first)
                    if first.scheme() == attempt.url().scheme()
                        && first.host_str() == attempt.url().host_str()
                        && first.port_or_known_default()
                            == attempt.url().port_or_known_default() =>
                {
                    attempt.follow()
                }
                _ => {
                    let to = attempt.url().to_string();
                    attempt.error(format!(
                        "to {to}: only redirects within the same scheme, host and port are followed"
                    ))
                }
            }
        });
        let mut b = Client::builder()
            .user_agent(concat!(
                "mirrordns/",
                env!("CARGO_PKG_VERSION"),
                " (health probe)"
            ))
            .connect_timeout(cfg.timeout)
            .redirect(policy)
            .no_proxy()
            .pool_max_idle_per_host(4);
        let mut effective = base.clone();
        let mut host = None;
        if let Some(addr) = probe_address
            && let Some(h) = base.host_str()
        {
            b = b.resolve(h, addr);
            let authority = match base.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            };
            host = reqwest::header::HeaderValue::from_str(&authority).ok();
            effective
                .set_port(Some(addr.port()))
                .map_err(|_| ClientError::ProbePort {
                    port: addr.port(),
                    base: base.clone(),
                })?;
        }
        if let Some(ca) = &cfg.ca_file {
            let pem = std::fs::read(ca).map_err(|error| ClientError::CaRead {
                path: ca.clone(),
                error,
            })?;
            let cert =
                reqwest::Certificate::from_pem(&pem).map_err(|error| ClientError::CaParse {
                    path: ca.clone(),
                    error,
                })?;
            b = b.tls_certs_merge([cert]);
        }
        let client = b.build().map_err(ClientError::Build)?;
        Ok(Endpoint {
            client,
            base: effective,
            host,
            received: None,
        })
    }

    /// `path` (relative) under the base URL.
    pub fn url(&self, path: &str) -> Result<Url, ProbeError> {
        self.base.join(path).map_err(|e| ProbeError::Body {
            url: format!("{}{path}", self.base),
            detail: format!("cannot form URL: {e}"),
        })
    }

    fn request(&self, method: reqwest::Method, url: &Url) -> reqwest::RequestBuilder {
        let r = self.client.request(method, url.clone());
        match &self.host {
            Some(h) => r.header(reqwest::header::HOST, h.clone()),
            None => r,
        }
    }

    /// Liveness: an HTTP answer below 500 for `url` within `timeout`. A 404 still proves the
    /// server is up (a lagging mirror lacks the newest manifest); whether its files are right
    /// is the integrity check's business. Returns the time to response headers.
    pub async fn alive(&self, url: &Url, timeout: Duration) -> Result<Duration, ProbeError> {
        let started = std::time::Instant::now();
        match tokio::time::timeout(timeout, self.request(reqwest::Method::GET, url).send()).await {
            Err(_) => Err(ProbeError::Timeout {
                url: url.to_string(),
                secs: timeout.as_secs_f64(),
            }),
            Ok(Err(e)) => Err(classify(url, &e, timeout)),
            Ok(Ok(r)) => match unfollowed_redirect(url, &r) {
                Some(e) => Err(e),
                None if r.status().as_u16() < 500 => Ok(started.elapsed()),
                None => Err(ProbeError::Status {
                    url: url.to_string(),
                    status: r.status().as_u16(),
                }),
            },
        }
    }
}

/// What a successful response looked like, for spot checks.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub length: Option<u64>,
}

impl Validators {
    /// Whether a validator both responses carry differs: then the file changed between them.
    pub fn differs_from(&self, other: &Validators) -> bool {
        fn both<T: PartialEq>(a: &Option<T>, b: &Option<T>) -> bool {
            matches!((a, b), (Some(x), Some(y)) if x != y)
        }
        both(&self.etag, &other.etag)
            || both(&self.last_modified, &other.last_modified)
            || both(&self.length, &other.length)
    }
}

fn validators(resp: &reqwest::Response) -> Validators {
    let h = |name: reqwest::header::HeaderName| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    Validators {
        etag: h(reqwest::header::ETAG),
        last_modified: h(reqwest::header::LAST_MODIFIED),
        // From the header, not the body: a HEAD response's body is empty whatever its length.
        length: h(reqwest::header::CONTENT_LENGTH).and_then(|v| v.trim().parse().ok()),
    }
}

async fn send(
    req: reqwest::RequestBuilder,
    url: &Url,
    timeout: Duration,
) -> Result<reqwest::Response, ProbeError> {
    match tokio::time::timeout(timeout, req.send()).await {
        Err(_) => Err(ProbeError::Timeout {
            url: url.to_string(),
            secs: timeout.as_secs_f64(),
        }),
        Ok(Err(e)) => Err(classify(url, &e, timeout)),
        Ok(Ok(r)) if r.status() == StatusCode::OK => Ok(r),
        Ok(Ok(r)) => Err(unfollowed_redirect(url, &r).unwrap_or(ProbeError::Status {
            url: url.to_string(),
            status: r.status().as_u16(),
        })),
    }
}

/// GETs `url` whole, refusing bodies over `cap` bytes. Returns the body and what the server
/// sent with it.
pub async fn fetch(
    ep: &Endpoint,
    url: &Url,
    cap: u64,
    timeout: Duration,
) -> Result<(Vec<u8>, Validators), ProbeError> {
    let started = std::time::Instant::now();
    let mut resp = send(ep.request(reqwest::Method::GET, url), url, timeout).await?;
    let seen = validators(&resp);
    if resp.content_length().is_some_and(|l| l > cap) {
        return Err(ProbeError::Body {
            url: url.to_string(),
            detail: format!("larger than the {cap} bytes allowed"),
        });
    }
    let mut body = Vec::new();
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, resp.chunk()).await {
            Err(_) => {
                return Err(ProbeError::Timeout {
                    url: url.to_string(),
                    secs: timeout.as_secs_f64(),
                });
            }
            Ok(Err(e)) => return Err(classify(url, &e, timeout)),
            Ok(Ok(None)) => return Ok((body, seen)),
            Ok(Ok(Some(c))) => {
                ep.received(c.len());
                if body.len() as u64 + c.len() as u64 > cap {
                    return Err(ProbeError::Body {
                        url: url.to_string(),
                        detail: format!("larger than the {cap} bytes allowed"),
                    });
                }
                body.extend_from_slice(&c);
            }
        }
    }
}

/// HEAD `url`: the validators, to compare against what was verified.
pub async fn head(ep: &Endpoint, url: &Url, timeout: Duration) -> Result<Validators, ProbeError> {
    let resp = send(ep.request(reqwest::Method::HEAD, url), url, timeout).await?;
    Ok(validators(&resp))
}

/// Streams `url` into SHA-256 and compares with the manifest entry. Aborts as soon as the body
/// is longer than `size`; `idle` bounds the wait for each chunk (slow-drip mirrors), `total`
/// the whole download. A file shorter than `size` is [`ProbeError::Short`], not a mismatch:
/// sync tools that write in place leave exactly that behind until they finish.
pub async fn verify_file(
    ep: &Endpoint,
    url: &Url,
    path: &str,
    size: u64,
    sha256: &[u8; 32],
    idle: Duration,
    total: Duration,
) -> Result<Validators, ProbeError> {
    let started = std::time::Instant::now();
    let mut resp = send(ep.request(reqwest::Method::GET, url), url, idle).await?;
    let v = validators(&resp);
    if let Some(len) = v.length {
        if len < size {
            return Err(ProbeError::Short {
                path: path.to_string(),
                expected: size,
                got: len,
            });
        }
        if len > size {
            return Err(ProbeError::Size {
                path: path.to_string(),
                expected: size,
                actual: len.to_string(),
                seen: Box::new(v),
            });
        }
    }
    let mut hasher = Sha256::new();
    let mut got: u64 = 0;
    loop {
        // Checked before each read, not only when one stalls: a drip that always has a few
        // bytes ready would otherwise never meet the deadline.
        let left = total.saturating_sub(started.elapsed());
        let too_long = ProbeError::DownloadTimeout {
            url: url.to_string(),
            limit: total.as_secs_f64(),
            got,
            size,
        };
        if left.is_zero() {
            return Err(too_long);
        }
        let chunk = match tokio::time::timeout(idle.min(left), resp.chunk()).await {
            Err(_) if left <= idle => return Err(too_long),
            Err(_) => {
                return Err(ProbeError::Stalled {
                    url: url.to_string(),
                    idle: idle.as_secs_f64(),
                    got,
                    size,
                });
            }
            Ok(Err(e)) => return Err(classify(url, &e, idle)),
            Ok(Ok(None)) => break,
            Ok(Ok(Some(c))) => c,
        };
        got += chunk.len() as u64;
        ep.received(chunk.len());
        if got > size {
            return Err(ProbeError::Size {
                path: path.to_string(),
                expected: size,
                actual: format!("more than {size}"),
                seen: Box::new(v),
            });
        }
        hasher.update(&chunk);
    }
    if got < size {
        return Err(ProbeError::Short {
            path: path.to_string(),
            expected: size,
            got,
        });
    }
    let actual: [u8; 32] = hasher.finalize().into();
    if &actual != sha256 {
        // A file rewritten or replaced while we read it (a sync writing in place) is not
        // wrong bytes: what a HEAD sees now differs from what the GET saw.
        if let Ok(now) = head(ep, url, idle).await
            && now.differs_from(&v)
        {
            return Err(ProbeError::Changed {
                path: path.to_string(),
            });
        }
        return Err(ProbeError::Hash {
            path: path.to_string(),
            expected: hex(sha256),
            actual: hex(&actual),
            seen: Box::new(v),
        });
    }
    Ok(v)
}
