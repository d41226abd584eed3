//! The monitoring endpoint: `/healthz`, `/readyz`, `/status`, `/lookup`, `/metrics` and a
//! status page at `/`. It sees the server through a [`Monitor`]: it reads shared state, and
//! `POST /reload` asks the daemon for a reload; nothing here can change what DNS answers
//! otherwise. The JSON documents' types are in [`crate::schema`].
//!
//! axum serves it: routing, query parsing and content types are exactly what it is for, and
//! hyper (which reqwest already brings in) does the HTTP.

mod cluster;
mod dnssec;
mod metrics;
mod notify;
pub mod page;
mod redirects;
mod status;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::health::state::HealthState;
use crate::monitor::Monitor;
use crate::routing::RoutingTable;
use crate::schema::Status;

/// Serves until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    monitor: Monitor,
    shutdown: CancellationToken,
) {
    let app = Router::new()
        .route("/", get(index))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status_json))
        .route("/lookup", get(lookup))
        .route("/metrics", get(metrics_text))
        .route("/reload", axum::routing::post(reload))
        .with_state(monitor);
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
    {
        warn!(error = %e, "monitoring endpoint stopped");
    }
}

async fn healthz(State(m): State<Monitor>) -> Response {
    if m.dns_running() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "DNS listeners stopped\n").into_response()
    }
}

/// Calls `f` with the routing table and the prober's state when both are for the same
/// config. Their mirror indices only agree then: in the moment of a reload between the two
/// swaps (or without a prober), `f` gets no state rather than another config's.
async fn with_table<T>(
    m: &Monitor,
    f: impl FnOnce(&Arc<RoutingTable>, Option<&HealthState>) -> T,
) -> T {
    let mut f = Some(f);
    let table = m.table();
    let with_state = m
        .with_health(|cfg, st| {
            if !std::ptr::eq(cfg, &*table.config) {
                return None;
            }
            f.take().map(|f| f(&table, Some(st)))
        })
        .await
        .flatten();
    match (with_state, f) {
        (Some(out), _) => out,
        (None, Some(f)) => f(&table, None),
        (None, None) => unreachable!("f is taken only when it returns"),
    }
}

async fn build_status(m: &Monitor) -> Status {
    with_table(m, |table, st| status::build(m, table, st)).await
}

async fn readyz(State(m): State<Monitor>) -> Response {
    let waiting = with_table(&m, |t, st| status::waiting_for(&t.config, st)).await;
    if waiting.is_empty() && m.dns_running() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        let body = format!("not ready: waiting for {}\n", waiting.join("; "));
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

async fn status_json(State(m): State<Monitor>) -> Response {
    axum::Json(build_status(&m).await).into_response()
}

/// `GET /[?service=NAME]`: the page's map shows NAME's answers.
async fn index(State(m): State<Monitor>, Query(q): Query<HashMap<String, String>>) -> Response {
    // The status and the map from one table, so that they agree.
    let (status, table) = with_table(&m, |table, st| {
        (status::build(&m, table, st), table.clone())
    })
    .await;
    let service = q.get("service").map(String::as_str);
    Html(page::render(
        &status,
        &table,
        service,
        std::time::SystemTime::now(),
    ))
    .into_response()
}

async fn lookup(State(m): State<Monitor>, Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(ip) = q.get("ip") else {
        return (
            StatusCode::BAD_REQUEST,
            "usage: /lookup?ip=ADDR[&name=HOST]\n",
        )
            .into_response();
    };
    let Ok(ip) = ip.parse::<IpAddr>() else {
        return (
            StatusCode::BAD_REQUEST,
            format!("`{ip}` is not an IP address\n"),
        )
            .into_response();
    };
    let name = q.get("name").cloned();
    let (table, states) = with_table(&m, |t, st| {
        (t.clone(), status::mirror_states(&t.config, st))
    })
    .await;
    // Explaining may re-read the geo database from disk: keep it off the async workers.
    let res = tokio::task::spawn_blocking(move || {
        status::lookup(&m.geo(), &table, &states, ip, name.as_deref()).map(|mut l| {
            l.config_file = Some(absolute(m.config_path()));
            l.config_loaded_at =
                Some(humantime::format_rfc3339_millis(m.config_info().loaded_at).to_string());
            l
        })
    })
    .await;
    match res {
        Ok(Ok(l)) => axum::Json(l).into_response(),
        Ok(Err(e)) => (StatusCode::NOT_FOUND, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// Absolute with symlinks resolved, as `mirrordns lookup` resolves the file it is given, so
/// that the two compare equal for the same file whatever the server's working directory.
fn absolute(p: &std::path::Path) -> String {
    p.canonicalize()
        .or_else(|_| std::path::absolute(p))
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}

/// `POST /reload` (used by `mirrordns reload`): the same as SIGHUP. Only from loopback, so
/// that exposing the endpoint on a management network does not hand out reloads.
async fn reload(
    State(m): State<Monitor>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
) -> Response {
    if !peer.ip().is_loopback() {
        return (
            StatusCode::FORBIDDEN,
            "reload is only accepted from loopback\n",
        )
            .into_response();
    }
    match m.reload().await {
        // Two counters, named apart: the config generation (`/status` config.generation)
        // moves with reloads, the routing table's also with every health change.
        Ok(generation) => (
            StatusCode::OK,
            format!(
                "reloaded: config generation {generation} (routing table generation {})\n",
                m.routing_generation()
            ),
        )
            .into_response(),
        Err(p) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("reload rejected; still serving the previous state:\n{p}\n"),
        )
            .into_response(),
    }
}

async fn metrics_text(State(m): State<Monitor>) -> Response {
    let hc = m.health_counters().await;
    let text = with_table(&m, |table, st| {
        metrics::render(&m, table, st, st.and(hc.as_deref()))
    })
    .await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
