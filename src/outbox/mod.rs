//! The transactional outbox's relay: claims due events with a lease, publishes them through an
//! [`EventSink`], and settles each one (published, retried with backoff, or FAILED).

pub mod log_sink;
pub mod relay;

use async_trait::async_trait;

use crate::domain::OutboxEvent;

/// Why one entry was not published. `transient`: worth another attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishError {
    pub message: String,
    pub transient: bool,
}

#[async_trait]
pub trait EventSink: Send + Sync + 'static {
    /// Publish up to 10 events; one result per event, in order.
    async fn publish(&self, events: &[OutboxEvent]) -> Vec<Result<(), PublishError>>;
}

pub use log_sink::LogSink;
pub use relay::OutboxRelay;
