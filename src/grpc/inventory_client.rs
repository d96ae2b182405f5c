//! [`Inventory`] over gRPC: `reservation.v1.InventoryService` through the resilience stack.
//!
//! Every call here is marked idempotent, so a transient failure may be retried even though the
//! first attempt may have reached the inventory: the contract makes all five RPCs idempotent per
//! reservation. `ReserveSeat` repeated with the same `reservation_id` returns the same hold (the
//! same seats) instead of taking more; `CommitReservation` repeated returns the first commit's
//! answer; `ReleaseHold` repeated returns the first release's answer; `CheckAvailability` and
//! `GetInventoryStatus` and `ListSeats` only read.

use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use tower::ServiceExt;

use super::convert::{self, error_code, timestamp};
use super::proto::common::v1::{Error as WireError, ErrorCode};
use super::proto::reservation::v1::inventory_service_client::InventoryServiceClient;
use super::proto::reservation::v1::*;
use super::resilience::{self, Call, CallError, Stack};
use super::{channel, endpoint_uri};
use crate::config::GrpcClientSettings;
use crate::inventory::{
    CommitOutcome, CommitRequest, HoldOutcome, HoldRequest, Inventory, InventoryError,
    ReleaseOutcome, ReleaseRequest, SeatMap, SeatMapStatus, SectionInfo,
};

/// A hall of 1,000 rows in pages of at least one row: more pages than this is a peer's bug.
const MAX_SEAT_PAGES: usize = 1000;

#[derive(Clone, Debug)]
pub enum InventoryRpc {
    Check(CheckAvailabilityRequest),
    Reserve(ReserveSeatRequest),
    Commit(CommitReservationRequest),
    Release(ReleaseHoldRequest),
    Status(GetInventoryStatusRequest),
    ListSeats(ListSeatsRequest),
}

#[derive(Clone, Debug)]
pub enum InventoryReply {
    Check(CheckAvailabilityResponse),
    Reserve(ReserveSeatResponse),
    Commit(CommitReservationResponse),
    Release(ReleaseHoldResponse),
    Status(Box<GetInventoryStatusResponse>),
    ListSeats(ListSeatsResponse),
}

pub struct GrpcInventory {
    stack: Stack<InventoryRpc, InventoryReply>,
    timeout: Duration,
    endpoint: String,
}

