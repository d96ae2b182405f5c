//! The bundled seat inventory: all-or-nothing holds that run out on their own, commits only for
//! the holder before expiry, releases that never free a sold seat, every call idempotent per
//! reservation. One lock per event, held only for the in-memory update.
//!
//! Seats are stored compactly ([`event`]): a `u32` per seat, ids computed from the hall's rows,
//! holds in a side map by reservation ([`holds`]), and a free-run index ([`runs`]) so that
//! best-available stays fast on a nearly sold-out hall. docs/inventory.md has the figures.

mod event;
mod holds;
mod runs;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};

use self::event::EventSeats;
use self::holds::Hold;
use super::catalog::Catalog;
use super::{
    CommitOutcome, CommitRequest, HoldOutcome, HoldRequest, ReleaseOutcome, ReleaseRequest, Seat,
    SeatMap, SeatMapStatus,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldState {
    Active,
    Committed,
    Released,
    /// Ran out before a commit; its seats are free again.
    Expired,
}

/// A finished hold's record is kept this long by default (the API's reservation retention).
const DEFAULT_KEEP_FINISHED_SECS: i64 = 86_400;

/// A counted view of one event, for `GetInventoryStatus` and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SectionCounts {
    pub section: String,
    /// The section's display name.
    pub name: String,
    pub total: u32,
    pub available: u32,
    pub reserved: u32,
    pub sold: u32,
    pub min_price: i64,
    pub max_price: i64,
}

/// The answer to a hold, with the hold's state (repeats of a finished hold report it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldResult {
    pub outcome: HoldOutcome,
    pub state: Option<HoldState>,
}

pub struct SeatInventory {
    events: HashMap<String, Mutex<EventSeats>>,
    names: HashMap<String, String>,
}

fn unavailable(message: String, seat_ids: Vec<String>) -> HoldResult {
    HoldResult {
        outcome: HoldOutcome::Unavailable { message, seat_ids },
        state: None,
    }
}

fn invalid(field: &str, message: String) -> HoldResult {
    HoldResult {
        outcome: HoldOutcome::Invalid {
            field: field.into(),
            message,
        },
        state: None,
    }
}

impl SeatInventory {
    pub fn new(catalog: &Catalog) -> Self {
        let keep = chrono::Duration::seconds(DEFAULT_KEEP_FINISHED_SECS);
        let mut events = HashMap::with_capacity(catalog.events.len());
        let mut names = HashMap::with_capacity(catalog.events.len());
        for e in &catalog.events {
            names.insert(e.id.clone(), e.name.clone());
            events.insert(e.id.clone(), Mutex::new(EventSeats::new(e, keep)));
        }
        Self { events, names }
    }

    /// How long a finished hold's record is kept for repeated calls (default 24 h, the API's
    /// `RESERVATION_RETENTION_SECONDS`).
    pub fn with_finished_retention(self, keep: std::time::Duration) -> Self {
        let keep = chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
        for ev in self.events.values() {
            ev.lock().unwrap_or_else(|e| e.into_inner()).keep_finished = keep;
        }
        self
    }

    /// Hold records kept (live and finished), over all events.
    pub fn hold_records(&self) -> usize {
        self.events
            .values()
            .map(|e| e.lock().unwrap_or_else(|e| e.into_inner()).holds.len())
            .sum()
    }

    /// Heap bytes the engine keeps per event for its seats and pre-sized hold maps (the memory
    /// goal is ≤ 64 per seat; `tests/inventory_footprint.rs` measures the allocations too).
    pub fn heap_bytes(&self, event_id: &str) -> Option<usize> {
        self.event(event_id).map(|e| e.heap_bytes())
    }

    fn event(&self, id: &str) -> Option<MutexGuard<'_, EventSeats>> {
        self.events
            .get(id)
            .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn event_name(&self, id: &str) -> Option<&str> {
        self.names.get(id).map(String::as_str)
    }

    pub fn currency(&self, event_id: &str) -> Option<String> {
        self.event(event_id).map(|e| e.hall.currency.clone())
    }

