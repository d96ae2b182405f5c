//! The memory engine's behaviour, seat by seat.

use super::*;
use crate::inventory::ReleaseReason;
use chrono::Duration;

fn inv() -> SeatInventory {
    SeatInventory::new(&Catalog::single("e", 20, 1000))
}

fn hold(rsv: &str, user: &str, seats: &[&str], qty: u32, now: DateTime<Utc>) -> HoldRequest {
    HoldRequest {
        reservation_id: rsv.into(),
        event_id: "e".into(),
        seat_ids: seats.iter().map(|s| s.to_string()).collect(),
        qty,
        user_id: user.into(),
        hold_expires_at: now + Duration::seconds(60),
        idempotency_key: "k".into(),
    }
}

fn commit(rsv: &str, user: &str) -> CommitRequest {
    CommitRequest {
        reservation_id: rsv.into(),
        event_id: "e".into(),
        seat_ids: vec![],
        qty: 0,
        payment_intent_id: "p".into(),
        user_id: user.into(),
        idempotency_key: "k".into(),
    }
}

fn release(rsv: &str) -> ReleaseRequest {
    ReleaseRequest {
        reservation_id: rsv.into(),
        event_id: "e".into(),
        seat_ids: vec![],
        qty: 0,
        reason: ReleaseReason::Cancelled,
        idempotency_key: "k".into(),
    }
}

fn held(r: &HoldResult) -> Vec<String> {
    match &r.outcome {
        HoldOutcome::Held { seats, .. } => seats.iter().map(|s| s.id.clone()).collect(),
        o => panic!("not held: {o:?}"),
    }
}

#[test]
fn finished_holds_are_forgotten_after_their_retention_and_live_ones_never() {
    let i = SeatInventory::new(&Catalog::single("e", 1000, 1000))
        .with_finished_retention(std::time::Duration::from_secs(10));
    let t0 = Utc::now();
    held(&i.reserve(&hold("live", "u", &[], 1, t0), t0));
    for n in 0..300 {
        let r = format!("r{n}");
        held(&i.reserve(&hold(&r, "u", &[], 1, t0), t0));
        if n % 2 == 0 {
            i.release(&release(&r), t0);
        } else {
            i.commit(&commit(&r, "u"), t0);
        }
    }
    assert_eq!(i.hold_records(), 301);
    // Within the retention a repeat still gets its first answer.
    let later = t0 + Duration::seconds(5);
    assert_eq!(i.release(&release("r0"), later).0, ReleaseOutcome::Released);
    held(&i.reserve(&hold("late", "u", &[], 1, later), later));
    assert_eq!(i.hold_records(), 302, "nothing forgotten yet");
    // Past it, requests forget them, a bounded number each (a repeat of the live hold's
    // reserve adds no record); the live holds stay.
    let past = t0 + Duration::seconds(11);
    let mut n = 0;
    while i.hold_records() > 2 && n < 20 {
        i.reserve(&hold("live", "u", &[], 1, past), past);
        n += 1;
    }
    assert_eq!(i.hold_records(), 2, "live and late stay");
    assert_eq!(
        n,
        300_usize.div_ceil(64),
        "at most 64 forgotten per request"
    );
}

#[test]
fn best_available_prefers_adjacent_seats_in_one_row() {
    let i = inv();
    let now = Utc::now();
    held(&i.reserve(&hold("r1", "u", &["R0-2"], 1, now), now));
    // Row R0 has 1 then 3..10 free: the first run of three is 3,4,5.
    assert_eq!(
        held(&i.reserve(&hold("r2", "u", &[], 3, now), now)),
        vec!["R0-3", "R0-4", "R0-5"]
    );
}

