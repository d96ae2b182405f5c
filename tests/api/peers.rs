//! gRPC peers owned by the tests: real tonic servers on 127.0.0.1 whose behaviour a test scripts
//! (stalled, failing, scripted answers), in front of the real bundled inventory.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reservation_api::grpc::convert::{error, money};
use reservation_api::grpc::inventory_server::InventoryGrpc;
use reservation_api::grpc::local;
use reservation_api::grpc::proto::common::v1::ErrorCode;
use reservation_api::grpc::proto::payment::v1::payment_service_server::{
    PaymentService, PaymentServiceServer,
};
use reservation_api::grpc::proto::payment::v1::{
    GetPaymentStatusRequest, GetPaymentStatusResponse, Payment, PaymentStatus,
};
use reservation_api::grpc::proto::reservation::v1::inventory_service_server::{
    InventoryService, InventoryServiceServer,
};
use reservation_api::grpc::proto::reservation::v1::*;
use reservation_api::grpc::{HINT_AMOUNT, HINT_CURRENCY, HINT_RESERVATION_ID};
use reservation_api::inventory::catalog::Catalog;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::{Request, Response, Status};

/// A gRPC server run by a test; stopped when dropped.
pub struct Peer {
    pub addr: SocketAddr,
    stop: CancellationToken,
}

impl Peer {
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Serve `routes` on `listener` in the background.
pub fn serve_on(listener: TcpListener, routes: Routes) -> Peer {
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(local::serve(
        listener,
        routes,
        stop.clone().cancelled_owned(),
    ));
    Peer { addr, stop }
}

pub async fn serve(routes: Routes) -> Peer {
    serve_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), routes)
}

/// A loopback address nothing listens on (bound, then let go).
pub async fn dead_address() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// Answer as the bundled inventory does.
    Healthy,
    /// Every call fails with `UNAVAILABLE`.
    Failing,
    /// Every call sleeps this long first.
    Stalled(Duration),
    /// The first n calls fail with `UNAVAILABLE`, then healthy.
    FailFirst(usize),
}

/// The bundled inventory behind a switch.
#[derive(Clone)]
pub struct ScriptedInventory {
    inner: InventoryGrpc,
    mode: Arc<Mutex<Mode>>,
    /// Calls that reached this server.
    pub calls: Arc<AtomicUsize>,
    /// `ReserveSeat` calls alone (a failed create also gives its hold back with `ReleaseHold`).
    pub reserves: Arc<AtomicUsize>,
    /// Calls being handled now.
    pub in_flight: Arc<AtomicUsize>,
    /// The `traceparent` of every call that had one.
    pub traceparents: Arc<Mutex<Vec<String>>>,
}

struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ScriptedInventory {
    pub fn new(mode: Mode) -> Self {
        Self {
            inner: InventoryGrpc::from_catalog(Catalog::bundled()),
            mode: Arc::new(Mutex::new(mode)),
            calls: Arc::new(AtomicUsize::new(0)),
            reserves: Arc::new(AtomicUsize::new(0)),
            in_flight: Arc::new(AtomicUsize::new(0)),
            traceparents: Arc::new(Mutex::new(vec![])),
        }
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    pub async fn serve(&self) -> Peer {
        serve(Routes::new(InventoryServiceServer::new(self.clone()))).await
    }

    async fn enter<T>(&self, req: &Request<T>) -> Result<InFlight, Status> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(self.in_flight.clone());
        if let Some(tp) = req
            .metadata()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
        {
            self.traceparents.lock().unwrap().push(tp.to_owned());
        }
        let mode = *self.mode.lock().unwrap();
        match mode {
            Mode::Healthy => {}
            Mode::Failing => return Err(Status::unavailable("scripted outage")),
            Mode::FailFirst(k) if n <= k => return Err(Status::unavailable("scripted blip")),
            Mode::FailFirst(_) => {}
            Mode::Stalled(d) => tokio::time::sleep(d).await,
        }
        Ok(guard)
    }
}

#[tonic::async_trait]
impl InventoryService for ScriptedInventory {
    async fn check_availability(
        &self,
        request: Request<CheckAvailabilityRequest>,
    ) -> Result<Response<CheckAvailabilityResponse>, Status> {
        let _g = self.enter(&request).await?;
        self.inner.check_availability(request).await
    }

