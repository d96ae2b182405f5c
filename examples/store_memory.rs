//! Bytes per live reservation in the embedded store: the RSS growth of this process over N creates
//! made as the service makes them (idempotency key taken, hold + `hold.created` event + stored
//! answer written together), divided by N; and the live heap bytes (counted by this example's
//! allocator, without the allocator's own overhead) per reservation, all-in and once the events
//! are published and they and the idempotency records have outlived their retention. Run in
//! release:
//!
//!   cargo run --release --example store_memory -- 100000

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{Duration, Utc};
use reservation_api::domain::{EventType, OutboxEvent, Reservation, ReservationStatus};
use reservation_api::idempotency::{Begin, IdempotencyCompletion, IdempotencyKey, StoredResponse};
use reservation_api::service::views::HoldCreated;
use reservation_api::store::memory::MemoryStore;
use reservation_api::store::{Settlement, Store};

/// The system allocator, counting the bytes in use.
struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let store = MemoryStore::new();
    let before = rss_bytes();
    let live_before = LIVE.load(Ordering::Relaxed);
    for i in 0..n {
        let now = Utc::now();
        let user = format!("user-{}", i % 1000);
        let key = IdempotencyKey::parse(&uuid::Uuid::new_v4().to_string()).unwrap();
        let scoped = key.scoped(&user);
        let ticket = match store
            .begin_request(
                &scoped,
                &"f".repeat(64),
                now,
                Duration::seconds(10),
                Duration::seconds(300),
            )
            .await
            .unwrap()
        {
            Begin::Started(t) => t,
            other => panic!("{other:?}"),
        };
        let r = Reservation {
            id: reservation_api::domain::ids::new_reservation_id(),
            event_id: "evt_2025_1001".into(),
            user_id: user,
            status: ReservationStatus::Hold,
            seat_ids: vec![format!("S{}-R{}-{}", i % 100, i % 100, i % 100)],
            qty: 1,
            total_price: 50_000,
            currency: "KRW".into(),
            hold_expires_at: now + Duration::seconds(60),
            idempotency_key: key.as_str().to_owned(),
            version: 1,
            order_id: None,
            payment_intent_id: None,
            created_at: now,
            updated_at: now,
        };
        let e = OutboxEvent::for_reservation(
            EventType::HoldCreated,
            &r,
            None,
            "4bf92f3577b34da6a3ce929d0e0e4736",
            now,
        );
        let c = IdempotencyCompletion {
            ticket,
            response: StoredResponse::json(201, &HoldCreated::of(&r)),
        };
        store.create_hold(&r, &e, Some(&c)).await.unwrap();
    }
    let after = rss_bytes();
    let live = LIVE.load(Ordering::Relaxed) - live_before;
    println!(
        "{n} live reservations: RSS +{:.1} MB, {:.0} bytes per reservation; heap in use {:.0} bytes per reservation (all-in: with its idempotency record and unpublished event)",
        (after - before) as f64 / 1e6,
        (after - before) as f64 / n as f64,
        live as f64 / n as f64
    );
    // Publish every event, then purge as if two hours had passed: the records (5 minutes) and the
    // published events (1 hour) go, the holds stay.
    let now = Utc::now();
    loop {
        let claimed = store
            .claim_events("m", now, now + Duration::seconds(60), 1000)
            .await
            .unwrap();
        if claimed.is_empty() {
            break;
        }
        let batch: Vec<_> = claimed
            .into_iter()
            .map(|e| (e, Settlement::Published { at: now }))
            .collect();
        store.settle_events("m", &batch).await.unwrap();
    }
    let later = now + Duration::hours(2);
    while store.purge_expired(later, 10_000).await.unwrap() > 0 {}
    let live = LIVE.load(Ordering::Relaxed) - live_before;
    println!(
        "after its record and event are gone: heap in use {:.0} bytes per reservation ({:?})",
        live as f64 / n as f64,
        store.item_counts().await.unwrap_or_default()
    );
}
