//! The use cases: create and get here; confirm in `confirm.rs`; cancel and expire in `cancel.rs`.
//!
//! Seat-changing races are settled by the inventory (a commit and a release of one hold cannot
//! both succeed) and state races by the store's conditional writes; the loser re-reads and answers
//! from what won.

mod ambiguity;
mod cancel;
mod confirm;
pub mod error;
pub mod expiry;
pub mod listing;
mod reconcile;
mod seat_map;
pub mod views;

use std::sync::Arc;

use chrono::{DateTime, Duration, DurationRound, Utc};
use tokio::sync::Notify;

pub use error::ServiceError;

use crate::cache::RedisCache;
use crate::domain::{
    ids, CreateInput, EventType, Order, OutboxEvent, Reservation, ReservationStatus,
};
use crate::idempotency::{Begin, IdempotencyCompletion, IdempotencyTicket, StoredResponse};
use crate::inventory::{
    CommitRequest, HoldOutcome, HoldRequest, Inventory, InventoryError, ReleaseOutcome,
    ReleaseReason, ReleaseRequest,
};
use crate::payment::Payments;
use crate::store::{ConflictKind, Store, StoreError, Transition};
use crate::telemetry::metrics::MethodTimer;
use ambiguity::{unknown_outcome, Resolution};
use views::{HoldCreated, ReservationView};

#[derive(Clone, Debug)]
pub struct ServiceSettings {
    pub hold_ttl: Duration,
    pub idempotency_ttl: Duration,
    /// How long an IN_PROGRESS key stays locked if its request dies.
    pub idempotency_lease: Duration,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        Self {
            hold_ttl: Duration::seconds(60),
            idempotency_ttl: Duration::seconds(300),
            idempotency_lease: Duration::seconds(10),
        }
    }
}

/// Who is calling, and the trace the request belongs to.
#[derive(Clone, Debug)]
pub struct Caller {
    pub user_id: String,
    pub trace_id: String,
}

/// A use case's answer. `recorded`: the idempotency record was completed in the same write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub response: StoredResponse,
    pub recorded: bool,
}

/// Timestamps are kept to the millisecond so that every store round-trips them exactly.
pub fn now_ms() -> DateTime<Utc> {
    let now = Utc::now();
    now.duration_trunc(Duration::milliseconds(1)).unwrap_or(now)
}

pub struct ReservationService {
    store: Arc<dyn Store>,
    inventory: Arc<dyn Inventory>,
    payments: Arc<dyn Payments>,
    settings: ServiceSettings,
    /// Wakes the outbox relay after every write that adds an event.
    outbox_wake: Arc<Notify>,
    /// The read-through cache of `get` (`CACHE_REDIS_URL`); the store writes through to it.
    cache: Option<Arc<RedisCache>>,
}