    async fn reserve_seat(
        &self,
        request: Request<ReserveSeatRequest>,
    ) -> Result<Response<ReserveSeatResponse>, Status> {
        self.reserves.fetch_add(1, Ordering::SeqCst);
        let _g = self.enter(&request).await?;
        self.inner.reserve_seat(request).await
    }

    async fn commit_reservation(
        &self,
        request: Request<CommitReservationRequest>,
    ) -> Result<Response<CommitReservationResponse>, Status> {
        let _g = self.enter(&request).await?;
        self.inner.commit_reservation(request).await
    }

    async fn release_hold(
        &self,
        request: Request<ReleaseHoldRequest>,
    ) -> Result<Response<ReleaseHoldResponse>, Status> {
        let _g = self.enter(&request).await?;
        self.inner.release_hold(request).await
    }

    async fn get_inventory_status(
        &self,
        request: Request<GetInventoryStatusRequest>,
    ) -> Result<Response<GetInventoryStatusResponse>, Status> {
        let _g = self.enter(&request).await?;
        self.inner.get_inventory_status(request).await
    }

    async fn list_seats(
        &self,
        request: Request<ListSeatsRequest>,
    ) -> Result<Response<ListSeatsResponse>, Status> {
        let _g = self.enter(&request).await?;
        self.inner.list_seats(request).await
    }
}

/// The metadata hints of one call: reservation id, amount, currency.
pub type Hints = (String, String, String);

/// A payment service that answers crafted payments, by intent id:
/// `pay_other_user` (another user's), `pay_other_reservation`, `pay_wrong_amount`,
/// `pay_wrong_currency`, `pay_other_intent` (about another intent), `pay_unknown` (NOT_FOUND in the
/// answer), `pay_grpc_not_found` (gRPC NOT_FOUND); anything else: COMPLETED exactly as asked.
#[derive(Clone, Default)]
pub struct ScriptedPayments {
    /// The hints of every call, by intent id.
    pub hints: Arc<Mutex<HashMap<String, Hints>>>,
}

impl ScriptedPayments {
    pub async fn serve(&self) -> Peer {
        serve(Routes::new(PaymentServiceServer::new(self.clone()))).await
    }
}

#[tonic::async_trait]
impl PaymentService for ScriptedPayments {
    async fn get_payment_status(
        &self,
        request: Request<GetPaymentStatusRequest>,
    ) -> Result<Response<GetPaymentStatusResponse>, Status> {
        let hint = |n: &str| {
            request
                .metadata()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let (rsv, amount, currency) = (
            hint(HINT_RESERVATION_ID),
            hint(HINT_AMOUNT),
            hint(HINT_CURRENCY),
        );
        let r = request.into_inner();
        self.hints.lock().unwrap().insert(
            r.payment_intent_id.clone(),
            (rsv.clone(), amount.clone(), currency.clone()),
        );
        let mut p = Payment {
            payment_intent_id: r.payment_intent_id.clone(),
            payment_id: format!("pmt_{}", r.payment_intent_id),
            reservation_id: rsv,
            user_id: r.user_id,
            status: PaymentStatus::Completed as i32,
            amount: Some(money(amount.parse().unwrap_or(0), &currency)),
            processed_at: None,
        };
        match r.payment_intent_id.as_str() {
            "pay_other_user" => p.user_id = "someone-else".into(),
            "pay_other_reservation" => p.reservation_id = "rsv_someone_elses".into(),
            "pay_wrong_amount" => {
                p.amount = Some(money(amount.parse::<i64>().unwrap_or(0) - 1, &currency))
            }
            "pay_wrong_currency" => p.amount = Some(money(amount.parse().unwrap_or(0), "USD")),
            "pay_other_intent" => p.payment_intent_id = "pay_something_else".into(),
            "pay_unknown" => {
                return Ok(Response::new(GetPaymentStatusResponse {
                    payment: None,
                    error: Some(error(ErrorCode::NotFound, "no such intent")),
                }))
            }
            "pay_grpc_not_found" => return Err(Status::not_found("no such intent")),
            _ => {}
        }
        Ok(Response::new(GetPaymentStatusResponse {
            payment: Some(p),
            error: None,
        }))
    }
}