#[test]
fn holds_are_all_or_nothing() {
    let i = inv();
    let now = Utc::now();
    held(&i.reserve(&hold("r1", "u", &["R0-1"], 1, now), now));
    let r = i.reserve(&hold("r2", "u", &["R0-2", "R0-1"], 2, now), now);
    assert!(
        matches!(r.outcome, HoldOutcome::Unavailable { ref seat_ids, .. } if seat_ids == &["R0-1"])
    );
    // R0-2 was not taken by the failed attempt.
    held(&i.reserve(&hold("r3", "u", &["R0-2"], 1, now), now));
    assert!(matches!(
        i.reserve(&hold("r4", "u", &[], 19, now), now).outcome,
        HoldOutcome::Unavailable { .. }
    ));
}

#[test]
fn unknown_events_and_seats_are_invalid() {
    let i = inv();
    let now = Utc::now();
    let mut r = hold("r1", "u", &[], 1, now);
    r.event_id = "nope".into();
    assert!(
        matches!(i.reserve(&r, now).outcome, HoldOutcome::Invalid { ref field, .. } if field == "event_id")
    );
    assert!(matches!(
        i.reserve(&hold("r1", "u", &["Z-9"], 1, now), now).outcome,
        HoldOutcome::Invalid { .. }
    ));
}

#[test]
fn a_repeated_hold_returns_the_same_seats() {
    let i = inv();
    let now = Utc::now();
    let a = held(&i.reserve(&hold("r1", "u", &[], 2, now), now));
    let b = held(&i.reserve(&hold("r1", "u", &[], 2, now), now));
    assert_eq!(a, b);
    assert_eq!(i.counts("e", now).unwrap()[0].reserved, 2);
}

#[test]
fn holds_run_out_on_their_own() {
    let i = inv();
    let now = Utc::now();
    let mut r = hold("r1", "u", &["R0-1"], 1, now);
    r.hold_expires_at = now + Duration::seconds(1);
    held(&i.reserve(&r, now));
    let later = now + Duration::seconds(2);
    held(&i.reserve(&hold("r2", "v", &["R0-1"], 1, later), later));
    assert_eq!(
        i.commit(&commit("r1", "u"), later).0,
        CommitOutcome::Expired
    );
}

#[test]
fn only_the_holder_commits_and_commits_repeat() {
    let i = inv();
    let now = Utc::now();
    held(&i.reserve(&hold("r1", "u", &["R0-1"], 1, now), now));
    assert!(matches!(
        i.commit(&commit("r1", "v"), now).0,
        CommitOutcome::Conflict { .. }
    ));
    let first = i.commit(&commit("r1", "u"), now);
    assert!(matches!(first.0, CommitOutcome::Committed { .. }));
    assert_eq!(
        i.commit(&commit("r1", "u"), now + Duration::seconds(1)),
        first
    );
    assert!(matches!(
        i.commit(&commit("nope", "u"), now).0,
        CommitOutcome::Conflict { .. }
    ));
}

#[test]
fn release_never_frees_a_sold_seat_and_repeats_its_answer() {
    let i = inv();
    let now = Utc::now();
    held(&i.reserve(&hold("r1", "u", &["R0-1"], 1, now), now));
    i.commit(&commit("r1", "u"), now);
    assert!(matches!(
        i.release(&release("r1"), now).0,
        ReleaseOutcome::Refused { .. }
    ));
    assert_eq!(i.counts("e", now).unwrap()[0].sold, 1);
    assert!(matches!(
        i.reserve(&hold("r2", "v", &["R0-1"], 1, now), now).outcome,
        HoldOutcome::Unavailable { .. }
    ));

    held(&i.reserve(&hold("r3", "u", &["R0-2"], 1, now), now));
    let first = i.release(&release("r3"), now);
    assert_eq!(first.0, ReleaseOutcome::Released);
    assert_eq!(i.release(&release("r3"), now + Duration::seconds(1)), first);
    assert!(matches!(
        i.commit(&commit("r3", "u"), now).0,
        CommitOutcome::Conflict { .. }
    ));
    assert_eq!(
        i.release(&release("unknown"), now).0,
        ReleaseOutcome::NotFound
    );
}

