//! `/actuator/*`: health (liveness, readiness) and info.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::error::ApiError;
use super::AppState;
use crate::telemetry::metrics;

fn health_response(up: bool, components: serde_json::Value) -> Response {
    let status = if up { "UP" } else { "DOWN" };
    let code = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(json!({ "status": status, "components": components })),
    )
        .into_response()
}

async fn readiness_components(state: &AppState) -> (bool, serde_json::Value) {
    let accepting = state.ready.load(Ordering::Relaxed);
    // The store and the peers are asked at once: readiness takes the slowest, not the sum.
    let (store, peers) = tokio::join!(
        state.service.store().ping(),
        futures::future::join_all(state.peers.iter().map(|p| p.check()))
    );
    let store_up = store.is_ok();
    let jwks_up = state.jwks.as_ref().is_none_or(|k| k.is_loaded());
    let peers_up = peers.iter().all(Result::is_ok);
    let failed_tasks = state.tasks.failed();
    let tasks_up = failed_tasks.is_empty();
    let up = accepting && store_up && jwks_up && peers_up && tasks_up;
    ::metrics::gauge!("reservation_api_ready").set(if up { 1.0 } else { 0.0 });
    let s = |b: bool| if b { "UP" } else { "DOWN" };
    let mut components = json!({
        "store": { "status": s(store_up) },
        "readinessState": { "status": s(accepting) },
    });
    // A sweeper or the relay that died leaves the replica answering but not doing its chores.
    components["backgroundTasks"] = if tasks_up {
        json!({ "status": "UP" })
    } else {
        json!({ "status": "DOWN", "details": failed_tasks })
    };
    // A create needs both peers: a replica that cannot reach them takes no traffic.
    for (peer, r) in state.peers.iter().zip(&peers) {
        components[peer.name] = match r {
            Ok(()) => json!({ "status": "UP" }),
            Err(e) => json!({ "status": "DOWN", "details": { "error": e } }),
        };
    }
    // DOWN until the issuer's keys were loaded once; afterwards an issuer outage keeps it UP
    // (the known keys keep working).
    if state.jwks.is_some() {
        components["jwks"] = json!({ "status": s(jwks_up) });
    }
    (up, components)
}

/// Overall health.
#[utoipa::path(get, path = "/actuator/health", tag = "operations",
    responses((status = 200, description = "UP"), (status = 503, description = "DOWN")))]
pub async fn health(State(state): State<AppState>) -> Response {
    let (up, mut components) = readiness_components(&state).await;
    components["livenessState"] = json!({ "status": "UP" });
    health_response(up, components)
}

/// The process is alive (no dependency is consulted).
#[utoipa::path(get, path = "/actuator/health/liveness", tag = "operations",
    responses((status = 200, description = "UP")))]
pub async fn liveness() -> Response {
    health_response(true, json!({ "livenessState": { "status": "UP" } }))
}

/// Ready for traffic: the store and the peers answer, every background task runs, and the
/// service is not shutting down. DOWN → 503.
#[utoipa::path(get, path = "/actuator/health/readiness", tag = "operations",
    responses((status = 200, description = "UP"), (status = 503, description = "DOWN")))]
pub async fn readiness(State(state): State<AppState>) -> Response {
    let (up, components) = readiness_components(&state).await;
    health_response(up, components)
}

/// Build and runtime facts.
#[utoipa::path(get, path = "/actuator/info", tag = "operations", responses((status = 200, description = "Info")))]
pub async fn info(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "app": {
            "name": env!("CARGO_PKG_NAME"),
            "version": env!("CARGO_PKG_VERSION"),
            "description": env!("CARGO_PKG_DESCRIPTION"),
        },
        "profile": state.profile,
        "store": state.store_kind,
        "hold_ttl_seconds": state.hold_ttl_secs,
    }))
}

/// Prometheus text format.
#[utoipa::path(get, path = "/actuator/prometheus", tag = "operations",
    responses((status = 200, description = "Prometheus exposition text", content_type = "text/plain")))]
pub async fn prometheus() -> Response {
    let mut r = metrics::render_fresh().await.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// The names of the metrics recorded so far.
#[utoipa::path(get, path = "/actuator/metrics", tag = "operations", responses((status = 200, description = "Names")))]
pub async fn metric_names() -> Json<serde_json::Value> {
    let names: BTreeSet<String> = metrics::samples(&metrics::render_fresh().await)
        .iter()
        .map(|s| metrics::family(&s.name).to_owned())
        .collect();
    Json(json!({ "names": names }))
}

/// One metric's samples, with their labels.
#[utoipa::path(get, path = "/actuator/metrics/{name}", tag = "operations",
    params(("name" = String, Path, description = "a name from /actuator/metrics", example = "reservation_status_total")),
    responses(
        (status = 200, description = "Samples"),
        (status = 404, description = "NOT_FOUND: no metric of that name has samples yet",
            body = super::error::ErrorEnvelope, example = json!(super::docs::error_example("NOT_FOUND"))),
    ))]
pub async fn metric(Path(name): Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    let samples: Vec<_> = metrics::samples(&metrics::render_fresh().await)
        .into_iter()
        .filter(|s| metrics::family(&s.name) == name)
        .collect();
    if samples.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("no metric named {name}"),
        ));
    }
    Ok(Json(json!({ "name": name, "samples": samples })))
}
