//! The transactional outbox's publishing side. Events are written by the store, in the same
//! atomic write as the change they describe (their `Detail` is `domain::event::EventDetail`);
//! the [`relay::OutboxRelay`] claims due ones with a lease, publishes them through an
//! [`EventSink`] ([`eventbridge::EventBridgeSink`], or [`log_sink`] locally), and settles each one
//! (published, retried with backoff, or FAILED). The design and its cost: docs/outbox.md.

pub mod eventbridge;
pub mod log_sink;
pub mod relay;
pub mod round_size;

use async_trait::async_trait;

use crate::domain::OutboxEvent;

/// Why one entry, or a whole call, was not published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishError {
    pub message: String,
}

impl PublishError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// One result per event, in order.
pub type EntryResults = Vec<Result<(), PublishError>>;

#[async_trait]
pub trait EventSink: Send + Sync + 'static {
    /// Publish up to 10 events. `Err`: the call as a whole failed (the sink is unreachable or
    /// throttled) and no entry was judged; `Ok`: each entry's own result.
    async fn publish(&self, events: &[OutboxEvent]) -> Result<EntryResults, PublishError>;
}

/// The producer span of publishing one event to `destination`, in the messaging semantic
/// conventions. It continues the trace of the request that wrote the event (its stored
/// `traceparent`); an event written without one (outside a trace) is put in the trace its detail
/// names. Ends when dropped; [`published`] records the outcome.
pub fn publish_span(e: &OutboxEvent, destination: &str) -> tracing::Span {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    let span = tracing::info_span!(
        target: "outbox",
        parent: None,
        "outbox publish",
        otel.name = %format!("publish {destination}"),
        otel.kind = "producer",
        otel.status_code = tracing::field::Empty,
        "messaging.system" = "aws_eventbridge",
        "messaging.operation.name" = "publish",
        "messaging.operation.type" = "send",
        "messaging.destination.name" = destination,
        "messaging.message.id" = %e.id,
        "event.type" = e.event_type.as_str(),
        "error.type" = tracing::field::Empty,
        reservation_id = %e.reservation_id,
    );
    let parent = e
        .traceparent
        .as_deref()
        .and_then(crate::telemetry::otel::parse_traceparent)
        .or_else(|| {
            let trace = e.detail.get("trace_id")?.as_str()?;
            let trace = TraceId::from_hex(trace).ok()?;
            let span = SpanId::from_hex(&crate::telemetry::trace::new_span_id()).ok()?;
            Some(SpanContext::new(
                trace,
                span,
                TraceFlags::SAMPLED,
                true,
                TraceState::default(),
            ))
        });
    if let Some(sc) = parent {
        crate::telemetry::otel::set_parent(
            &span,
            opentelemetry::Context::new().with_remote_span_context(sc),
        );
    }
    span
}

/// Record on a [`publish_span`] how its publish ended.
pub fn published(span: &tracing::Span, result: &Result<(), PublishError>) {
    if let Err(e) = result {
        span.record("otel.status_code", "ERROR");
        span.record("error.type", e.message.as_str());
    }
}

pub use eventbridge::EventBridgeSink;
pub use log_sink::LogSink;
pub use relay::OutboxRelay;
