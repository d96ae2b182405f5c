//! The inventory's answers, read into the service's outcomes: a business error in the answer is
//! an outcome (seats taken, hold expired), a status the call cannot have is a peer's bug.

use chrono::Utc;

use crate::grpc::convert::{self, error_code};
use crate::grpc::proto::common::v1::{Error as WireError, ErrorCode};
use crate::grpc::proto::reservation::v1::*;
use crate::inventory::{
    CommitOutcome, HoldOutcome, InventoryError, ReleaseOutcome, SeatMap, SeatMapStatus, SectionInfo,
};

/// One `ListSeats` page added to `map`; the next page's token, empty after the last. `Ok(None)`:
/// no such event.
pub(super) fn add_seat_page(
    map: &mut SeatMap,
    r: ListSeatsResponse,
) -> Result<Option<String>, InventoryError> {
    use crate::grpc::proto::common::v1::SeatStatus;
    if let Some(e) = &r.error {
        return match error_code(e) {
            ErrorCode::NotFound => Ok(None),
            ErrorCode::Unavailable | ErrorCode::RateLimited | ErrorCode::QuotaExceeded => {
                Err(InventoryError::Unavailable {
                    message: e.message.clone(),
                    retry_after_secs: crate::schedule::retry_after_secs(),
                })
            }
            code => Err(InventoryError::Internal(format!(
                "ListSeats: {} {}",
                code.as_str_name(),
                e.message
            ))),
        };
    }
    map.sections = r
        .sections
        .into_iter()
        .map(|s| SectionInfo {
            id: s.section_id,
            name: s.name,
            price: s.price.map(|p| p.amount).unwrap_or_default(),
        })
        .collect();
    map.seats.extend(r.seats.into_iter().map(|s| {
        let status = match SeatStatus::try_from(s.status) {
            Ok(SeatStatus::Available) => SeatMapStatus::Available,
            Ok(SeatStatus::Reserved) => SeatMapStatus::Held,
            // SOLD, BLOCKED or a status this build does not know: not for sale.
            _ => SeatMapStatus::Sold,
        };
        (convert::seat_from_wire(s), status)
    }));
    map.currency = r.currency;
    Ok(Some(r.next_page_token))
}

fn message(e: &Option<WireError>, otherwise: &str) -> String {
    e.as_ref()
        .map(|e| e.message.clone())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| otherwise.to_owned())
}

pub fn hold_outcome(r: ReserveSeatResponse) -> Result<HoldOutcome, InventoryError> {
    if let Some(e) = r.error {
        let msg = if e.message.is_empty() {
            "the seats could not be held".to_owned()
        } else {
            e.message.clone()
        };
        return match error_code(&e) {
            ErrorCode::InvalidArgument | ErrorCode::NotFound => Ok(HoldOutcome::Invalid {
                field: e
                    .details
                    .first()
                    .map(|d| d.field.clone())
                    .unwrap_or_else(|| "event_id".into()),
                message: msg,
            }),
            ErrorCode::InventoryConflict
            | ErrorCode::InsufficientInventory
            | ErrorCode::ReservationExpired
            | ErrorCode::AlreadyExists
            | ErrorCode::FailedPrecondition
            | ErrorCode::ConcurrentModification => Ok(HoldOutcome::Unavailable {
                message: msg,
                seat_ids: e
                    .details
                    .iter()
                    .filter(|d| d.reason == "SEAT_TAKEN")
                    .map(|d| d.value.clone())
                    .collect(),
            }),
            ErrorCode::Unavailable | ErrorCode::RateLimited | ErrorCode::QuotaExceeded => {
                Err(InventoryError::Unavailable {
                    message: msg,
                    retry_after_secs: crate::schedule::retry_after_secs(),
                })
            }
            ErrorCode::Timeout | ErrorCode::UpstreamTimeout => Err(InventoryError::Timeout),
            code => Err(InventoryError::Internal(format!(
                "ReserveSeat: {} {msg}",
                code.as_str_name()
            ))),
        };
    }
    match HoldStatus::try_from(r.status) {
        Ok(HoldStatus::Active | HoldStatus::Committed) if !r.reserved_seats.is_empty() => {
            Ok(HoldOutcome::Held {
                seats: r
                    .reserved_seats
                    .into_iter()
                    .map(convert::seat_from_wire)
                    .collect(),
                hold_expires_at: r
                    .hold_expires_at
                    .as_ref()
                    .and_then(convert::datetime)
                    .ok_or_else(|| {
                        InventoryError::Internal(
                            "ReserveSeat: a hold without hold_expires_at".into(),
                        )
                    })?,
            })
        }
        _ => Err(InventoryError::Internal(format!(
            "ReserveSeat: status {} without seats or error",
            r.status
        ))),
    }
}

