//! The local sink: each event becomes one JSON log line (target `outbox`), with the trace of the
//! request that wrote it and the event's detail as a JSON object.

use async_trait::async_trait;

use super::{publish_span, EntryResults, EventSink, PublishError};
use crate::domain::OutboxEvent;
use crate::telemetry::otel;
use crate::telemetry::trace::new_span_id;

#[derive(Clone, Copy, Debug, Default)]
pub struct LogSink;

#[async_trait]
impl EventSink for LogSink {
    async fn publish(&self, events: &[OutboxEvent]) -> Result<EntryResults, PublishError> {
        Ok(events
            .iter()
            .map(|e| {
                // The relay runs outside the request, so the line carries the request's trace id
                // (kept in the detail) itself, and its publish span, as the EventBridge
                // `traceparent` does.
                let span = publish_span(e, "log");
                let _in = span.enter();
                let sc = otel::span_context(&span);
                let trace_id = e.detail.get("trace_id").and_then(|t| t.as_str());
                let span_id = if sc.is_valid() {
                    sc.span_id().to_string()
                } else {
                    new_span_id()
                };
                tracing::info!(
                    target: "outbox",
                    trace_id,
                    span_id,
                    event_type = e.event_type.as_str(),
                    event_id = %e.id,
                    reservation_id = %e.reservation_id,
                    detail = %e.detail,
                    "event published"
                );
                Ok(())
            })
            .collect())
    }
}
