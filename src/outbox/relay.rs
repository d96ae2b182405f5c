//! OutboxRelay: one background task per replica. Woken by every write that adds an event; polling
//! stays as the safety net (and picks up claims whose replica died once their lease ends).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::EventSink;
use crate::config::OutboxSettings;
use crate::store::{Settlement, Store};

pub struct OutboxRelay {
    store: Arc<dyn Store>,
    sink: Arc<dyn EventSink>,
    wake: Arc<Notify>,
    owner: String,
    settings: OutboxSettings,
}

/// Exponential backoff with full jitter: up to 200 ms × 2^attempts, capped at 60 s.
pub fn backoff(attempts: u32) -> Duration {
    let cap = 200u64.saturating_mul(1 << attempts.min(20)).min(60_000);
    Duration::from_millis(rand::rng().random_range(cap / 2..=cap))
}

impl OutboxRelay {
    pub fn new(
        store: Arc<dyn Store>,
        sink: Arc<dyn EventSink>,
        wake: Arc<Notify>,
        settings: OutboxSettings,
    ) -> Self {
        let owner = format!("relay-{}", uuid::Uuid::new_v4().simple());
        Self {
            store,
            sink,
            wake,
            owner,
            settings,
        }
    }

    /// Claim one batch, publish it, settle each event. Returns how many events it claimed.
    pub async fn relay_once(&self) -> usize {
        let now = Utc::now();
        let lease_until = now + chrono::Duration::seconds(self.settings.lease_secs as i64);
        let batch = match self
            .store
            .claim_events(&self.owner, now, lease_until, self.settings.batch_size)
            .await
        {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "outbox claim failed");
                return 0;
            }
        };
        if batch.is_empty() {
            return 0;
        }
        let results = self.sink.publish(&batch).await;
        for (event, result) in batch.iter().zip(results) {
            let attempts = event.attempts + 1;
            let (how, outcome) = match result {
                Ok(()) => {
                    let lag =
                        (Utc::now() - event.created_at).num_milliseconds().max(0) as f64 / 1000.0;
                    metrics::histogram!("outbox_publish_lag_seconds").record(lag);
                    (Settlement::Published { at: Utc::now() }, "published")
                }
                Err(e) if e.transient && attempts < self.settings.max_attempts => {
                    let next = Utc::now()
                        + chrono::Duration::from_std(backoff(attempts)).unwrap_or_default();
                    (
                        Settlement::Retry {
                            attempts,
                            next_retry_at: next,
                            error: e.message,
                        },
                        "retried",
                    )
                }
                Err(e) => {
                    tracing::error!(event_id = %event.id, error = %e.message, attempts, "outbox event FAILED");
                    (
                        Settlement::Failed {
                            attempts,
                            error: e.message,
                        },
                        "failed",
                    )
                }
            };
            metrics::counter!("outbox_events_published_total", "type" => event.event_type.as_str(), "result" => outcome)
                .increment(1);
            if let Err(e) = self.store.settle_event(&event.id, &self.owner, how).await {
                tracing::warn!(event_id = %event.id, error = %e, "could not settle outbox event");
            }
        }
        if let Ok(depth) = self.store.pending_events().await {
            metrics::gauge!("outbox_pending_events").set(depth as f64);
        }
        batch.len()
    }

    pub async fn run(self, stop: CancellationToken) {
        let poll = Duration::from_millis(self.settings.poll_interval_ms);
        loop {
            let claimed = self.relay_once().await;
            if claimed > 0 {
                continue;
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
        self.drain().await;
    }

    /// On shutdown: publish what is due, bounded by the drain timeout.
    async fn drain(&self) {
        let deadline = Duration::from_millis(self.settings.drain_timeout_ms);
        let _ =
            tokio::time::timeout(deadline, async { while self.relay_once().await > 0 {} }).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1) <= Duration::from_millis(400));
        assert!(backoff(3) >= Duration::from_millis(800));
        assert!(backoff(30) <= Duration::from_secs(60));
    }
}
