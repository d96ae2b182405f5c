//! The seat engine conformance suite: the same cases against every engine behind `SeatEngine`.
//!
//! Engines: the in-memory one (`memory::*`) and the DynamoDB one on moto (`dynamodb::*`,
//! `#[ignore]`d so that a plain `cargo test` reports them as not run; `./run_local.sh test` starts
//! moto and runs them with `--include-ignored`, and without moto they fail). Each DynamoDB case gets
//! a fresh seats table, seeded with a one-event catalogue
//! of two rows of ten. Time is passed in, so expiry is tested without waiting.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use futures::future::join_all;
use reservation_api::inventory::catalog::Catalog;
use reservation_api::inventory::dynamo::{seed, DynamoSeats};
use reservation_api::inventory::engine::{HoldResult, HoldState, SeatInventory};
use reservation_api::inventory::seats::SeatEngine;
use reservation_api::inventory::{
    CommitOutcome, CommitRequest, HoldOutcome, HoldRequest, ReleaseOutcome, ReleaseReason,
    ReleaseRequest, SeatMapStatus,
};
use reservation_api::store::dynamo::{self, TableNames};

const EVENT: &str = "evt_conf";

fn memory(seats: u32) -> Arc<dyn SeatEngine> {
    Arc::new(SeatInventory::new(&Catalog::single(EVENT, seats, 1000)))
}

/// The DynamoDB engine on the moto server that `./run_local.sh test` starts, on tables of its own.
async fn dynamodb(seats: u32) -> Arc<dyn SeatEngine> {
    let endpoint = std::env::var("DYNAMODB_ENDPOINT")
        .expect("DYNAMODB_ENDPOINT is unset: these cases need moto (run ./run_local.sh test)");
    let catalog = Catalog::single(EVENT, seats, 1000);
    let client = dynamo::client(
        Some(&endpoint),
        "us-east-1",
        std::time::Duration::from_secs(30),
    )
    .await;
    let tables = TableNames::prefixed(&format!("i{}-", uuid::Uuid::now_v7().simple()));
    dynamo::tables::create_missing(&client, &tables)
        .await
        .expect("tables");
    seed::seed(&client, &tables.seats, &catalog)
        .await
        .expect("seed");
    Arc::new(DynamoSeats::new(client, tables.seats))
}

fn hold(rsv: &str, user: &str, seats: &[&str], qty: u32, now: DateTime<Utc>) -> HoldRequest {
    HoldRequest {
        reservation_id: rsv.into(),
        event_id: EVENT.into(),
        seat_ids: seats.iter().map(|s| s.to_string()).collect(),
        qty,
        user_id: user.into(),
        hold_expires_at: now + Duration::seconds(60),
        idempotency_key: format!("k-{rsv}"),
    }
}

fn commit(rsv: &str, user: &str) -> CommitRequest {
    CommitRequest {
        reservation_id: rsv.into(),
        event_id: EVENT.into(),
        seat_ids: vec![],
        qty: 0,
        payment_intent_id: "pay".into(),
        user_id: user.into(),
        idempotency_key: format!("k-{rsv}"),
    }
}

fn release(rsv: &str) -> ReleaseRequest {
    ReleaseRequest {
        reservation_id: rsv.into(),
        event_id: EVENT.into(),
        seat_ids: vec![],
        qty: 0,
        reason: ReleaseReason::Cancelled,
        idempotency_key: format!("k-{rsv}"),
    }
}

fn ids(r: &HoldResult) -> Vec<String> {
    match &r.outcome {
        HoldOutcome::Held { seats, .. } => seats.iter().map(|s| s.id.clone()).collect(),
        o => panic!("not held: {o:?}"),
    }
}

async fn held(e: &dyn SeatEngine, req: HoldRequest, now: DateTime<Utc>) -> Vec<String> {
    ids(&e.reserve(&req, now).await.unwrap())
}

/// (available, reserved, sold) of the event.
/// `qty` seats side by side in one row (seat ids `{row}-{k}`).
fn together(ids: &[String], qty: usize) -> bool {
    let split: Vec<(&str, u32)> = ids
        .iter()
        .map(|id| {
            let (row, k) = id.rsplit_once('-').unwrap();
            (row, k.parse().unwrap())
        })
        .collect();
    ids.len() == qty
        && split
            .windows(2)
            .all(|w| w[0].0 == w[1].0 && w[1].1 == w[0].1 + 1)
}

