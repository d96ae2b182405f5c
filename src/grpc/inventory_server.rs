//! The bundled inventory as a `reservation.v1.InventoryService` gRPC server, over a
//! [`SeatEngine`] (all-or-nothing holds that run out on their own, commits only for the holder
//! before expiry, releases that never free a sold seat, every call idempotent per reservation):
//! process memory, or a DynamoDB table shared by any number of servers.
//!
//! Business outcomes (seat taken, hold expired, nothing to release) answer with gRPC status OK
//! and a `status` + `error`; a request that cannot be read at all (no reservation id, a negative
//! quantity, no `hold_expires_at`, an unknown release reason) is a caller bug and answers
//! `INVALID_ARGUMENT`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tonic::{Request, Response, Status};

use super::convert::{self, detail, error, seat_to_wire, timestamp};
use super::proto::common::v1::{self as common, ErrorCode, SeatStatus};
use super::proto::reservation::v1::inventory_service_server::{
    InventoryService, InventoryServiceServer,
};
use super::proto::reservation::v1::*;
use crate::inventory::catalog::Catalog;
use crate::inventory::engine::{HoldState, SeatInventory, SectionCounts};
use crate::inventory::metrics::{self as inv_metrics, OpTimer};
use crate::inventory::seats::SeatEngine;
use crate::inventory::{
    CommitOutcome, CommitRequest, HoldOutcome, HoldRequest, InventoryError, ReleaseOutcome,
    ReleaseReason, ReleaseRequest, Seat, SeatMapStatus,
};
use crate::telemetry::otel;

/// At most this many seats are listed in one `CheckAvailability` answer.
pub const MAX_LISTED_SEATS: usize = 1000;
/// Seats in a `ListSeats` page when the caller does not say, and the most it may ask for.
pub const DEFAULT_SEAT_PAGE: usize = 500;
pub const MAX_SEAT_PAGE: usize = 1000;

#[derive(Clone)]
pub struct InventoryGrpc {
    seats: Arc<dyn SeatEngine>,
}

/// A failing dependency (DynamoDB) is worth a retry: `UNAVAILABLE` / `DEADLINE_EXCEEDED`, never a
/// business answer.
fn engine_status(e: InventoryError) -> Status {
    match e {
        InventoryError::Timeout => Status::deadline_exceeded("seat store deadline exceeded"),
        InventoryError::Unavailable { message, .. } => Status::unavailable(message),
        InventoryError::Internal(m) => Status::internal(m),
    }
}

/// The hold id of a reservation: derived from it, so that a repeated `ReserveSeat` answers the same.
pub fn hold_id(reservation_id: &str) -> String {
    format!("hold_{reservation_id}")
}

/// The inventory's own sale id of a committed reservation (the service writes its own order id).
pub fn sale_id(reservation_id: &str) -> String {
    format!("sale_{reservation_id}")
}

fn required_quantity(q: i32) -> Result<u32, Status> {
    u32::try_from(q).map_err(|_| Status::invalid_argument("quantity must not be negative"))
}

fn required_id(id: &str, name: &str) -> Result<(), Status> {
    if id.is_empty() {
        Err(Status::invalid_argument(format!("{name} is required")))
    } else {
        Ok(())
    }
}

/// The caller's trace id (from `traceparent`), echoed in business errors.
fn traced<T>(req: &Request<T>) -> impl Fn(common::Error) -> common::Error {
    let trace_id = req
        .metadata()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(otel::parse_traceparent)
        .map(|sc| sc.trace_id().to_string())
        .unwrap_or_default();
    move |mut e| {
        e.trace_id = trace_id.clone();
        e
    }
}

fn wire(seats: &[Seat], status: SeatStatus) -> Vec<common::Seat> {
    seats.iter().map(|s| seat_to_wire(s, status)).collect()
}

impl InventoryGrpc {
    pub fn new(seats: Arc<dyn SeatEngine>) -> Self {
        Self { seats }
    }

    /// The in-memory engine over `catalog`.
    pub fn from_catalog(catalog: Catalog) -> Self {
        Self::new(Arc::new(SeatInventory::new(&catalog)))
    }

    pub fn seats(&self) -> &Arc<dyn SeatEngine> {
        &self.seats
    }

    pub fn into_server(self) -> InventoryServiceServer<Self> {
        InventoryServiceServer::new(self)
    }

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

