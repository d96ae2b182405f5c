//! The use cases: create, get, confirm, cancel, expire.
//!
//! Seat-changing races are settled by the inventory (a commit and a release of one hold cannot
//! both succeed) and state races by the store's conditional writes; the loser re-reads and answers
//! from what won.

mod ambiguity;
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

use crate::domain::reservation::{CancelPlan, ConfirmPlan};
use crate::domain::{
    ids, ConfirmInput, CreateInput, EventType, Order, OutboxEvent, Reservation, ReservationStatus,
};
use crate::idempotency::{Begin, IdempotencyCompletion, IdempotencyTicket, StoredResponse};
use crate::inventory::{
    CommitOutcome, CommitRequest, HoldOutcome, HoldRequest, Inventory, InventoryError,
    ReleaseOutcome, ReleaseReason, ReleaseRequest,
};
use crate::payment::{self, PaymentQuery, Payments};
use crate::store::{ConflictKind, Store, StoreError, Transition};
use crate::telemetry::metrics::MethodTimer;
use ambiguity::{is_transition, unknown_outcome, Resolution};
use views::{Cancelled, Confirmed, HoldCreated, ReservationView};

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
        }
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
        let r = self.load(id).await?;
        r.ensure_owner(&caller.user_id)?;
        Ok(ReservationView::of(&r, r.effective_status(now_ms())))
    }

    #[tracing::instrument(name = "ReservationService.confirm", skip_all, fields(otel.kind = "internal"))]
    pub async fn confirm(
        &self,
        caller: &Caller,
        id: &str,
        input: &ConfirmInput,
        ticket: &IdempotencyTicket,
    ) -> Result<Reply, ServiceError> {
        let _timer = MethodTimer::start("confirm");
        let r = self.load(id).await?;
        let intent = &input.payment_intent_id;
        let plan = r.plan_confirm(&caller.user_id, intent, now_ms())?;
        if let ConfirmPlan::AlreadyConfirmed { order_id } = plan {
            return Ok(unrecorded(StoredResponse::json(
                200,
                &Confirmed::of(id, &order_id),
            )));
        }
        // Past the deadline only a sale the inventory already made may be finished; every other
        // late confirm is RESERVATION_EXPIRED, whatever its payment.
        let late = plan == ConfirmPlan::ProceedIfSold;
        let query = PaymentQuery {
            payment_intent_id: intent.clone(),
            user_id: caller.user_id.clone(),
            reservation_id: r.id.clone(),
            amount: r.total_price,
            currency: r.currency.clone(),
        };
        let record = self.payments.lookup(&query).await?;
        if let Err(why) = payment::approve(&query, record.as_ref()) {
            return Err(if late {
                ServiceError::Expired
            } else {
                ServiceError::PaymentNotApproved(why)
            });
        }

        let committed = self
            .inventory
            .commit(CommitRequest {
                reservation_id: r.id.clone(),
                event_id: r.event_id.clone(),
                seat_ids: r.seat_ids.clone(),
                qty: r.qty,
                payment_intent_id: intent.clone(),
                user_id: r.user_id.clone(),
                idempotency_key: r.idempotency_key.clone(),
            })
            .await?;
        match committed {
            CommitOutcome::Committed { .. } => {}
            CommitOutcome::Expired => return Err(ServiceError::Expired),
            CommitOutcome::Conflict { .. } if late => return Err(ServiceError::Expired),
            CommitOutcome::Conflict { .. } => return self.confirm_lost(caller, id, intent).await,
        }

        let now = now_ms();
        let order = order_for(&r, intent, now);
        let next = r.confirmed(&order.id, intent, now)?;
        let event = OutboxEvent::for_reservation(
            EventType::Confirmed,
            &next,
            Some(&order),
            &caller.trace_id,
            now,
        );
        let response = StoredResponse::json(200, &Confirmed::of(id, &order.id));
        let completion = IdempotencyCompletion {
            ticket: ticket.clone(),
            response: response.clone(),
        };
        let t = Transition {
            next: &next,
            expected_version: r.version,
            order: Some(&order),
            event: &event,
            completion: Some(&completion),
        };
        match self.store.transition(t).await {
            Ok(()) => {
                self.written(ReservationStatus::Confirmed);
                Ok(Reply {
                    response,
                    recorded: true,
                })
            }
            Err(e)
                if e.is_ambiguous()
                    || e == StoreError::Conflict(ConflictKind::StaleReservation) =>
            {
                // A stale version may be our own earlier attempt, retried after its answer was
                // lost. Nothing is compensated here (a sale is never undone), so no fence.
                match self.resolve(id, is_transition(&next), None).await {
                    Resolution::Landed => {
                        tracing::info!(reservation_id = %id, error = %e, "the confirm's write landed although its answer was lost");
                        self.written(ReservationStatus::Confirmed);
                        // Not `recorded`: the write that landed may be another request's with
                        // the same look, and then our key is still IN_PROGRESS. Storing the
                        // answer settles it; if our own write stored it, that is a no-op.
                        Ok(Reply {
                            response,
                            recorded: false,
                        })
                    }
                    Resolution::NotLanded(Some(moved)) if moved.version != r.version => {
                        self.confirm_lost_to(&moved, caller, intent)
                    }
                    Resolution::NotLanded(_) | Resolution::Unknown(_) => Err(unknown_outcome(&e)),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Another writer moved the reservation first: answer from what it is now.
    async fn confirm_lost(
        &self,
        caller: &Caller,
        id: &str,
        intent: &str,
    ) -> Result<Reply, ServiceError> {
        let r = self.load(id).await?;
        self.confirm_lost_to(&r, caller, intent)
    }

    fn confirm_lost_to(
        &self,
        r: &Reservation,
        caller: &Caller,
        intent: &str,
    ) -> Result<Reply, ServiceError> {
        match r.plan_confirm(&caller.user_id, intent, now_ms())? {
            ConfirmPlan::AlreadyConfirmed { order_id } => Ok(unrecorded(StoredResponse::json(
                200,
                &Confirmed::of(&r.id, &order_id),
            ))),
            ConfirmPlan::Proceed => Err(ServiceError::InvalidState(
                "the reservation is no longer held".into(),
            )),
            ConfirmPlan::ProceedIfSold => Err(ServiceError::Expired),
        }
    }

    #[tracing::instrument(name = "ReservationService.cancel", skip_all, fields(otel.kind = "internal"))]
    pub async fn cancel(
        &self,
        caller: &Caller,
        id: &str,
        ticket: &IdempotencyTicket,
    ) -> Result<Reply, ServiceError> {
        let _timer = MethodTimer::start("cancel");
        let r = self.load(id).await?;
        let done = || unrecorded(StoredResponse::json(200, &Cancelled::of(id)));
        if r.plan_cancel(&caller.user_id, now_ms())? == CancelPlan::AlreadyCancelled {
            return Ok(done());
        }
        if let ReleaseOutcome::Refused { .. } = self.release(&r, ReleaseReason::Cancelled).await? {
            // A confirm committed the seats first.
            return match self
                .load(id)
                .await?
                .plan_cancel(&caller.user_id, now_ms())?
            {
                CancelPlan::AlreadyCancelled => Ok(done()),
                CancelPlan::Proceed => Err(ServiceError::InvalidState(
                    "the reservation is being confirmed".into(),
                )),
            };
        }
        let now = now_ms();
        let next = r.transitioned(ReservationStatus::Cancelled, now)?;
        let event =
            OutboxEvent::for_reservation(EventType::Cancelled, &next, None, &caller.trace_id, now);
        let response = StoredResponse::json(200, &Cancelled::of(id));
        let completion = IdempotencyCompletion {
            ticket: ticket.clone(),
            response: response.clone(),
        };
        let t = Transition {
            next: &next,
            expected_version: r.version,
            order: None,
            event: &event,
            completion: Some(&completion),
        };
        match self.store.transition(t).await {
            Ok(()) => {
                self.written(ReservationStatus::Cancelled);
                Ok(Reply {
                    response,
                    recorded: true,
                })
            }
            Err(e)
                if e.is_ambiguous()
                    || e == StoreError::Conflict(ConflictKind::StaleReservation) =>
            {
                // The seats are released already; only the record's outcome is in doubt.
                let found = match self.resolve(id, is_transition(&next), None).await {
                    Resolution::Landed => {
                        tracing::info!(reservation_id = %id, error = %e, "the cancel's write landed although its answer was lost");
                        self.written(ReservationStatus::Cancelled);
                        // Not `recorded`: two cancels in the same millisecond write the same
                        // look, so the write that landed may be the other one's, and then our
                        // key is still IN_PROGRESS. Storing the answer settles it either way.
                        return Ok(Reply {
                            response,
                            recorded: false,
                        });
                    }
                    Resolution::NotLanded(Some(found)) if found.version != r.version => *found,
                    Resolution::NotLanded(_) | Resolution::Unknown(_) => {
                        return Err(unknown_outcome(&e))
                    }
                };
                match found.plan_cancel(&caller.user_id, now_ms())? {
                    CancelPlan::AlreadyCancelled => Ok(done()),
                    CancelPlan::Proceed => Err(ServiceError::InvalidState(
                        "the reservation changed; try again".into(),
                    )),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Expire one due hold: release its seats, then write EXPIRED with its event. Safe to run from
    /// several replicas at once: the release repeats its answer and only one write wins.
    #[tracing::instrument(name = "ReservationService.expire", skip_all, fields(otel.kind = "internal"))]
    pub async fn expire(&self, r: &Reservation) -> Result<bool, ServiceError> {
        let _timer = MethodTimer::start("expire");
        let now = now_ms();
        if r.status != ReservationStatus::Hold || r.hold_expires_at > now {
            return Ok(false);
        }
        if let ReleaseOutcome::Refused { message } = self.release(r, ReleaseReason::Expired).await?
        {
            // Sold by a confirm that died after its commit (or has not written yet): finish it.
            return self.reconcile_sold(r, &message).await;
        }
        let next = r.transitioned(ReservationStatus::Expired, now)?;
        // The sweeper's own trace: the expiry span.
        let trace_id = crate::telemetry::trace::current_trace_id();
        let event =
            OutboxEvent::for_reservation(EventType::HoldExpired, &next, None, &trace_id, now);
        let t = Transition {
            next: &next,
            expected_version: r.version,
            order: None,
            event: &event,
            completion: None,
        };
        match self.store.transition(t).await {
            Ok(()) => {
                self.written(ReservationStatus::Expired);
                tracing::info!(reservation_id = %r.id, "hold expired");
                Ok(true)
            }
            Err(StoreError::Conflict(ConflictKind::StaleReservation)) => Ok(false),
            Err(e) if e.is_ambiguous() => {
                match self.resolve(&r.id, is_transition(&next), None).await {
                    Resolution::Landed => {
                        self.written(ReservationStatus::Expired);
                        Ok(true)
                    }
                    // The next sweep tries again.
                    Resolution::NotLanded(_) | Resolution::Unknown(_) => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn due_holds(&self, limit: usize) -> Result<Vec<Reservation>, ServiceError> {
        Ok(self.store.due_holds(now_ms(), limit).await?)
    }

    // --- helpers -----------------------------------------------------------------------------

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

/// The order a sale of `r` with payment `intent` writes.
fn order_for(r: &Reservation, intent: &str, now: DateTime<Utc>) -> Order {
    Order {
        id: ids::new_order_id(),
        reservation_id: r.id.clone(),
        user_id: r.user_id.clone(),
        event_id: r.event_id.clone(),
        seat_ids: r.seat_ids.clone(),
        total_amount: r.total_price,
        currency: r.currency.clone(),
        status: "CONFIRMED".into(),
        payment_intent_id: intent.to_owned(),
        created_at: now,
    }
}

fn unrecorded(response: StoredResponse) -> Reply {
    Reply {
        response,
        recorded: false,
    }
}