impl ReservationService {
    pub fn new(
        store: Arc<dyn Store>,
        inventory: Arc<dyn Inventory>,
        payments: Arc<dyn Payments>,
        settings: ServiceSettings,
        outbox_wake: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            inventory,
            payments,
            settings,
            outbox_wake,
            cache: None,
        }
    }

    /// `get` reads `cache` first. The store must write through to the same cache
    /// ([`crate::cache::CachedStore`]), or a hit may be stale.
    pub fn with_cache(mut self, cache: Option<Arc<RedisCache>>) -> Self {
        self.cache = cache;
        self
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    // --- idempotency -------------------------------------------------------------------------

    pub async fn begin(&self, scoped_key: &str, fingerprint: &str) -> Result<Begin, ServiceError> {
        let s = &self.settings;
        let begun = self
            .store
            .begin_request(
                scoped_key,
                fingerprint,
                now_ms(),
                s.idempotency_lease,
                s.idempotency_ttl,
            )
            .await?;
        let result = match &begun {
            Begin::Started(_) => "started",
            Begin::Replay(_) => "replayed",
            Begin::InFlight => "in_flight",
            Begin::Conflict => "conflict",
        };
        metrics::counter!("idempotency_requests_total", "result" => result).increment(1);
        Ok(begun)
    }

    /// Store an answer that was not stored with a state change; free the key after a 5xx.
    pub async fn finish(&self, ticket: IdempotencyTicket, response: Option<StoredResponse>) {
        let outcome = match response {
            Some(response) => {
                self.store
                    .complete_request(&IdempotencyCompletion { ticket, response })
                    .await
            }
            None => self.store.abandon_request(&ticket).await,
        };
        if let Err(e) = outcome {
            // The lease runs out on its own; a retry then starts afresh.
            tracing::warn!(error = %e, "could not settle the idempotency record");
        }
    }

    // --- use cases ---------------------------------------------------------------------------

    /// Checks that need no I/O, done before the key is taken so that a bad request never uses it.
    pub fn check_create(&self, caller: &Caller, input: &CreateInput) -> Result<(), ServiceError> {
        match &input.user_id {
            Some(u) if *u != caller.user_id => Err(ServiceError::Forbidden(
                "user_id does not match the authenticated user".into(),
            )),
            _ => Ok(()),
        }
    }

    #[tracing::instrument(name = "ReservationService.create", skip_all, fields(otel.kind = "internal"))]
    pub async fn create(
        &self,
        caller: &Caller,
        input: &CreateInput,
        idempotency_key: &str,
        ticket: &IdempotencyTicket,
    ) -> Result<Reply, ServiceError> {
        let _timer = MethodTimer::start("create");
        let now = now_ms();
        let id = ids::new_reservation_id();
        let hold_expires_at = now + self.settings.hold_ttl;
        let hold = HoldRequest {
            reservation_id: id.clone(),
            event_id: input.event_id.clone(),
            seat_ids: input.seat_ids.clone().unwrap_or_default(),
            qty: input.qty,
            user_id: caller.user_id.clone(),
            hold_expires_at,
            idempotency_key: idempotency_key.to_owned(),
        };
        let outcome = match self.inventory.reserve(hold.clone()).await {
            Ok(o) => o,
            Err(e) => {
                // After a timeout the hold may have been made. No reservation will ever name
                // this id (a retry makes a new one), so giving it back is safe at any time: in
                // the background, so that the answer keeps its deadline. Other failures (refused,
                // unreachable, circuit open) are not given back, which would only add calls to a
                // failing peer: whatever hold exists then, like one whose give-back fails, the
                // inventory frees at `hold_expires_at`.
                if matches!(e, InventoryError::Timeout) {
                    self.release_unrecorded(hold);
                }
                return Err(e.into());
            }
        };
        let seats = match outcome {
            HoldOutcome::Held { seats, .. } => seats,
            HoldOutcome::Unavailable { message, .. } => {
                return Err(ServiceError::InventoryConflict(message))
            }
            HoldOutcome::Invalid { field, message } => {
                return Err(ServiceError::Validation(
                    message.clone(),
                    [(field, message)].into(),
                ))
            }
        };
        let r = Reservation {
            id,
            event_id: input.event_id.clone(),
            user_id: caller.user_id.clone(),
            status: ReservationStatus::Hold,
            seat_ids: seats.iter().map(|s| s.id.clone()).collect(),
            qty: input.qty,
            total_price: seats.iter().map(|s| s.price).sum(),
            currency: seats
                .first()
                .map(|s| s.currency.clone())
                .unwrap_or_default(),
            hold_expires_at,
            idempotency_key: idempotency_key.to_owned(),
            version: 1,
            order_id: None,
            payment_intent_id: None,
            created_at: now,
            updated_at: now,
        };
        let response = StoredResponse::json(201, &HoldCreated::of(&r));
        let event =
            OutboxEvent::for_reservation(EventType::HoldCreated, &r, None, &caller.trace_id, now);
        let completion = IdempotencyCompletion {
            ticket: ticket.clone(),
            response: response.clone(),
        };
        if let Err(e) = self.store.create_hold(&r, &event, Some(&completion)).await {
            self.create_failed(&r, ticket, e).await?;
        }
        self.written(ReservationStatus::Hold);
        Ok(Reply {
            response,
            recorded: true,
        })
    }

    #[tracing::instrument(name = "ReservationService.get", skip_all, fields(otel.kind = "internal"))]
    pub async fn get(&self, caller: &Caller, id: &str) -> Result<ReservationView, ServiceError> {
        let _timer = MethodTimer::start("get");
        let r = self.load_cached(id).await?;
        r.ensure_owner(&caller.user_id)?;
        Ok(ReservationView::of(&r, r.effective_status(now_ms())))
    }

    pub async fn due_holds(&self, limit: usize) -> Result<Vec<Reservation>, ServiceError> {
        Ok(self.store.due_holds(now_ms(), limit).await?)
    }

    // --- helpers -----------------------------------------------------------------------------

    /// For reading only (never before a write): the cached copy, else the store's, which then
    /// fills the cache in the background (a fill never replaces a newer version).
    async fn load_cached(&self, id: &str) -> Result<Reservation, ServiceError> {
        let Some(cache) = &self.cache else {
            return self.load(id).await;
        };
        if !ids::is_reservation_id(id) {
            return Err(ServiceError::NotFound);
        }
        if let Some(r) = cache.reservation(id).await {
            return Ok(r);
        }
        let r = self.load(id).await?;
        let (cache, fill) = (cache.clone(), r.clone());
        tokio::spawn(async move { cache.put_reservation(&fill).await });
        Ok(r)
    }

    async fn load(&self, id: &str) -> Result<Reservation, ServiceError> {
        if !ids::is_reservation_id(id) {
            return Err(ServiceError::NotFound);
        }
        self.store
            .get_reservation(id)
            .await?
            .ok_or(ServiceError::NotFound)
    }

    async fn release(
        &self,
        r: &Reservation,
        reason: ReleaseReason,
    ) -> Result<ReleaseOutcome, ServiceError> {
        Ok(self
            .inventory
            .release(ReleaseRequest {
                reservation_id: r.id.clone(),
                event_id: r.event_id.clone(),
                seat_ids: r.seat_ids.clone(),
                qty: r.qty,
                reason,
                idempotency_key: r.idempotency_key.clone(),
            })
            .await?)
    }

    /// The new HOLD's write failed. Release its seats only once the reservation is known to be
    /// absent for good; while that is unknown, keep the hold (it runs out at `hold_expires_at`,
    /// or the sweeper expires the reservation if it turns out to exist).
    async fn create_failed(
        &self,
        r: &Reservation,
        ticket: &IdempotencyTicket,
        e: StoreError,
    ) -> Result<(), ServiceError> {
        // The id is new, so a reservation already under it is our own earlier attempt.
        let may_have_landed =
            e.is_ambiguous() || e == StoreError::Conflict(ConflictKind::ReservationExists);
        if !may_have_landed {
            self.release(r, ReleaseReason::Cancelled).await.ok();
            return Err(e.into());
        }
        match self.resolve(&r.id, |_| true, Some(ticket)).await {
            Resolution::Landed => {
                tracing::info!(reservation_id = %r.id, error = %e, "the hold's write landed although its answer was lost");
                Ok(())
            }
            Resolution::NotLanded(_) => {
                self.release(r, ReleaseReason::Cancelled).await.ok();
                Err(unknown_outcome(&e))
            }
            Resolution::Unknown(read) => {
                tracing::warn!(reservation_id = %r.id, error = %e, %read, "the hold's write may have landed; keeping its seats held");
                Err(unknown_outcome(&e))
            }
        }
    }

    /// Give back, in the background, a hold no reservation records (best effort: holds run out
    /// on their own).
    fn release_unrecorded(&self, hold: HoldRequest) {
        let inventory = self.inventory.clone();
        tokio::spawn(async move {
            let release = ReleaseRequest {
                reservation_id: hold.reservation_id.clone(),
                event_id: hold.event_id,
                seat_ids: hold.seat_ids,
                qty: hold.qty,
                reason: ReleaseReason::Cancelled,
                idempotency_key: hold.idempotency_key,
            };
            if let Err(e) = inventory.release(release).await {
                tracing::warn!(reservation_id = %hold.reservation_id, error = %e, "could not give back a hold that may exist; it runs out on its own");
            }
        });
    }

    fn written(&self, status: ReservationStatus) {
        metrics::counter!("reservation_status_total", "status" => status.as_str()).increment(1);
        self.outbox_wake.notify_one();
    }
}

