//! One event's seats, compactly: a `u32` per seat (free, sold, or the slot of the hold that has
//! it), the hall that computes seat ids, the free-run index best-available reads, and the holds.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use super::holds::{Hold, Holds};
use super::runs::{longest_run, RunIndex};
use super::HoldState;
use crate::inventory::catalog::EventSpec;
use crate::inventory::hall::Hall;
use crate::inventory::Seat;

/// A seat's state: [`FREE`], [`SOLD`], or 1 + the slot of the hold that has it.
pub type SeatState = u32;
pub const FREE: SeatState = 0;
pub const SOLD: SeatState = u32::MAX;

pub struct EventSeats {
    pub hall: Hall,
    pub seats: Vec<SeatState>,
    /// Each row's longest run of free seats (holds that ran out count once they are settled).
    runs: RunIndex,
    pub holds: Holds,
    /// Holds by expiry, so that the ones that ran out are freed first.
    expiries: BTreeSet<(DateTime<Utc>, u32)>,
    /// Finished holds (committed, released, expired) by when they finished, by slot. Their
    /// records answer repeated calls the same way, and are forgotten `keep_finished` later, or
    /// the holds would be what grows for ever (the API's reservations are removed after the same
    /// retention).
    finished: BTreeSet<(DateTime<Utc>, u32)>,
    pub keep_finished: chrono::Duration,
}

impl EventSeats {
    pub fn new(spec: &EventSpec, keep_finished: chrono::Duration) -> Self {
        let hall = Hall::new(spec);
        let runs = RunIndex::new(hall.rows.iter().map(|r| r.seats));
        Self {
            seats: vec![FREE; hall.len()],
            holds: Holds::with_seats(hall.len()),
            hall,
            runs,
            expiries: BTreeSet::new(),
            finished: BTreeSet::new(),
            keep_finished,
        }
    }

    pub fn is_free(&self, i: u32, now: DateTime<Utc>) -> bool {
        match self.seats[i as usize] {
            FREE => true,
            SOLD => false,
            h => self.holds.get(h - 1).is_none_or(|h| h.until <= now),
        }
    }

    pub fn is_sold(&self, i: u32) -> bool {
        self.seats[i as usize] == SOLD
    }

    pub fn hold_of(&self, reservation: &str) -> Option<(u32, &Hold)> {
        let slot = self.holds.find(reservation)?;
        Some((slot, self.holds.get(slot)?))
    }

    pub fn seats_of(&self, idx: &[u32]) -> Vec<Seat> {
        idx.iter().map(|&i| self.hall.seat(i)).collect()
    }

    /// Recount the free runs of the rows of `idx` after their seats changed.
    fn reindex(&mut self, idx: &[u32]) {
        let mut last = usize::MAX;
        for &i in idx {
            let r = self.hall.row_of(i);
            if r != last {
                let run = longest_run(
                    self.hall
                        .row_seats(r)
                        .map(|s| self.seats[s as usize] == FREE),
                );
                self.runs.set(r, run);
                last = r;
            }
        }
    }

    /// Give `idx` to a new hold (the seats are free); its slot.
    pub fn take(&mut self, hold: Hold) -> u32 {
        let (until, idx) = (hold.until, hold.seats.clone());
        let slot = self.holds.insert(hold);
        for &i in idx.iter() {
            self.seats[i as usize] = slot + 1;
        }
        self.expiries.insert((until, slot));
        self.reindex(&idx);
        slot
    }

    /// Free the seats of hold `slot` that it still has.
    pub fn free_seats_of(&mut self, slot: u32) {
        let Some(h) = self.holds.get(slot) else {
            return;
        };
        let idx = h.seats.clone();
        for &i in idx.iter() {
            if self.seats[i as usize] == slot + 1 {
                self.seats[i as usize] = FREE;
            }
        }
        self.reindex(&idx);
    }

    pub fn sell_seats_of(&mut self, slot: u32) {
        let Some(h) = self.holds.get(slot) else {
            return;
        };
        for &i in h.seats.clone().iter() {
            self.seats[i as usize] = SOLD;
        }
    }

    pub fn finish(&mut self, slot: u32, at: DateTime<Utc>) {
        self.finished.insert((at, slot));
    }

    /// Expire the hold in `slot` if it ran out by `now`, freeing its seats.
    fn settle_slot(&mut self, slot: u32, now: DateTime<Utc>) {
        let Some(h) = self.holds.get_mut(slot) else {
            return;
        };
        if h.state == HoldState::Active && h.until <= now {
            h.state = HoldState::Expired;
            self.finished.insert((now, slot));
            self.free_seats_of(slot);
        }
    }

    /// The hold's state as of `now`, expiring it (and freeing its seats) if it ran out.
    pub fn settle_expiry(&mut self, reservation: &str, now: DateTime<Utc>) {
        if let Some(slot) = self.holds.find(reservation) {
            self.settle_slot(slot, now);
        }
    }

    /// Forget a bounded number of holds that finished over `keep_finished` ago: each call does a
    /// little, so no request waits on a long sweep under the event's lock.
    fn forget_finished(&mut self, now: DateTime<Utc>) {
        const AT_ONCE: usize = 64;
        let before = now - self.keep_finished;
        for _ in 0..AT_ONCE {
            match self.finished.first() {
                Some((at, _)) if *at <= before => {}
                _ => break,
            }
            let (_, slot) = self.finished.pop_first().expect("present");
            if self
                .holds
                .get(slot)
                .is_some_and(|h| h.state != HoldState::Active)
            {
                self.holds.remove(slot);
            }
        }
    }

    /// Free the seats of every hold that ran out by `now`, and forget long-finished holds.
    pub fn expire_due(&mut self, now: DateTime<Utc>) {
        self.forget_finished(now);
        while let Some(&(until, slot)) = self.expiries.first() {
            if until > now {
                break;
            }
            self.expiries.pop_first();
            self.settle_slot(slot, now);
        }
    }

    /// Best available (after [`Self::expire_due`]): the first run of `qty` adjacent free seats in
    /// one row, best section first; failing that, the first `qty` free seats in catalogue order.
    pub fn pick(&self, qty: usize) -> Option<Vec<u32>> {
        let free = |i: u32| self.seats[i as usize] == FREE;
        if let Some(r) = u32::try_from(qty)
            .ok()
            .and_then(|q| self.runs.first_at_least(0, q))
        {
            let mut run: Vec<u32> = Vec::with_capacity(qty);
            for i in self.hall.row_seats(r) {
                if free(i) {
                    run.push(i);
                    if run.len() == qty {
                        return Some(run);
                    }
                } else {
                    run.clear();
                }
            }
        }
        let mut any = Vec::with_capacity(qty.min(self.seats.len()));
        let mut r = 0;
        while any.len() < qty {
            r = self.runs.first_at_least(r, 1)?;
            any.extend(
                self.hall
                    .row_seats(r)
                    .filter(|&i| free(i))
                    .take(qty - any.len()),
            );
            r += 1;
        }
        Some(any)
    }

    /// Heap bytes kept for the seats (states, hall, free-run index) and the pre-sized holds.
    pub fn heap_bytes(&self) -> usize {
        self.seats.capacity() * std::mem::size_of::<SeatState>()
            + self.hall.heap_bytes()
            + self.runs.heap_bytes()
            + self.holds.heap_bytes()
    }
}
