//! Holds really expire: by the sweeper within seconds, and on every read and write before that.

use std::sync::Arc;
use std::time::Duration;

use crate::helpers::*;
use reservation_api::domain::ReservationStatus;
use reservation_api::inventory::catalog::Catalog;
use reservation_api::inventory::engine::SeatInventory;
use reservation_api::inventory::local::LocalInventory;
use reservation_api::store::memory::MemoryStore;
use serde_json::{json, Value};

#[tokio::test]
async fn an_unconfirmed_hold_expires_and_its_seats_come_back() {
    let app = spawn_app_with(|o| o.config.hold_ttl = std::time::Duration::from_secs(1)).await;
    let body = json!({"event_id": BIG_EVENT, "qty": 2, "seat_ids": ["E-1", "E-2"]});
    let held: Value = app.create("u1", "k1", &body).await.json().await.unwrap();
    let id = held["reservation_id"].as_str().unwrap();
    assert_error(
        app.create("u2", "k1", &body).await,
        409,
        "INVENTORY_CONFLICT",
    )
    .await;

    // Written EXPIRED by the sweeper (not just read as expired) within 3 s.
    let started = std::time::Instant::now();
    loop {
        let stored = app.store.get_reservation(id).await.unwrap().unwrap();
        if stored.status == ReservationStatus::Expired {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "still {:?} after 3 s",
            stored.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got: Value = app.get("u1", id).await.json().await.unwrap();
    assert_eq!(got["status"], "EXPIRED");
    assert_eq!(
        app.create("u2", "k2", &body).await.status(),
        201,
        "the seats did not come back"
    );
    assert_error(
        app.confirm("u1", id, "c1", "pay_1").await,
        409,
        "RESERVATION_EXPIRED",
    )
    .await;
    assert_error(app.cancel("u1", id, "c2").await, 409, "RESERVATION_EXPIRED").await;

    // More sweeps run; still exactly one expiry event.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.event_types(id).await,
        ["reservation.hold.created", "reservation.hold.expired"]
    );
}

#[tokio::test]
async fn a_due_hold_reads_as_expired_before_the_sweeper_runs() {
    let app = spawn_app_with(|o| {
        o.config.hold_ttl = std::time::Duration::from_secs(1);
        o.config.expiry_interval = std::time::Duration::from_millis(3_600_000);
    })
    .await;
    let held = app.hold("u1", BIG_EVENT, 1).await;
    let id = held["reservation_id"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let got: Value = app.get("u1", id).await.json().await.unwrap();
    assert_eq!(got["status"], "EXPIRED");
    assert_error(
        app.confirm("u1", id, "c1", "pay_1").await,
        409,
        "RESERVATION_EXPIRED",
    )
    .await;
    assert_error(app.cancel("u1", id, "c2").await, 409, "RESERVATION_EXPIRED").await;
    assert_eq!(
        app.store.get_reservation(id).await.unwrap().unwrap().status,
        ReservationStatus::Hold
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_sweeping_at_once_expire_each_hold_once() {
    let store = Arc::new(MemoryStore::new());
    let inventory = Arc::new(LocalInventory::new(Arc::new(SeatInventory::new(
        &Catalog::bundled(),
    ))));
    let replica = |store: Arc<MemoryStore>, inventory: Arc<LocalInventory>| {
        move |o: &mut TestOptions| {
            o.config.hold_ttl = std::time::Duration::from_secs(1);
            o.config.expiry_interval = std::time::Duration::from_millis(20);
            o.customize = Some(Box::new(move |d| {
                d.store = store;
                d.inventory = inventory;
            }));
        }
    };
    let a = spawn_app_with(replica(store.clone(), inventory.clone())).await;
    let _b = spawn_app_with(replica(store.clone(), inventory.clone())).await;
    let mut ids = Vec::new();
    for i in 0..40 {
        let held = a.hold(&format!("u{i}"), SMALL_EVENT, 2).await;
        ids.push(held["reservation_id"].as_str().unwrap().to_owned());
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for id in &ids {
        assert_eq!(
            a.event_types(id).await,
            ["reservation.hold.created", "reservation.hold.expired"],
            "{id}"
        );
    }
    // All 100 seats are free again.
    for i in 0..50 {
        assert_eq!(
            a.create(&format!("n{i}"), "k", &create_body(SMALL_EVENT, 2))
                .await
                .status(),
            201
        );
    }
}
