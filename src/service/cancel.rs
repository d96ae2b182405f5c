//! A hold that ends without a sale: cancelled by its owner, or expired by the sweeper. Both give
//! the seats back first, then write the new state; a sale that won the race is answered (cancel)
//! or finished (expire).

use crate::domain::reservation::CancelPlan;
use crate::domain::{EventType, OutboxEvent, Reservation, ReservationStatus};
use crate::idempotency::{IdempotencyTicket, StoredResponse};
use crate::inventory::{ReleaseOutcome, ReleaseReason};
use crate::store::{ConflictKind, StoreError, Transition};
use crate::telemetry::metrics::MethodTimer;

use super::ambiguity::{is_transition, unknown_outcome, Resolution};
use super::views::Cancelled;
use super::{now_ms, unrecorded, Answered, Caller, Reply, ReservationService, ServiceError};

impl ReservationService {
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
        match self
            .write_answered(&r, &next, None, &event, ticket, response)
            .await?
        {
            Answered::Written(reply) => Ok(reply),
            Answered::InDoubt(e, response) => {
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
}
