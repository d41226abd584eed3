//! One request -> one response, from the routing table alone: the redirect to the mirror
//! that verified the file, its digests and alternatives, the Metalink and mirror-list views,
//! `latest`, withdrawn versions, and the refusals. Counting is the only side effect.

use std::net::IpAddr;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};

use super::counters::RedirectStats;
use super::request::{self, Reject};
use super::views;
use crate::config::{Redirect, Unlisted};
use crate::routing::files::{Downloads, FileRoute, Picks};
use crate::routing::{RoutingTable, ServiceRoute};

pub type Body = Bytes;

/// The parts of a request the answer depends on.
#[derive(Debug, Clone, Copy)]
pub struct Req<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub host: Option<&'a str>,
    pub forwarded: Option<&'a str>,
    pub x_forwarded_for: Option<&'a str>,
    pub range: Option<&'a str>,
    pub accept: Option<&'a str>,
    pub peer: IpAddr,
}

/// What the redirector `idx` of the table's config answers to `req`.
pub fn answer(
    req: &Req,
    table: &RoutingTable,
    idx: usize,
    stats: &RedirectStats,
) -> Response<Body> {
    let resp = route(req, table, idx, stats);
    stats.response(resp.status().as_u16());
    resp
}

fn route(req: &Req, table: &RoutingTable, idx: usize, stats: &RedirectStats) -> Response<Body> {
    let reject = |r: Reject, code: StatusCode, why: &'static str| {
        stats.reject(r);
        text(code, why)
    };
    if req.method != Method::GET && req.method != Method::HEAD {
        let mut r = reject(
            Reject::Method,
            StatusCode::METHOD_NOT_ALLOWED,
            "GET or HEAD only\n",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let Some(cfg) = table.config.redirects.get(idx) else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "this redirector was removed from the configuration; restart to stop it\n",
        );
    };
    let Some(host) = req.host.filter(|h| !h.is_empty()) else {
        return reject(
            Reject::NoHost,
            StatusCode::BAD_REQUEST,
            "a Host header is required\n",
        );
    };
    if !cfg.hosts.is_empty() && !cfg.hosts.contains(&request::host_name(host)) {
        return reject(
            Reject::ForeignHost,
            StatusCode::MISDIRECTED_REQUEST,
            "not a host this redirector serves\n",
        );
    }
    let client = match request::client_addr(
        req.peer,
        &cfg.trusted_proxies,
        req.forwarded,
        req.x_forwarded_for,
    ) {
        Ok(ip) => ip,
        Err(r) => {
            // Answered all the same, located from the peer: the header is only not believed.
            stats.reject(r);
            req.peer
        }
    };
    let path = match request::file_path(req.path) {
        Ok(p) => p,
        Err(r @ Reject::TooLong) => return reject(r, StatusCode::URI_TOO_LONG, "path too long\n"),
        Err(r @ Reject::BadEncoding) => {
            return reject(
                r,
                StatusCode::BAD_REQUEST,
                "invalid percent-encoding or not UTF-8\n",
            );
        }
        Err(r) => {
            return reject(
                r,
                StatusCode::BAD_REQUEST,
                "not a file path (., .., empty segments, backslashes and NULs are refused)\n",
            );
        }
    };
    let si = cfg.service;
    let (Some(route), Some(Some(dl))) = (table.services.get(si), table.downloads.get(si)) else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "no routing for this service yet\n",
        );
    };
    let ctx = Ctx {
        table,
        cfg,
        route,
        dl,
        client,
        si,
    };
    let mirrorlist = req
        .query
        .is_some_and(|q| q.split('&').any(|p| p == "mirrorlist"));
    // A file of that name wins over the Metalink view of a shorter one.
    if let Some(base) = path.strip_suffix(".meta4")
        && !dl.files.contains_key(path.as_ref())
    {
        return match ctx.lookup(base) {
            Found::File(key, f) => views::metalink(&ctx.view(key, f)),
            other => ctx.not_served(other, req),
        };
    }
    match ctx.lookup(&path) {
        Found::File(key, f) if mirrorlist => {
            let json = req.accept.is_some_and(|a| a.contains("application/json"));
            views::mirrorlist(&ctx.view(key, f), json, &client.to_string())
        }
        Found::File(_, f) => ctx.redirect(req, f),
        other => ctx.not_served(other, req),
    }
}

/// What a path names.
enum Found<'a> {
    File(&'a str, &'a FileRoute),
    /// A file of a blocked version: 410.
    Withdrawn,
    /// Under `latest`, but no release is ready everywhere yet.
    NoLatest,
    Unlisted,
}

/// Everything one request's routing reads.
pub(super) struct Ctx<'a> {
    pub table: &'a RoutingTable,
    pub cfg: &'a Redirect,
    pub route: &'a ServiceRoute,
    pub dl: &'a Downloads,
    pub client: IpAddr,
    pub si: usize,
}

