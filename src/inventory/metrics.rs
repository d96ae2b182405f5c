//! The bundled inventory's metrics: `inventory_holds_total{result}`,
//! `inventory_operation_duration_seconds{op}` and `inventory_available_seats{event}` (set whenever
//! an event's counts are computed, and by [`sample_available`] on a timer). On DynamoDB the counts
//! come from the engine's seat snapshot, so the sampling reads nothing of its own.

use std::sync::Weak;
use std::time::{Duration, Instant};

use chrono::Utc;

use super::engine::{HoldResult, HoldState};
use super::seats::SeatEngine;
use super::HoldOutcome;

/// `held`, `repeat` (an answer to a hold made before), `unavailable` or `invalid`.
pub fn hold_result(r: &HoldResult) -> &'static str {
    match (&r.outcome, r.state) {
        (HoldOutcome::Held { .. }, Some(HoldState::Committed)) => "repeat",
        (HoldOutcome::Held { .. }, _) => "held",
        (HoldOutcome::Unavailable { .. }, _) => "unavailable",
        (HoldOutcome::Invalid { .. }, _) => "invalid",
    }
}

pub fn hold(result: &'static str) {
    metrics::counter!("inventory_holds_total", "result" => result).increment(1);
}

pub fn available(event_id: &str, seats: u32) {
    metrics::gauge!("inventory_available_seats", "event" => event_id.to_owned()).set(seats);
}

/// `inventory_operation_duration_seconds{op}`: recorded when dropped.
pub struct OpTimer {
    op: &'static str,
    started: Instant,
}

impl OpTimer {
    pub fn start(op: &'static str) -> Self {
        Self {
            op,
            started: Instant::now(),
        }
    }
}

impl Drop for OpTimer {
    fn drop(&mut self) {
        metrics::histogram!("inventory_operation_duration_seconds", "op" => self.op)
            .record(self.started.elapsed().as_secs_f64());
    }
}

/// How often [`sample_available`] counts.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(15);

/// Refresh `inventory_available_seats` for `events` every `every`, for as long as the engine is in
/// use (the task ends once the server holding it is gone). A failed count is skipped: the gauge
/// keeps its last value.
pub async fn sample_available(engine: Weak<dyn SeatEngine>, events: Vec<String>, every: Duration) {
    loop {
        let Some(e) = engine.upgrade() else { return };
        for id in &events {
            if let Ok(Some(c)) = e.counts(id, Utc::now()).await {
                available(id, c.sections.iter().map(|s| s.available).sum());
            }
        }
        drop(e);
        tokio::time::sleep(every).await;
    }
}
