//! HoldExpiry: the background sweeper that expires due holds. Several replicas may run it at once:
//! each expiry is a conditional write, so exactly one of them writes EXPIRED and its event.
//!
//! A hold whose expiry fails (the inventory or the store unreachable, an answer lost) is not
//! retried at every sweep, where it would sit at the head of its index shard: it is due again
//! after a delay that doubles with its age (1 s, 2 s, 4 s, … at most an hour). One still unfinished
//! [`GIVE_UP`] after its end leaves the sweep for good: it stays HOLD (read as EXPIRED), its seats
//! are left as they are (the inventory ends its own hold at the hold's end, and a seat that was
//! sold stays sold: nothing is freed on a guess), it is logged and counted
//! (`expiry_abandoned_total`), and it is removed `FAILED_RETENTION_SECONDS` after its end.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{now_ms, ReservationService};
use crate::domain::Reservation;

/// How long after its end the sweeper keeps trying to finish a hold (~17 attempts).
pub const GIVE_UP: chrono::Duration = chrono::Duration::hours(24);

/// When a hold whose expiry just failed at `now` is due again; `None`: give up.
pub fn retry_at(r: &Reservation, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let age = now - r.hold_expires_at;
    if age >= GIVE_UP {
        return None;
    }
    let delay = age.clamp(chrono::Duration::seconds(1), chrono::Duration::hours(1));
    Some(now + delay)
}

pub struct HoldExpiry {
    service: Arc<ReservationService>,
    interval: Duration,
    batch: usize,
}

impl HoldExpiry {
    pub fn new(service: Arc<ReservationService>, interval: Duration, batch: usize) -> Self {
        Self {
            service,
            interval,
            batch,
        }
    }

    /// Expire what is due now; returns how many holds this call expired.
    pub async fn sweep_once(&self) -> usize {
        let due = match self.service.due_holds(self.batch).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "could not list due holds");
                return 0;
            }
        };
        futures::stream::iter(due)
            .map(|r| {
                let service = self.service.clone();
                async move {
                    match service.expire(&r).await {
                        Ok(expired) => expired,
                        Err(e) => {
                            tracing::warn!(reservation_id = %r.id, error = %e, "could not expire hold");
                            defer(&service, &r).await;
                            false
                        }
                    }
                }
            })
            .buffer_unordered(16)
            .filter(|expired| futures::future::ready(*expired))
            .count()
            .await
    }

    pub async fn run(self, stop: CancellationToken) {
        // A full batch means more may be due: go again without waiting.
        crate::schedule::every(self.interval, stop, || async {
            self.sweep_once().await >= self.batch
        })
        .await;
    }
}

/// Move a hold whose expiry failed out of the next sweeps' way, or give up on it.
async fn defer(service: &ReservationService, r: &Reservation) {
    let at = retry_at(r, now_ms());
    match service.store.defer_expiry(r, at).await {
        Ok(true) if at.is_none() => {
            metrics::counter!("expiry_abandoned_total").increment(1);
            tracing::error!(reservation_id = %r.id, "gave up expiring a hold a day past its end; it stays HOLD until its retention ends");
        }
        Ok(_) => {}
        // The next sweep finds it again.
        Err(e) => {
            tracing::warn!(reservation_id = %r.id, error = %e, "could not defer a hold's expiry")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::reservation::tests::hold;

    #[test]
    fn a_failed_expiry_is_retried_later_and_later_then_given_up() {
        let now = now_ms();
        let mut r = hold(now);
        r.hold_expires_at = now;
        assert_eq!(retry_at(&r, now), Some(now + chrono::Duration::seconds(1)));
        r.hold_expires_at = now - chrono::Duration::seconds(8);
        assert_eq!(retry_at(&r, now), Some(now + chrono::Duration::seconds(8)));
        r.hold_expires_at = now - chrono::Duration::hours(5);
        assert_eq!(retry_at(&r, now), Some(now + chrono::Duration::hours(1)));
        r.hold_expires_at = now - GIVE_UP;
        assert_eq!(retry_at(&r, now), None);
    }
}