impl<'a> Ctx<'a> {
    fn lookup(&self, path: &str) -> Found<'a> {
        if let Some(prefix) = &self.cfg.latest
            && let Some(rest) = path
                .strip_prefix(prefix.as_str())
                .and_then(|r| r.strip_prefix('/'))
        {
            if self.dl.latest.is_none() {
                return Found::NoLatest;
            }
            return match self.dl.resolve_latest(rest) {
                Some((key, f)) => Found::File(key, f),
                None => Found::Unlisted,
            };
        }
        match self.dl.files.get_key_value(path) {
            Some((k, f)) => Found::File(k, f),
            None if self.dl.withdrawn.contains_key(path) => Found::Withdrawn,
            None => Found::Unlisted,
        }
    }

    /// Every mirror of the service in this client's order, and the client's continent.
    fn order(&self) -> (&'a [usize], usize) {
        let hit = self.route.map.lookup(self.client);
        let service = &self.table.config.services[self.si];
        let order = self
            .route
            .map
            .order(hit.list as usize, service, &self.table.config);
        (order, hit.continent)
    }

    /// The mirrors that may serve `f`, in this client's order.
    fn picks(&self, f: &FileRoute) -> (Picks, usize) {
        let (order, continent) = self.order();
        let v6 = self.client.is_ipv6();
        (self.dl.pick(f, order, &self.table.config, v6), continent)
    }

    pub(super) fn view(&self, key: &'a str, f: &'a FileRoute) -> views::FileView<'a> {
        let (order, _) = self.order();
        views::FileView {
            path: key,
            file: f,
            release: &self.dl.releases[f.release],
            candidates: self
                .dl
                .explain(f, order, &self.table.config, self.client.is_ipv6()),
            dl: self.dl,
            config: &self.table.config,
        }
    }

    fn redirect(&self, req: &Req, f: &FileRoute) -> Response<Body> {
        let (picks, continent) = self.picks(f);
        let release = &self.dl.releases[f.release];
        let h = &f.headers;
        let location = match picks.first() {
            Some(&m) => h.locations.get(m).cloned().flatten(),
            None => h.origin.clone(),
        };
        let Some(location) = location else {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "no mirror has verified this file, and the origin has no base-url\n",
            );
        };
        self.count(
            req,
            picks.first().copied(),
            continent,
            Some(&release.release),
        );
        let mut r = Response::new(Bytes::new());
        *r.status_mut() = StatusCode::FOUND;
        // Room for every header at once (the connection loop writes Date and Content-Length
        // itself): no regrowth.
        *r.headers_mut() = http::HeaderMap::with_capacity(8);
        let out = r.headers_mut();
        out.insert(header::LOCATION, location);
        if let Some(cc) = &self.dl.cache_control {
            out.insert(header::CACHE_CONTROL, cc.clone());
        }
        // The other mirrors, nearest first: one string, no formatting beyond the priorities.
        let others = || {
            picks
                .iter()
                .skip(1)
                .filter_map(|&m| h.links.get(m)?.as_deref())
                .take(4)
        };
        let len: usize = others().map(|l| l.len() + 10).sum();
        if len > 0 {
            let mut links = String::with_capacity(len);
            for (i, l) in others().enumerate() {
                if i > 0 {
                    links.push_str(", ");
                }
                links.push_str(l);
                links.push_str("; pri=");
                links.push(char::from(b'1' + i as u8));
            }
            if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(links)) {
                out.insert(header::LINK, v);
            }
        }
        out.insert("repr-digest", h.repr_digest.clone());
        out.insert("digest", h.digest.clone());
        r
    }

    fn count(&self, req: &Req, mirror: Option<usize>, continent: usize, release: Option<&str>) {
        if req.method != Method::GET {
            return;
        }
        let counts = &self.table.download_counts;
        if request::is_partial(req.range) {
            counts.partial_request(self.si);
        } else {
            counts.download(
                self.si,
                mirror,
                continent,
                counts.release_index(self.si, release),
            );
        }
    }

    fn not_served(&self, what: Found, req: &Req) -> Response<Body> {
        match what {
            Found::File(..) => text(StatusCode::INTERNAL_SERVER_ERROR, "unexpected\n"),
            Found::Withdrawn => text(StatusCode::GONE, "this version was withdrawn\n"),
            Found::NoLatest => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "no release is verified on every mirror yet\n",
            ),
            Found::Unlisted if self.cfg.unlisted == Unlisted::Origin => {
                let path = request::file_path(req.path).unwrap_or_default();
                match self
                    .dl
                    .origin
                    .as_ref()
                    .map(|o| format!("{o}{}", crate::routing::files::url_path(&path)))
                {
                    Some(loc) => {
                        let continent = self.route.map.lookup(self.client).continent;
                        self.count(req, None, continent, None);
                        found(&loc, self.route.ttl)
                    }
                    None => text(StatusCode::NOT_FOUND, "not in any manifest\n"),
                }
            }
            Found::Unlisted => text(StatusCode::NOT_FOUND, "not in any manifest\n"),
        }
    }
}

fn found(location: &str, ttl: u32) -> Response<Body> {
    let mut r = Response::new(Bytes::new());
    *r.status_mut() = StatusCode::FOUND;
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("private, max-age={ttl}")) {
        h.insert(header::CACHE_CONTROL, v);
    }
    r
}

pub(super) fn text(code: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Bytes::from_static(body.as_bytes()));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
