//! The HTTP surface: routes, extractors, the error envelope, operations endpoints.

pub mod actuator;
pub mod context;
pub mod docs;
pub mod error;
pub mod extract;
pub mod my_reservations;
pub mod rate_limit;
pub mod reservations;
pub mod seats;
pub mod server;
pub mod strict_json;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::{middleware, Router};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::admission::Admission;
use crate::auth::jwks::JwksKeys;
use crate::auth::TokenVerifier;
use crate::service::ReservationService;
use error::ApiError;

#[derive(Clone)]
pub struct AppState {
    pub service: Arc<ReservationService>,
    pub verifier: Arc<dyn TokenVerifier>,
    /// False once shutdown begins, so that readiness turns DOWN.
    pub ready: Arc<AtomicBool>,
    pub profile: &'static str,
    pub store_kind: &'static str,
    pub hold_ttl_secs: i64,
    /// The issuer's keys, when issuer tokens are accepted (readiness: `jwks`).
    pub jwks: Option<Arc<JwksKeys>>,
    /// The waiting room's admission check (`ADMISSION_MODE=redis`).
    pub admission: Option<Arc<Admission>>,
    pub limits: Arc<rate_limit::RateLimits>,
    /// The whole request's deadline (`HTTP_REQUEST_TIMEOUT_MS`).
    pub request_timeout: std::time::Duration,
    /// The inventory and payment servers' health checks (readiness: `inventory`, `payment`).
    /// Shared, not a `Vec`: the state is cloned for every request that extracts it.
    pub peers: Arc<[Arc<crate::grpc::health::PeerHealth>]>,
    /// The background tasks, watched (readiness: `backgroundTasks`).
    pub tasks: Arc<crate::tasks::BackgroundTasks>,
}

async fn not_found() -> impl IntoResponse {
    ApiError::for_status(StatusCode::NOT_FOUND)
}

async fn method_not_allowed() -> impl IntoResponse {
    ApiError::for_status(StatusCode::METHOD_NOT_ALLOWED)
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/v1/reservations",
            post(reservations::create).get(my_reservations::list),
        )
        .route("/v1/reservations/{id}", get(reservations::get_one))
        .route("/v1/reservations/{id}/confirm", post(reservations::confirm))
        .route("/v1/reservations/{id}/cancel", post(reservations::cancel))
        .route("/v1/events/{event_id}/seats", get(seats::seat_map))
        .route("/actuator/health", get(actuator::health))
        .route("/actuator/health/liveness", get(actuator::liveness))
        .route("/actuator/health/readiness", get(actuator::readiness))
        .route("/actuator/info", get(actuator::info))
        .route("/actuator/prometheus", get(actuator::prometheus))
        .route("/actuator/metrics", get(actuator::metric_names))
        .route("/actuator/metrics/{name}", get(actuator::metric))
        .route(
            "/swagger-ui.html",
            get(|| async { Redirect::temporary("/swagger-ui/") }),
        )
        .merge(SwaggerUi::new("/swagger-ui").url("/v3/api-docs", docs::ApiDoc::openapi()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Inside the request context, so that its bare 408 is answered in the envelope (504).
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.request_timeout,
        ))
        .layer(CatchPanicLayer::new())
        .layer(middleware::from_fn(context::request_context))
        .layer(context::trace_layer())
        .with_state(state)
}
