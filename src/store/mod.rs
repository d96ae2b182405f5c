//! Storage in domain terms: every write here is one atomic write (on DynamoDB one
//! `TransactWriteItems` or conditional request), every read a consistent one.
//!
//! Implementations, chosen by `STORE`: [`memory::MemoryStore`] (the embedded default) and
//! [`dynamo::DynamoStore`] (one file per table under `dynamo/`). Both must pass
//! `tests/store_conformance.rs`. [`retention::RetentionSweeper`] removes what outlived its
//! retention from a store whose database does not expire items itself.

pub mod dynamo;
pub mod memory;
pub mod redrive;
pub mod retention;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use crate::domain::{Order, OutboxEvent, Reservation};
use crate::idempotency::{Begin, IdempotencyCompletion, IdempotencyRecord, IdempotencyTicket};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConflictKind {
    /// A reservation with this id already exists.
    ReservationExists,
    /// The reservation is no longer in the status and version the writer read.
    StaleReservation,
    /// The idempotency record is no longer IN_PROGRESS for this request (lease lost).
    IdempotencyLost,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("conditional write failed: {0:?}")]
    Conflict(ConflictKind),
    #[error("store deadline exceeded")]
    Timeout,
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store failure: {0}")]
    Internal(String),
}

impl StoreError {
    /// A failure after which the write may still have happened (its answer was lost, it timed
    /// out, or the server failed mid-way): only a read can tell.
    pub fn is_ambiguous(&self) -> bool {
        matches!(self, Self::Timeout | Self::Unavailable(_))
    }
}

/// A conditional move of a HOLD to its next state, with what must be written alongside.
#[derive(Clone, Debug)]
pub struct Transition<'a> {
    /// The reservation as it will be stored (its `version` is the new one).
    pub next: &'a Reservation,
    /// The version read before; the write succeeds only if the stored one is still HOLD at it.
    pub expected_version: u64,
    pub order: Option<&'a Order>,
    pub event: &'a OutboxEvent,
    pub completion: Option<&'a IdempotencyCompletion>,
}

/// A place in one user's reservations, newest first: ordered by `created_at`, then by id, both
/// descending. A page starts strictly after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserListPosition {
    pub created_at: DateTime<Utc>,
    pub id: String,
}

impl UserListPosition {
    pub fn of(r: &Reservation) -> Self {
        Self {
            created_at: r.created_at,
            id: r.id.clone(),
        }
    }
}

/// How a relay settles a claimed event.
#[derive(Clone, Debug, PartialEq)]
pub enum Settlement {
    Published {
        at: DateTime<Utc>,
    },
    Retry {
        attempts: u32,
        next_retry_at: DateTime<Utc>,
        error: String,
    },
    Failed {
        attempts: u32,
        error: String,
    },
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Mark `scoped_key` IN_PROGRESS for this request (lease `lease`), or report what is there.
    /// A completed record lives `ttl` from completion; expired records count as absent.
    async fn begin_request(
        &self,
        scoped_key: &str,
        request_hash: &str,
        now: DateTime<Utc>,
        lease: Duration,
        ttl: Duration,
    ) -> Result<Begin, StoreError>;

    /// Store an answer that changed nothing (a 4xx, or a repeat of a finished transition).
    async fn complete_request(&self, completion: &IdempotencyCompletion) -> Result<(), StoreError>;

    /// Free the key after a 5xx so that the client may retry.
    async fn abandon_request(&self, ticket: &IdempotencyTicket) -> Result<(), StoreError>;

    /// Write a new HOLD, its `hold.created` event and the request's answer, all or nothing.
    async fn create_hold(
        &self,
        reservation: &Reservation,
        event: &OutboxEvent,
        completion: Option<&IdempotencyCompletion>,
    ) -> Result<(), StoreError>;