async fn counts(e: &dyn SeatEngine, now: DateTime<Utc>) -> (u32, u32, u32) {
    let c = e.counts(EVENT, now).await.unwrap().expect("the event");
    c.sections.iter().fold((0, 0, 0), |(a, r, s), c| {
        (a + c.available, r + c.reserved, s + c.sold)
    })
}

/// The status of each seat of the whole map, by seat id.
async fn statuses(
    e: &dyn SeatEngine,
    now: DateTime<Utc>,
) -> std::collections::HashMap<String, SeatMapStatus> {
    let map = e
        .seat_page(EVENT, 0, 1000, now)
        .await
        .unwrap()
        .expect("the event");
    assert_eq!(map.next_row, None);
    map.seats.into_iter().map(|(s, st)| (s.id, st)).collect()
}

mod cases {
    use super::*;

    pub async fn holds_are_all_or_nothing(e: Arc<dyn SeatEngine>) {
        let now = Utc::now();
        held(&*e, hold("r1", "u", &["R0-1"], 1, now), now).await;
        let r = e
            .reserve(&hold("r2", "u", &["R0-2", "R0-1"], 2, now), now)
            .await
            .unwrap();
        assert!(
            matches!(r.outcome, HoldOutcome::Unavailable { ref seat_ids, .. } if seat_ids == &["R0-1"]),
            "{r:?}"
        );
        // R0-2 was not taken by the failed attempt.
        assert_eq!(
            held(&*e, hold("r3", "u", &["R0-2"], 1, now), now).await,
            ["R0-2"]
        );
        let r = e
            .reserve(&hold("r4", "u", &[], 19, now), now)
            .await
            .unwrap();
        assert!(
            matches!(r.outcome, HoldOutcome::Unavailable { .. }),
            "{r:?}"
        );
        assert_eq!(counts(&*e, now).await, (18, 2, 0));
    }

    pub async fn best_available_prefers_adjacent_seats_in_one_row(e: Arc<dyn SeatEngine>) {
        // Which row of the best section a pick takes is the engine's choice (DynamoDB spreads a
        // rush over the rows); that the seats sit together, in one row, is the rule.
        let now = Utc::now();
        held(&*e, hold("r1", "u", &["R0-2"], 1, now), now).await;
        let mut taken: Vec<String> = vec!["R0-2".into()];
        for (rsv, qty) in [("r2", 3), ("r3", 6), ("r4", 5)] {
            let got = held(&*e, hold(rsv, "u", &[], qty, now), now).await;
            assert!(together(&got, qty as usize), "{rsv}: {got:?}");
            assert!(got.iter().all(|s| !taken.contains(s)), "{rsv}: {got:?}");
            taken.extend(got);
        }
    }

    pub async fn a_repeated_hold_returns_the_same_seats(e: Arc<dyn SeatEngine>) {
        let now = Utc::now();
        let a = held(&*e, hold("r1", "u", &[], 2, now), now).await;
        let b = held(&*e, hold("r1", "u", &[], 2, now), now).await;
        assert_eq!(a, b);
        let named = held(&*e, hold("r2", "u", &["R1-5"], 1, now), now).await;
        assert_eq!(
            held(&*e, hold("r2", "u", &["R1-5"], 1, now), now).await,
            named
        );
        assert_eq!(counts(&*e, now).await, (17, 3, 0));
    }

    pub async fn only_the_holder_commits_before_expiry_and_commits_repeat(e: Arc<dyn SeatEngine>) {
        let now = Utc::now();
        held(&*e, hold("r1", "u", &["R0-1"], 1, now), now).await;
        let (c, _) = e.commit(&commit("r1", "v"), now).await.unwrap();
        assert!(matches!(c, CommitOutcome::Conflict { .. }), "{c:?}");
        let first = e.commit(&commit("r1", "u"), now).await.unwrap();
        assert!(matches!(first.0, CommitOutcome::Committed { .. }));
        assert_eq!(first.1.len(), 1);
        let again = e
            .commit(&commit("r1", "u"), now + Duration::seconds(1))
            .await
            .unwrap();
        assert_eq!(again, first, "a repeated commit answers the same");
        let (c, _) = e.commit(&commit("nope", "u"), now).await.unwrap();
        assert!(matches!(c, CommitOutcome::Conflict { .. }));
        // A hold that ran out cannot be committed, even by its holder.
        let mut short = hold("r2", "u", &["R0-2"], 1, now);
        short.hold_expires_at = now + Duration::seconds(1);
        held(&*e, short, now).await;
        let later = now + Duration::seconds(2);
        let (c, _) = e.commit(&commit("r2", "u"), later).await.unwrap();
        assert_eq!(c, CommitOutcome::Expired);
        assert_eq!(counts(&*e, later).await, (19, 0, 1));
    }

