//! The redirector's own HTTP/1.1 connection loop (src/redirect/http1.rs) over real sockets,
//! with raw `tokio::net::TcpStream` clients so that every byte on the wire is chosen:
//! pipelining, HTTP/1.0 and `Connection: close`, requests with bodies (answered, then the
//! connection closed, so that a body is never read as a request), heads too large or not
//! HTTP, and clients too slow to finish a head.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::redirect::*;

/// A response as read off the socket: status, head (lines after the status line), body.
#[derive(Debug)]
struct Resp {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Splits what the server sent into responses; `head_only[i]`: the i-th answers a HEAD.
fn responses(mut bytes: &[u8], head_only: &[bool]) -> Vec<Resp> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no end of head in {:?}", String::from_utf8_lossy(bytes)));
        let head = String::from_utf8(bytes[..end].to_vec()).unwrap();
        let (status_line, rest) = head.split_once("\r\n").unwrap_or((&head, ""));
        let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut r = Resp {
            status,
            head: rest.to_string(),
            body: Vec::new(),
        };
        let len: usize = match head_only.get(out.len()) {
            Some(true) => 0,
            _ => r.header("content-length").map_or(0, |l| l.parse().unwrap()),
        };
        r.body = bytes[end + 4..end + 4 + len].to_vec();
        bytes = &bytes[end + 4 + len..];
        out.push(r);
    }
    out
}

/// Writes `raw` in one write, then reads until the server closes: (bytes, time to close).
async fn exchange(s: &mut TcpStream, raw: &[u8]) -> (Vec<u8>, Duration) {
    s.write_all(raw).await.unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("the server closes the connection")
        .unwrap();
    (buf, started.elapsed())
}

