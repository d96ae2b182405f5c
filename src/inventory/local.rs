//! The bundled inventory called in process.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;

use super::engine::SeatInventory;
use super::{
    CommitOutcome, CommitRequest, HoldOutcome, HoldRequest, Inventory, InventoryError,
    ReleaseOutcome, ReleaseRequest, SeatMap,
};

pub struct LocalInventory {
    seats: Arc<SeatInventory>,
}

impl LocalInventory {
    pub fn new(seats: Arc<SeatInventory>) -> Self {
        Self { seats }
    }
}

#[async_trait]
impl Inventory for LocalInventory {
    async fn reserve(&self, req: HoldRequest) -> Result<HoldOutcome, InventoryError> {
        Ok(self.seats.reserve(&req, Utc::now()).outcome)
    }

    async fn commit(&self, req: CommitRequest) -> Result<CommitOutcome, InventoryError> {
        Ok(self.seats.commit(&req, Utc::now()).0)
    }

    async fn release(&self, req: ReleaseRequest) -> Result<ReleaseOutcome, InventoryError> {
        Ok(self.seats.release(&req, Utc::now()).0)
    }

    async fn seat_map(&self, event_id: &str) -> Result<Option<SeatMap>, InventoryError> {
        Ok(self.seats.seat_page(event_id, 0, usize::MAX, Utc::now()))
    }
}
