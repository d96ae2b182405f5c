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
use crate::i18n::Lang;
use crate::telemetry::trace::{self, RequestContext};

pub async fn request_context(req: Request<Body>, next: Next) -> Response {
    let started = Instant::now();
    let traceparent = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok());
    let lang = Lang::negotiate(
        req.headers()
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    );
    let ctx = Arc::new(RequestContext::from_traceparent(traceparent).with_lang(lang));
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let path = req.uri().path().to_owned();

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
        say_language(&mut response, lang);
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

/// `Content-Language` of the answer, and `Vary: Accept-Language` for caches. Not on a replay: its
/// body is the first answer's, byte for byte, in the first request's language.
fn say_language(r: &mut Response, lang: Lang) {
    let h = r.headers_mut();
    if h.contains_key("idempotent-replayed") {
        return;
    }
    h.insert(
        header::CONTENT_LANGUAGE,
        HeaderValue::from_static(lang.tag()),
    );
    h.append(header::VARY, HeaderValue::from_static("accept-language"));
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
