//! The no-stall property of the embedded store (issue #17): with its maps filled to just below a
//! growth boundary of a power-of-two hash table (7/8 of 2^17, where a std `HashMap` doubles and
//! rehashes everything under the lock), concurrent creates across the crossing each finish well
//! under 50 ms. A generous bound for a debug build on a loaded machine; the old design (one
//! `Mutex` over std `HashMap`s) took longer than that for the crossing insert and for every
//! request queued behind it.

use std::sync::{Arc, Barrier};
use std::time::{Duration as StdDuration, Instant};

use chrono::{Duration, Utc};

use super::MemoryStore;
use crate::domain::{EventType, OutboxEvent, Reservation, ReservationStatus};
use crate::idempotency::{Begin, IdempotencyCompletion, StoredResponse};
use crate::store::Store;

/// Where a std `HashMap` (hashbrown) with 2^17 buckets is full: the next insert doubles it.
const BOUNDARY: usize = (1 << 17) / 8 * 7;
const BELOW: usize = 1_500;
const THREADS: usize = 2;
const PER_THREAD: usize = 1_500;
const BOUND: StdDuration = StdDuration::from_millis(50);

fn reservation(n: usize) -> Reservation {
    let now = Utc::now();
    Reservation {
        id: format!("rsv_{}", uuid::Uuid::now_v7().simple()),
        event_id: "evt_1".into(),
        user_id: format!("u{}", n % 64),
        status: ReservationStatus::Hold,
        seat_ids: vec![format!("A-{n}")],
        qty: 1,
        total_price: 100,
        currency: "KRW".into(),
        hold_expires_at: now + Duration::minutes(10),
        idempotency_key: format!("k{n}"),
        version: 1,
        order_id: None,
        payment_intent_id: None,
        created_at: now,
        updated_at: now,
    }
}

/// One create as the service makes it: take the key, then write the hold with its answer.
fn create(store: &MemoryStore, n: usize) {
    futures::executor::block_on(async {
        let now = Utc::now();
        let key = format!("idem_{n:064x}");
        let ticket = match store
            .begin_request(&key, "hash", now, Duration::seconds(10), Duration::hours(1))
            .await
            .unwrap()
        {
            Begin::Started(t) => t,
            other => panic!("expected Started, got {other:?}"),
        };
        let r = reservation(n);
        let e = OutboxEvent::for_reservation(EventType::HoldCreated, &r, None, "t", now);
        let c = IdempotencyCompletion {
            ticket,
            response: StoredResponse {
                status: 201,
                body: r#"{"reservation_id":"x"}"#.into(),
            },
        };
        store.create_hold(&r, &e, Some(&c)).await.unwrap();
    })
}

#[test]
fn concurrent_creates_across_a_growth_boundary_never_stall() {
    let store = Arc::new(MemoryStore::new());
    for n in 0..BOUNDARY - BELOW {
        create(&store, n);
    }
    let start = Arc::new(Barrier::new(THREADS + 1));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (store, start) = (store.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let mut slowest = StdDuration::ZERO;
                for i in 0..PER_THREAD {
                    let began = Instant::now();
                    create(&store, BOUNDARY + t * PER_THREAD + i);
                    slowest = slowest.max(began.elapsed());
                    // A request does other work between its store calls.
                    std::thread::sleep(StdDuration::from_micros(50));
                }
                slowest
            })
        })
        .collect();
    // A reader as well: a GET must not wait behind a growing map either.
    let reader = {
        let (store, start) = (store.clone(), start.clone());
        std::thread::spawn(move || {
            start.wait();
            let mut slowest = StdDuration::ZERO;
            let mut reads = 0;
            while reads < 3_000 {
                let began = Instant::now();
                let _ = futures::executor::block_on(store.get_reservation("rsv_unknown"));
                slowest = slowest.max(began.elapsed());
                reads += 1;
                std::thread::sleep(StdDuration::from_micros(200));
            }
            slowest
        })
    };
    let slowest: Vec<StdDuration> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let slowest_read = reader.join().unwrap();
    let counts = futures::executor::block_on(store.item_counts()).unwrap();
    assert!(
        counts
            .iter()
            .any(|(k, n)| *k == "reservations" && *n > BOUNDARY),
        "the creates crossed the boundary: {counts:?}"
    );
    for s in &slowest {
        assert!(
            *s < BOUND,
            "a create took {s:?} (slowest per thread: {slowest:?})"
        );
    }
    assert!(slowest_read < BOUND, "a read took {slowest_read:?}");
}
