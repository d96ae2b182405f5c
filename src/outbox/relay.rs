//! OutboxRelay: one background task per replica. Woken by every write that adds an event; polling
//! stays as the safety net (and picks up claims whose replica died once their lease ends).
//!
//! Attempts count only entries the sink judged: when the sink is unreachable as a whole, the
//! claimed events go back unchanged and the relay backs off, so an outage delays events but never
//! burns them to FAILED.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::EventSink;
use crate::config::OutboxSettings;
use crate::domain::OutboxEvent;
use crate::store::{Settlement, Store};

pub struct OutboxRelay {
    store: Arc<dyn Store>,
    sink: Arc<dyn EventSink>,
    wake: Arc<Notify>,
    owner: String,
    settings: OutboxSettings,
}

/// Exponential backoff with jitter: between half and all of `base × 2^(attempts-1)`, capped at 60 s.
pub fn backoff(base_ms: u64, attempts: u32) -> Duration {
    let cap = base_ms
        .saturating_mul(1 << attempts.saturating_sub(1).min(20))
        .clamp(1, 60_000);
    Duration::from_millis(rand::rng().random_range(cap / 2..=cap))
}

/// What one round did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Round {
    pub claimed: usize,
    /// The sink could not be reached: back off before the next round.
    pub sink_down: bool,
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

    /// Claim one batch, publish it, settle each event.
    pub async fn relay_once(&self) -> Round {
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
                return Round::default();
            }
        };
        if batch.is_empty() {
            return Round::default();
        }
        let round = match self.sink.publish(&batch).await {
            Ok(results) => {
                for (event, result) in batch.iter().zip(results) {
                    self.settle(event, result.map_err(|e| e.message)).await;
                }
                Round {
                    claimed: batch.len(),
                    sink_down: false,
                }
            }
            Err(e) => {
                tracing::warn!(error = %e.message, events = batch.len(), "event sink unreachable; will retry");
                let next_retry_at = Utc::now()
                    + chrono::Duration::milliseconds(self.settings.backoff_base_ms as i64);
                for event in &batch {
                    metrics::counter!("outbox_events_published_total", "type" => event.event_type.as_str(), "result" => "deferred")
                        .increment(1);
                    let how = Settlement::Retry {
                        attempts: event.attempts,
                        next_retry_at,
                        error: e.message.clone(),
                    };
                    self.settle_quietly(event, how).await;
                }
                Round {
                    claimed: batch.len(),
                    sink_down: true,
                }
            }
        };
        round
    }

    /// The pending depth for the gauge: a count over the outbox index, so done on the poll tick
    /// rather than after every batch.
    async fn record_depth(&self) {
        if let Ok(depth) = self.store.pending_events().await {
            metrics::gauge!("outbox_pending_events").set(depth as f64);
        }
    }

    async fn settle(&self, event: &OutboxEvent, result: Result<(), String>) {
        let attempts = event.attempts + 1;
        let (how, outcome) = match result {
            Ok(()) => {
                let lag = (Utc::now() - event.created_at).num_milliseconds().max(0) as f64 / 1000.0;
                metrics::histogram!("outbox_publish_lag_seconds").record(lag);
                (Settlement::Published { at: Utc::now() }, "published")
            }
            Err(error) if attempts < self.settings.max_attempts => {
                let wait = backoff(self.settings.backoff_base_ms, attempts);
                let next_retry_at =
                    Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
                tracing::warn!(event_id = %event.id, %error, attempts, "event rejected; will retry");
                (
                    Settlement::Retry {
                        attempts,
                        next_retry_at,
                        error,
                    },
                    "retried",
                )
            }
            Err(error) => {
                tracing::error!(event_id = %event.id, %error, attempts, "outbox event FAILED");
                (Settlement::Failed { attempts, error }, "failed")
            }
        };
        metrics::counter!("outbox_events_published_total", "type" => event.event_type.as_str(), "result" => outcome)
            .increment(1);
        self.settle_quietly(event, how).await;
    }

    async fn settle_quietly(&self, event: &OutboxEvent, how: Settlement) {
        if let Err(e) = self.store.settle_event(&event.id, &self.owner, how).await {
            // Our lease ran out and another relay took the event: it settles it.
            tracing::warn!(event_id = %event.id, error = %e, "could not settle outbox event");
        }
    }

    pub async fn run(self, stop: CancellationToken) {
        let poll = Duration::from_millis(self.settings.poll_interval_ms);
        let mut outage = 0u32;
        loop {
            let round = self.relay_once().await;
            let pause = if round.sink_down {
                outage += 1;
                backoff(self.settings.backoff_base_ms, outage).min(Duration::from_secs(5))
            } else if round.claimed > 0 {
                outage = 0;
                continue;
            } else {
                outage = 0;
                self.record_depth().await;
                poll
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.wake.notified(), if !round.sink_down => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
        self.drain().await;
    }

    /// On shutdown: publish what is due, bounded by the drain timeout.
    async fn drain(&self) {
        let deadline = Duration::from_millis(self.settings.drain_timeout_ms);
        let _ = tokio::time::timeout(deadline, async {
            loop {
                let r = self.relay_once().await;
                if r.claimed == 0 || r.sink_down {
                    break;
                }
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        for _ in 0..50 {
            let first = backoff(200, 1);
            assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(200));
            let third = backoff(200, 3);
            assert!(third >= Duration::from_millis(400) && third <= Duration::from_millis(800));
            assert!(backoff(200, 40) <= Duration::from_secs(60));
        }
    }
}