    pub fn reserve(&self, req: &HoldRequest, now: DateTime<Utc>) -> HoldResult {
        let Some(mut ev) = self.event(&req.event_id) else {
            return invalid(
                "event_id",
                format!("no event {} in the inventory", req.event_id),
            );
        };
        ev.expire_due(now);
        ev.settle_expiry(&req.reservation_id, now);
        if let Some((_, h)) = ev.hold_of(&req.reservation_id) {
            // A repeat: the same seats, whatever became of the hold since.
            let outcome = match h.state {
                HoldState::Active | HoldState::Committed => HoldOutcome::Held {
                    seats: ev.seats_of(&h.seats),
                    hold_expires_at: h.until,
                },
                _ => HoldOutcome::Unavailable {
                    message: "the hold is no longer active".into(),
                    seat_ids: vec![],
                },
            };
            return HoldResult {
                outcome,
                state: Some(h.state),
            };
        }
        let qty = req.qty as usize;
        if qty == 0 || (!req.seat_ids.is_empty() && req.seat_ids.len() != qty) {
            return invalid("qty", "qty must be positive and match seat_ids".into());
        }
        if req.hold_expires_at <= now {
            return invalid("hold_expires_at", "must be in the future".into());
        }
        let chosen = if req.seat_ids.is_empty() {
            match ev.pick(qty) {
                Some(c) => c,
                None => return unavailable(format!("fewer than {qty} seats left"), vec![]),
            }
        } else {
            let mut idx = Vec::with_capacity(qty);
            for id in &req.seat_ids {
                match ev.hall.locate(id) {
                    Some(i) if !idx.contains(&i) => idx.push(i),
                    Some(_) => return invalid("seat_ids", format!("seat {id} is named twice")),
                    None => return invalid("seat_ids", format!("no seat {id} at this event")),
                }
            }
            let taken: Vec<String> = idx
                .iter()
                .filter(|&&i| !ev.is_free(i, now))
                .map(|&i| ev.hall.seat_id(i))
                .collect();
            if !taken.is_empty() {
                return unavailable(format!("seats taken: {}", taken.join(", ")), taken);
            }
            idx
        };
        let seats = ev.seats_of(&chosen);
        ev.take(Hold {
            reservation: req.reservation_id.as_str().into(),
            user_id: req.user_id.as_str().into(),
            seats: chosen.into(),
            until: req.hold_expires_at,
            state: HoldState::Active,
            committed_at: None,
            payment_intent_id: "".into(),
            release: None,
        });
        HoldResult {
            outcome: HoldOutcome::Held {
                seats,
                hold_expires_at: req.hold_expires_at,
            },
            state: Some(HoldState::Active),
        }
    }

    pub fn commit(&self, req: &CommitRequest, now: DateTime<Utc>) -> (CommitOutcome, Vec<Seat>) {
        let conflict = |m: &str| (CommitOutcome::Conflict { message: m.into() }, vec![]);
        let Some(mut ev) = self.event(&req.event_id) else {
            return conflict("no such event");
        };
        ev.settle_expiry(&req.reservation_id, now);
        let Some((slot, h)) = ev.hold_of(&req.reservation_id) else {
            return conflict("no hold for this reservation");
        };
        if *h.user_id != req.user_id {
            return conflict("the hold belongs to another user");
        }
        let mut asked: Vec<&str> = req.seat_ids.iter().map(String::as_str).collect();
        let mut held: Vec<String> = h.seats.iter().map(|&i| ev.hall.seat_id(i)).collect();
        asked.sort_unstable();
        held.sort_unstable();
        if !asked.is_empty() && !asked.iter().eq(held.iter()) {
            return conflict("the seats differ from the hold");
        }
        let seats = ev.seats_of(&h.seats);
        match h.state {
            HoldState::Committed => (
                CommitOutcome::Committed {
                    committed_at: h.committed_at.unwrap_or(now),
                    payment_intent_id: h.payment_intent_id.to_string(),
                },
                seats,
            ),
            HoldState::Expired => (CommitOutcome::Expired, vec![]),
            HoldState::Released => conflict("the hold was released"),
            HoldState::Active => {
                ev.sell_seats_of(slot);
                ev.finish(slot, now);
                let rec = ev.holds.get_mut(slot).expect("present");
                rec.state = HoldState::Committed;
                rec.committed_at = Some(now);
                rec.payment_intent_id = req.payment_intent_id.as_str().into();
                (
                    CommitOutcome::Committed {
                        committed_at: now,
                        payment_intent_id: req.payment_intent_id.clone(),
                    },
                    seats,
                )
            }
        }
    }

