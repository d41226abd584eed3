//! One redirector connection: a small HTTP/1.1 server loop over `httparse`, generic over the
//! stream so that plain TCP and rustls use the same code. hyper's connection handling cost
//! more per request than the whole answer (bench/README.md); what a redirector needs of
//! HTTP/1.1 is small enough to do here with care:
//!
//! - every complete request already read is answered, in order, and the responses go out in
//!   one write (pipelining costs one system call per batch, not per request);
//! - keep-alive by default in HTTP/1.1, close by default in HTTP/1.0 (`Connection:
//!   keep-alive` keeps it), `Connection: close` honoured and echoed;
//! - a request that announces a body (`Content-Length` above 0, or any `Transfer-Encoding`)
//!   is answered, then the connection is closed without reading another request, so that a
//!   body can never be taken for the next request (no smuggling, no desynchronisation); GET
//!   and HEAD carry no body, and every other method is refused with 405 anyway;
//! - a request head longer than [`MAX_HEAD`] or with more than [`MAX_HEADERS`] lines: 431 and
//!   close; a head httparse cannot read: 400 and close;
//! - one deadline for the next request head, `idle-timeout` after the last response (or the
//!   accept): it covers both an idle keep-alive connection and a head that trickles in
//!   (slowloris), since bytes of an incomplete head do not move it; writes have the same
//!   deadline, so a client that stops reading is cut too.
//!
//! Responses are encoded as hyper encoded them (lower-case names, `content-length`, `date`,
//! `connection` when the connection's fate differs from the version's default), so clients
//! see the same bytes apart from `connection: close` now also on answers to requests with a
//! body.

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::mem::MaybeUninit;
use std::pin::{Pin, pin};
use std::sync::atomic::Ordering::Relaxed;
use std::task::Poll;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, Sleep};

use super::{Conn, answer, now_ms};

/// Longest request head (request line and header lines) accepted, in bytes: past it, 431.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header lines in a request head: past it, 431.
pub const MAX_HEADERS: usize = 64;
/// The read buffer at first; grown to [`MAX_HEAD`] only for a longer head. Heads from
/// download clients are 100-500 bytes, and a full buffer of pipelined ones is one batch.
const FIRST_BUF: usize = 4 * 1024;
/// Pending responses past this size are written before more requests are parsed.
const MAX_OUT: usize = 64 * 1024;
/// A connection we close reads and drops what the client still sends, for at most this long
/// and [`LINGER_BYTES`], so that unread data does not make the kernel answer with a reset that
/// can destroy the response before the client reads it.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;

