//! The bundled inventory on its own, through its gRPC API (`reservation.v1.InventoryService`) on a
//! loopback port: zero oversell under concurrency, commits only for the holder before expiry,
//! releases that never free a sold seat, and every call idempotent per reservation.

use std::time::Duration;

use chrono::Utc;
use reservation_api::grpc::convert::timestamp;
use reservation_api::grpc::inventory_server::InventoryGrpc;
use reservation_api::grpc::local;
use reservation_api::grpc::proto::common::v1::{ErrorCode, SeatStatus};
use reservation_api::grpc::proto::reservation::v1::inventory_service_client::InventoryServiceClient;
use reservation_api::grpc::proto::reservation::v1::*;
use reservation_api::inventory::catalog::Catalog;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::Code;

const EVENT: &str = "evt_grpc";

struct Server {
    client: InventoryServiceClient<Channel>,
    stop: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The bundled inventory over a one-event catalogue of `seats` seats, on 127.0.0.1.
async fn start(seats: u32) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let routes = local::inventory_routes(InventoryGrpc::from_catalog(Catalog::single(
        EVENT, seats, 1000,
    )));
    tokio::spawn(local::serve(
        listener,
        routes,
        stop.clone().cancelled_owned(),
    ));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    Server {
        client: InventoryServiceClient::new(channel),
        stop,
    }
}

fn hold(rsv: &str, user: &str, seats: &[&str], qty: i32, ttl: Duration) -> ReserveSeatRequest {
    ReserveSeatRequest {
        reservation_id: rsv.into(),
        event_id: EVENT.into(),
        seat_ids: seats.iter().map(|s| s.to_string()).collect(),
        quantity: qty,
        user_id: user.into(),
        hold_expires_at: Some(timestamp(Utc::now() + ttl)),
        idempotency_key: format!("key-{rsv}"),
    }
}

fn commit(rsv: &str, user: &str) -> CommitReservationRequest {
    CommitReservationRequest {
        reservation_id: rsv.into(),
        event_id: EVENT.into(),
        payment_intent_id: "pay_1".into(),
        user_id: user.into(),
        idempotency_key: format!("key-{rsv}"),
        ..Default::default()
    }
}

fn release(rsv: &str) -> ReleaseHoldRequest {
    ReleaseHoldRequest {
        reservation_id: rsv.into(),
        event_id: EVENT.into(),
        reason: "CANCELLED".into(),
        idempotency_key: format!("key-{rsv}"),
        ..Default::default()
    }
}

const MINUTE: Duration = Duration::from_secs(60);

