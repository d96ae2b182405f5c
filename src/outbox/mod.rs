//! The transactional outbox's relay: claims due events with a lease, publishes them through an
//! [`EventSink`], and settles each one (published, retried with backoff, or FAILED).

pub mod eventbridge;
pub mod log_sink;
pub mod relay;

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

pub use eventbridge::EventBridgeSink;
pub use log_sink::LogSink;
pub use relay::OutboxRelay;
