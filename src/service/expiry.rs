//! HoldExpiry: the background sweeper that expires due holds. Several replicas may run it at once:
//! each expiry is a conditional write, so exactly one of them writes EXPIRED and its event.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::ReservationService;

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