    pub async fn expired_holds_are_free_without_a_release(e: Arc<dyn SeatEngine>) {
        let now = Utc::now();
        let mut short = hold("r1", "u", &["R0-1", "R0-2"], 2, now);
        short.hold_expires_at = now + Duration::seconds(1);
        held(&*e, short, now).await;
        assert_eq!(counts(&*e, now).await, (18, 2, 0));
        let later = now + Duration::seconds(2);
        assert_eq!(counts(&*e, later).await, (20, 0, 0));
        // Both by name and by best-available, nobody having released them.
        assert_eq!(
            held(&*e, hold("r2", "v", &["R0-1"], 1, later), later).await,
            ["R0-1"]
        );
        let r3 = held(&*e, hold("r3", "v", &[], 1, later), later).await;
        assert!(r3.len() == 1 && r3[0] != "R0-1", "{r3:?}");
        // The old hold's repeat says it ran out; a release of it frees nothing of the new holds.
        let r = e
            .reserve(&hold("r1", "u", &["R0-1", "R0-2"], 2, later), later)
            .await
            .unwrap();
        assert_eq!(r.state, Some(HoldState::Expired));
        let (o, _, _) = e.release(&release("r1"), later).await.unwrap();
        assert_eq!(o, ReleaseOutcome::AlreadyReleased);
        assert_eq!(counts(&*e, later).await, (18, 2, 0));
    }

    pub async fn release_never_frees_a_sold_seat_and_repeats_its_answer(e: Arc<dyn SeatEngine>) {
        let now = Utc::now();
        held(&*e, hold("r1", "u", &["R0-1"], 1, now), now).await;
        e.commit(&commit("r1", "u"), now).await.unwrap();
        let (o, _, _) = e.release(&release("r1"), now).await.unwrap();
        assert!(matches!(o, ReleaseOutcome::Refused { .. }), "{o:?}");
        assert_eq!(counts(&*e, now).await, (19, 0, 1));
        let r = e
            .reserve(&hold("r2", "v", &["R0-1"], 1, now), now)
            .await
            .unwrap();
        assert!(matches!(r.outcome, HoldOutcome::Unavailable { .. }));
        // Even after the hold's time is long past, a sold seat stays sold.
        let much_later = now + Duration::hours(1);
        assert_eq!(counts(&*e, much_later).await, (19, 0, 1));

        held(&*e, hold("r3", "u", &["R0-2"], 1, now), now).await;
        let first = e.release(&release("r3"), now).await.unwrap();
        assert_eq!(first.0, ReleaseOutcome::Released);
        let again = e
            .release(&release("r3"), now + Duration::seconds(1))
            .await
            .unwrap();
        assert_eq!(again, first, "a repeated release answers the same");
        let (c, _) = e.commit(&commit("r3", "u"), now).await.unwrap();
        assert!(matches!(c, CommitOutcome::Conflict { .. }));
        let (o, _, _) = e.release(&release("unknown"), now).await.unwrap();
        assert_eq!(o, ReleaseOutcome::NotFound);
        assert_eq!(counts(&*e, now).await, (19, 0, 1));
    }

    pub async fn unknown_events_and_seats_are_invalid(e: Arc<dyn SeatEngine>) {
        let now = Utc::now();
        let mut r = hold("r1", "u", &[], 1, now);
        r.event_id = "nope".into();
        let out = e.reserve(&r, now).await.unwrap();
        assert!(
            matches!(out.outcome, HoldOutcome::Invalid { ref field, .. } if field == "event_id")
        );
        for bad in [&["Z-9"][..], &["R0-11"], &["R0-1", "R0-1"]] {
            let out = e
                .reserve(&hold("r2", "u", bad, bad.len() as u32, now), now)
                .await
                .unwrap();
            assert!(
                matches!(out.outcome, HoldOutcome::Invalid { .. }),
                "{bad:?}: {out:?}"
            );
        }
        assert!(e.counts("nope", now).await.unwrap().is_none());
    }

