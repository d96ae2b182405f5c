//! Confirm a hold, in named steps: plan from the reservation's state, check the payment, sell the
//! seats, record the sale. A writer that got there first is answered from what it wrote.

use chrono::{DateTime, Utc};

use crate::domain::reservation::ConfirmPlan;
use crate::domain::ReservationStatus;
use crate::domain::{ids, ConfirmInput, EventType, Order, OutboxEvent, Reservation};
use crate::idempotency::{IdempotencyTicket, StoredResponse};
use crate::inventory::CommitOutcome;
use crate::payment::{self, PaymentQuery};
use crate::store::StoreError;
use crate::telemetry::metrics::MethodTimer;

use super::ambiguity::{is_transition, unknown_outcome, Resolution};
use super::views::Confirmed;
use super::{
    commit_request, now_ms, unrecorded, Answered, Caller, Reply, ReservationService, ServiceError,
};

/// What the inventory's commit left us with.
enum Commit {
    /// The seats are sold to this reservation.
    Sold,
    /// Another writer moved the hold first (a cancel, an expiry, another confirm).
    Lost,
}

impl ReservationService {
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
        // Past the deadline only a sale the inventory already made may be finished; every other
        // late confirm is RESERVATION_EXPIRED, whatever its payment.
        let late = match r.plan_confirm(&caller.user_id, intent, now_ms())? {
            ConfirmPlan::AlreadyConfirmed { order_id } => {
                return Ok(already_confirmed(id, &order_id))
            }
            ConfirmPlan::Proceed => false,
            ConfirmPlan::ProceedIfSold => true,
        };
        self.check_payment(caller, &r, intent, late).await?;
        match self.sell_seats(&r, intent, late).await? {
            Commit::Sold => self.record_sale(caller, &r, intent, ticket).await,
            Commit::Lost => self.confirm_lost(caller, id, intent).await,
        }
    }

    /// The payment intent is approved, for this reservation, user, amount and currency.
    async fn check_payment(
        &self,
        caller: &Caller,
        r: &Reservation,
        intent: &str,
        late: bool,
    ) -> Result<(), ServiceError> {
        let query = PaymentQuery {
            payment_intent_id: intent.to_owned(),
            user_id: caller.user_id.clone(),
            reservation_id: r.id.clone(),
            amount: r.total_price,
            currency: r.currency.clone(),
        };
        let record = self.payments.lookup(&query).await?;
        payment::approve(&query, record.as_ref()).map_err(|why| match late {
            true => ServiceError::Expired,
            false => ServiceError::PaymentNotApproved(why),
        })
    }

    /// The inventory commits the held seats: the sale happens here, once.
    async fn sell_seats(
        &self,
        r: &Reservation,
        intent: &str,
        late: bool,
    ) -> Result<Commit, ServiceError> {
        let committed = self
            .inventory
            .commit(commit_request(r, intent.to_owned()))
            .await?;
        match committed {
            CommitOutcome::Committed { .. } => Ok(Commit::Sold),
            CommitOutcome::Expired => Err(ServiceError::Expired),
            CommitOutcome::Conflict { .. } if late => Err(ServiceError::Expired),
            CommitOutcome::Conflict { .. } => Ok(Commit::Lost),
        }
    }

    /// Write CONFIRMED with its order, its event and the key's answer, in one transition.
    async fn record_sale(
        &self,
        caller: &Caller,
        r: &Reservation,
        intent: &str,
        ticket: &IdempotencyTicket,
    ) -> Result<Reply, ServiceError> {
        let now = now_ms();
        let order = order_for(r, intent, now);
        let next = r.confirmed(&order.id, intent, now)?;
        let event = OutboxEvent::for_reservation(
            EventType::Confirmed,
            &next,
            Some(&order),
            &caller.trace_id,
            now,
        );
        let response = StoredResponse::json(200, &Confirmed::of(&r.id, &order.id));
        match self
            .write_answered(r, &next, Some(&order), &event, ticket, response)
            .await?
        {
            Answered::Written(reply) => Ok(reply),
            Answered::InDoubt(e, response) => {
                self.sale_in_doubt(caller, r, &next, intent, response, e)
                    .await
            }
        }
    }

    /// The sale's write failed in a way that may hide success: read what is stored. A stale
    /// version may be our own earlier attempt, retried after its answer was lost. Nothing is
    /// compensated here (a sale is never undone), so no fence.
    async fn sale_in_doubt(
        &self,
        caller: &Caller,
        r: &Reservation,
        next: &Reservation,
        intent: &str,
        response: StoredResponse,
        e: StoreError,
    ) -> Result<Reply, ServiceError> {
        match self.resolve(&r.id, is_transition(next), None).await {
            Resolution::Landed => {
                tracing::info!(reservation_id = %r.id, error = %e, "the confirm's write landed although its answer was lost");
                self.written(ReservationStatus::Confirmed);
                // Not `recorded`: the write that landed may be another request's with the same
                // look, and then our key is still IN_PROGRESS. Storing the answer settles it; if
                // our own write stored it, that is a no-op.
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
            ConfirmPlan::AlreadyConfirmed { order_id } => Ok(already_confirmed(&r.id, &order_id)),
            ConfirmPlan::Proceed => Err(ServiceError::InvalidState(
                "the reservation is no longer held".into(),
            )),
            ConfirmPlan::ProceedIfSold => Err(ServiceError::Expired),
        }
    }
}

/// The answer to a confirm of a reservation already CONFIRMED with this payment.
fn already_confirmed(id: &str, order_id: &str) -> Reply {
    unrecorded(StoredResponse::json(200, &Confirmed::of(id, order_id)))
}

/// The order a sale of `r` with payment `intent` writes.
pub(super) fn order_for(r: &Reservation, intent: &str, now: DateTime<Utc>) -> Order {
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
