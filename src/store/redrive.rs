//! `outbox redrive`: FAILED events back to PENDING with their attempts reset, so that the relay
//! publishes them again (docs/outbox.md, "Redrive and retention").
//!
//! Order-safe: a reservation's FAILED events are redriven lowest `seq` first, each one only once
//! the one before it is PENDING again, so the relay's ordering rule (an event waits while its
//! predecessor is unsettled) holds among them. Redriving one event redrives the FAILED events
//! before it too: alone, it would go out ahead of them.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::{Store, StoreError};
use crate::domain::{OutboxEvent, OutboxStatus};

/// Which FAILED events to redrive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Redrive {
    All,
    /// This event (by `event_id`, the `detail.id` consumers see), with the FAILED events of its
    /// reservation before it.
    Event(String),
}

/// FAILED events read per step of `Redrive::All`.
const PAGE: usize = 500;

/// Redrive `which` at `now`; answers the events put back, in the order they were.
pub async fn redrive(
    store: &dyn Store,
    which: &Redrive,
    now: DateTime<Utc>,
) -> Result<Vec<OutboxEvent>, StoreError> {
    match which {
        Redrive::All => redrive_all(store, now).await,
        Redrive::Event(id) => redrive_one(store, id, now).await,
    }
}

async fn redrive_all(
    store: &dyn Store,
    now: DateTime<Utc>,
) -> Result<Vec<OutboxEvent>, StoreError> {
    let mut done = Vec::new();
    // One pass: an event that fails again meanwhile is left for the next run.
    let mut seen = HashSet::new();
    loop {
        let page: Vec<OutboxEvent> = store
            .failed_events(PAGE)
            .await?
            .into_iter()
            .filter(|e| !seen.contains(&e.id))
            .collect();
        if page.is_empty() {
            return Ok(done);
        }
        // Oldest first: UUIDv7 ids sort by write time, so a reservation's events come in `seq`
        // order, within a page and across pages.
        for e in page {
            seen.insert(e.id.clone());
            if store.redrive_event(&e, now).await? {
                done.push(e);
            }
        }
    }
}

async fn redrive_one(
    store: &dyn Store,
    id: &str,
    now: DateTime<Utc>,
) -> Result<Vec<OutboxEvent>, StoreError> {
    let Some(target) = store
        .failed_events(usize::MAX)
        .await?
        .into_iter()
        .find(|e| e.id == id)
    else {
        return Ok(Vec::new());
    };
    let mut earlier: Vec<OutboxEvent> = store
        .events_for(&target.reservation_id)
        .await?
        .into_iter()
        .filter(|e| e.status == OutboxStatus::Failed && e.seq <= target.seq)
        .collect();
    earlier.sort_by_key(|e| e.seq);
    let mut done = Vec::new();
    for e in earlier {
        if store.redrive_event(&e, now).await? {
            done.push(e);
        }
    }
    Ok(done)
}