    pub async fn concurrent_holds_never_oversell(e: Arc<dyn SeatEngine>) {
        let now = Utc::now();
        let results = join_all((0..40).map(|i| {
            let e = e.clone();
            async move {
                let qty = 1 + (i % 2);
                e.reserve(&hold(&format!("r{i}"), "u", &[], qty, now), now)
                    .await
                    .unwrap()
            }
        }))
        .await;
        let mut seats = HashSet::new();
        let mut total = 0;
        for r in &results {
            if let HoldOutcome::Held { seats: s, .. } = &r.outcome {
                for seat in s {
                    total += 1;
                    assert!(seats.insert(seat.id.clone()), "{} held twice", seat.id);
                }
            }
        }
        let (available, reserved, _) = counts(&*e, now).await;
        assert_eq!(reserved, total);
        assert_eq!(available + reserved, 20);
        assert!(total >= 19, "the hall fills up: {total} held");
    }

    pub async fn the_seat_map_follows_holds_sales_releases_and_expiry(e: Arc<dyn SeatEngine>) {
        let now = Utc::now();
        let all = statuses(&*e, now).await;
        assert_eq!(all.len(), 20);
        assert!(all.values().all(|s| *s == SeatMapStatus::Available));
        held(&*e, hold("r1", "u", &["R0-1"], 1, now), now).await;
        held(&*e, hold("r2", "u", &["R0-2"], 1, now), now).await;
        held(&*e, hold("r3", "u", &["R1-1"], 1, now), now).await;
        let map = statuses(&*e, now).await;
        for id in ["R0-1", "R0-2", "R1-1"] {
            assert_eq!(map[id], SeatMapStatus::Held, "{id}");
        }
        assert_eq!(map["R0-3"], SeatMapStatus::Available);
        let (c, _) = e.commit(&commit("r1", "u"), now).await.unwrap();
        assert!(matches!(c, CommitOutcome::Committed { .. }), "{c:?}");
        let (r, _, _) = e.release(&release("r2"), now).await.unwrap();
        assert_eq!(r, ReleaseOutcome::Released);
        let map = statuses(&*e, now).await;
        assert_eq!(map["R0-1"], SeatMapStatus::Sold);
        assert_eq!(map["R0-2"], SeatMapStatus::Available);
        assert_eq!(map["R1-1"], SeatMapStatus::Held);
        // Past its expiry the hold is free, released or not; the sale stays.
        let later = now + Duration::seconds(61);
        let map = statuses(&*e, later).await;
        assert_eq!(map["R1-1"], SeatMapStatus::Available);
        assert_eq!(map["R0-1"], SeatMapStatus::Sold);
        assert!(e
            .seat_page("evt_nope", 0, 100, now)
            .await
            .unwrap()
            .is_none());
    }

    pub async fn the_seat_map_pages_by_whole_rows(e: Arc<dyn SeatEngine>) {
        let now = Utc::now();
        let first = e.seat_page(EVENT, 0, 10, now).await.unwrap().unwrap();
        assert_eq!(first.next_row, Some(1));
        assert!(first.seats.iter().all(|(s, _)| s.row == "R0"));
        assert_eq!(first.seats.len(), 10);
        assert_eq!(first.currency, "KRW");
        assert_eq!(first.sections.len(), 1);
        assert_eq!(
            (first.sections[0].id.as_str(), first.sections[0].price),
            ("GA", 1000)
        );
        let second = e.seat_page(EVENT, 1, 10, now).await.unwrap().unwrap();
        assert_eq!(second.next_row, None);
        let ids: Vec<&str> = second.seats.iter().map(|(s, _)| s.id.as_str()).collect();
        assert_eq!(ids.first(), Some(&"R1-1"));
        assert_eq!(ids.len(), 10);
        // A page smaller than a row still holds one whole row.
        let small = e.seat_page(EVENT, 0, 3, now).await.unwrap().unwrap();
        assert_eq!((small.seats.len(), small.next_row), (10, Some(1)));
        // Past the last row: an empty last page.
        let past = e.seat_page(EVENT, 5, 10, now).await.unwrap().unwrap();
        assert!(past.seats.is_empty() && past.next_row.is_none());
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::cases::$case(super::memory(20)).await;
                }
            )*
        }

        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                #[ignore = "needs moto: run ./run_local.sh test"]
                async fn $case() {
                    super::cases::$case(super::dynamodb(20).await).await;
                }
            )*
        }
    };
}

conformance!(
    holds_are_all_or_nothing,
    best_available_prefers_adjacent_seats_in_one_row,
    a_repeated_hold_returns_the_same_seats,
    only_the_holder_commits_before_expiry_and_commits_repeat,
    expired_holds_are_free_without_a_release,
    release_never_frees_a_sold_seat_and_repeats_its_answer,
    unknown_events_and_seats_are_invalid,
    concurrent_holds_never_oversell,
    the_seat_map_follows_holds_sales_releases_and_expiry,
    the_seat_map_pages_by_whole_rows,
);