/// Serves requests on `io` until the client leaves, a request asks to close, or a deadline
/// passes. Never panics on input; every way out is counted where it is the server's choice.
pub(super) async fn serve<S>(mut io: S, conn: &Conn)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let stats = &conn.shared.stats;
    let mut buf = vec![0u8; FIRST_BUF];
    // buf[start..end] is read and not yet answered.
    let (mut start, mut end) = (0usize, 0usize);
    let mut out: Vec<u8> = Vec::with_capacity(1024);
    let mut deadline = Instant::now() + conn.idle;
    let mut timer = pin!(tokio::time::sleep_until(deadline));
    loop {
        // Answer every complete request read so far, in order.
        let mut ending = false;
        let mut cut = false;
        if start < end {
            let table = conn.shared.table.load();
            while start < end && out.len() < MAX_OUT {
                match parse(&buf[start..end]) {
                    Parsed::Head(head, len) => {
                        start += len;
                        let resp = answer::answer(&head.req(conn.peer), &table, conn.index, stats);
                        encode(&mut out, &resp, &head);
                        if head.close {
                            ending = true;
                            break;
                        }
                    }
                    Parsed::Partial if end - start < MAX_HEAD => break,
                    Parsed::Partial | Parsed::TooLarge => {
                        refuse(&mut out, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, conn);
                        ending = true;
                        break;
                    }
                    Parsed::Malformed => {
                        refuse(&mut out, StatusCode::BAD_REQUEST, conn);
                        ending = true;
                        break;
                    }
                }
            }
            cut = !ending && start < end && out.len() >= MAX_OUT;
        }
        if !out.is_empty() {
            // The next head, and this write, get a full idle-timeout from now.
            deadline = Instant::now() + conn.idle;
            conn.last.store(now_ms(), Relaxed);
            let write = async {
                io.write_all(&out).await?;
                io.flush().await
            };
            match until(write, &mut timer, deadline).await {
                Some(Ok(())) => {}
                Some(Err(_)) => return,
                None => {
                    stats.idle_closed.fetch_add(1, Relaxed);
                    return;
                }
            }
            out.clear();
            if out.capacity() > MAX_OUT {
                out.shrink_to(1024);
            }
        }
        if ending {
            linger(&mut io, &mut buf).await;
            return;
        }
        if start > 0 {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
        }
        if cut {
            // Stopped at MAX_OUT, maybe with whole requests left: answer them before reading.
            continue;
        }
        if end == buf.len() {
            // end < MAX_HEAD here: a partial head that long was refused above.
            buf.resize((buf.len() * 2).min(MAX_HEAD), 0);
        }
        match until(io.read(&mut buf[end..]), &mut timer, deadline).await {
            Some(Ok(0)) | Some(Err(_)) => return,
            Some(Ok(n)) => end += n,
            None if end == 0 => {
                stats.idle_closed.fetch_add(1, Relaxed);
                return;
            }
            None => {
                stats.header_timeouts.fetch_add(1, Relaxed);
                return;
            }
        }
    }
}

/// `f`, unless `deadline` passes first (`None`). One timer per connection: it is only reset
/// when it fires before the deadline, which has moved since it was set, so that a busy
/// keep-alive connection does not touch the timer wheel on every request.
async fn until<F: Future>(
    f: F,
    timer: &mut Pin<&mut Sleep>,
    deadline: Instant,
) -> Option<F::Output> {
    let mut f = pin!(f);
    poll_fn(|cx| {
        if let Poll::Ready(v) = f.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        while timer.as_mut().poll(cx).is_ready() {
            if timer.deadline() >= deadline {
                return Poll::Ready(None);
            }
            timer.as_mut().reset(deadline);
        }
        Poll::Pending
    })
    .await
}

/// Closes our side (TLS: close_notify), then reads and drops what the client still sends.
async fn linger<S>(io: &mut S, buf: &mut [u8])
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = tokio::time::timeout(LINGER, async {
        if io.shutdown().await.is_err() {
            return;
        }
        let mut left = LINGER_BYTES;
        while left > 0 {
            match io.read(buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// A request head as httparse read it: what [`answer::answer`] reads, and how to frame the
/// response.
#[derive(Debug)]
struct Head<'a> {
    method: Method,
    path: &'a str,
    query: Option<&'a str>,
    host: Option<&'a str>,
    forwarded: Option<&'a str>,
    x_forwarded_for: Option<&'a str>,
    range: Option<&'a str>,
    accept: Option<&'a str>,
    http10: bool,
    /// The connection ends after this response: asked for, HTTP/1.0's default, or a body.
    close: bool,
}

impl Head<'_> {
    fn req(&self, peer: std::net::SocketAddr) -> answer::Req<'_> {
        answer::Req {
            method: &self.method,
            path: self.path,
            query: self.query,
            host: self.host,
            forwarded: self.forwarded,
            x_forwarded_for: self.x_forwarded_for,
            range: self.range,
            accept: self.accept,
            peer: peer.ip(),
        }
    }
}

#[derive(Debug)]
enum Parsed<'a> {
    /// A whole head, and its length in bytes.
    Head(Head<'a>, usize),
    Partial,
    /// More header lines than [`MAX_HEADERS`].
    TooLarge,
    Malformed,
}

/// The first request head in `buf`.
fn parse(buf: &[u8]) -> Parsed<'_> {
    let mut slots = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parsed::TooLarge,
        Err(_) => return Parsed::Malformed,
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Parsed::Malformed;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parsed::Malformed;
    };
    let http10 = version == 0;
    let mut h = Fields::default();
    for f in req.headers.iter() {
        if !h.add(f.name, f.value) {
            return Parsed::Malformed;
        }
    }
    let Some((path, query, authority)) = split_target(target) else {
        return Parsed::Malformed;
    };
    // Any other target form (CONNECT's host:port) is only acceptable with a method that is
    // refused anyway.
    if path.is_empty() && (method == Method::GET || method == Method::HEAD) {
        return Parsed::Malformed;
    }
    let close = h.body || h.close || (http10 && !h.keep_alive);
    Parsed::Head(
        Head {
            method,
            path,
            query,
            host: h.host.flatten().or(authority),
            forwarded: h.forwarded.flatten(),
            x_forwarded_for: h.x_forwarded_for.flatten(),
            range: h.range.flatten(),
            accept: h.accept.flatten(),
            http10,
            close,
        },
        len,
    )
}