impl Server {
    async fn reserve(&self, r: ReserveSeatRequest) -> ReserveSeatResponse {
        self.client
            .clone()
            .reserve_seat(r)
            .await
            .expect("ReserveSeat")
            .into_inner()
    }
    async fn commit(&self, r: CommitReservationRequest) -> CommitReservationResponse {
        self.client
            .clone()
            .commit_reservation(r)
            .await
            .expect("CommitReservation")
            .into_inner()
    }
    async fn release(&self, r: ReleaseHoldRequest) -> ReleaseHoldResponse {
        self.client
            .clone()
            .release_hold(r)
            .await
            .expect("ReleaseHold")
            .into_inner()
    }
    async fn stats(&self) -> InventoryStats {
        let r = GetInventoryStatusRequest {
            event_id: EVENT.into(),
            section: String::new(),
        };
        self.client
            .clone()
            .get_inventory_status(r)
            .await
            .unwrap()
            .into_inner()
            .stats
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_holds_for_a_hundred_seats_grant_exactly_a_hundred() {
    let server = std::sync::Arc::new(start(100).await);
    let calls = (0..1000).map(|i| {
        let server = server.clone();
        tokio::spawn(async move {
            server
                .reserve(hold(&format!("rsv_{i}"), &format!("u{i}"), &[], 1, MINUTE))
                .await
        })
    });
    let answers: Vec<ReserveSeatResponse> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let granted: Vec<&ReserveSeatResponse> = answers
        .iter()
        .filter(|r| r.status == HoldStatus::Active as i32)
        .collect();
    assert_eq!(granted.len(), 100);
    let mut seats: Vec<&str> = granted
        .iter()
        .flat_map(|r| r.reserved_seats.iter().map(|s| s.id.as_str()))
        .collect();
    seats.sort();
    seats.dedup();
    assert_eq!(seats.len(), 100, "no seat held twice");
    for r in answers
        .iter()
        .filter(|r| r.status != HoldStatus::Active as i32)
    {
        let e = r.error.as_ref().expect("a refused hold says why");
        assert_eq!(e.code, ErrorCode::InsufficientInventory as i32);
        assert!(r.reserved_seats.is_empty());
    }
    let s = server.stats().await;
    assert_eq!(
        (s.available_seats, s.reserved_seats, s.sold_seats),
        (0, 100, 0)
    );
}

#[tokio::test]
async fn a_named_seat_taken_is_an_inventory_conflict_naming_the_seat() {
    let server = start(20).await;
    server
        .reserve(hold("rsv_a", "u1", &["R0-1"], 1, MINUTE))
        .await;
    let r = server
        .reserve(hold("rsv_b", "u2", &["R0-2", "R0-1"], 2, MINUTE))
        .await;
    assert_eq!(r.status, HoldStatus::Unspecified as i32);
    let e = r.error.unwrap();
    assert_eq!(e.code, ErrorCode::InventoryConflict as i32);
    assert_eq!(
        e.details
            .iter()
            .map(|d| d.value.as_str())
            .collect::<Vec<_>>(),
        vec!["R0-1"]
    );
    // All or nothing: R0-2 was not taken.
    let r = server
        .reserve(hold("rsv_c", "u3", &["R0-2"], 1, MINUTE))
        .await;
    assert_eq!(r.status, HoldStatus::Active as i32);
    // A request that cannot be read is a gRPC error, not a business outcome.
    let mut bad = hold("rsv_d", "u4", &[], 1, MINUTE);
    bad.hold_expires_at = None;
    let err = server.client.clone().reserve_seat(bad).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn commit_fails_for_a_non_holder_and_after_expiry() {
    let server = start(20).await;
    server
        .reserve(hold("rsv_1", "holder", &["R0-1"], 1, MINUTE))
        .await;
    let r = server.commit(commit("rsv_1", "intruder")).await;
    assert_eq!(r.status, CommitStatus::FailedConflict as i32);
    assert_eq!(r.error.unwrap().code, ErrorCode::InventoryConflict as i32);
    assert!(r.sold_seats.is_empty());

    server
        .reserve(hold(
            "rsv_2",
            "holder",
            &["R0-2"],
            1,
            Duration::from_millis(300),
        ))
        .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = server.commit(commit("rsv_2", "holder")).await;
    assert_eq!(r.status, CommitStatus::FailedExpired as i32);
    assert_eq!(r.error.unwrap().code, ErrorCode::ReservationExpired as i32);
    // The expired hold's seat is free again.
    let r = server
        .reserve(hold("rsv_3", "other", &["R0-2"], 1, MINUTE))
        .await;
    assert_eq!(r.status, HoldStatus::Active as i32);

    // The holder, in time: sold.
    let r = server.commit(commit("rsv_1", "holder")).await;
    assert_eq!(r.status, CommitStatus::Success as i32);
    assert_eq!(r.sold_seats.len(), 1);
    assert_eq!(r.sold_seats[0].status, SeatStatus::Sold as i32);
}

#[tokio::test]
async fn release_never_frees_a_sold_seat() {
    let server = start(20).await;
    server
        .reserve(hold("rsv_1", "u1", &["R0-1"], 1, MINUTE))
        .await;
    assert_eq!(
        server.commit(commit("rsv_1", "u1")).await.status,
        CommitStatus::Success as i32
    );
    for _ in 0..2 {
        let r = server.release(release("rsv_1")).await;
        assert_eq!(r.status, ReleaseStatus::Failed as i32);
        assert!(r.released_seats.is_empty());
    }
    let s = server.stats().await;
    assert_eq!(s.sold_seats, 1);
    let r = server
        .reserve(hold("rsv_2", "u2", &["R0-1"], 1, MINUTE))
        .await;
    assert_eq!(
        r.error.unwrap().code,
        ErrorCode::InventoryConflict as i32,
        "the sold seat stays sold"
    );
    // Releasing a hold frees its seats; releasing nothing is NOT_FOUND.
    server
        .reserve(hold("rsv_3", "u3", &["R0-3"], 1, MINUTE))
        .await;
    assert_eq!(
        server.release(release("rsv_3")).await.status,
        ReleaseStatus::Success as i32
    );
    assert_eq!(
        server.release(release("rsv_unknown")).await.status,
        ReleaseStatus::NotFound as i32
    );
    assert_eq!(server.stats().await.available_seats, 19);
}

#[tokio::test]
async fn every_rpc_repeated_with_the_same_reservation_gives_the_same_result() {
    let server = start(20).await;
    // ReserveSeat: the same hold, not more seats.
    let first = server.reserve(hold("rsv_1", "u1", &[], 2, MINUTE)).await;
    assert_eq!(first.status, HoldStatus::Active as i32);
    assert_eq!(
        server.reserve(hold("rsv_1", "u1", &[], 2, MINUTE)).await,
        first
    );
    assert_eq!(server.stats().await.reserved_seats, 2);

    // CommitReservation: the same order, the same time.
    let sold = server.commit(commit("rsv_1", "u1")).await;
    assert_eq!(sold.status, CommitStatus::Success as i32);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(server.commit(commit("rsv_1", "u1")).await, sold);
    assert_eq!(server.stats().await.sold_seats, 2);

    // ReleaseHold: the first answer, every time (for a sold hold, a refusal every time).
    let refused = server.release(release("rsv_1")).await;
    assert_eq!(server.release(release("rsv_1")).await, refused);
    server.reserve(hold("rsv_2", "u2", &[], 1, MINUTE)).await;
    let released = server.release(release("rsv_2")).await;
    assert_eq!(released.status, ReleaseStatus::Success as i32);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(server.release(release("rsv_2")).await, released);
    let not_found = server.release(release("rsv_none")).await;
    assert_eq!(server.release(release("rsv_none")).await, not_found);

    // A refused hold is refused again, and a failed commit fails again.
    let r = hold("rsv_3", "u3", &["R0-1"], 1, MINUTE);
    let refused = server.reserve(r.clone()).await;
    assert!(refused.error.is_some());
    assert_eq!(server.reserve(r).await, refused);
    let failed = server.commit(commit("rsv_1", "intruder")).await;
    assert_eq!(server.commit(commit("rsv_1", "intruder")).await, failed);

    // The reads answer the same while nothing changes.
    let check = CheckAvailabilityRequest {
        event_id: EVENT.into(),
        seat_ids: vec![],
        quantity: 3,
        section: String::new(),
    };
    let a = server
        .client
        .clone()
        .check_availability(check.clone())
        .await
        .unwrap()
        .into_inner();
    let b = server
        .client
        .clone()
        .check_availability(check)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a, b);
    assert!(a.available);
    assert_eq!(a.remaining_in_section, 18);
    let mut s1 = server.stats().await;
    let mut s2 = server.stats().await;
    s1.last_updated = None;
    s2.last_updated = None;
    assert_eq!(s1, s2);
}

impl Server {
    async fn list_seats(&self, page_size: i32, page_token: &str) -> ListSeatsResponse {
        self.client
            .clone()
            .list_seats(ListSeatsRequest {
                event_id: EVENT.into(),
                page_size,
                page_token: page_token.into(),
            })
            .await
            .expect("ListSeats")
            .into_inner()
    }
}

#[tokio::test]
async fn list_seats_pages_the_seat_map_by_rows_and_never_names_the_holder() {
    let s = start(30).await;
    let r = s
        .reserve(hold("rsv_map", "u_secret", &["R1-3"], 1, MINUTE))
        .await;
    assert!(r.error.is_none(), "{r:?}");
    let mut seats = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = s.list_seats(10, &token).await;
        assert!(page.error.is_none(), "{page:?}");
        assert_eq!(page.currency, "KRW");
        assert_eq!(page.sections.len(), 1);
        assert_eq!(page.sections[0].price.as_ref().unwrap().amount, 1000);
        assert_eq!(page.seats.len(), 10, "one row of ten a page");
        seats.extend(page.seats);
        pages += 1;
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!((pages, seats.len()), (3, 30));
    let held: Vec<&str> = seats
        .iter()
        .filter(|x| x.status == SeatStatus::Reserved as i32)
        .map(|x| x.id.as_str())
        .collect();
    assert_eq!(held, ["R1-3"]);
    assert!(!format!("{seats:?}").contains("u_secret"));
    // The default page holds the whole small hall.
    let all = s.list_seats(0, "").await;
    assert_eq!((all.seats.len(), all.next_page_token.as_str()), (30, ""));

    let bad = s.list_seats(10, "garbage").await;
    assert_eq!(
        bad.error.map(|e| e.code),
        Some(ErrorCode::InvalidArgument as i32)
    );
    let unknown = s
        .client
        .clone()
        .list_seats(ListSeatsRequest {
            event_id: "evt_nope".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        unknown.error.map(|e| e.code),
        Some(ErrorCode::NotFound as i32)
    );
    let negative = s
        .client
        .clone()
        .list_seats(ListSeatsRequest {
            event_id: EVENT.into(),
            page_size: -1,
            ..Default::default()
        })
        .await;
    assert_eq!(negative.unwrap_err().code(), Code::InvalidArgument);
}
