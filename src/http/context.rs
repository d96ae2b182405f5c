//! The outermost middleware: the request's trace context, its access log line and metrics, and a
//! safety net that puts any error answer that lacks the envelope into it.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::telemetry::trace::{self, RequestContext};

pub async fn request_context(req: Request<Body>, next: Next) -> Response {
    let started = Instant::now();
    let traceparent = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok());
    let ctx = Arc::new(RequestContext::from_traceparent(traceparent));
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let path = crate::telemetry::logging::bounded(req.uri().path()).into_owned();

    let response = trace::scope(ctx.clone(), async move {
        let response = next.run(req).await;
        let mut response = if needs_envelope(&response) {
            ApiError::for_status(response.status()).into_response()
        } else {
            response
        };
        if let Ok(v) = HeaderValue::from_str(&ctx.traceparent()) {
            response.headers_mut().insert("traceparent", v);
        }
        let status = response.status().as_u16();
        let elapsed = started.elapsed();
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
    })
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
