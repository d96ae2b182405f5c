//! The bundled inventory as a `reservation.v1.InventoryService` gRPC server, over a
//! [`SeatEngine`] (all-or-nothing holds that run out on their own, commits only for the holder
//! before expiry, releases that never free a sold seat, every call idempotent per reservation):
//! process memory, or a DynamoDB table shared by any number of servers.
//!
//! Business outcomes (seat taken, hold expired, nothing to release) answer with gRPC status OK
//! and a `status` + `error`; a request that cannot be read at all (no reservation id, a negative
//! quantity, no `hold_expires_at`, an unknown release reason) is a caller bug and answers
//! `INVALID_ARGUMENT`.
//!
//! The calls live in `holds.rs` (reserve, commit, release) and `reads.rs` (availability, status,
//! seat map); this file has what they share and the service's wiring.

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

mod holds;
mod reads;

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