/// How a transition that carries its request's stored answer came out.
enum Answered {
    /// Written, answer included.
    Written(Reply),
    /// The write may or may not have landed (ambiguous, or the version moved, perhaps under our
    /// own earlier attempt): the caller resolves it by reading. The error and the answer come back.
    InDoubt(StoreError, StoredResponse),
}

impl ReservationService {
    /// Write `r` → `next` with its event (and order), storing `response` as the request's answer
    /// in the same atomic write (CONTRACT §4).
    async fn write_answered(
        &self,
        r: &Reservation,
        next: &Reservation,
        order: Option<&Order>,
        event: &OutboxEvent,
        ticket: &IdempotencyTicket,
        response: StoredResponse,
    ) -> Result<Answered, ServiceError> {
        let completion = IdempotencyCompletion {
            ticket: ticket.clone(),
            response,
        };
        let t = Transition {
            next,
            expected_version: r.version,
            order,
            event,
            completion: Some(&completion),
        };
        match self.store.transition(t).await {
            Ok(()) => {
                self.written(next.status);
                Ok(Answered::Written(Reply {
                    response: completion.response,
                    recorded: true,
                }))
            }
            Err(e)
                if e.is_ambiguous()
                    || e == StoreError::Conflict(ConflictKind::StaleReservation) =>
            {
                Ok(Answered::InDoubt(e, completion.response))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The inventory commit of a reservation's held seats: confirm sells with the caller's payment
/// intent; the sweeper's reconciliation repeats a commit (empty intent) to learn the first one's.
fn commit_request(r: &Reservation, payment_intent_id: String) -> CommitRequest {
    CommitRequest {
        reservation_id: r.id.clone(),
        event_id: r.event_id.clone(),
        seat_ids: r.seat_ids.clone(),
        qty: r.qty,
        payment_intent_id,
        user_id: r.user_id.clone(),
        idempotency_key: r.idempotency_key.clone(),
    }
}

fn unrecorded(response: StoredResponse) -> Reply {
    Reply {
        response,
        recorded: false,
    }
}
