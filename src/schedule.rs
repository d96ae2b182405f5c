//! When to try again, and when to run next: the one backoff of every retry loop (the gRPC retry
//! layer, the outbox relay, the DynamoDB store's and the seat inventory's short loops) and the one
//! periodic loop of the background sweepers.
//!
//! The backoff is tower-resilience's `ExponentialRandomBackoff`, the type the gRPC retry layer
//! (`grpc/resilience`) needs anyway, so that no second implementation (hand-written or `backon`)
//! sits next to it.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tower_resilience::retry::{ExponentialRandomBackoff, IntervalFunction};

/// Exponential backoff with jitter: retry `n` (from 0) waits `first × 2^n`, capped at `max`,
/// jittered by ±`jitter` (a fraction, 0 to 1).
#[derive(Clone, Debug)]
pub struct Backoff(ExponentialRandomBackoff);

impl Backoff {
    pub fn new(first: Duration, jitter: f64, max: Duration) -> Self {
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        Self(
            ExponentialRandomBackoff::new(first, jitter)
                .expect("a finite jitter within 0..=1 is valid")
                .max_interval(max),
        )
    }

    /// Between half and all of `first × 2^n` for retry `n`, capped at `max` ("equal jitter").
    pub fn half_to_full(first: Duration, max: Duration) -> Self {
        // ±1/3 around three quarters is the range from one half to all.
        Self::new(first.mul_f64(0.75), 1.0 / 3.0, max.mul_f64(0.75))
    }

    /// The wait before retry `n` (0 for the first retry).
    pub fn delay(&self, retry: u32) -> Duration {
        self.0.next_interval(retry as usize)
    }

    pub async fn sleep(&self, retry: u32) {
        tokio::time::sleep(self.delay(retry)).await;
    }
}

impl IntervalFunction for Backoff {
    fn next_interval(&self, attempt: usize) -> Duration {
        self.0.next_interval(attempt)
    }
}

/// Run `round` every `interval` (the first at once; a late tick is delayed, never bunched) until
/// `stop`. A round that answers `true` has more work waiting: it runs again at once.
pub async fn every<F, Fut>(interval: Duration, stop: CancellationToken, mut round: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {
                while round().await && !stop.is_cancelled() {}
            }
        }
    }
}

/// The bounds of [`retry_after_secs`], in seconds.
pub const RETRY_AFTER_SECS: std::ops::RangeInclusive<u64> = 1..=3;

/// The `Retry-After` of a 503/504 (and the wait a peer's UNAVAILABLE suggests): uniform over
/// [`RETRY_AFTER_SECS`], so that a crowd told to come back does not come back in the same second.
pub fn retry_after_secs() -> u64 {
    use rand::Rng;
    rand::rng().random_range(RETRY_AFTER_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_within_its_jitter_and_stops_at_its_cap() {
        let b = Backoff::new(Duration::from_millis(100), 0.5, Duration::from_millis(300));
        for _ in 0..50 {
            let first = b.delay(0);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(150));
            let second = b.delay(1);
            assert!(second >= Duration::from_millis(100) && second <= Duration::from_millis(300));
            assert!(b.delay(30) <= Duration::from_millis(450));
        }
    }

    #[test]
    fn half_to_full_stays_between_half_and_all() {
        let b = Backoff::half_to_full(Duration::from_millis(200), Duration::from_secs(60));
        for _ in 0..50 {
            let d = b.delay(2);
            // Within a microsecond of [400 ms, 800 ms]: the jitter is drawn in floating point.
            assert!(d >= Duration::from_micros(399_999) && d <= Duration::from_micros(800_001));
        }
        let zero = Backoff::half_to_full(Duration::ZERO, Duration::from_secs(1));
        assert_eq!(zero.delay(3), Duration::ZERO);
    }

    #[tokio::test]
    async fn every_runs_at_once_again_while_work_waits_and_ends_on_stop() {
        let stop = CancellationToken::new();
        let mut rounds = 0;
        let s = stop.clone();
        every(Duration::from_secs(60), stop.clone(), || {
            rounds += 1;
            // Two full rounds, then an idle one, then stop.
            let more = rounds < 3;
            if rounds == 3 {
                s.cancel();
            }
            async move { more }
        })
        .await;
        assert_eq!(rounds, 3);
    }

    #[test]
    fn retry_after_varies_within_its_bounds() {
        let seen: std::collections::BTreeSet<u64> =
            (0..1000).map(|_| super::retry_after_secs()).collect();
        assert!(
            seen.iter().all(|s| super::RETRY_AFTER_SECS.contains(s)),
            "{seen:?}"
        );
        assert!(seen.len() > 1, "jittered: {seen:?}");
        assert_eq!(
            seen.len(),
            3,
            "every second of the window is used: {seen:?}"
        );
    }
}