    pub fn release(
        &self,
        req: &ReleaseRequest,
        now: DateTime<Utc>,
    ) -> (ReleaseOutcome, Vec<Seat>, DateTime<Utc>) {
        let Some(mut ev) = self.event(&req.event_id) else {
            return (ReleaseOutcome::NotFound, vec![], now);
        };
        ev.settle_expiry(&req.reservation_id, now);
        let Some((slot, h)) = ev.hold_of(&req.reservation_id) else {
            return (ReleaseOutcome::NotFound, vec![], now);
        };
        let seats = ev.seats_of(&h.seats);
        if let Some((outcome, at)) = &h.release {
            return (outcome.clone(), seats, *at);
        }
        let outcome = match h.state {
            HoldState::Committed => {
                // Sold seats are never freed; not recorded, so the answer stays the same later too.
                return (
                    ReleaseOutcome::Refused {
                        message: "the seats are sold".into(),
                    },
                    vec![],
                    now,
                );
            }
            HoldState::Expired | HoldState::Released => ReleaseOutcome::AlreadyReleased,
            HoldState::Active => {
                ev.free_seats_of(slot);
                ev.finish(slot, now);
                ReleaseOutcome::Released
            }
        };
        let rec = ev.holds.get_mut(slot).expect("present");
        if rec.state == HoldState::Active {
            rec.state = HoldState::Released;
        }
        rec.release = Some((outcome.clone(), now));
        (outcome, seats, now)
    }

    /// Counts per section (catalogue order) of one event.
    pub fn counts(&self, event_id: &str, now: DateTime<Utc>) -> Option<Vec<SectionCounts>> {
        let ev = self.event(event_id)?;
        let mut out: Vec<SectionCounts> = Vec::new();
        for r in 0..ev.hall.rows.len() {
            let section = &ev.hall.sections[ev.hall.rows[r].section as usize];
            for i in ev.hall.row_seats(r) {
                if out.last().is_none_or(|c| c.section != section.id) {
                    out.push(SectionCounts {
                        section: section.id.clone(),
                        name: section.name.clone(),
                        min_price: section.price,
                        max_price: section.price,
                        ..Default::default()
                    });
                }
                let c = out.last_mut().expect("pushed");
                c.total += 1;
                match ev.is_sold(i) {
                    true => c.sold += 1,
                    false if ev.is_free(i, now) => c.available += 1,
                    false => c.reserved += 1,
                }
            }
        }
        Some(out)
    }

    /// One page of the seat map: whole rows from `first_row`, at most `max_seats` seats unless
    /// the first row alone has more (see [`crate::inventory::seats::SeatEngine::seat_page`]).
    pub fn seat_page(
        &self,
        event_id: &str,
        first_row: usize,
        max_seats: usize,
        now: DateTime<Utc>,
    ) -> Option<SeatMap> {
        let ev = self.event(event_id)?;
        let (rows, next_row) = ev.hall.page(first_row, max_seats);
        let mut map = SeatMap {
            currency: ev.hall.currency.clone(),
            sections: ev.hall.sections.clone(),
            seats: Vec::new(),
            next_row,
        };
        for r in rows {
            for i in ev.hall.row_seats(r) {
                let status = match ev.is_sold(i) {
                    true => SeatMapStatus::Sold,
                    false if ev.is_free(i, now) => SeatMapStatus::Available,
                    false => SeatMapStatus::Held,
                };
                map.seats.push((ev.hall.seat(i), status));
            }
        }
        Some(map)
    }

    /// Seats of one event that are free now (for `CheckAvailability`).
    pub fn available(
        &self,
        event_id: &str,
        seat_ids: &[String],
        now: DateTime<Utc>,
    ) -> Option<(Vec<Seat>, Vec<String>)> {
        let ev = self.event(event_id)?;
        if seat_ids.is_empty() {
            let free = (0..ev.hall.len() as u32)
                .filter(|&i| ev.is_free(i, now))
                .map(|i| ev.hall.seat(i))
                .collect();
            return Some((free, vec![]));
        }
        let (mut free, mut taken) = (vec![], vec![]);
        for id in seat_ids {
            match ev.hall.locate(id) {
                Some(i) if ev.is_free(i, now) => free.push(ev.hall.seat(i)),
                _ => taken.push(id.clone()),
            }
        }
        Some((free, taken))
    }
}

#[cfg(test)]
mod tests;