    pub async fn check(
        &self,
        r: CheckAvailabilityRequest,
        now: DateTime<Utc>,
    ) -> Result<CheckAvailabilityResponse, Status> {
        let qty = required_quantity(r.quantity)?;
        let counts = self
            .seats
            .counts(&r.event_id, now)
            .await
            .map_err(engine_status)?;
        let Some(counts) = counts.map(|c| c.sections) else {
            return Ok(CheckAvailabilityResponse {
                error: Some(error(
                    ErrorCode::NotFound,
                    format!("no event {} in the inventory", r.event_id),
                )),
                ..Default::default()
            });
        };
        let remaining: u32 = counts
            .iter()
            .filter(|c| r.section.is_empty() || c.section == r.section)
            .map(|c| c.available)
            .sum();
        if !r.section.is_empty() && !counts.iter().any(|c| c.section == r.section) {
            let mut e = error(
                ErrorCode::NotFound,
                format!("no section {} at this event", r.section),
            );
            e.details = vec![detail("section", "NOT_FOUND", &r.section)];
            return Ok(CheckAvailabilityResponse {
                error: Some(e),
                ..Default::default()
            });
        }
        let (free, taken) = self
            .seats
            .available(&r.event_id, &r.seat_ids, now)
            .await
            .map_err(engine_status)?
            .unwrap_or_default();
        let free: Vec<Seat> = free
            .into_iter()
            .filter(|s| r.section.is_empty() || s.section == r.section)
            .collect();
        let available = if r.seat_ids.is_empty() {
            free.len() >= qty.max(1) as usize
        } else {
            taken.is_empty() && free.len() == r.seat_ids.len()
        };
        Ok(CheckAvailabilityResponse {
            available,
            available_seats: free
                .iter()
                .take(MAX_LISTED_SEATS)
                .map(|s| seat_to_wire(s, SeatStatus::Available))
                .collect(),
            unavailable_seat_ids: taken,
            remaining_in_section: remaining as i32,
            error: None,
        })
    }

    pub async fn status(
        &self,
        r: GetInventoryStatusRequest,
        now: DateTime<Utc>,
    ) -> Result<GetInventoryStatusResponse, Status> {
        let event = self
            .seats
            .counts(&r.event_id, now)
            .await
            .map_err(engine_status)?;
        let Some(event) = event else {
            return Ok(GetInventoryStatusResponse {
                error: Some(error(
                    ErrorCode::NotFound,
                    format!("no event {} in the inventory", r.event_id),
                )),
                ..Default::default()
            });
        };
        let counts = &event.sections;
        let currency = &event.currency;
        let event_total: u32 = counts.iter().map(|c| c.total).sum();
        let event_available: u32 = counts.iter().map(|c| c.available).sum();
        inv_metrics::available(&r.event_id, event_available);
        let shown: Vec<&SectionCounts> = counts
            .iter()
            .filter(|c| r.section.is_empty() || c.section == r.section)
            .collect();
        if shown.is_empty() {
            let mut e = error(
                ErrorCode::NotFound,
                format!("no section {} at this event", r.section),
            );
            e.details = vec![detail("section", "NOT_FOUND", &r.section)];
            return Ok(GetInventoryStatusResponse {
                error: Some(e),
                ..Default::default()
            });
        }
        let sum = |f: fn(&SectionCounts) -> u32| shown.iter().map(|c| f(c)).sum::<u32>() as i32;
        let (total, available) = (sum(|c| c.total), sum(|c| c.available));
        Ok(GetInventoryStatusResponse {
            event: Some(common::Event {
                id: r.event_id.clone(),
                name: event.name.clone(),
                total_seats: event_total as i32,
                remaining_seats: event_available as i32,
                ..Default::default()
            }),
            sections: shown
                .iter()
                .map(|c| SectionInventory {
                    section_id: c.section.clone(),
                    section_name: c.name.clone(),
                    total_seats: c.total as i32,
                    available_seats: c.available as i32,
                    reserved_seats: c.reserved as i32,
                    sold_seats: c.sold as i32,
                    blocked_seats: 0,
                    min_price: Some(convert::money(c.min_price, currency)),
                    max_price: Some(convert::money(c.max_price, currency)),
                })
                .collect(),
            stats: Some(InventoryStats {
                total_seats: total,
                available_seats: available,
                reserved_seats: sum(|c| c.reserved),
                sold_seats: sum(|c| c.sold),
                blocked_seats: 0,
                availability_percentage: if total > 0 {
                    available as f32 * 100.0 / total as f32
                } else {
                    0.0
                },
                last_updated: Some(timestamp(now)),
            }),
            error: None,
        })
    }
}

