//! The seat inventory as the service sees it: hold, commit, release.
//!
//! [`engine::SeatInventory`] is the bundled in-memory inventory; [`local::LocalInventory`] calls it
//! in process. [`seats::SeatEngine`] is the trait the bundled gRPC server runs on, implemented by
//! the in-memory engine and by [`dynamo::DynamoSeats`] (a table shared by many processes).

pub mod catalog;
pub mod dynamo;
pub mod engine;
pub mod hall;
pub mod local;
pub mod metrics;
pub mod seats;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seat {
    pub id: String,
    pub section: String,
    pub row: String,
    pub number: String,
    /// In the currency's minor unit.
    pub price: i64,
    pub currency: String,
}

/// A seat's status on the seat map; who holds a seat is never said.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SeatMapStatus {
    Available,
    /// Held by a hold that has not run out yet (a hold past its expiry is AVAILABLE).
    Held,
    Sold,
}

/// A priced section of an event, in catalogue order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionInfo {
    pub id: String,
    pub name: String,
    /// In the currency's minor unit.
    pub price: i64,
}

/// An event's seat map, or one page of it (whole rows, in catalogue order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeatMap {
    pub currency: String,
    pub sections: Vec<SectionInfo>,
    pub seats: Vec<(Seat, SeatMapStatus)>,
    /// The row index the next page starts at; `None` on the last page.
    pub next_row: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldRequest {
    pub reservation_id: String,
    pub event_id: String,
    /// Empty: the inventory picks the best available `qty` seats.
    pub seat_ids: Vec<String>,
    pub qty: u32,
    pub user_id: String,
    pub hold_expires_at: DateTime<Utc>,
    pub idempotency_key: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HoldOutcome {
    Held {
        seats: Vec<Seat>,
        hold_expires_at: DateTime<Utc>,
    },
    /// Seats taken or not enough left.
    Unavailable {
        message: String,
        seat_ids: Vec<String>,
    },
    /// The request names an event or seat the inventory does not have.
    Invalid { field: String, message: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitRequest {
    pub reservation_id: String,
    pub event_id: String,
    pub seat_ids: Vec<String>,
    pub qty: u32,
    pub payment_intent_id: String,
    pub user_id: String,
    pub idempotency_key: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommitOutcome {
    Committed {
        committed_at: DateTime<Utc>,
        /// The intent the first commit was made with (a repeat answers it too), so that a sale
        /// whose confirm never wrote can be completed from the inventory alone. Empty: the
        /// inventory does not say (an older one).
        payment_intent_id: String,
    },
    /// The hold ran out before the commit.
    Expired,
    /// No live hold of this reservation for this user (released, unknown, another holder).
    Conflict { message: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseReason {
    Expired,
    Cancelled,
    FailedPayment,
}

impl ReleaseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Expired => "EXPIRED",
            Self::Cancelled => "CANCELLED",
            Self::FailedPayment => "FAILED_PAYMENT",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "EXPIRED" => Self::Expired,
            "CANCELLED" => Self::Cancelled,
            "FAILED_PAYMENT" => Self::FailedPayment,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseRequest {
    pub reservation_id: String,
    pub event_id: String,
    pub seat_ids: Vec<String>,
    pub qty: u32,
    pub reason: ReleaseReason,
    pub idempotency_key: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReleaseOutcome {
    Released,
    /// Nothing held any more (released before, or the hold ran out on its own).
    AlreadyReleased,
    NotFound,
    /// The seats are sold: a release never frees them.
    Refused {
        message: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    #[error("inventory deadline exceeded")]
    Timeout,
    #[error("inventory unavailable: {message}")]
    Unavailable {
        message: String,
        retry_after_secs: u64,
    },
    #[error("inventory failure: {0}")]
    Internal(String),
}

#[async_trait]
pub trait Inventory: Send + Sync + 'static {
    async fn reserve(&self, req: HoldRequest) -> Result<HoldOutcome, InventoryError>;
    async fn commit(&self, req: CommitRequest) -> Result<CommitOutcome, InventoryError>;
    async fn release(&self, req: ReleaseRequest) -> Result<ReleaseOutcome, InventoryError>;
    /// The whole seat map of an event, statuses as of now. `None`: no such event.
    async fn seat_map(&self, event_id: &str) -> Result<Option<SeatMap>, InventoryError>;
}
