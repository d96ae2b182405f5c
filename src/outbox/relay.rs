//! OutboxRelay: one background task per replica. Woken by every write that adds an event; polling
//! stays as the safety net (and picks up claims whose replica died once their lease ends).
//!
//! A round claims up to `OUTBOX_BATCH_SIZE` events (100: one DynamoDB transaction), publishes them
//! in chunks of 10 (the most `PutEvents` takes), and settles them together, so that the store's
//! cost is paid per batch, not per event (docs/outbox.md).
//!
//! The round's size adapts to the store: a claim or settlement that times out or is throttled
//! halves it (a store that takes longer than its deadline for 100 items never publishes
//! anything otherwise), and rounds that succeed grow it back towards `OUTBOX_BATCH_SIZE`
//! ([`RoundSize`]).
//!
//! Attempts count only entries the sink judged: when the sink is unreachable as a whole, the
//! claimed events go back unchanged and the relay backs off, so an outage delays events but never
//! burns them to FAILED.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::round_size::RoundSize;
use super::EventSink;
use crate::config::OutboxSettings;
use crate::domain::OutboxEvent;
use crate::schedule::Backoff;
use crate::store::{Settlement, Store, StoreError};

/// How often an idle relay refreshes `outbox_pending_events`.
const DEPTH_EVERY: Duration = Duration::from_secs(10);
/// `PutEvents` takes at most 10 entries.
const PUT_EVENTS_MAX: usize = 10;

pub struct OutboxRelay {
    store: Arc<dyn Store>,
    sink: Arc<dyn EventSink>,
    wake: Arc<Notify>,
    owner: String,
    settings: OutboxSettings,
    size: RoundSize,
    /// The last round found the sink unreachable: the next one only probes it, with one
    /// `PutEvents` worth of events, rather than claiming and settling a full round again.
    probing: std::sync::atomic::AtomicBool,
}

/// A store failure that a smaller round may avoid: a deadline, throttling, or a server failure.
fn overloaded(e: &StoreError) -> bool {
    matches!(e, StoreError::Timeout | StoreError::Unavailable(_))
}

/// The wait after `attempts` failed attempts: between half and all of `base × 2^(attempts-1)`,
/// capped at 60 s (the shared [`Backoff`]).
pub fn backoff(base_ms: u64, attempts: u32) -> Duration {
    Backoff::half_to_full(Duration::from_millis(base_ms), Duration::from_secs(60))
        .delay(attempts.saturating_sub(1))
}

