//! The local sink: each event becomes one JSON log line (target `outbox`).

use async_trait::async_trait;

use super::{EntryResults, EventSink, PublishError};
use crate::domain::OutboxEvent;

#[derive(Clone, Copy, Debug, Default)]
pub struct LogSink;

#[async_trait]
impl EventSink for LogSink {
    async fn publish(&self, events: &[OutboxEvent]) -> Result<EntryResults, PublishError> {
        Ok(events
            .iter()
            .map(|e| {
                tracing::info!(
                    target: "outbox",
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
