//! RetentionSweeper: the background task that removes what has outlived its retention from a
//! store that does not expire items itself (the embedded one), in small batches, and keeps the
//! `store_items{kind}` gauges current.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::Store;

pub struct RetentionSweeper {
    store: Arc<dyn Store>,
    interval: Duration,
    batch: usize,
}

impl RetentionSweeper {
    pub fn new(store: Arc<dyn Store>, interval: Duration, batch: usize) -> Self {
        Self {
            store,
            interval,
            batch: batch.max(1),
        }
    }

    /// Remove everything due at `now`, one batch (one short lock) at a time, letting requests in
    /// between; answers how many entries were handled.
    pub async fn sweep(&self, now: DateTime<Utc>) -> usize {
        let mut total = 0;
        loop {
            match self.store.purge_expired(now, self.batch).await {
                Ok(n) => {
                    total += n;
                    if n < self.batch {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not remove expired items");
                    break;
                }
            }
            tokio::task::yield_now().await;
        }
        self.record_counts().await;
        total
    }

    async fn record_counts(&self) {
        if let Some(counts) = self.store.item_counts().await {
            for (kind, n) in counts {
                metrics::gauge!("store_items", "kind" => kind).set(n as f64);
            }
        }
    }

    pub async fn run(self, stop: CancellationToken) {
        // `sweep` goes on until nothing is due, so a round never asks to run again at once.
        crate::schedule::every(self.interval, stop, || async {
            self.sweep(Utc::now()).await;
            false
        })
        .await;
    }
}
