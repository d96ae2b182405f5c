//! The on-sale hot path, measured: an inventory hold, and a whole create (inventory hold + one
//! atomic store write + idempotency) through the service on the embedded default.
//!
//! `./run_local.sh bench` (or `cargo bench --bench hot_path`).

use std::sync::Arc;

use chrono::{Duration, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use reservation_api::idempotency::{Begin, IdempotencyKey};
use reservation_api::inventory::catalog::Catalog;
use reservation_api::inventory::engine::SeatInventory;
use reservation_api::inventory::local::LocalInventory;
use reservation_api::inventory::{HoldRequest, ReleaseReason, ReleaseRequest};
use reservation_api::payment::simulator::PaymentSimulator;
use reservation_api::service::{Caller, ReservationService, ServiceSettings};
use reservation_api::store::memory::MemoryStore;

fn inventory_hold_and_release(c: &mut Criterion) {
    let inv = SeatInventory::new(&Catalog::single("evt", 50_000, 1000));
    let mut n = 0u64;
    c.bench_function("inventory hold+release (50k-seat event)", |b| {
        b.iter(|| {
            n += 1;
            let now = Utc::now();
            let id = format!("r{n}");
            let hold = HoldRequest {
                reservation_id: id.clone(),
                event_id: "evt".into(),
                seat_ids: vec![],
                qty: 2,
                user_id: "u".into(),
                hold_expires_at: now + Duration::seconds(60),
                idempotency_key: "k".into(),
            };
            inv.reserve(&hold, now);
            let release = ReleaseRequest {
                reservation_id: id,
                event_id: "evt".into(),
                seat_ids: vec![],
                qty: 2,
                reason: ReleaseReason::Cancelled,
                idempotency_key: "k".into(),
            };
            inv.release(&release, now)
        })
    });
}

fn service_create_then_cancel(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let service = Arc::new(ReservationService::new(
        Arc::new(MemoryStore::new()),
        Arc::new(LocalInventory::new(Arc::new(SeatInventory::new(
            &Catalog::single("evt", 10_000, 1000),
        )))),
        Arc::new(PaymentSimulator),
        ServiceSettings::default(),
        Arc::new(tokio::sync::Notify::new()),
    ));
    let caller = Caller {
        user_id: "u1".into(),
        trace_id: "0".repeat(32),
    };
    let input = reservation_api::domain::CreateInput {
        event_id: "evt".into(),
        qty: 2,
        seat_ids: None,
        user_id: None,
        reservation_token: None,
    };
    let mut n = 0u64;
    c.bench_function(
        "service create + cancel (memory store, in-process inventory)",
        |b| {
            b.to_async(&rt).iter(|| {
                n += 1;
                let (service, caller, input) = (service.clone(), caller.clone(), input.clone());
                async move {
                    let key = IdempotencyKey::parse(&format!("k{n}")).unwrap();
                    let Begin::Started(t) = service.begin(&key.scoped("u1"), "fp").await.unwrap()
                    else {
                        panic!()
                    };
                    let reply = service
                        .create(&caller, &input, key.as_str(), &t)
                        .await
                        .unwrap();
                    let id: serde_json::Value = serde_json::from_str(&reply.response.body).unwrap();
                    let id = id["reservation_id"].as_str().unwrap().to_owned();
                    let ck = IdempotencyKey::parse(&format!("c{n}")).unwrap();
                    let Begin::Started(t) = service.begin(&ck.scoped("u1"), "fp").await.unwrap()
                    else {
                        panic!()
                    };
                    service.cancel(&caller, &id, &t).await.unwrap()
                }
            })
        },
    );
}

criterion_group!(
    benches,
    inventory_hold_and_release,
    service_create_then_cancel
);
criterion_main!(benches);
