//! The current request's trace, as the OpenTelemetry context of the current `tracing` span: what
//! every log line and error envelope of that request carries.

use opentelemetry::trace::TraceId;
use rand::RngCore;

use super::otel;

pub fn new_trace_id() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

pub fn new_span_id() -> String {
    let mut b = [0u8; 8];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// The trace id of the current span, if it is in a trace.
pub fn current() -> Option<String> {
    let sc = otel::span_context(&tracing::Span::current());
    (sc.trace_id() != TraceId::INVALID).then(|| sc.trace_id().to_string())
}

/// The current request's trace id, or a fresh one outside a request.
pub fn current_trace_id() -> String {
    current().unwrap_or_else(new_trace_id)
}

/// The current span's `traceparent`, to keep with work done later on its behalf (an outbox event).
pub fn current_traceparent() -> Option<String> {
    otel::traceparent(&otel::span_context(&tracing::Span::current()))
}

/// Name the request's reservation in the log lines after this (the HTTP span's `reservation_id`).
pub fn note_reservation(id: &str) {
    tracing::Span::current().record("reservation_id", id);
}
