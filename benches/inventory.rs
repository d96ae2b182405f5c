//! The bundled inventory's memory engine on a 1,000,000-seat hall (issue #17): best-available
//! hold, specific-seat hold and release, each at 0 %, 50 % and 95 % sold, and the hall's build.
//! The sold seats are spread at random over the hall (a fixed seed), so best-available has to
//! find the free runs between them; the figures should not grow as the hall fills.
//!
//! `cargo bench --bench inventory` (figures and the short-run command in docs/inventory.md).

use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, Utc};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reservation_api::inventory::catalog::Catalog;
use reservation_api::inventory::engine::SeatInventory;
use reservation_api::inventory::{
    CommitRequest, HoldOutcome, HoldRequest, ReleaseReason, ReleaseRequest,
};

const SEATS: u32 = 1_000_000;
const EVENT: &str = "hall";
/// Holds timed per batch; they are released (untimed) before the next, so the fill stays put.
const BATCH: usize = 100;

fn hold(id: String, seat_ids: Vec<String>, qty: u32, now: DateTime<Utc>) -> HoldRequest {
    HoldRequest {
        reservation_id: id,
        event_id: EVENT.into(),
        seat_ids,
        qty,
        user_id: "u".into(),
        hold_expires_at: now + Duration::hours(1),
        idempotency_key: "k".into(),
    }
}

fn release(id: &str) -> ReleaseRequest {
    ReleaseRequest {
        reservation_id: id.into(),
        event_id: EVENT.into(),
        seat_ids: vec![],
        qty: 0,
        reason: ReleaseReason::Cancelled,
        idempotency_key: "k".into(),
    }
}

/// A 1M-seat hall (rows of ten) with `sold` percent of its seats sold at random, and the ids of
/// some seats left free.
fn hall(sold: u32, now: DateTime<Utc>) -> (SeatInventory, Vec<String>) {
    let inv = SeatInventory::new(&Catalog::single(EVENT, SEATS, 1000))
        .with_finished_retention(StdDuration::ZERO);
    let mut rng = StdRng::seed_from_u64(17);
    let mut free = Vec::new();
    for r in 0..SEATS / 10 {
        let (mut take, mut keep): (Vec<String>, Vec<String>) = (vec![], vec![]);
        for k in 1..=10 {
            let id = format!("R{r}-{k}");
            if rng.random_range(0..100) < sold {
                take.push(id);
            } else {
                keep.push(id);
            }
        }
        if free.len() < 4 * BATCH {
            free.extend(keep);
        }
        if take.is_empty() {
            continue;
        }
        let id = format!("sold{r}");
        let qty = take.len() as u32;
        let h = inv.reserve(&hold(id.clone(), take, qty, now), now);
        assert!(matches!(h.outcome, HoldOutcome::Held { .. }));
        inv.commit(
            &CommitRequest {
                reservation_id: id,
                event_id: EVENT.into(),
                seat_ids: vec![],
                qty: 0,
                payment_intent_id: "p".into(),
                user_id: "u".into(),
                idempotency_key: "k".into(),
            },
            now,
        );
    }
    (inv, free)
}

/// Time `BATCH` holds at a time, releasing them untimed after each batch.
fn time_holds(
    inv: &SeatInventory,
    iters: u64,
    n: &mut u64,
    make: impl Fn(usize, String) -> HoldRequest,
    now: DateTime<Utc>,
) -> StdDuration {
    let mut total = StdDuration::ZERO;
    let mut left = iters as usize;
    while left > 0 {
        let batch = left.min(BATCH);
        let reqs: Vec<HoldRequest> = (0..batch)
            .map(|j| {
                *n += 1;
                make(j, format!("b{n}"))
            })
            .collect();
        let t = Instant::now();
        for r in &reqs {
            std::hint::black_box(inv.reserve(r, now));
        }
        total += t.elapsed();
        for r in &reqs {
            inv.release(&release(&r.reservation_id), now);
        }
        left -= batch;
    }
    total
}

fn engine(c: &mut Criterion) {
    let now = Utc::now();
    let mut g = c.benchmark_group("inventory 1M seats");
    for sold in [0u32, 50, 95] {
        let (inv, free) = hall(sold, now);
        let mut n = 0u64;
        g.bench_function(BenchmarkId::new("best-available hold of 2", sold), |b| {
            b.iter_custom(|iters| {
                time_holds(&inv, iters, &mut n, |_, id| hold(id, vec![], 2, now), now)
            })
        });
        g.bench_function(BenchmarkId::new("specific-seat hold", sold), |b| {
            b.iter_custom(|iters| {
                let seat = |j: usize| vec![free[j % free.len()].clone()];
                time_holds(&inv, iters, &mut n, |j, id| hold(id, seat(j), 1, now), now)
            })
        });
        g.bench_function(BenchmarkId::new("release", sold), |b| {
            b.iter_custom(|iters| {
                let mut total = StdDuration::ZERO;
                let mut left = iters as usize;
                while left > 0 {
                    let batch = left.min(BATCH);
                    let ids: Vec<String> = (0..batch)
                        .map(|_| {
                            n += 1;
                            let id = format!("b{n}");
                            inv.reserve(&hold(id.clone(), vec![], 2, now), now);
                            id
                        })
                        .collect();
                    let t = Instant::now();
                    for id in &ids {
                        std::hint::black_box(inv.release(&release(id), now));
                    }
                    total += t.elapsed();
                    left -= batch;
                }
                total
            })
        });
        let left = inv.counts(EVENT, now).expect("the hall")[0].available;
        eprintln!("{sold} % sold: {left} seats free");
    }
    g.finish();
}

fn build(c: &mut Criterion) {
    let catalog = Catalog::single(EVENT, SEATS, 1000);
    let inv = SeatInventory::new(&catalog);
    let bytes = inv.heap_bytes(EVENT).expect("the hall");
    eprintln!(
        "1M-seat hall: {bytes} bytes kept, {:.1} B/seat",
        bytes as f64 / f64::from(SEATS)
    );
    c.bench_function("build a 1M-seat hall", |b| {
        b.iter(|| SeatInventory::new(&catalog))
    });
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(StdDuration::from_millis(500))
        .measurement_time(StdDuration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = build, engine
}
criterion_main!(benches);
