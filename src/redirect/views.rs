//! The other views of a file: a Metalink 4 document (RFC 5854) that download managers fetch
//! from several mirrors and check the hash with, and the mirror list (HTML, or JSON with
//! `Accept: application/json`) that shows every candidate and why it is or is not used.

use std::fmt::Write;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use super::answer::Body;
use crate::config::Config;
use crate::manifest::hex;
use crate::routing::files::{Candidate, Downloads, FileRoute, ReleaseRoute};
use crate::schema::{MirrorCandidate, MirrorList};

/// One file as a view shows it.
pub struct FileView<'a> {
    /// Relative to the origin's base URL.
    pub path: &'a str,
    pub file: &'a FileRoute,
    pub release: &'a ReleaseRoute,
    /// Every mirror in the client's order, and why.
    pub candidates: Vec<(usize, Candidate)>,
    pub dl: &'a Downloads,
    pub config: &'a Config,
}

impl FileView<'_> {
    fn url(&self, m: usize) -> Option<String> {
        self.dl.bases[m]
            .as_ref()
            .map(|b| format!("{b}{}", self.file.url_path))
    }

    fn origin_url(&self) -> Option<String> {
        (self.dl.origin.as_ref()).map(|b| format!("{b}{}", self.file.url_path))
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn respond(body: String, content_type: &'static str) -> Response<Body> {
    let mut r = Response::new(Bytes::from(body));
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The Metalink: size, SHA-256 and the mirrors that verified the file, nearest first (the
/// origin alone when none has).
pub fn metalink(v: &FileView) -> Response<Body> {
    let name = v.path.rsplit('/').next().unwrap_or(v.path);
    let mut x = String::new();
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str("<metalink xmlns=\"urn:ietf:params:xml:ns:metalink\">\n");
    x.push_str("  <generator>mirrordns</generator>\n");
    let _ = writeln!(x, "  <file name=\"{}\">", escape(name));
    let _ = writeln!(x, "    <identity>{}</identity>", escape(&v.release.release));
    let _ = writeln!(x, "    <version>{}</version>", escape(&v.release.version));
    if let Some(size) = v.file.size {
        let _ = writeln!(x, "    <size>{size}</size>");
    }
    let _ = writeln!(
        x,
        "    <hash type=\"sha-256\">{}</hash>",
        hex(&v.file.sha256)
    );
    let mut priority = 0;
    for &(m, c) in &v.candidates {
        if !matches!(c, Candidate::Used | Candidate::Alternative) {
            continue;
        }
        let Some(url) = v.url(m) else { continue };
        priority += 1;
        let loc = v.config.mirrors[m]
            .country
            .map(|cc| format!(" location=\"{}\"", cc.as_str().to_ascii_lowercase()))
            .unwrap_or_default();
        let _ = writeln!(
            x,
            "    <url{loc} priority=\"{priority}\">{}</url>",
            escape(&url)
        );
    }
    if priority == 0
        && let Some(url) = v.origin_url()
    {
        let _ = writeln!(x, "    <url priority=\"1\">{}</url>", escape(&url));
    }
    x.push_str("  </file>\n</metalink>\n");
    respond(x, "application/metalink4+xml")
}

/// Every candidate mirror in the client's order with why it is or is not used.
pub fn mirrorlist(v: &FileView, json: bool, client: &str) -> Response<Body> {
    let doc = MirrorList {
        path: v.path.to_string(),
        release: v.release.release.clone(),
        version: v.release.version.clone(),
        size: v.file.size,
        sha256: hex(&v.file.sha256),
        client: client.to_string(),
        mirrors: v
            .candidates
            .iter()
            .map(|&(m, c)| MirrorCandidate {
                name: v.config.mirrors[m].name.clone(),
                url: v.url(m),
                country: v.config.mirrors[m]
                    .country
                    .map(|cc| cc.as_str().to_string()),
                state: c.as_str().to_string(),
                used: c == Candidate::Used,
            })
            .collect(),
        origin: v.origin_url(),
    };
    if json {
        let body = serde_json::to_string_pretty(&doc).unwrap_or_default();
        return respond(body, "application/json");
    }
    let mut h = String::new();
    h.push_str("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Mirrors for ");
    h.push_str(&escape(&doc.path));
    h.push_str("</title></head><body>\n");
    let _ = writeln!(
        h,
        "<h1>{}</h1>\n<p>{} {} &middot; {} bytes &middot; SHA-256 <code>{}</code></p>",
        escape(&doc.path),
        escape(&doc.release),
        escape(&doc.version),
        doc.size.map_or("?".to_string(), |s| s.to_string()),
        doc.sha256
    );
    let _ = writeln!(h, "<p>Order for client {}:</p>", escape(&doc.client));
    h.push_str("<table>\n<tr><th>mirror</th><th>country</th><th>state</th><th>URL</th></tr>\n");
    for m in &doc.mirrors {
        let url = m.url.as_deref().map(escape).unwrap_or_default();
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><a href=\"{url}\">{url}</a></td></tr>",
            escape(&m.name),
            m.country.as_deref().unwrap_or(""),
            escape(&m.state),
        );
    }
    h.push_str("</table>\n");
    if let Some(o) = &doc.origin {
        let _ = writeln!(h, "<p>Origin: <a href=\"{0}\">{0}</a></p>", escape(o));
    }
    h.push_str("</body></html>\n");
    respond(h, "text/html; charset=utf-8")
}
