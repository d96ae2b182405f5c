//! The EventBridge sink: `PutEvents` with at most 10 entries a call, each entry's result checked
//! (a call can succeed with `FailedEntryCount > 0`).

use async_trait::async_trait;
use aws_sdk_eventbridge::error::ProvideErrorMetadata;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_eventbridge::Client;

use super::{publish_span, published, EntryResults, EventSink, PublishError};
use crate::domain::OutboxEvent;
use crate::telemetry::trace::new_span_id;

pub const MAX_ENTRIES: usize = 10;

pub struct EventBridgeSink {
    client: Client,
    bus: String,
    source: String,
}

impl EventBridgeSink {
    pub fn new(client: Client, bus: impl Into<String>, source: impl Into<String>) -> Self {
        Self {
            client,
            bus: bus.into(),
            source: source.into(),
        }
    }

    /// The entry for one event: `Source`, `DetailType` (the event type), `EventBusName`, `Detail`,
    /// and the event's trace as a W3C `traceparent` in `TraceHeader`.
    pub fn entry(&self, e: &OutboxEvent) -> PutEventsRequestEntry {
        self.entry_in(e, &tracing::Span::none())
    }

    /// [`Self::entry`] with `TraceHeader` naming `span`, the event's publish span (when it is in a
    /// trace; else the detail's trace id with a span id of its own).
    pub fn entry_in(&self, e: &OutboxEvent, span: &tracing::Span) -> PutEventsRequestEntry {
        let mut b = PutEventsRequestEntry::builder()
            .source(&self.source)
            .detail_type(e.event_type.as_str())
            .event_bus_name(&self.bus)
            .detail(e.detail.to_string())
            .resources(format!("reservation/{}", e.reservation_id));
        if let Some(tp) =
            crate::telemetry::otel::traceparent(&crate::telemetry::otel::span_context(span))
        {
            b = b.trace_header(tp);
        } else if let Some(trace) = e
            .detail
            .get("trace_id")
            .and_then(|t| t.as_str())
            .filter(|t| t.len() == 32)
        {
            b = b.trace_header(format!("00-{trace}-{}-01", new_span_id()));
        }
        b.build()
    }

    /// Send prepared entries (at most 10) and read each entry's result.
    pub async fn put(
        &self,
        entries: Vec<PutEventsRequestEntry>,
    ) -> Result<EntryResults, PublishError> {
        let n = entries.len();
        let out = self
            .client
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(se) => PublishError::new(format!(
                    "PutEvents: {}: {}",
                    se.code().unwrap_or("Unknown"),
                    se.message().unwrap_or_default()
                )),
                None => PublishError::new(format!(
                    "PutEvents: {}",
                    aws_sdk_eventbridge::error::DisplayErrorContext(&e)
                )),
            })?;
        let results = out.entries();
        Ok((0..n)
            .map(|i| match results.get(i) {
                Some(r) if r.error_code().is_none() && r.event_id().is_some() => Ok(()),
                Some(r) => Err(PublishError::new(format!(
                    "{}: {}",
                    r.error_code().unwrap_or("Unknown"),
                    r.error_message().unwrap_or_default()
                ))),
                None => Err(PublishError::new(
                    "PutEvents returned no result for this entry",
                )),
            })
            .collect())
    }
}

#[async_trait]
impl EventSink for EventBridgeSink {
    async fn publish(&self, events: &[OutboxEvent]) -> Result<EntryResults, PublishError> {
        let mut all = Vec::with_capacity(events.len());
        for chunk in events.chunks(MAX_ENTRIES) {
            let spans: Vec<_> = chunk.iter().map(|e| publish_span(e, &self.bus)).collect();
            let entries = chunk
                .iter()
                .zip(&spans)
                .map(|(e, s)| self.entry_in(e, s))
                .collect();
            match self.put(entries).await {
                Ok(results) => {
                    for (span, r) in spans.iter().zip(&results) {
                        published(span, r);
                    }
                    all.extend(results);
                }
                Err(e) => {
                    for span in &spans {
                        published(span, &Err(e.clone()));
                    }
                    return Err(e);
                }
            }
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::EventType;

    #[tokio::test]
    async fn entries_carry_the_contract_fields() {
        let conf = aws_sdk_eventbridge::Config::builder()
            .behavior_version(aws_sdk_eventbridge::config::BehaviorVersion::latest())
            .region(aws_sdk_eventbridge::config::Region::new("us-east-1"))
            .build();
        let sink = EventBridgeSink::new(Client::from_conf(conf), "bus", "reservation-api");
        let now = crate::service::now_ms();
        let r = crate::domain::reservation::tests::hold(now);
        let e =
            OutboxEvent::for_reservation(EventType::HoldCreated, &r, None, &"a".repeat(32), now);
        let entry = sink.entry(&e);
        assert_eq!(entry.source(), Some("reservation-api"));
        assert_eq!(entry.detail_type(), Some("reservation.hold.created"));
        assert_eq!(entry.event_bus_name(), Some("bus"));
        let detail: serde_json::Value = serde_json::from_str(entry.detail().unwrap()).unwrap();
        assert_eq!(detail["id"], e.id);
        assert!(entry
            .trace_header()
            .unwrap()
            .starts_with(&format!("00-{}-", "a".repeat(32))));
    }
}
