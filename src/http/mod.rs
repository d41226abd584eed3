//! The monitoring endpoint: `/healthz`, `/readyz`, `/status`, `/lookup`, `/metrics` and a
//! status page at `/`. It only reads shared state; nothing here can change what DNS answers.
//!
//! axum serves it: routing, query parsing and content types are exactly what it is for, and
//! hyper (which reqwest already brings in) does the HTTP.

mod metrics;
mod page;
mod status;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::daemon::Core;
use crate::health::state::HealthState;
use crate::routing::RoutingTable;

type Shared = Arc<Core>;

/// Serves until `shutdown` is cancelled.
pub async fn serve(listener: tokio::net::TcpListener, core: Shared, shutdown: CancellationToken) {
    let app = Router::new()
        .route("/", get(index))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status_json))
        .route("/lookup", get(lookup))
        .route("/metrics", get(metrics_text))
        .route("/reload", axum::routing::post(reload))
        .with_state(core);
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
    {
        warn!(error = %e, "monitoring endpoint stopped");
    }
}

async fn healthz(State(core): State<Shared>) -> Response {
    if core.dns_running.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "DNS listeners stopped\n").into_response()
    }
}

/// Calls `f` with the routing table and the prober's state when both are for the same
/// config. Their mirror indices only agree then: in the moment of a reload between the two
/// swaps (or without a prober), `f` gets no state rather than another config's.
async fn with_table<T>(
    core: &Core,
    f: impl FnOnce(&Arc<RoutingTable>, Option<&HealthState>) -> T,
) -> T {
    let mut f = Some(f);
    let table = core.table.load_full();
    let with_state = core
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

async fn build_status(core: &Core) -> status::Status {
    with_table(core, |table, st| status::build(core, table, st)).await
}

async fn readyz(State(core): State<Shared>) -> Response {
    let waiting = with_table(&core, |t, st| status::waiting_for(&t.config, st)).await;
    if waiting.is_empty() && core.dns_running.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        let body = format!("not ready: waiting for {}\n", waiting.join("; "));
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

async fn status_json(State(core): State<Shared>) -> Response {
    axum::Json(build_status(&core).await).into_response()
}

async fn index(State(core): State<Shared>) -> Response {
    Html(page::render(&build_status(&core).await)).into_response()
}

async fn lookup(State(core): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
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
    let (table, states) = with_table(&core, |t, st| {
        (t.clone(), status::mirror_states(&t.config, st))
    })
    .await;
    // Explaining may re-read the geo database from disk: keep it off the async workers.
    let res = tokio::task::spawn_blocking(move || {
        status::lookup(&core, &table, &states, ip, name.as_deref()).map(|lookup| LookupAnswer {
            lookup,
            config_file: absolute(&core.config_path),
            config_loaded_at: humantime::format_rfc3339_millis(core.config_info().loaded_at)
                .to_string(),
        })
    })
    .await;
    match res {
        Ok(Ok(l)) => axum::Json(l).into_response(),
        Ok(Err(e)) => (StatusCode::NOT_FOUND, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// `/lookup`'s document: the explanation, and which config it comes from.
#[derive(serde::Serialize)]
struct LookupAnswer {
    #[serde(flatten)]
    lookup: status::Lookup,
    /// The config file in force, absolute with symlinks resolved as this process sees it:
    /// `mirrordns lookup` compares it with the file it was given to tell whether this server
    /// serves that config (a relative path in `/status` depends on the server's directory).
    config_file: String,
    /// When it was loaded: a file changed after this is not in force yet.
    config_loaded_at: String,
}

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
    State(core): State<Shared>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
) -> Response {
    if !peer.ip().is_loopback() {
        return (
            StatusCode::FORBIDDEN,
            "reload is only accepted from loopback\n",
        )
            .into_response();
    }
    match core.reload().await {
        // Two counters, named apart: the config generation (`/status` config.generation)
        // moves with reloads, the routing table's also with every health change.
        Ok(generation) => (
            StatusCode::OK,
            format!(
                "reloaded: config generation {generation} (routing table generation {})\n",
                core.routing_generation()
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

async fn metrics_text(State(core): State<Shared>) -> Response {
    let hc = core.health_counters().await;
    let text = with_table(&core, |table, st| {
        metrics::render(&core, table, st, st.and(hc.as_deref()))
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