#[test]
fn best_available_finds_seats_freed_behind_the_scan_start() {
    let i = inv();
    let now = Utc::now();
    for n in 0..18 {
        held(&i.reserve(&hold(&format!("r{n}"), "u", &[], 1, now), now));
    }
    // The front is full; free one seat there by release and one by expiry.
    i.release(&release("r3"), now);
    let mut short = hold("short", "u", &[], 1, now);
    short.hold_expires_at = now + Duration::seconds(1);
    assert_eq!(held(&i.reserve(&short, now)), vec!["R0-4"]);
    assert_eq!(
        held(&i.reserve(&hold("a", "v", &[], 1, now), now)),
        vec!["R1-9"]
    );
    // The short hold runs out: its seat, behind the scan start, is found again.
    let later = now + Duration::seconds(2);
    assert_eq!(
        held(&i.reserve(&hold("b", "v", &[], 1, later), later)),
        vec!["R0-4"]
    );
    assert_eq!(
        held(&i.reserve(&hold("c", "v", &[], 1, later), later)),
        vec!["R1-10"]
    );
    assert!(matches!(
        i.reserve(&hold("d", "v", &[], 1, later), later).outcome,
        HoldOutcome::Unavailable { .. }
    ));
}

#[test]
fn concurrent_holds_never_oversell() {
    let i = std::sync::Arc::new(inv());
    let now = Utc::now();
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let i = i.clone();
            std::thread::spawn(move || {
                (0..50)
                    .filter(|n| {
                        let r = hold(&format!("r{t}-{n}"), "u", &[], 1, now);
                        matches!(i.reserve(&r, now).outcome, HoldOutcome::Held { .. })
                    })
                    .count()
            })
        })
        .collect();
    let granted: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(granted, 20);
    assert_eq!(i.counts("e", now).unwrap()[0].available, 0);
}

#[test]
fn best_available_finds_the_last_seats_of_a_99_percent_sold_hall() {
    let i = SeatInventory::new(&Catalog::single("e", 10_000, 1000));
    let now = Utc::now();
    // Every row sold but one seat in each tenth row: 100 seats left, none adjacent.
    for r in 0..1000 {
        let keep = if r % 10 == 0 { Some(r % 7 + 1) } else { None };
        let ids: Vec<String> = (1..=10)
            .filter(|&k| Some(k) != keep)
            .map(|k| format!("R{r}-{k}"))
            .collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let rsv = format!("s{r}");
        held(&i.reserve(&hold(&rsv, "u", &ids, ids.len() as u32, now), now));
        i.commit(&commit(&rsv, "u"), now);
    }
    assert_eq!(i.counts("e", now).unwrap()[0].available, 100);
    // No two free seats are adjacent: a pair is the first two free seats, in catalogue order.
    assert_eq!(
        held(&i.reserve(&hold("pair", "v", &[], 2, now), now)),
        vec!["R0-1", "R10-4"]
    );
    let mut got = vec![];
    for n in 0..98 {
        got.extend(held(
            &i.reserve(&hold(&format!("b{n}"), "v", &[], 1, now), now),
        ));
    }
    let want: Vec<String> = (2..100)
        .map(|t| format!("R{}-{}", t * 10, (t * 10) % 7 + 1))
        .collect();
    assert_eq!(got, want);
    assert!(matches!(
        i.reserve(&hold("none", "v", &[], 1, now), now).outcome,
        HoldOutcome::Unavailable { .. }
    ));
    // A release puts its seats back where best-available finds them first.
    i.release(&release("pair"), now);
    assert_eq!(
        held(&i.reserve(&hold("again", "v", &[], 1, now), now)),
        vec!["R0-1"]
    );
}

#[test]
fn the_seat_storage_stays_within_64_bytes_per_seat() {
    let i = SeatInventory::new(&Catalog::single("e", 100_000, 1000));
    let bytes = i.heap_bytes("e").unwrap();
    assert!(bytes <= 64 * 100_000, "{} bytes per seat", bytes / 100_000);
    assert_eq!(std::mem::size_of::<event::SeatState>(), 4);
}
