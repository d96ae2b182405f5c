//! [`Inventory`] over gRPC: `reservation.v1.InventoryService` through the resilience stack.
//!
//! Every call here is marked idempotent, so a transient failure may be retried even though the
//! first attempt may have reached the inventory: the contract makes all five RPCs idempotent per
//! reservation. `ReserveSeat` repeated with the same `reservation_id` returns the same hold (the
//! same seats) instead of taking more; `CommitReservation` repeated returns the first commit's
//! answer; `ReleaseHold` repeated returns the first release's answer; `CheckAvailability` and
//! `GetInventoryStatus` and `ListSeats` only read.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tonic::transport::Channel;
use tonic::Status;
use tower::ServiceExt;

use super::convert::timestamp;
use super::inventory_server::InventoryGrpc;
use super::local::serve_in_process;
use super::proto::reservation::v1::inventory_service_client::InventoryServiceClient;
use super::proto::reservation::v1::inventory_service_server::InventoryService;
use super::proto::reservation::v1::*;
use super::resilience::{self, Call, CallError, Stack};
use super::{channel, endpoint_uri, IN_PROCESS};
use crate::config::GrpcClientSettings;
use crate::inventory::{
    CommitOutcome, CommitRequest, HoldOutcome, HoldRequest, Inventory, InventoryError,
    ReleaseOutcome, ReleaseRequest, SeatMap,
};

mod answers;

use answers::add_seat_page;
pub use answers::{commit_outcome, hold_outcome, release_outcome};

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

/// Where a call's attempt goes: the peer's gRPC channel, or the bundled server's handlers in this
/// process, with the same request and answer messages but no socket and no protobuf encoding.
#[derive(Clone)]
enum Peer {
    Remote(InventoryServiceClient<Channel>),
    InProcess(Arc<InventoryGrpc>),
}

/// One RPC of `call` on `$peer`: a tonic client (`&mut self` methods) or the bundled server's
/// `InventoryService` handlers (`&self`), which take and answer the same messages.
macro_rules! each_rpc {
    ($peer:ident, $call:ident, $left:ident) => {
        Ok(match $call.rpc.clone() {
            InventoryRpc::Check(m) => InventoryReply::Check(
                $peer
                    .check_availability($call.request(m, $left))
                    .await?
                    .into_inner(),
            ),
            InventoryRpc::Reserve(m) => InventoryReply::Reserve(
                $peer
                    .reserve_seat($call.request(m, $left))
                    .await?
                    .into_inner(),
            ),
            InventoryRpc::Commit(m) => InventoryReply::Commit(
                $peer
                    .commit_reservation($call.request(m, $left))
                    .await?
                    .into_inner(),
            ),
            InventoryRpc::Release(m) => InventoryReply::Release(
                $peer
                    .release_hold($call.request(m, $left))
                    .await?
                    .into_inner(),
            ),
            InventoryRpc::Status(m) => InventoryReply::Status(Box::new(
                $peer
                    .get_inventory_status($call.request(m, $left))
                    .await?
                    .into_inner(),
            )),
            InventoryRpc::ListSeats(m) => InventoryReply::ListSeats(
                $peer
                    .list_seats($call.request(m, $left))
                    .await?
                    .into_inner(),
            ),
        })
    };
}

impl Peer {
    async fn attempt(
        self,
        call: Call<InventoryRpc>,
        left: Duration,
    ) -> Result<InventoryReply, Status> {
        match self {
            Self::Remote(mut client) => each_rpc!(client, call, left),
            Self::InProcess(server) => {
                serve_in_process(call.method, async { each_rpc!(server, call, left) }).await
            }
        }
    }
}

impl GrpcInventory {
    /// The inventory at `address`, over gRPC.
    pub fn connect(address: &str, settings: &GrpcClientSettings) -> Result<Self, String> {
        let client = InventoryServiceClient::new(channel(address, settings)?);
        Self::over(Peer::Remote(client), endpoint_uri(address), settings)
    }

    /// The bundled inventory in this process: the same client stack (deadline, retries, breaker,
    /// bulkhead, metrics, spans) around the server's handlers instead of a channel.
    pub fn in_process(
        server: InventoryGrpc,
        settings: &GrpcClientSettings,
    ) -> Result<Self, String> {
        Self::over(
            Peer::InProcess(Arc::new(server)),
            IN_PROCESS.to_owned(),
            settings,
        )
    }

    fn over(peer: Peer, endpoint: String, settings: &GrpcClientSettings) -> Result<Self, String> {
        let stack = resilience::stack(
            "inventory",
            settings,
            move |call: Call<InventoryRpc>, left: Duration| peer.clone().attempt(call, left),
        )?;
        Ok(Self {
            stack,
            timeout: settings.timeout,
            endpoint,
        })
    }

    /// `http://host:port`, or [`IN_PROCESS`] for the bundled inventory called in process.
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
                    retry_after_secs: crate::schedule::retry_after_secs(),
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

fn mismatch() -> InventoryError {
    InventoryError::Internal("the answer does not match the call".into())
}

fn quantity(q: u32) -> i32 {
    i32::try_from(q).unwrap_or(i32::MAX)
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
