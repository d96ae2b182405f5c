//! The bundled inventory and payment simulator: called in process by default, and over gRPC on a
//! loopback port with `BUNDLED_PEERS=loopback` (these tests' [`over_grpc`]), as remote peers are.

use std::sync::{Arc, Mutex};

use reservation_api::grpc::local::LocalServer;
use reservation_api::grpc::proto::payment::v1::payment_service_client::PaymentServiceClient;
use reservation_api::grpc::proto::payment::v1::{GetPaymentStatusRequest, PaymentStatus};
use reservation_api::grpc::proto::reservation::v1::inventory_service_client::InventoryServiceClient;
use reservation_api::grpc::proto::reservation::v1::{GetInventoryStatusRequest, InventoryStats};
use serde_json::Value;

use crate::helpers::*;
use crate::peers::{Mode, ScriptedInventory};

async fn stats(endpoint: &str, event: &str) -> InventoryStats {
    let mut c = InventoryServiceClient::connect(endpoint.to_owned())
        .await
        .expect("connect");
    let r = c
        .get_inventory_status(GetInventoryStatusRequest {
            event_id: event.into(),
            section: String::new(),
        })
        .await
        .expect("GetInventoryStatus")
        .into_inner();
    r.stats.expect("stats")
}

/// The client metrics' samples for `method` (`grpc_client_duration_seconds_count{…}`), by code.
async fn client_calls(app: &TestApp, method: &str) -> Vec<String> {
    let text = app.prometheus().await;
    text.lines()
        .filter(|l| l.starts_with("grpc_client_duration_seconds_count{"))
        .filter(|l| l.contains(&format!("method=\"{method}\"")))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn by_default_the_bundled_peers_are_called_in_process_through_the_same_client_stack() {
    let app = spawn_app_with(|o| {
        o.config.bundled_peers = reservation_api::config::BundledPeers::InProcess;
        o.customize = Some(Box::new(|d| {
            assert!(
                d.local_servers.is_empty(),
                "no loopback server in process mode"
            );
        }));
    })
    .await;
    assert_eq!(
        (
            app.inventory_endpoint.as_str(),
            app.payment_endpoint.as_str()
        ),
        ("in-process", "in-process")
    );
    let held = app.hold("dora", SMALL_EVENT, 2).await;
    let id = held["reservation_id"].as_str().unwrap();
    let r = app.confirm("dora", id, "k-confirm", "pay_xyz789").await;
    assert_eq!(r.status(), 200);
    // The same metric names as over gRPC: the calls went through the client stack.
    for method in [
        "reservation.v1.InventoryService/ReserveSeat",
        "reservation.v1.InventoryService/CommitReservation",
        "payment.v1.PaymentService/GetPaymentStatus",
    ] {
        let samples = client_calls(&app, method).await;
        assert!(
            samples.iter().any(|l| l.contains("code=\"OK\"")),
            "{method}: {samples:?}"
        );
    }
    // A refused hold is the same domain answer in process: the seat is taken.
    let taken = held["seat_ids"][0].as_str().unwrap();
    let r = app
        .create(
            "erin",
            "k-taken",
            &serde_json::json!({"event_id": SMALL_EVENT, "seat_ids": [taken], "qty": 1}),
        )
        .await;
    assert_error(r, 409, "INVENTORY_CONFLICT").await;
    app.stop().await;
}

#[tokio::test]
async fn the_default_path_holds_and_sells_seats_in_the_bundled_grpc_inventory() {
    let app = spawn_app_with(over_grpc).await;
    for e in [&app.inventory_endpoint, &app.payment_endpoint] {
        assert!(
            e.starts_with("http://127.0.0.1:"),
            "a loopback gRPC endpoint: {e}"
        );
    }
    assert_ne!(app.inventory_endpoint, app.payment_endpoint);
    let before = stats(&app.inventory_endpoint, SMALL_EVENT).await;

    let held = app.hold("alice", SMALL_EVENT, 2).await;
    let id = held["reservation_id"].as_str().unwrap();
    let s = stats(&app.inventory_endpoint, SMALL_EVENT).await;
    assert_eq!(
        s.reserved_seats,
        before.reserved_seats + 2,
        "the hold is in the gRPC inventory"
    );

    let r = app.confirm("alice", id, "k-confirm", "pay_xyz789").await;
    assert_eq!(r.status(), 200);
    let s = stats(&app.inventory_endpoint, SMALL_EVENT).await;
    assert_eq!(
        (s.reserved_seats, s.sold_seats),
        (before.reserved_seats, before.sold_seats + 2)
    );

    // The payment simulator answers on its own gRPC endpoint too.
    let mut p = PaymentServiceClient::connect(app.payment_endpoint.clone())
        .await
        .unwrap();
    let r = p
        .get_payment_status(GetPaymentStatusRequest {
            payment_intent_id: "pay_xyz789".into(),
            user_id: "alice".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.payment.unwrap().status, PaymentStatus::Completed as i32);
}

#[tokio::test]
async fn the_default_path_cancels_through_grpc_and_frees_the_seats() {
    let app = spawn_app_with(over_grpc).await;
    let before = stats(&app.inventory_endpoint, SMALL_EVENT).await;
    let held = app.hold("bob", SMALL_EVENT, 3).await;
    let id = held["reservation_id"].as_str().unwrap();
    assert_eq!(held["total_price"], 3 * 55000);
    let r = app.cancel("bob", id, "k-cancel").await;
    assert_eq!(r.status(), 200);
    let s = stats(&app.inventory_endpoint, SMALL_EVENT).await;
    assert_eq!(s.available_seats, before.available_seats);
    let r = app.confirm("bob", id, "k-confirm", "pay_xyz789").await;
    assert_error(r, 409, "INVALID_STATE").await;
}

#[tokio::test]
async fn stopping_the_bundled_inventory_server_makes_creates_fail_with_503() {
    let taken: Arc<Mutex<Option<LocalServer>>> = Arc::default();
    let slot = taken.clone();
    let app = spawn_app_with(move |o| {
        over_grpc(o);
        o.customize = Some(Box::new(move |d| {
            let i = d
                .local_servers
                .iter()
                .position(|s| s.name == "inventory")
                .expect("bundled inventory");
            *slot.lock().unwrap() = Some(d.local_servers.remove(i));
        }));
    })
    .await;
    app.hold("carol", SMALL_EVENT, 1).await;

    let server = taken.lock().unwrap().take().unwrap();
    server.shutdown().await;
    let r = app
        .create("carol", "k-after-stop", &create_body(SMALL_EVENT, 1))
        .await;
    assert!(r.headers().contains_key("retry-after"));
    assert_error(r, 503, "UPSTREAM_UNAVAILABLE").await;
}

#[tokio::test]
async fn the_trace_context_travels_in_grpc_metadata() {
    let inventory = ScriptedInventory::new(Mode::Healthy);
    let peer = inventory.serve().await;
    let app = spawn_app_with(|o| o.config.inventory_grpc_address = Some(peer.endpoint())).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let r = app
        .client
        .post(app.url("/v1/reservations"))
        .bearer_auth(token("dave"))
        .header("Idempotency-Key", "k-trace")
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .json(&create_body(SMALL_EVENT, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let seen = inventory.traceparents.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let parts: Vec<&str> = seen[0].split('-').collect();
    assert_eq!(parts[1], trace, "the request's trace id is passed on");
    assert_ne!(
        parts[2], "00f067aa0ba902b7",
        "with this service's own span as parent"
    );
    let _: Value = r.json().await.unwrap();
}