/// The header fields a request's answer or framing depends on. Of a repeated field the
/// first counts, and one that is not visible ASCII counts as absent (as `HeaderValue::to_str`).
#[derive(Default)]
struct Fields<'a> {
    host: Option<Option<&'a str>>,
    forwarded: Option<Option<&'a str>>,
    x_forwarded_for: Option<Option<&'a str>>,
    range: Option<Option<&'a str>>,
    accept: Option<Option<&'a str>>,
    content_length: Option<u64>,
    /// A `Content-Length` above 0 or any `Transfer-Encoding`.
    body: bool,
    close: bool,
    keep_alive: bool,
}

impl<'a> Fields<'a> {
    /// Takes one field; false when it makes the request malformed (a `Content-Length` that is
    /// not a number, or two that differ).
    fn add(&mut self, name: &str, value: &'a [u8]) -> bool {
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        let slot = match name.len() {
            4 if is("host") => &mut self.host,
            5 if is("range") => &mut self.range,
            6 if is("accept") => &mut self.accept,
            9 if is("forwarded") => &mut self.forwarded,
            15 if is("x-forwarded-for") => &mut self.x_forwarded_for,
            10 if is("connection") => {
                for token in value.split(|b| *b == b',') {
                    let t = token.trim_ascii();
                    self.close |= t.eq_ignore_ascii_case(b"close");
                    self.keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
                }
                return true;
            }
            14 if is("content-length") => {
                // A list of equal values is allowed (RFC 9112 6.3): each must agree.
                for v in value.split(|b| *b == b',') {
                    let Some(n) = decimal(v.trim_ascii()) else {
                        return false;
                    };
                    if self.content_length.is_some_and(|c| c != n) {
                        return false;
                    }
                    self.content_length = Some(n);
                    self.body |= n > 0;
                }
                return true;
            }
            17 if is("transfer-encoding") => {
                self.body = true;
                return true;
            }
            _ => return true,
        };
        if slot.is_none() {
            *slot = Some(visible(value));
        }
        true
    }
}

/// 1*DIGIT, at most 18 digits (no overflow).
fn decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

/// A field value of visible ASCII, spaces and tabs.
fn visible(v: &[u8]) -> Option<&str> {
    if v.iter().all(|&b| (b >= 0x20 && b != 0x7f) || b == b'\t') && v.is_ascii() {
        std::str::from_utf8(v).ok()
    } else {
        None
    }
}

