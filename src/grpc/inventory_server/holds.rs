//! The calls that change seats: reserve (hold), commit (sell), release (give back).

// The server's imports and shared helpers.
use super::*;

impl InventoryGrpc {
    pub async fn reserve(
        &self,
        r: ReserveSeatRequest,
        now: DateTime<Utc>,
    ) -> Result<ReserveSeatResponse, Status> {
        required_id(&r.reservation_id, "reservation_id")?;
        let qty = required_quantity(r.quantity)?;
        let until = r
            .hold_expires_at
            .as_ref()
            .and_then(convert::datetime)
            .ok_or_else(|| Status::invalid_argument("hold_expires_at is required"))?;
        let req = HoldRequest {
            reservation_id: r.reservation_id,
            event_id: r.event_id,
            seat_ids: r.seat_ids,
            qty,
            user_id: r.user_id,
            hold_expires_at: until,
            idempotency_key: r.idempotency_key,
        };
        let result = self
            .seats
            .reserve(&req, now)
            .await
            .inspect_err(|_| inv_metrics::hold("error"))
            .map_err(engine_status)?;
        inv_metrics::hold(inv_metrics::hold_result(&result));
        let status = match result.state {
            None => HoldStatus::Unspecified,
            Some(HoldState::Active) => HoldStatus::Active,
            Some(HoldState::Committed) => HoldStatus::Committed,
            Some(HoldState::Released) => HoldStatus::Released,
            Some(HoldState::Expired) => HoldStatus::Expired,
        };
        let hold_id = if result.state.is_some() {
            hold_id(&req.reservation_id)
        } else {
            String::new()
        };
        let mut out = ReserveSeatResponse {
            hold_id,
            status: status as i32,
            ..Default::default()
        };
        match result.outcome {
            HoldOutcome::Held {
                seats,
                hold_expires_at,
            } => {
                let seat_status = if status == HoldStatus::Committed {
                    SeatStatus::Sold
                } else {
                    SeatStatus::Reserved
                };
                out.reserved_seats = wire(&seats, seat_status);
                out.hold_expires_at = Some(timestamp(hold_expires_at));
            }
            HoldOutcome::Unavailable { message, seat_ids } => {
                let code = match status {
                    HoldStatus::Expired => ErrorCode::ReservationExpired,
                    HoldStatus::Released => ErrorCode::InventoryConflict,
                    _ if seat_ids.is_empty() => ErrorCode::InsufficientInventory,
                    _ => ErrorCode::InventoryConflict,
                };
                let mut e = error(code, message);
                e.details = seat_ids
                    .iter()
                    .map(|id| detail("seat_ids", "SEAT_TAKEN", id))
                    .collect();
                out.error = Some(e);
            }
            HoldOutcome::Invalid { field, message } => {
                let mut e = error(ErrorCode::InvalidArgument, message.clone());
                e.details = vec![detail(&field, "INVALID", &message)];
                out.error = Some(e);
            }
        }
        Ok(out)
    }

    pub async fn commit(
        &self,
        r: CommitReservationRequest,
        now: DateTime<Utc>,
    ) -> Result<CommitReservationResponse, Status> {
        required_id(&r.reservation_id, "reservation_id")?;
        let qty = required_quantity(r.quantity)?;
        let req = CommitRequest {
            reservation_id: r.reservation_id,
            event_id: r.event_id,
            seat_ids: r.seat_ids,
            qty,
            payment_intent_id: r.payment_intent_id,
            user_id: r.user_id,
            idempotency_key: r.idempotency_key,
        };
        let (outcome, seats) = self.seats.commit(&req, now).await.map_err(engine_status)?;
        Ok(match outcome {
            CommitOutcome::Committed {
                committed_at,
                payment_intent_id,
            } => CommitReservationResponse {
                order_id: sale_id(&req.reservation_id),
                sold_seats: wire(&seats, SeatStatus::Sold),
                status: CommitStatus::Success as i32,
                committed_at: Some(timestamp(committed_at)),
                error: None,
                payment_intent_id,
            },
            CommitOutcome::Expired => CommitReservationResponse {
                status: CommitStatus::FailedExpired as i32,
                error: Some(error(
                    ErrorCode::ReservationExpired,
                    "the hold ran out before the commit",
                )),
                ..Default::default()
            },
            CommitOutcome::Conflict { message } => CommitReservationResponse {
                status: CommitStatus::FailedConflict as i32,
                error: Some(error(ErrorCode::InventoryConflict, message)),
                ..Default::default()
            },
        })
    }

    pub async fn release(
        &self,
        r: ReleaseHoldRequest,
        now: DateTime<Utc>,
    ) -> Result<ReleaseHoldResponse, Status> {
        required_id(&r.reservation_id, "reservation_id")?;
        let qty = required_quantity(r.quantity)?;
        let reason = ReleaseReason::parse(&r.reason).ok_or_else(|| {
            Status::invalid_argument("reason must be EXPIRED, CANCELLED or FAILED_PAYMENT")
        })?;
        let req = ReleaseRequest {
            reservation_id: r.reservation_id,
            event_id: r.event_id,
            seat_ids: r.seat_ids,
            qty,
            reason,
            idempotency_key: r.idempotency_key,
        };
        let (outcome, seats, at) = self.seats.release(&req, now).await.map_err(engine_status)?;
        Ok(match outcome {
            ReleaseOutcome::Released => ReleaseHoldResponse {
                released_seats: wire(&seats, SeatStatus::Available),
                status: ReleaseStatus::Success as i32,
                released_at: Some(timestamp(at)),
                error: None,
            },
            ReleaseOutcome::AlreadyReleased => ReleaseHoldResponse {
                released_seats: wire(&seats, SeatStatus::Available),
                status: ReleaseStatus::AlreadyReleased as i32,
                released_at: Some(timestamp(at)),
                error: None,
            },
            // Nothing was released: no time and no seats, so that a repeat answers the same.
            ReleaseOutcome::NotFound => ReleaseHoldResponse {
                status: ReleaseStatus::NotFound as i32,
                error: Some(error(ErrorCode::NotFound, "no hold for this reservation")),
                ..Default::default()
            },
            ReleaseOutcome::Refused { message } => ReleaseHoldResponse {
                status: ReleaseStatus::Failed as i32,
                error: Some(error(ErrorCode::FailedPrecondition, message)),
                ..Default::default()
            },
        })
    }
}