/// Reads one whole response (by its content-length) without waiting for a close.
async fn read_one(s: &mut TcpStream, head_only: bool) -> Resp {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let r = &responses(&buf[..end + 4], &[true])[0];
            let len = if head_only {
                0
            } else {
                r.header("content-length").map_or(0, |l| l.parse().unwrap())
            };
            if buf.len() >= end + 4 + len {
                assert_eq!(buf.len(), end + 4 + len, "more than one response");
                return responses(&buf, &[head_only]).remove(0);
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("a response within 10 s")
            .unwrap();
        assert!(n > 0, "closed before a whole response: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\n{extra}\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pipelined_requests_are_answered_in_order() {
    let (lab, server, addr) = one_mirror("").await;
    let file = format!("/{V3}/{TGZ}");
    let mirror = lab.mirror("good").url();
    // Three requests in one write: a redirect, a 404, a HEAD of the redirect that closes.
    let raw = get(&file, "")
        + &get("/tool/none", "")
        + &format!("HEAD {file} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
    let mut s = TcpStream::connect(addr).await.unwrap();
    let (bytes, _) = exchange(&mut s, raw.as_bytes()).await;
    let r = responses(&bytes, &[false, false, true]);
    assert_eq!(
        r.iter().map(|r| r.status).collect::<Vec<_>>(),
        [302, 404, 302]
    );
    assert!(r[0].header("location").unwrap().starts_with(&mirror));
    assert_eq!(r[0].header("content-length"), Some("0"));
    assert_eq!(r[0].header("connection"), None);
    assert_eq!(r[1].body, b"not in any manifest\n");
    assert_eq!(r[2].header("location"), r[0].header("location"));
    assert_eq!(r[2].header("connection"), Some("close"));
    // HEAD: the redirect's headers, no length of an empty body, no body.
    assert_eq!(r[2].header("content-length"), None);

    // A long pipeline in several writes, the heads cut anywhere: every request answered.
    let n = 100;
    let raw: String =
        (0..n).map(|_| get(&file, "")).collect::<String>() + &get(&file, "Connection: close\r\n");
    let mut s = TcpStream::connect(addr).await.unwrap();
    let reader = {
        let bytes = raw.into_bytes();
        async move {
            for piece in bytes.chunks(997) {
                s.write_all(piece).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let mut buf = Vec::new();
            tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
                .await
                .unwrap()
                .unwrap();
            buf
        }
    };
    let bytes = reader.await;
    let r = responses(&bytes, &[]);
    assert_eq!(r.len(), n + 1);
    assert!(r.iter().all(|r| r.status == 302));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http10_and_connection_close_end_the_connection() {
    // A long idle timeout: a close seen within a second is the server's answer, not idleness.
    let (_lab, server, addr) = one_mirror("idle-timeout = \"60s\"").await;
    let file = format!("/{V3}/{TGZ}");
    for (raw, version, connection) in [
        (
            format!("GET {file} HTTP/1.0\r\nHost: {HOST}\r\n\r\n"),
            "HTTP/1.0",
            None,
        ),
        (
            get(&file, "Connection: close\r\n"),
            "HTTP/1.1",
            Some("close"),
        ),
        (
            get(&file, "Connection: keep-alive, Close\r\n"),
            "HTTP/1.1",
            Some("close"),
        ),
    ] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let (bytes, took) = exchange(&mut s, raw.as_bytes()).await;
        assert!(
            took < Duration::from_secs(2),
            "{raw:?}: closed after {took:?}"
        );
        assert!(bytes.starts_with(version.as_bytes()), "{raw:?}");
        let r = responses(&bytes, &[]);
        assert_eq!(r.len(), 1, "{raw:?}");
        assert_eq!(r[0].status, 302);
        assert_eq!(r[0].header("connection"), connection, "{raw:?}");
    }
    // HTTP/1.0 asking for keep-alive keeps it, and says so.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let one = format!("GET {file} HTTP/1.0\r\nHost: {HOST}\r\nConnection: keep-alive\r\n\r\n");
    for _ in 0..3 {
        s.write_all(one.as_bytes()).await.unwrap();
        let r = read_one(&mut s, false).await;
        assert_eq!(r.status, 302);
        assert_eq!(r.header("connection"), Some("keep-alive"));
    }
    // And HTTP/1.1 keeps it by default.
    let mut s = TcpStream::connect(addr).await.unwrap();
    for _ in 0..3 {
        s.write_all(get(&file, "").as_bytes()).await.unwrap();
        let r = read_one(&mut s, false).await;
        assert_eq!((r.status, r.header("connection")), (302, None));
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_body_is_never_read_as_the_next_request() {
    let (_lab, server, addr) = one_mirror("idle-timeout = \"60s\"").await;
    let file = format!("/{V3}/{TGZ}");
    let responses_before = samples(&server, "mirrordns_redirect_responses_total");
    // Each body is itself a request for the file: it must not be answered.
    let inner = get(&file, "");
    let cases = [
        format!(
            "POST {file} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {}\r\n\r\n{inner}",
            inner.len()
        ),
        // A body shorter than announced, then what looks like a request.
        format!("POST {file} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 5\r\n\r\nab{inner}"),
        format!(
            "POST {file} HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{inner}"
        ),
        // Both framings at once: the classic smuggling pair.
        format!(
            "POST {file} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{inner}"
        ),
        // A GET with a body: answered (a redirect), then closed all the same.
        format!("GET {file} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 3\r\n\r\nabc{inner}"),
        // Expect: 100-continue and no body sent: the final answer at once, not a stall.
        format!(
            "PUT {file} HTTP/1.1\r\nHost: {HOST}\r\nExpect: 100-continue\r\nContent-Length: 100000\r\n\r\n"
        ),
    ];
    let mut by_code = std::collections::BTreeMap::new();
    for raw in &cases {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let (bytes, took) = exchange(&mut s, raw.as_bytes()).await;
        assert!(took < Duration::from_secs(3), "{raw:?}: {took:?}");
        let r = responses(&bytes, &[]);
        assert_eq!(r.len(), 1, "{raw:?}: {r:?}");
        let want = if raw.starts_with("GET") { 302 } else { 405 };
        assert_eq!(r[0].status, want, "{raw:?}");
        assert_eq!(r[0].header("connection"), Some("close"), "{raw:?}");
        if want == 405 {
            assert_eq!(r[0].header("allow"), Some("GET, HEAD"));
        }
        *by_code.entry(want).or_insert(0.0) += 1.0;
    }
    // A bodiless request keeps the connection: Content-Length 0 is no body.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let raw = format!("PUT {file} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 0\r\n\r\n")
        + &get(&file, "Connection: close\r\n");
    let (bytes, _) = exchange(&mut s, raw.as_bytes()).await;
    let r = responses(&bytes, &[]);
    assert_eq!(r.iter().map(|r| r.status).collect::<Vec<_>>(), [405, 302]);
    assert_eq!(r[0].header("connection"), None);
    let after = samples(&server, "mirrordns_redirect_responses_total");
    assert_eq!(
        delta(&responses_before, &after, "code=\"405\""),
        by_code[&405] + 1.0
    );
    assert_eq!(
        delta(&responses_before, &after, "code=\"302\""),
        by_code[&302] + 1.0
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn heads_too_large_or_not_http_are_refused_and_closed() {
    let (_lab, server, addr) = one_mirror("idle-timeout = \"60s\"").await;
    let file = format!("/{V3}/{TGZ}");
    let closed = samples(&server, "mirrordns_redirect_connections_closed_total");
    let cases: Vec<(Vec<u8>, u16)> = vec![
        // One header field past the 16 KiB head limit.
        (
            get(&file, &format!("X-Big: {}\r\n", "a".repeat(17 * 1024))).into_bytes(),
            431,
        ),
        // A head that never ends, past the limit.
        (
            format!("GET {file} HTTP/1.1\r\nX-Big: {}", "a".repeat(20 * 1024)).into_bytes(),
            431,
        ),
        // Too many header lines.
        (get(&file, &"A: b\r\n".repeat(100)).into_bytes(), 431),
        (b"garbage\r\n\r\n".to_vec(), 400),
        // A TLS ClientHello on the plain port.
        (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
            400,
        ),
        (format!("GET {file} HTTP/2.0\r\n\r\n").into_bytes(), 400),
        (
            get(&file, "Content-Length: 1\r\nContent-Length: 2\r\n").into_bytes(),
            400,
        ),
        (get(&file, "Content-Length: x\r\n").into_bytes(), 400),
        (get(&file, "Bad Header: x\r\n").into_bytes(), 400),
        (
            format!("GET tool HTTP/1.1\r\nHost: {HOST}\r\n\r\n").into_bytes(),
            400,
        ),
    ];
    for (raw, code) in &cases {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let (bytes, took) = exchange(&mut s, raw).await;
        let shown = String::from_utf8_lossy(&raw[..raw.len().min(60)]).into_owned();
        assert!(took < Duration::from_secs(3), "{shown:?}: {took:?}");
        let r = responses(&bytes, &[]);
        assert_eq!(r.len(), 1, "{shown:?}: {r:?}");
        assert_eq!(r[0].status, *code, "{shown:?}");
        assert_eq!(r[0].header("connection"), Some("close"));
    }
    let after = samples(&server, "mirrordns_redirect_connections_closed_total");
    assert_eq!(
        delta(&closed, &after, "reason=\"malformed\""),
        cases.len() as f64
    );
    // A head just under the limit is answered.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let pad = 16 * 1024 - get(&file, "Connection: close\r\nX-Pad: \r\n").len() - 1;
    let raw = get(
        &file,
        &format!("Connection: close\r\nX-Pad: {}\r\n", "p".repeat(pad)),
    );
    assert!(raw.len() < 16 * 1024);
    let (bytes, _) = exchange(&mut s, raw.as_bytes()).await;
    assert_eq!(responses(&bytes, &[])[0].status, 302);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_head_trickling_in_is_cut_at_the_idle_timeout() {
    let (_lab, server, addr) = one_mirror("idle-timeout = \"1s\"").await;
    let file = format!("/{V3}/{TGZ}");
    let closed = samples(&server, "mirrordns_redirect_connections_closed_total");
    // One byte every 100 ms: bytes keep coming, but the head is never done in time.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let raw = get(&file, &format!("X-Slow: {}\r\n", "s".repeat(100)));
    let mut cut = None;
    for b in raw.as_bytes() {
        if s.write_all(&[*b]).await.is_err() {
            cut = Some(started.elapsed());
            break;
        }
        let mut probe = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut probe)).await {
            Err(_) => {}
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut = Some(started.elapsed());
                break;
            }
            Ok(Ok(n)) => panic!("answered a partial head: {:?}", &probe[..n]),
        }
    }
    let cut = cut.expect("the slow head was cut");
    assert!(
        cut >= Duration::from_millis(900) && cut < Duration::from_secs(3),
        "cut after {cut:?}"
    );
    // After a response, the connection may stay idle for the timeout, then is closed.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(get(&file, "").as_bytes()).await.unwrap();
    assert_eq!(read_one(&mut s, false).await.status, 302);
    let idle_from = Instant::now();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    let idle = idle_from.elapsed();
    assert!(rest.is_empty());
    assert!(
        idle >= Duration::from_millis(900) && idle < Duration::from_secs(3),
        "{idle:?}"
    );
    let after = samples(&server, "mirrordns_redirect_connections_closed_total");
    assert_eq!(delta(&closed, &after, "reason=\"header_timeout\""), 1.0);
    assert_eq!(delta(&closed, &after, "reason=\"idle\""), 1.0);
    server.shutdown().await;
}