/// (path, query, authority) of a request target: origin form `/p?q`, absolute form
/// `http://host/p?q` (path `/` when empty), `*`; anything else gives an empty path, for a
/// method that is refused anyway. None for an absolute form without a host, or raw non-ASCII.
fn split_target(target: &str) -> Option<(&str, Option<&str>, Option<&str>)> {
    // Raw non-ASCII is not a URI (RFC 3986); httparse lets UTF-8 through, hyper refused it.
    if !target.is_ascii() {
        return None;
    }
    fn split(pq: &str) -> (&str, Option<&str>) {
        match pq.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (pq, None),
        }
    }
    if target.starts_with('/') {
        let (p, q) = split(target);
        return Some((p, q, None));
    }
    if target == "*" {
        return Some(("*", None, None));
    }
    let scheme_end = target.find("://").unwrap_or(0);
    let scheme = &target[..scheme_end];
    if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") {
        let rest = &target[scheme_end + 3..];
        let at = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, pq) = rest.split_at(at);
        if authority.is_empty() {
            return None;
        }
        let (p, q) = split(pq);
        return Some((if p.is_empty() { "/" } else { p }, q, Some(authority)));
    }
    Some(("", None, None))
}

/// Appends `resp` to `out` as hyper would have written it for `head`.
fn encode(out: &mut Vec<u8>, resp: &Response<Bytes>, head: &Head) {
    let status = resp.status();
    out.extend_from_slice(if head.http10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in resp.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match (head.http10, head.close) {
        (false, true) => out.extend_from_slice(b"connection: close\r\n"),
        (true, false) => out.extend_from_slice(b"connection: keep-alive\r\n"),
        _ => {}
    }
    let body = resp.body();
    let head_only = head.method == Method::HEAD;
    // hyper's rule: HEAD says the length the GET would have, but not an implicit 0.
    if !head_only || !body.is_empty() {
        out.extend_from_slice(b"content-length: ");
        push_decimal(out, body.len());
        out.extend_from_slice(b"\r\n");
    }
    push_date(out);
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(body);
    }
}

