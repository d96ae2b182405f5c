//! The request's telemetry and its safety net, as two layers:
//!
//! - [`trace_layer`] (outermost; `tower-http`'s `TraceLayer`): the request's OpenTelemetry server
//!   span, continuing an incoming W3C `traceparent`, then on the response the access log line,
//!   `http_server_requests_seconds` and the span's status;
//! - [`request_context`] (inside it): puts any error answer that lacks the envelope into it, sets
//!   the response's `traceparent`, and hands the access log the request's method, route and path.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::TraceLayer;
use tracing::field::Empty;
use tracing::Span;

use super::error::ApiError;
use crate::i18n::{self, Lang};
use crate::telemetry::otel;

/// What the access log and the histogram say about the request, passed from
/// [`request_context`] to the trace layer in the response's extensions.
#[derive(Clone, Debug)]
struct RequestFacts {
    method: Method,
    route: String,
    path: String,
    /// The caller sent a `traceparent` with its sampled flag: it wants this request recorded.
    traced: bool,
}

/// Of the requests the access log does not always write at INFO (see [`on_response`]), one in this
/// many is written at INFO; all are written at DEBUG.
pub const ACCESS_LOG_SAMPLE_EVERY: u64 = 100;

/// A request at least this slow always has its access line at INFO.
pub const ACCESS_LOG_SLOW: Duration = Duration::from_millis(500);

/// Whether a `traceparent` asks for its trace to be recorded (its flags' sampled bit).
fn asks_for_trace(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.rsplit('-').next())
        .and_then(|flags| u8::from_str_radix(flags, 16).ok())
        .is_some_and(|flags| flags & 1 == 1)
}

/// The route template of a request (`unmatched` for the fallback).
fn route_of<B>(req: &axum::http::Request<B>) -> Option<String> {
    req.extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
}

/// The server span of one request, in the HTTP semantic conventions: named `METHOD route` (or
/// `METHOD` without a route), a child of the caller's span when the request has a `traceparent`.
fn server_span<B>(req: &axum::http::Request<B>) -> Span {
    let method = req.method();
    let route = route_of(req);
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
        "url.path" = %crate::telemetry::logging::bounded(req.uri().path()),
        "url.scheme" = "http",
        "http.response.status_code" = Empty,
        "error.type" = Empty,
        reservation_id = Empty,
    );
    otel::set_parent(&span, otel::extract(req.headers()));
    span
}

/// The access log line, the request histogram, and the span's status.
fn on_response(response: &Response, latency: Duration, span: &Span) {
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
        span.record("error.type", status.to_string());
    }
    let Some(facts) = response.extensions().get::<RequestFacts>() else {
        return;
    };
    // The access line at INFO for every request cost about a third of a GET's CPU (README,
    // Performance): it is at INFO for a failed (4xx/5xx) or slow request, for one the caller traces
    // (a sampled `traceparent`), and for one in ACCESS_LOG_SAMPLE_EVERY of the rest; else DEBUG.
    static SEEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let at_info = status >= 400
        || facts.traced
        || latency >= ACCESS_LOG_SLOW
        || SEEN
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .is_multiple_of(ACCESS_LOG_SAMPLE_EVERY);
    macro_rules! access_line {
        ($level:expr) => {
            tracing::event!(
                target: "http",
                $level,
                method = %facts.method,
                route = %facts.route,
                path = %facts.path,
                status,
                duration_ms = latency.as_secs_f64() * 1000.0,
                "request"
            )
        };
    }
    if at_info {
        access_line!(tracing::Level::INFO);
    } else {
        access_line!(tracing::Level::DEBUG);
    }
    metrics::histogram!(
        "http_server_requests_seconds",
        "method" => facts.method.to_string(),
        "uri" => facts.route.clone(),
        "status" => status.to_string()
    )
    .record(latency.as_secs_f64());
}

/// The trace layer's type: [`server_span`] and [`on_response`], the other callbacks off.
pub type HttpTraceLayer = TraceLayer<
    SharedClassifier<ServerErrorsAsFailures>,
    fn(&Request<Body>) -> Span,
    (),
    fn(&Response, Duration, &Span),
    (),
    (),
    (),
>;

/// `tower-http`'s trace layer with the service's span and response handling (its own request,
/// end-of-stream and failure lines are off: the access line says it all).
pub fn trace_layer() -> HttpTraceLayer {
    TraceLayer::new_for_http()
        .make_span_with(server_span::<Body> as fn(&Request<Body>) -> Span)
        .on_request(())
        .on_response(on_response as fn(&Response, Duration, &Span))
        .on_body_chunk(())
        .on_eos(())
        .on_failure(())
}

pub async fn request_context(req: Request<Body>, next: Next) -> Response {
    let facts = RequestFacts {
        method: req.method().clone(),
        route: route_of(&req).unwrap_or_else(|| "unmatched".into()),
        path: crate::telemetry::logging::bounded(req.uri().path()).into_owned(),
        traced: asks_for_trace(req.headers()),
    };
    let lang = Lang::negotiate(
        req.headers()
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    );
    // The envelope below, like every error answer of the request, speaks the request's language.
    let response = i18n::scope(lang, async move {
        let response = next.run(req).await;
        if needs_envelope(&response) {
            ApiError::for_status(response.status()).into_response()
        } else {
            response
        }
    })
    .await;
    let mut response = response;
    say_language(&mut response, lang);
    if let Some(v) = otel::traceparent(&otel::span_context(&Span::current()))
        .and_then(|tp| HeaderValue::from_str(&tp).ok())
    {
        response.headers_mut().insert("traceparent", v);
    }
    response.extensions_mut().insert(facts);
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

#[cfg(test)]
mod access_tests {
    use super::*;

    #[test]
    fn only_a_sampled_traceparent_asks_for_a_trace() {
        let mut h = axum::http::HeaderMap::new();
        assert!(!asks_for_trace(&h));
        h.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        assert!(asks_for_trace(&h));
        h.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
        );
        assert!(!asks_for_trace(&h));
    }
}
