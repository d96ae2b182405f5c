//! The bundled inventory's memory engine keeps a 1,000,000-seat hall in ≤ 64 bytes per seat
//! (issue #17), measured by counting what the build allocates, not by the engine's own word.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use chrono::{Duration, Utc};
use reservation_api::inventory::catalog::Catalog;
use reservation_api::inventory::engine::SeatInventory;
use reservation_api::inventory::{HoldOutcome, HoldRequest};

/// The system allocator, counting the bytes live per thread (other tests' threads do not count).
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    let _ = LIVE.try_with(|c| c.set(c.get() + delta));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> isize {
    LIVE.with(Cell::get)
}

const SEATS: u32 = 1_000_000;

#[test]
fn a_million_seat_hall_takes_at_most_64_bytes_per_seat() {
    let catalog = Catalog::single("big", SEATS, 1000);
    let before = live();
    let inv = SeatInventory::new(&catalog);
    let built = live() - before;
    let per_seat = built as f64 / f64::from(SEATS);
    println!("1M-seat hall: {built} bytes allocated, {per_seat:.1} B/seat");
    assert!(per_seat <= 64.0, "{per_seat:.1} bytes per seat");
    // The engine's own accounting agrees with what was allocated (within a quarter).
    let accounted = inv.heap_bytes("big").expect("the event") as f64;
    assert!(
        (accounted - built as f64).abs() <= built as f64 / 4.0,
        "accounted {accounted} vs allocated {built}"
    );

    // Holding seats adds per hold, not per seat of the hall: 10,000 one-seat holds stay small.
    let now = Utc::now();
    let before = live();
    for n in 0..10_000 {
        let r = inv.reserve(
            &HoldRequest {
                reservation_id: format!("r{n}"),
                event_id: "big".into(),
                seat_ids: vec![],
                qty: 1,
                user_id: "u".into(),
                hold_expires_at: now + Duration::seconds(60),
                idempotency_key: "k".into(),
            },
            now,
        );
        assert!(matches!(r.outcome, HoldOutcome::Held { .. }));
    }
    let per_hold = (live() - before) / 10_000;
    println!("{per_hold} bytes per live one-seat hold");
    assert!(per_hold <= 512, "{per_hold} bytes per hold");
}