impl GrpcInventory {
    pub fn connect(address: &str, settings: &GrpcClientSettings) -> Result<Self, String> {
        let client = InventoryServiceClient::new(channel(address, settings)?);
        let stack = resilience::stack(
            "inventory",
            settings,
            move |call: Call<InventoryRpc>, left: Duration| {
                let mut client = client.clone();
                async move {
                    Ok(match call.rpc.clone() {
                        InventoryRpc::Check(m) => InventoryReply::Check(
                            client
                                .check_availability(call.request(m, left))
                                .await?
                                .into_inner(),
                        ),
                        InventoryRpc::Reserve(m) => InventoryReply::Reserve(
                            client
                                .reserve_seat(call.request(m, left))
                                .await?
                                .into_inner(),
                        ),
                        InventoryRpc::Commit(m) => InventoryReply::Commit(
                            client
                                .commit_reservation(call.request(m, left))
                                .await?
                                .into_inner(),
                        ),
                        InventoryRpc::Release(m) => InventoryReply::Release(
                            client
                                .release_hold(call.request(m, left))
                                .await?
                                .into_inner(),
                        ),
                        InventoryRpc::Status(m) => InventoryReply::Status(Box::new(
                            client
                                .get_inventory_status(call.request(m, left))
                                .await?
                                .into_inner(),
                        )),
                        InventoryRpc::ListSeats(m) => InventoryReply::ListSeats(
                            client.list_seats(call.request(m, left)).await?.into_inner(),
                        ),
                    })
                }
            },
        )?;
        Ok(Self {
            stack,
            timeout: settings.timeout,
            endpoint: endpoint_uri(address),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn call(
        &self,
        method: &'static str,
        rpc: InventoryRpc,
    ) -> Result<InventoryReply, InventoryError> {
        // All five RPCs are idempotent per reservation (see the module docs): safe to retry.
        let call = Call::new(method, rpc, self.timeout, true);
        self.stack.clone().oneshot(call).await.map_err(|e| match e {
            CallError::Timeout => InventoryError::Timeout,
            CallError::Unavailable {
                message,
                retry_after_secs,
            } => InventoryError::Unavailable {
                message,
                retry_after_secs,
            },
            CallError::Failed(s) if resilience::is_peer_failure(s.code()) => {
                InventoryError::Unavailable {
                    message: format!(
                        "{method}: {} {}",
                        resilience::code_name(s.code()),
                        s.message()
                    ),
                    retry_after_secs: 1,
                }
            }
            CallError::Failed(s) => InventoryError::Internal(format!(
                "{method}: {} {}",
                resilience::code_name(s.code()),
                s.message()
            )),
        })
    }

    pub async fn check_availability(
        &self,
        req: CheckAvailabilityRequest,
    ) -> Result<CheckAvailabilityResponse, InventoryError> {
        match self
            .call(
                "reservation.v1.InventoryService/CheckAvailability",
                InventoryRpc::Check(req),
            )
            .await?
        {
            InventoryReply::Check(r) => Ok(r),
            _ => Err(mismatch()),
        }
    }

    pub async fn inventory_status(
        &self,
        req: GetInventoryStatusRequest,
    ) -> Result<GetInventoryStatusResponse, InventoryError> {
        match self
            .call(
                "reservation.v1.InventoryService/GetInventoryStatus",
                InventoryRpc::Status(req),
            )
            .await?
        {
            InventoryReply::Status(r) => Ok(*r),
            _ => Err(mismatch()),
        }
    }
}

/// One `ListSeats` page added to `map`; the next page's token, empty after the last. `Ok(None)`:
/// no such event.
fn add_seat_page(
    map: &mut SeatMap,
    r: ListSeatsResponse,
) -> Result<Option<String>, InventoryError> {
    use super::proto::common::v1::SeatStatus;
    if let Some(e) = &r.error {
        return match error_code(e) {
            ErrorCode::NotFound => Ok(None),
            ErrorCode::Unavailable | ErrorCode::RateLimited | ErrorCode::QuotaExceeded => {
                Err(InventoryError::Unavailable {
                    message: e.message.clone(),
                    retry_after_secs: 1,
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

fn mismatch() -> InventoryError {
    InventoryError::Internal("the answer does not match the call".into())
}

fn quantity(q: u32) -> i32 {
    i32::try_from(q).unwrap_or(i32::MAX)
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
                    retry_after_secs: 1,
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

#[async_trait]
impl Inventory for GrpcInventory {
    async fn reserve(&self, req: HoldRequest) -> Result<HoldOutcome, InventoryError> {
        let rpc = InventoryRpc::Reserve(ReserveSeatRequest {
            reservation_id: req.reservation_id,
            event_id: req.event_id,
            seat_ids: req.seat_ids,
            quantity: quantity(req.qty),
            user_id: req.user_id,
            hold_expires_at: Some(timestamp(req.hold_expires_at)),
            idempotency_key: req.idempotency_key,
        });
        match self
            .call("reservation.v1.InventoryService/ReserveSeat", rpc)
            .await?
        {
            InventoryReply::Reserve(r) => hold_outcome(r),
            _ => Err(mismatch()),
        }
    }

    async fn commit(&self, req: CommitRequest) -> Result<CommitOutcome, InventoryError> {
        let rpc = InventoryRpc::Commit(CommitReservationRequest {
            reservation_id: req.reservation_id,
            event_id: req.event_id,
            seat_ids: req.seat_ids,
            quantity: quantity(req.qty),
            payment_intent_id: req.payment_intent_id,
            user_id: req.user_id,
            idempotency_key: req.idempotency_key,
        });
        match self
            .call("reservation.v1.InventoryService/CommitReservation", rpc)
            .await?
        {
            InventoryReply::Commit(r) => commit_outcome(r),
            _ => Err(mismatch()),
        }
    }

    async fn release(&self, req: ReleaseRequest) -> Result<ReleaseOutcome, InventoryError> {
        let rpc = InventoryRpc::Release(ReleaseHoldRequest {
            reservation_id: req.reservation_id,
            event_id: req.event_id,
            seat_ids: req.seat_ids,
            quantity: quantity(req.qty),
            reason: req.reason.as_str().to_owned(),
            idempotency_key: req.idempotency_key,
        });
        match self
            .call("reservation.v1.InventoryService/ReleaseHold", rpc)
            .await?
        {
            InventoryReply::Release(r) => release_outcome(r),
            _ => Err(mismatch()),
        }
    }

    /// Page by page, each call with its own deadline; a page's statuses are as of its call.
    async fn seat_map(&self, event_id: &str) -> Result<Option<SeatMap>, InventoryError> {
        let mut map = SeatMap::default();
        let mut token = String::new();
        for _ in 0..MAX_SEAT_PAGES {
            let rpc = InventoryRpc::ListSeats(ListSeatsRequest {
                event_id: event_id.to_owned(),
                page_size: 0,
                page_token: std::mem::take(&mut token),
            });
            let r = match self
                .call("reservation.v1.InventoryService/ListSeats", rpc)
                .await?
            {
                InventoryReply::ListSeats(r) => r,
                _ => return Err(mismatch()),
            };
            match add_seat_page(&mut map, r)? {
                None => return Ok(None),
                Some(next) if next.is_empty() => return Ok(Some(map)),
                Some(next) => token = next,
            }
        }
        Err(InventoryError::Internal(
            "ListSeats: more pages than any hall has".into(),
        ))
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