pub fn commit_outcome(r: CommitReservationResponse) -> Result<CommitOutcome, InventoryError> {
    let expired = r
        .error
        .as_ref()
        .is_some_and(|e| error_code(e) == ErrorCode::ReservationExpired);
    match CommitStatus::try_from(r.status) {
        Ok(CommitStatus::Success) => Ok(CommitOutcome::Committed {
            committed_at: r
                .committed_at
                .as_ref()
                .and_then(convert::datetime)
                .unwrap_or_else(Utc::now),
            payment_intent_id: r.payment_intent_id,
        }),
        Ok(CommitStatus::FailedExpired) => Ok(CommitOutcome::Expired),
        Ok(CommitStatus::Unspecified) if expired => Ok(CommitOutcome::Expired),
        Ok(CommitStatus::FailedConflict | CommitStatus::FailedPayment) => {
            Ok(CommitOutcome::Conflict {
                message: message(&r.error, "the seats could not be committed"),
            })
        }
        Ok(CommitStatus::Unspecified) if r.error.is_some() => Ok(CommitOutcome::Conflict {
            message: message(&r.error, "the seats could not be committed"),
        }),
        _ => Err(InventoryError::Internal(format!(
            "CommitReservation: status {} without error",
            r.status
        ))),
    }
}

pub fn release_outcome(r: ReleaseHoldResponse) -> Result<ReleaseOutcome, InventoryError> {
    let not_found = r
        .error
        .as_ref()
        .is_some_and(|e| error_code(e) == ErrorCode::NotFound);
    match ReleaseStatus::try_from(r.status) {
        Ok(ReleaseStatus::Success) => Ok(ReleaseOutcome::Released),
        Ok(ReleaseStatus::AlreadyReleased) => Ok(ReleaseOutcome::AlreadyReleased),
        Ok(ReleaseStatus::NotFound) => Ok(ReleaseOutcome::NotFound),
        Ok(ReleaseStatus::Unspecified) if not_found => Ok(ReleaseOutcome::NotFound),
        Ok(ReleaseStatus::Failed) => Ok(ReleaseOutcome::Refused {
            message: message(&r.error, "the release was refused"),
        }),
        _ => Err(InventoryError::Internal(format!(
            "ReleaseHold: status {} without error",
            r.status
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::convert::{detail, error};

    #[test]
    fn business_outcomes_map_to_the_service_outcomes() {
        let mut e = error(ErrorCode::InventoryConflict, "seats taken: A-1");
        e.details = vec![detail("seat_ids", "SEAT_TAKEN", "A-1")];
        let r = ReserveSeatResponse {
            error: Some(e),
            ..Default::default()
        };
        assert_eq!(
            hold_outcome(r).unwrap(),
            HoldOutcome::Unavailable {
                message: "seats taken: A-1".into(),
                seat_ids: vec!["A-1".into()]
            }
        );
        let mut e = error(ErrorCode::InvalidArgument, "no seat Z-9");
        e.details = vec![detail("seat_ids", "INVALID", "no seat Z-9")];
        let r = ReserveSeatResponse {
            error: Some(e),
            ..Default::default()
        };
        assert!(
            matches!(hold_outcome(r).unwrap(), HoldOutcome::Invalid { field, .. } if field == "seat_ids")
        );

        let c = |status: CommitStatus| CommitReservationResponse {
            status: status as i32,
            ..Default::default()
        };
        assert_eq!(
            commit_outcome(c(CommitStatus::FailedExpired)).unwrap(),
            CommitOutcome::Expired
        );
        assert!(matches!(
            commit_outcome(c(CommitStatus::FailedConflict)).unwrap(),
            CommitOutcome::Conflict { .. }
        ));
        assert!(commit_outcome(c(CommitStatus::Unspecified)).is_err());

        let r = |status: ReleaseStatus| ReleaseHoldResponse {
            status: status as i32,
            ..Default::default()
        };
        assert_eq!(
            release_outcome(r(ReleaseStatus::NotFound)).unwrap(),
            ReleaseOutcome::NotFound
        );
        assert_eq!(
            release_outcome(r(ReleaseStatus::AlreadyReleased)).unwrap(),
            ReleaseOutcome::AlreadyReleased
        );
        assert!(matches!(
            release_outcome(r(ReleaseStatus::Failed)).unwrap(),
            ReleaseOutcome::Refused { .. }
        ));
    }
}