    /// Move a HOLD on, conditional on its status and version, with order, event and answer.
    async fn transition(&self, t: Transition<'_>) -> Result<(), StoreError>;

    /// A strongly consistent read.
    async fn get_reservation(&self, id: &str) -> Result<Option<Reservation>, StoreError>;

    async fn get_order(&self, id: &str) -> Result<Option<Order>, StoreError>;

    /// Up to `limit` of `user_id`'s reservations, newest first (see [`UserListPosition`]),
    /// strictly after `after`. Reservations made later never land between two positions already
    /// handed out, so paging by the last position has no duplicates or gaps.
    async fn reservations_of_user(
        &self,
        user_id: &str,
        after: Option<&UserListPosition>,
        limit: usize,
    ) -> Result<Vec<Reservation>, StoreError>;

    /// HOLDs whose `hold_expires_at` is at or before `now`, oldest first.
    async fn due_holds(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Reservation>, StoreError>;

    /// Move a HOLD the sweeper could not expire out of the sweep's way (see `service::expiry`): due
    /// again at `Some(retry_at)`, or given up on (`None`): out of the sweep for good, and removed
    /// `Retention::failed` after its hold's end. Its status stays HOLD (read as EXPIRED past its
    /// end); nothing is released. False if it is no longer HOLD at `r.version`.
    async fn defer_expiry(
        &self,
        r: &Reservation,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError>;

    /// Claim up to `limit` due events for `owner` until `lease_until`. No event is handed to two
    /// claimers at once, and an event waits while an earlier one of its reservation is unsettled.
    async fn claim_events(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, StoreError>;

    /// Settle a batch of events this owner claimed, together. Answers the ids whose claim was
    /// lost (the lease ran out and another relay took the event: that relay settles it).
    async fn settle_events(
        &self,
        owner: &str,
        batch: &[(OutboxEvent, Settlement)],
    ) -> Result<Vec<String>, StoreError>;

    /// Settle one claimed event; a lost claim is a `Conflict`.
    async fn settle_event(
        &self,
        event: &OutboxEvent,
        owner: &str,
        how: Settlement,
    ) -> Result<(), StoreError> {
        let lost = self.settle_events(owner, &[(event.clone(), how)]).await?;
        match lost.is_empty() {
            true => Ok(()),
            false => Err(StoreError::Conflict(ConflictKind::StaleReservation)),
        }
    }

    /// Every outbox event of one reservation, oldest first (for operators and tests).
    async fn events_for(&self, reservation_id: &str) -> Result<Vec<OutboxEvent>, StoreError>;

    /// FAILED events, oldest first, at most `limit` (for `outbox redrive`; on DynamoDB a filtered
    /// scan of the outbox table).
    async fn failed_events(&self, limit: usize) -> Result<Vec<OutboxEvent>, StoreError>;

    /// Put a FAILED event back to PENDING, due at `now`, with its attempts reset; false if it is
    /// no longer FAILED. Callers keep a reservation's order: see [`redrive`].
    async fn redrive_event(
        &self,
        event: &OutboxEvent,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Events not yet PUBLISHED or FAILED.
    async fn pending_events(&self) -> Result<usize, StoreError>;

    /// A cheap round trip for the readiness probe.
    async fn ping(&self) -> Result<(), StoreError>;

    /// A full scan for audits and tests: every reservation, every event, every idempotency record.
    async fn audit(&self) -> Result<StoreAudit, StoreError>;

    /// Remove what outlived its retention at `now`, in one small step of at most `limit` items;
    /// answers how many it handled (fewer than `limit`: nothing more is due). A store whose
    /// database expires items itself (DynamoDB's TTL) removes nothing here.
    async fn purge_expired(&self, _now: DateTime<Utc>, _limit: usize) -> Result<usize, StoreError> {
        Ok(0)
    }

    /// Items held, by kind (`reservations`, `orders`, `idempotency`, `outbox`), where counting is
    /// cheap; `None` elsewhere.
    async fn item_counts(&self) -> Option<Vec<(&'static str, usize)>> {
        None
    }
}

/// How long finished records are kept (`OUTBOX_RETENTION_SECONDS`,
/// `RESERVATION_RETENTION_SECONDS`, `FAILED_RETENTION_SECONDS`); idempotency records live their
/// own TTL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// A PUBLISHED event, from its publication.
    pub outbox: Duration,
    /// A CONFIRMED, CANCELLED or EXPIRED reservation (and its order), from its last change.
    pub reservations: Duration,
    /// What the service gave up on, kept for an operator: a FAILED event (from its failure; `outbox
    /// redrive` puts it back) and a HOLD the sweeper could not finish (from its hold's end).
    pub failed: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            outbox: Duration::seconds(3600),
            reservations: Duration::seconds(86_400),
            failed: Duration::days(14),
        }
    }
}

/// What a full scan found.
#[derive(Clone, Debug, Default)]
pub struct StoreAudit {
    pub reservations: Vec<Reservation>,
    pub events: Vec<OutboxEvent>,
    pub records: Vec<IdempotencyRecord>,
}

impl StoreAudit {
    pub fn new(
        reservations: Vec<Reservation>,
        events: Vec<OutboxEvent>,
        records: Vec<IdempotencyRecord>,
    ) -> Self {
        Self {
            reservations,
            events,
            records,
        }
    }
}
