//! The seat engine behind the bundled inventory server: one async trait, two implementations —
//! [`SeatInventory`] in process memory (the `local` default) and
//! [`super::dynamo::DynamoSeats`] on a shared DynamoDB table, for any number of processes.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::engine::{HoldResult, SeatInventory, SectionCounts};
use super::{
    CommitOutcome, CommitRequest, HoldRequest, InventoryError, ReleaseOutcome, ReleaseRequest,
    Seat, SeatMap,
};

/// `GetInventoryStatus` of one event: its name and currency, and counts per section (best first).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventCounts {
    pub name: String,
    pub currency: String,
    pub sections: Vec<SectionCounts>,
}

/// Holds that are all-or-nothing and run out on their own, commits only by the holder before
/// expiry, releases that never free a sold seat; every call idempotent by reservation id.
/// Business outcomes are `Ok`; `Err` is a dependency failure worth a retry.
#[async_trait]
pub trait SeatEngine: Send + Sync + 'static {
    fn kind(&self) -> &'static str;

    async fn reserve(
        &self,
        req: &HoldRequest,
        now: DateTime<Utc>,
    ) -> Result<HoldResult, InventoryError>;

    async fn commit(
        &self,
        req: &CommitRequest,
        now: DateTime<Utc>,
    ) -> Result<(CommitOutcome, Vec<Seat>), InventoryError>;

    /// The outcome, the hold's seats, and when the (first) release happened.
    async fn release(
        &self,
        req: &ReleaseRequest,
        now: DateTime<Utc>,
    ) -> Result<(ReleaseOutcome, Vec<Seat>, DateTime<Utc>), InventoryError>;

    /// `None`: no such event.
    async fn counts(
        &self,
        event_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<EventCounts>, InventoryError>;

    /// The free seats among `seat_ids` (all free seats when empty) and the taken ones.
    /// `None`: no such event.
    async fn available(
        &self,
        event_id: &str,
        seat_ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<Option<(Vec<Seat>, Vec<String>)>, InventoryError>;

    /// One page of the seat map: whole rows from row index `first_row` (catalogue order), no more
    /// than `max_seats` seats unless the first row alone has more. `None`: no such event.
    async fn seat_page(
        &self,
        event_id: &str,
        first_row: usize,
        max_seats: usize,
        now: DateTime<Utc>,
    ) -> Result<Option<SeatMap>, InventoryError>;
}

#[async_trait]
impl SeatEngine for SeatInventory {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn reserve(
        &self,
        req: &HoldRequest,
        now: DateTime<Utc>,
    ) -> Result<HoldResult, InventoryError> {
        Ok(SeatInventory::reserve(self, req, now))
    }

    async fn commit(
        &self,
        req: &CommitRequest,
        now: DateTime<Utc>,
    ) -> Result<(CommitOutcome, Vec<Seat>), InventoryError> {
        Ok(SeatInventory::commit(self, req, now))
    }

    async fn release(
        &self,
        req: &ReleaseRequest,
        now: DateTime<Utc>,
    ) -> Result<(ReleaseOutcome, Vec<Seat>, DateTime<Utc>), InventoryError> {
        Ok(SeatInventory::release(self, req, now))
    }

    async fn counts(
        &self,
        event_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<EventCounts>, InventoryError> {
        let Some(sections) = SeatInventory::counts(self, event_id, now) else {
            return Ok(None);
        };
        Ok(Some(EventCounts {
            name: self.event_name(event_id).unwrap_or_default().to_owned(),
            currency: self.currency(event_id).unwrap_or_default(),
            sections,
        }))
    }

    async fn available(
        &self,
        event_id: &str,
        seat_ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<Option<(Vec<Seat>, Vec<String>)>, InventoryError> {
        Ok(SeatInventory::available(self, event_id, seat_ids, now))
    }

    async fn seat_page(
        &self,
        event_id: &str,
        first_row: usize,
        max_seats: usize,
        now: DateTime<Utc>,
    ) -> Result<Option<SeatMap>, InventoryError> {
        Ok(SeatInventory::seat_page(
            self, event_id, first_row, max_seats, now,
        ))
    }
}
