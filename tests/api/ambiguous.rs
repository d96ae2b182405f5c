//! Ambiguous outcomes: a store write whose answer is lost (the fault proxy forwards it to moto, then
//! cuts the connection) or that lands after the deadline. The client never sees a 500, a retry with
//! the same key ends in the right success, and exactly one of everything is stored.

use std::time::Duration;

use crate::fault_proxy::{Fault, FaultProxy};
use crate::helpers::*;
use crate::moto::{self, authority};
use crate::peers;
use aws_sdk_dynamodb::types::AttributeValue;
use reservation_api::config::StoreKind;
use reservation_api::grpc::inventory_server::InventoryGrpc;
use reservation_api::grpc::local;
use reservation_api::inventory::catalog::Catalog;
use reservation_api::store::dynamo::TableNames;
use serde_json::{json, Value};

pub const TRANSACT: &str = "DynamoDB_20120810.TransactWriteItems";

/// The app on DynamoDB (moto) through `proxy`, with a store deadline of `timeout_ms`; its tables.
pub async fn on_moto(proxy: &FaultProxy, timeout_ms: u64) -> (TestApp, TableNames) {
    let tables = TableNames::prefixed(&format!("t{}-", uuid::Uuid::new_v4().simple()));
    let t = tables.clone();
    let url = proxy.url();
    let app = spawn_app_with(move |o| {
        o.config.store = StoreKind::Dynamodb;
        o.config.dynamodb.endpoint = Some(url);
        o.config.aws_region = "us-east-1".into();
        o.config.dynamodb.tables = t;
        o.config.dynamodb.auto_create = true;
        o.config.dynamodb.timeout = std::time::Duration::from_millis(timeout_ms);
        o.config.idempotency_lease = std::time::Duration::from_secs(30);
    })
    .await;
    (app, tables)
}

/// Orders stored for `reservation_id` (the orders table's sort key), read from moto directly.
pub async fn orders_of(endpoint: &str, tables: &TableNames, reservation_id: &str) -> usize {
    let conf =
        reservation_api::aws::sdk_config(Some(endpoint), "us-east-1", Duration::from_secs(10))
            .await;
    let out = aws_sdk_dynamodb::Client::new(&conf)
        .scan()
        .table_name(&tables.orders)
        .consistent_read(true)
        .send()
        .await
        .expect("scan orders");
    out.items()
        .iter()
        .filter(|i| i.get("sk") == Some(&AttributeValue::S(reservation_id.into())))
        .count()
}

fn seats(s: &[&str]) -> Value {
    json!({"event_id": BIG_EVENT, "qty": s.len(), "seat_ids": s})
}

/// Create with `fault` on the first store transaction(s): no 500, the retry with the same key is
/// 201 with the same reservation, one reservation and one event stored, the seats still held.
async fn create_survives(
    fault: Fault,
    times: usize,
    timeout_ms: u64,
    also: impl FnOnce(&FaultProxy),
) {
    let ep = moto::endpoint();
    let proxy = FaultProxy::http1(&authority(&ep)).await;
    let (app, _) = on_moto(&proxy, timeout_ms).await;
    if times == 1 {
        proxy.on_nth(TRANSACT, 1, fault);
    } else {
        proxy.on_next(TRANSACT, times, fault);
    }
    also(&proxy);
    let body = seats(&["A-1", "A-2"]);
    let first = app.create("u1", "k1", &body).await;
    let status = first.status().as_u16();
    assert!(status == 201 || status == 503 || status == 504, "{status}");
    assert!(proxy.fired() >= 1, "the fault never fired");
    let first: Value = first.json().await.unwrap();
    // Whatever the delayed writes do, they do it by now.
    tokio::time::sleep(SETTLE).await;

    let retry = app.create("u1", "k1", &body).await;
    assert_eq!(retry.status(), 201, "the retry with the same key");
    let retry: Value = retry.json().await.unwrap();
    if status == 201 {
        assert_eq!(first["reservation_id"], retry["reservation_id"]);
    }
    let id = retry["reservation_id"].as_str().unwrap();
    let audit = app.store.audit().await.unwrap();
    assert_eq!(audit.reservations.len(), 1, "{:?}", audit.reservations);
    assert_eq!(audit.reservations[0].id, id);
    assert_eq!(app.event_types(id).await, ["reservation.hold.created"]);
    assert_eq!(audit.events.len(), 1);

    // The seats are still held for u1: nobody else gets them.
    assert_error(
        app.create("u2", "k2", &body).await,
        409,
        "INVENTORY_CONFLICT",
    )
    .await;
}

