//! The sold-but-unwritten hold: a confirm whose inventory commit succeeded but whose store write
//! failed, and whose client never retried. The sweeper finds it due and finishes the sale from what
//! the inventory says, instead of leaving a HOLD whose seats are sold forever.

use crate::domain::{EventType, OutboxEvent, Reservation, ReservationStatus};
use crate::inventory::CommitOutcome;
use crate::store::{ConflictKind, StoreError, Transition};

use super::ambiguity::{is_transition, Resolution};
use super::confirm::order_for;
use super::{commit_request, now_ms, ReservationService, ServiceError};

impl ReservationService {
    /// Complete a due HOLD whose seats the inventory refused to release because they are sold.
    /// Returns whether this call wrote CONFIRMED.
    pub(super) async fn reconcile_sold(
        &self,
        r: &Reservation,
        refusal: &str,
    ) -> Result<bool, ServiceError> {
        // A repeated commit answers the first one, with its payment intent; the intent may be
        // left empty on a repeat. The seats are sold already, so this sells nothing new.
        let committed = self
            .inventory
            .commit(commit_request(r, String::new()))
            .await?;
        let intent = match committed {
            CommitOutcome::Committed {
                payment_intent_id, ..
            } if !payment_intent_id.is_empty() => payment_intent_id,
            other => {
                tracing::warn!(reservation_id = %r.id, %refusal, ?other, "due hold is sold in the inventory, which does not say to which payment; not expiring it");
                return Ok(false);
            }
        };
        let now = now_ms();
        let order = order_for(r, &intent, now);
        let next = r.confirmed(&order.id, &intent, now)?;
        let trace_id = crate::telemetry::trace::current_trace_id();
        let event =
            OutboxEvent::for_reservation(EventType::Confirmed, &next, Some(&order), &trace_id, now);
        let t = Transition {
            next: &next,
            expected_version: r.version,
            order: Some(&order),
            event: &event,
            completion: None,
        };
        let landed = match self.store.transition(t).await {
            Ok(()) => true,
            // A late confirm (or another sweeper) finished it first.
            Err(StoreError::Conflict(ConflictKind::StaleReservation)) => false,
            Err(e) if e.is_ambiguous() => {
                match self.resolve(&r.id, is_transition(&next), None).await {
                    Resolution::Landed => true,
                    Resolution::NotLanded(_) | Resolution::Unknown(_) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        };
        if landed {
            self.written(ReservationStatus::Confirmed);
            tracing::info!(reservation_id = %r.id, order_id = %order.id, "sold hold reconciled into CONFIRMED");
        }
        Ok(landed)
    }
}
