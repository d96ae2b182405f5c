//! The bundled inventory's metrics: `inventory_holds_total{result}`,
//! `inventory_operation_duration_seconds{op}` and `inventory_available_seats{event}` (set whenever
//! an event's counts are computed, and by [`sample_available`] on a timer).

use std::time::{Duration, Instant};

use chrono::Utc;
use tokio_util::sync::CancellationToken;

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

/// Refresh `inventory_available_seats` for `events` every `every` until `stop`. A failed count is
/// skipped: the gauge keeps its last value.
pub async fn sample_available(
    engine: std::sync::Arc<dyn SeatEngine>,
    events: Vec<String>,
    every: Duration,
    stop: CancellationToken,
) {
    loop {
        for e in &events {
            if let Ok(Some(c)) = engine.counts(e, Utc::now()).await {
                available(e, c.sections.iter().map(|s| s.available).sum());
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