/// Confirm (or cancel) with `fault` on its store transaction(s): the same guarantees.
async fn transition_survives(fault: Fault, times: usize, timeout_ms: u64, confirm: bool) {
    let ep = moto::endpoint();
    let proxy = FaultProxy::http1(&authority(&ep)).await;
    let (app, tables) = on_moto(&proxy, timeout_ms).await;
    let held = app.create("u1", "k1", &seats(&["B-1"])).await;
    assert_eq!(held.status(), 201);
    let held: Value = held.json().await.unwrap();
    let id = held["reservation_id"].as_str().unwrap();
    proxy.on_next(TRANSACT, times, fault);
    let call = || async {
        if confirm {
            app.confirm("u1", id, "k2", "pay_1").await
        } else {
            app.cancel("u1", id, "k2").await
        }
    };
    let first = call().await;
    let status = first.status().as_u16();
    assert!(status == 200 || status == 503 || status == 504, "{status}");
    assert!(proxy.fired() >= 1, "the fault never fired");
    let first: Value = first.json().await.unwrap();
    tokio::time::sleep(SETTLE).await;

    let retry = call().await;
    assert_eq!(retry.status(), 200, "the retry with the same key");
    let retry: Value = retry.json().await.unwrap();
    let (want, event) = if confirm {
        ("CONFIRMED", "reservation.confirmed")
    } else {
        ("CANCELLED", "reservation.cancelled")
    };
    assert_eq!(retry["status"], want);
    if status == 200 {
        assert_eq!(first, retry);
    }
    let got: Value = app.get("u1", id).await.json().await.unwrap();
    assert_eq!(got["status"], want);
    assert_eq!(
        app.event_types(id).await,
        ["reservation.hold.created", event]
    );
    let orders = orders_of(&ep, &tables, id).await;
    if confirm {
        assert_eq!(orders, 1, "exactly one order");
        assert_eq!(got["order_id"], retry["order_id"]);
    } else {
        assert_eq!(orders, 0);
        // Cancelled for real: the seat is free for someone else.
        assert_eq!(app.create("u2", "k3", &seats(&["B-1"])).await.status(), 201);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto: run ./run_local.sh test"]
async fn create_whose_answer_is_lost_holds_once_and_keeps_its_seats() {
    create_survives(Fault::DropResponse, 1, 5000, |_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto: run ./run_local.sh test"]
async fn confirm_whose_answer_is_lost_sells_once() {
    transition_survives(Fault::DropResponse, 1, 5000, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto: run ./run_local.sh test"]
async fn cancel_whose_answer_is_lost_cancels_once() {
    transition_survives(Fault::DropResponse, 1, 5000, false).await;
}

/// The store's deadline in the late-write cases: roomy enough for moto serving parallel tests.
const DEADLINE_MS: u64 = 1500;
/// Both SDK attempts (of `DEADLINE_MS / 2` each) are held back past the deadline; each then lands
/// late.
const LATE: Fault = Fault::Delay(Duration::from_millis(2000));
/// How long after its answer a late write has surely arrived.
const SETTLE: Duration = Duration::from_millis(2200);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto: run ./run_local.sh test"]
async fn create_whose_write_lands_after_the_deadline_holds_once() {
    // The first cleanup after the timeout (freeing the idempotency record) is slow too, so the
    // late write lands while the request is still settling: releasing the seats before knowing
    // would double-book them.
    create_survives(LATE, 2, DEADLINE_MS, |p| {
        p.on_next(
            "DynamoDB_20120810.DeleteItem",
            1,
            Fault::Delay(Duration::from_millis(1000)),
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto: run ./run_local.sh test"]
async fn confirm_whose_write_lands_after_the_deadline_sells_once() {
    transition_survives(LATE, 2, DEADLINE_MS, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto: run ./run_local.sh test"]
async fn cancel_whose_write_lands_after_the_deadline_cancels_once() {
    transition_survives(LATE, 2, DEADLINE_MS, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hold_whose_answer_is_lost_is_free_again_by_its_expiry_with_no_reservation() {
    let catalog = Catalog::load(None).unwrap();
    let inventory = peers::serve(local::inventory_routes(InventoryGrpc::from_catalog(
        catalog,
    )))
    .await;
    let proxy = FaultProxy::grpc(&inventory.addr.to_string()).await;
    let app = spawn_app_with(|o| {
        o.config.inventory_grpc_address = Some(proxy.url());
        o.config.hold_ttl = std::time::Duration::from_secs(2);
        // This test is about the hold, not the breaker: keep the circuit closed.
        o.config.inventory_client.cb_minimum_calls = 1000;
    })
    .await;
    // Every hold lands but its answer is lost, and the compensating release never arrives: only
    // the inventory's own expiry can free the seat.
    proxy.always("/ReserveSeat", Fault::DropResponse);
    proxy.always("/ReleaseHold", Fault::Reset);
    let body = seats(&["C-9"]);
    let r = app.create("u1", "k1", &body).await;
    let status = r.status().as_u16();
    assert!(status == 503 || status == 504, "{status}");
    assert!(proxy.fired() >= 1);
    proxy.clear();
    let audit = app.store.audit().await.unwrap();
    assert!(audit.reservations.is_empty(), "a reservation was stored");

    // The hold landed: the seat is taken until its expiry, then free again.
    assert_error(
        app.create("u2", "k2", &body).await,
        409,
        "INVENTORY_CONFLICT",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(app.create("u2", "k3", &body).await.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto: run ./run_local.sh test"]
async fn a_store_that_never_answers_is_a_504_with_retry_after_not_a_500() {
    let ep = moto::endpoint();
    let proxy = FaultProxy::http1(&authority(&ep)).await;
    let (app, _) = on_moto(&proxy, 1000).await;
    let held = app.hold("u1", BIG_EVENT, 1).await;
    let id = held["reservation_id"].as_str().unwrap();
    proxy.always("DynamoDB_20120810.", Fault::Blackhole);
    let r = app.get("u1", id).await;
    assert!(r.headers().contains_key("retry-after"));
    assert_error(r, 504, "UPSTREAM_TIMEOUT").await;
    let r = app.cancel("u1", id, "x1").await;
    assert_eq!(r.status(), 504);
    proxy.clear();
    assert_eq!(app.cancel("u1", id, "x1").await.status(), 200);
}