/// The response to a head we could not read: no body, and the connection closes.
fn refuse(out: &mut Vec<u8>, code: StatusCode, conn: &Conn) {
    conn.shared.stats.response(code.as_u16());
    conn.shared.stats.malformed.fetch_add(1, Relaxed);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(code.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(code.canonical_reason().unwrap_or("<none>").as_bytes());
    out.extend_from_slice(b"\r\nconnection: close\r\ncontent-length: 0\r\n");
    push_date(out);
    out.extend_from_slice(b"\r\n");
}

fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// `date: <IMF-fixdate>\r\n`, formatted once a second per thread.
fn push_date(out: &mut Vec<u8>) {
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != secs {
            *d = (secs, httpdate::fmt_http_date(now));
        }
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(d.1.as_bytes());
        out.extend_from_slice(b"\r\n");
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Head<'_> {
        match parse(raw.as_bytes()) {
            Parsed::Head(h, n) => {
                assert_eq!(n, raw.len(), "{raw:?}");
                h
            }
            other => panic!("{raw:?}: {other:?}"),
        }
    }

    #[test]
    fn framing() {
        let h = head("GET /a?b HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(
            (h.path, h.query, h.host, h.close),
            ("/a", Some("b"), Some("x"), false)
        );
        assert!(head("GET /a HTTP/1.0\r\nHost: x\r\n\r\n").close);
        assert!(!head("GET /a HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").close);
        assert!(head("GET /a HTTP/1.1\r\nConnection: foo, close\r\n\r\n").close);
        assert!(head("POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\n").close);
        assert!(!head("PUT /a HTTP/1.1\r\nContent-Length: 0\r\n\r\n").close);
        assert!(head("POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").close);
        assert!(head("GET /a HTTP/1.1\r\nContent-Length: 2, 2\r\n\r\n").close);
        for bad in [
            "GET /a HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
            "GET /a HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "GET /a HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "GET a HTTP/1.1\r\n\r\n",
            "GET http:///a HTTP/1.1\r\n\r\n",
            "garbage\r\n\r\n",
            "GET /a HTTP/2.0\r\n\r\n",
            "GET /a HTTP/1.1\r\nBad Name: x\r\n\r\n",
            "GET /caf\u{e9} HTTP/1.1\r\n\r\n",
        ] {
            assert!(
                matches!(parse(bad.as_bytes()), Parsed::Malformed),
                "{bad:?}"
            );
        }
        assert!(matches!(parse(b"GET /a HTTP/1.1\r\nHost"), Parsed::Partial));
        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "A: b\r\n".repeat(MAX_HEADERS + 1)
        );
        assert!(matches!(parse(many.as_bytes()), Parsed::TooLarge));
    }

    #[test]
    fn targets_and_fields() {
        let h = head("GET HTTP://h.example:80?x HTTP/1.1\r\n\r\n");
        assert_eq!(
            (h.path, h.query, h.host),
            ("/", Some("x"), Some("h.example:80"))
        );
        // The Host field wins over the absolute form's authority, as with hyper.
        assert_eq!(
            head("GET http://a/b HTTP/1.1\r\nHost: c\r\n\r\n").host,
            Some("c")
        );
        assert_eq!(head("OPTIONS * HTTP/1.1\r\n\r\n").path, "*");
        assert_eq!(head("CONNECT a:443 HTTP/1.1\r\n\r\n").path, "");
        let h = head(
            "GET /a HTTP/1.1\r\nX-Forwarded-For: 1.2.3.4\r\nx-forwarded-for: 5.6.7.8\r\n\
             RANGE: bytes=1-\r\naccept: application/json\r\nForwarded: for=1.1.1.1\r\n\r\n",
        );
        assert_eq!(h.x_forwarded_for, Some("1.2.3.4"));
        assert_eq!(h.range, Some("bytes=1-"));
        assert_eq!(h.accept, Some("application/json"));
        assert_eq!(h.forwarded, Some("for=1.1.1.1"));
        // Not visible ASCII: absent, as hyper's to_str() made it.
        let raw = b"GET /a HTTP/1.1\r\nHost: \xc3\xa9\r\n\r\n";
        match parse(raw) {
            Parsed::Head(h, _) => assert_eq!(h.host, None),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn encoding_matches_hyper() {
        let mut r = Response::new(Bytes::from_static(b"hi\n"));
        *r.status_mut() = StatusCode::NOT_FOUND;
        r.headers_mut()
            .insert("cache-control", http::HeaderValue::from_static("no-store"));
        let mut out = Vec::new();
        encode(
            &mut out,
            &r,
            &head("GET /a HTTP/1.1\r\nConnection: close\r\n\r\n"),
        );
        let text = String::from_utf8(out).unwrap();
        let (top, date) = text.split_once("date: ").unwrap();
        assert_eq!(
            top,
            "HTTP/1.1 404 Not Found\r\ncache-control: no-store\r\nconnection: close\r\n\
             content-length: 3\r\n"
        );
        assert_eq!(date.len(), 29 + 4 + 3, "{date:?}");
        assert!(date.ends_with("GMT\r\n\r\nhi\n"), "{date:?}");
        // HEAD: the length but no body; an empty body's implicit 0 is not written.
        let mut out = Vec::new();
        encode(
            &mut out,
            &r,
            &head("HEAD /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.0 404 Not Found\r\n"), "{text}");
        assert!(text.contains("connection: keep-alive\r\ncontent-length: 3\r\n"));
        assert!(text.ends_with("GMT\r\n\r\n"), "{text}");
        *r.body_mut() = Bytes::new();
        let mut out = Vec::new();
        encode(&mut out, &r, &head("HEAD /a HTTP/1.1\r\n\r\n"));
        assert!(!String::from_utf8(out).unwrap().contains("content-length"));
        let mut n = Vec::new();
        push_decimal(&mut n, 0);
        push_decimal(&mut n, 1234567);
        assert_eq!(n, b"01234567");
    }
}
