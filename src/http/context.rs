//! The outermost middleware: the request's server span (continuing an incoming W3C
//! `traceparent`), its access log line and metrics, and a safety net that puts any error answer
//! that lacks the envelope into it.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::field::Empty;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::error::ApiError;
use crate::telemetry::otel;

pub async fn request_context(req: Request<Body>, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let path = req.uri().path().to_owned();
    // HTTP semantic conventions: the span is named `METHOD route`, or `METHOD` without a route.
    let name = match &route {
        Some(r) => format!("{method} {r}"),
        None => method.to_string(),
    };
    let span = tracing::info_span!(
        target: "http",
        "HTTP request",
        otel.name = %name,
        otel.kind = "server",
        otel.status_code = Empty,
        "http.request.method" = %method,
        "http.route" = route.as_deref(),
        "url.path" = %path,
        "url.scheme" = "http",
        "http.response.status_code" = Empty,
        "error.type" = Empty,
        reservation_id = Empty,
    );
    let _ = span.set_parent(otel::extract(req.headers()));
    let route = route.unwrap_or_else(|| "unmatched".into());

    let response = async {
        let response = next.run(req).await;
        let mut response = if needs_envelope(&response) {
            ApiError::for_status(response.status()).into_response()
        } else {
            response
        };
        if let Some(v) = otel::traceparent(&otel::span_context(&tracing::Span::current()))
            .and_then(|tp| HeaderValue::from_str(&tp).ok())
        {
            response.headers_mut().insert("traceparent", v);
        }
        let status = response.status().as_u16();
        let elapsed = started.elapsed();
        let current = tracing::Span::current();
        current.record("http.response.status_code", status);
        if status >= 500 {
            current.record("otel.status_code", "ERROR");
            current.record("error.type", status.to_string());
        }
        tracing::info!(
            target: "http",
            method = %method,
            route = %route,
            path = %path,
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "request"
        );
        metrics::histogram!(
            "http_server_requests_seconds",
            "method" => method.to_string(),
            "uri" => route,
            "status" => status.to_string()
        )
        .record(elapsed.as_secs_f64());
        response
    }
    .instrument(span)
    .await;
    response
}

/// An error answer that is not JSON (a router 404/405, a panic, a layer's own answer).
fn needs_envelope(r: &Response) -> bool {
    let is_json = r
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    (r.status().is_client_error() || r.status().is_server_error()) && !is_json
}