/// What one round did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Round {
    pub claimed: usize,
    /// The sink could not be reached: back off before the next round.
    pub sink_down: bool,
    /// The store timed out or throttled: the round shrank; pause briefly before the next.
    pub store_overloaded: bool,
    /// The round claimed as many as it asked for: more are probably waiting.
    pub full: bool,
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
            size: RoundSize::new(settings.batch_size),
            probing: false.into(),
            settings,
        }
    }

    /// The size the next round claims (it adapts to the store: [`RoundSize`]).
    pub fn round_size(&self) -> usize {
        self.size.get()
    }

    /// Claim one batch, publish it in `PutEvents`-sized chunks, settle it together.
    pub async fn relay_once(&self) -> Round {
        let started = std::time::Instant::now();
        let limit = match self.probing.load(std::sync::atomic::Ordering::Relaxed) {
            true => self.size.get().min(PUT_EVENTS_MAX),
            false => self.size.get(),
        };
        let now = Utc::now();
        let lease_until =
            now + chrono::Duration::from_std(self.settings.lease).unwrap_or(chrono::Duration::MAX);
        let batch = match self
            .store
            .claim_events(&self.owner, now, lease_until, limit)
            .await
        {
            Ok(b) => b,
            Err(e) if overloaded(&e) => {
                // A claim whose answer was lost may have landed: its events come back when
                // their lease ends (OUTBOX_LEASE_SECONDS), as after a relay that died.
                let next = self.size.shrink();
                tracing::warn!(error = %e, round = next, "outbox claim failed; smaller rounds");
                return Round {
                    store_overloaded: true,
                    ..Round::default()
                };
            }
            Err(e) => {
                tracing::warn!(error = %e, "outbox claim failed");
                return Round::default();
            }
        };
        if batch.is_empty() {
            tracing::trace!(asked = limit, "outbox round found nothing due");
            return Round::default();
        }
        let claimed_in = started.elapsed();
        // At most 10 calls in flight: a batch is at most 100 events.
        let results = futures::future::join_all(
            batch
                .chunks(PUT_EVENTS_MAX)
                .map(|chunk| self.sink.publish(chunk)),
        )
        .await;
        let mut sink_down = false;
        let mut settlements = Vec::with_capacity(batch.len());
        for (chunk, result) in batch.chunks(PUT_EVENTS_MAX).zip(results) {
            match result {
                Ok(entries) => {
                    for (event, entry) in chunk.iter().zip(entries) {
                        let how = self.judged(event, entry.map_err(|e| e.message));
                        settlements.push((event.clone(), how));
                    }
                }
                Err(e) => {
                    if !sink_down {
                        tracing::warn!(error = %e.message, events = batch.len(), "event sink unreachable; will retry");
                    }
                    sink_down = true;
                    let next_retry_at = Utc::now()
                        + chrono::Duration::from_std(self.settings.backoff_base)
                            .unwrap_or(chrono::Duration::MAX);
                    for event in chunk {
                        metrics::counter!("outbox_events_published_total", "type" => event.event_type.as_str(), "result" => "deferred")
                            .increment(1);
                        let how = Settlement::Retry {
                            attempts: event.attempts,
                            next_retry_at,
                            error: e.message.clone(),
                        };
                        settlements.push((event.clone(), how));
                    }
                }
            }
        }
        self.probing
            .store(sink_down, std::sync::atomic::Ordering::Relaxed);
        let published_in = started.elapsed();
        let settled = self.settle(&settlements).await;
        if settled {
            self.size.succeeded();
        } else {
            self.size.shrink();
        }
        tracing::debug!(
            claimed = batch.len(),
            sink_down,
            claim_ms = claimed_in.as_millis() as u64,
            publish_ms = (published_in - claimed_in).as_millis() as u64,
            settle_ms = (started.elapsed() - published_in).as_millis() as u64,
            next_round = self.size.get(),
            "outbox round"
        );
        Round {
            claimed: batch.len(),
            sink_down,
            store_overloaded: !settled,
            full: batch.len() >= limit,
        }
    }

    /// The pending depth for the gauge: a count over the outbox index (one query per shard on
    /// DynamoDB), so
    /// done on an idle poll tick at most every `DEPTH_EVERY`, rather than after every batch.
    async fn record_depth(&self, last: &mut Option<std::time::Instant>) {
        if last.is_some_and(|at| at.elapsed() < DEPTH_EVERY) {
            return;
        }
        *last = Some(std::time::Instant::now());
        if let Ok(depth) = self.store.pending_events().await {
            metrics::gauge!("outbox_pending_events").set(depth as f64);
        }
    }

    /// How to settle an event the sink judged.
    fn judged(&self, event: &OutboxEvent, result: Result<(), String>) -> Settlement {
        let attempts = event.attempts + 1;
        let (how, outcome) = match result {
            Ok(()) => {
                let lag = (Utc::now() - event.created_at).num_milliseconds().max(0) as f64 / 1000.0;
                metrics::histogram!("outbox_publish_lag_seconds").record(lag);
                (Settlement::Published { at: Utc::now() }, "published")
            }
            Err(error) if attempts < self.settings.max_attempts => {
                let wait = backoff(self.settings.backoff_base.as_millis() as u64, attempts);
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
        how
    }

    /// Settle the batch together. A settlement whose answer was lost may have landed, and a retry
    /// of it is harmless (its condition fails once it has), so failures are retried briefly;
    /// past that the events stay claimed until their lease ends and go out again (consumers
    /// dedupe on `detail.id`). Answers whether the settlement landed without a store failure
    /// that a smaller round may avoid.
    async fn settle(&self, settlements: &[(OutboxEvent, Settlement)]) -> bool {
        let mut clean = true;
        for attempt in 1..=3 {
            match self.store.settle_events(&self.owner, settlements).await {
                Ok(lost) => {
                    for id in lost {
                        // Our lease ran out and another relay took the event: it settles it.
                        tracing::warn!(event_id = %id, "outbox claim lost before settling");
                    }
                    return clean;
                }
                Err(e) if attempt < 3 => {
                    clean &= !overloaded(&e);
                    tracing::warn!(error = %e, attempt, "could not settle outbox events; retrying");
                    tokio::time::sleep(backoff(
                        self.settings.backoff_base.as_millis() as u64,
                        attempt,
                    ))
                    .await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, events = settlements.len(), "could not settle outbox events");
                }
            }
        }
        false
    }

    pub async fn run(self, stop: CancellationToken) {
        let poll = self.settings.poll_interval;
        let linger = self.settings.linger;
        let mut outage = 0u32;
        let mut depth_at = None;
        loop {
            let round = self.relay_once().await;
            let pause = if round.sink_down {
                outage += 1;
                backoff(self.settings.backoff_base.as_millis() as u64, outage)
                    .min(Duration::from_secs(5))
            } else if round.store_overloaded {
                outage = 0;
                backoff(self.settings.backoff_base.as_millis() as u64, 1)
            } else if round.full {
                // A full batch: more are waiting.
                outage = 0;
                continue;
            } else if round.claimed > 0 {
                // A part batch: let a few more events gather, so that a round's fixed cost is
                // shared by many events (docs/outbox.md).
                outage = 0;
                linger
            } else {
                outage = 0;
                self.record_depth(&mut depth_at).await;
                poll
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.wake.notified(), if !round.sink_down && !round.store_overloaded && round.claimed == 0 => {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(linger) => {}
                    }
                }
                _ = tokio::time::sleep(pause) => {}
            }
        }
        self.drain().await;
    }

    /// On shutdown: publish what is due, bounded by the drain timeout.
    async fn drain(&self) {
        let deadline = self.settings.drain_timeout;
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
    use crate::domain::EventType;
    use crate::outbox::{EntryResults, PublishError};
    use crate::store::memory::MemoryStore;

    /// EventBridge unreachable as a whole, counting the events offered to it.
    #[derive(Default)]
    struct Unreachable(std::sync::atomic::AtomicUsize);

    #[async_trait::async_trait]
    impl EventSink for Unreachable {
        async fn publish(&self, events: &[OutboxEvent]) -> Result<EntryResults, PublishError> {
            self.0
                .fetch_add(events.len(), std::sync::atomic::Ordering::Relaxed);
            Err(PublishError::new("connection refused"))
        }
    }

    #[tokio::test]
    async fn while_the_sink_is_unreachable_a_round_only_probes_it_with_one_call_of_events() {
        let store = Arc::new(MemoryStore::new());
        let now = Utc::now();
        for i in 0..150 {
            let mut r = crate::domain::reservation::tests::hold(now);
            r.id = format!("rsv_{i}");
            let e = OutboxEvent::for_reservation(EventType::HoldCreated, &r, None, "t", now);
            store.create_hold(&r, &e, None).await.unwrap();
        }
        let mut settings = crate::config::Config::default().outbox;
        settings.backoff_base = Duration::ZERO;
        let sink = Arc::new(Unreachable::default());
        let relay = OutboxRelay::new(store.clone(), sink.clone(), Arc::default(), settings);
        let first = relay.relay_once().await;
        assert!(first.sink_down);
        assert_eq!(first.claimed, 100, "the first round does not know yet");
        for _ in 0..5 {
            let probe = relay.relay_once().await;
            assert!(probe.sink_down);
            assert_eq!(
                probe.claimed, PUT_EVENTS_MAX,
                "a probe is one PutEvents call"
            );
        }
        assert_eq!(sink.0.load(std::sync::atomic::Ordering::Relaxed), 150);
        let audit = store.audit().await.unwrap();
        assert!(
            audit.events.iter().all(|e| e.attempts == 0),
            "an outage uses up no attempts"
        );
    }

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