impl InventoryGrpc {
    pub async fn seat_page(
        &self,
        r: ListSeatsRequest,
        now: DateTime<Utc>,
    ) -> Result<ListSeatsResponse, Status> {
        let size = match r.page_size {
            0 => DEFAULT_SEAT_PAGE,
            n => usize::try_from(n)
                .map_err(|_| Status::invalid_argument("page_size must not be negative"))?
                .min(MAX_SEAT_PAGE),
        };
        let first_row = match r.page_token.as_str() {
            "" => Some(0),
            t => t.strip_prefix("row:").and_then(|n| n.parse::<usize>().ok()),
        };
        let Some(first_row) = first_row else {
            let mut e = error(
                ErrorCode::InvalidArgument,
                "not a page_token of this server",
            );
            e.details = vec![detail("page_token", "INVALID", &r.page_token)];
            return Ok(ListSeatsResponse {
                error: Some(e),
                ..Default::default()
            });
        };
        let page = self
            .seats
            .seat_page(&r.event_id, first_row, size, now)
            .await
            .map_err(engine_status)?;
        let Some(page) = page else {
            return Ok(ListSeatsResponse {
                error: Some(error(
                    ErrorCode::NotFound,
                    format!("no event {} in the inventory", r.event_id),
                )),
                ..Default::default()
            });
        };
        let currency = page.currency;
        Ok(ListSeatsResponse {
            seats: page
                .seats
                .iter()
                .map(|(s, st)| {
                    seat_to_wire(
                        s,
                        match st {
                            SeatMapStatus::Available => SeatStatus::Available,
                            SeatMapStatus::Held => SeatStatus::Reserved,
                            SeatMapStatus::Sold => SeatStatus::Sold,
                        },
                    )
                })
                .collect(),
            sections: page
                .sections
                .into_iter()
                .map(|s| SeatSection {
                    section_id: s.id,
                    name: s.name,
                    price: Some(convert::money(s.price, &currency)),
                })
                .collect(),
            next_page_token: page
                .next_row
                .map(|r| format!("row:{r}"))
                .unwrap_or_default(),
            currency,
            error: None,
        })
    }
}

/// A response with a business `error` field.
trait WithError {
    fn error_mut(&mut self) -> &mut Option<common::Error>;
}

macro_rules! with_error {
    ($($t:ty),*) => {$(
        impl WithError for $t {
            fn error_mut(&mut self) -> &mut Option<common::Error> {
                &mut self.error
            }
        }
    )*};
}

with_error!(
    CheckAvailabilityResponse,
    ReserveSeatResponse,
    CommitReservationResponse,
    ReleaseHoldResponse,
    GetInventoryStatusResponse,
    ListSeatsResponse
);

/// Answer one call, timed as `op`, with the business error's `trace_id` taken from the request's
/// `traceparent`.
async fn answer<Q, R: WithError, F>(
    op: &'static str,
    request: Request<Q>,
    f: impl FnOnce(Q, DateTime<Utc>) -> F,
) -> Result<Response<R>, Status>
where
    F: std::future::Future<Output = Result<R, Status>>,
{
    let _timer = OpTimer::start(op);
    let tag = traced(&request);
    let mut out = f(request.into_inner(), Utc::now()).await?;
    if let Some(e) = out.error_mut().take() {
        *out.error_mut() = Some(tag(e));
    }
    Ok(Response::new(out))
}

#[tonic::async_trait]
impl InventoryService for InventoryGrpc {
    async fn check_availability(
        &self,
        request: Request<CheckAvailabilityRequest>,
    ) -> Result<Response<CheckAvailabilityResponse>, Status> {
        answer("check", request, |r, now| self.check(r, now)).await
    }

    async fn reserve_seat(
        &self,
        request: Request<ReserveSeatRequest>,
    ) -> Result<Response<ReserveSeatResponse>, Status> {
        answer("reserve", request, |r, now| self.reserve(r, now)).await
    }

    async fn commit_reservation(
        &self,
        request: Request<CommitReservationRequest>,
    ) -> Result<Response<CommitReservationResponse>, Status> {
        answer("commit", request, |r, now| self.commit(r, now)).await
    }

    async fn release_hold(
        &self,
        request: Request<ReleaseHoldRequest>,
    ) -> Result<Response<ReleaseHoldResponse>, Status> {
        answer("release", request, |r, now| self.release(r, now)).await
    }

    async fn get_inventory_status(
        &self,
        request: Request<GetInventoryStatusRequest>,
    ) -> Result<Response<GetInventoryStatusResponse>, Status> {
        answer("status", request, |r, now| self.status(r, now)).await
    }

    async fn list_seats(
        &self,
        request: Request<ListSeatsRequest>,
    ) -> Result<Response<ListSeatsResponse>, Status> {
        answer("list_seats", request, |r, now| self.seat_page(r, now)).await
    }
}
