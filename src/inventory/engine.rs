//! The bundled seat inventory: all-or-nothing holds that run out on their own, commits only for
//! the holder before expiry, releases that never free a sold seat, every call idempotent per
//! reservation. One lock per event, held only for the in-memory update.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};

use super::catalog::Catalog;
use super::{
    CommitOutcome, CommitRequest, HoldOutcome, HoldRequest, ReleaseOutcome, ReleaseRequest, Seat,
    SeatMap, SeatMapStatus, SectionInfo,
};

#[derive(Clone, Debug, PartialEq, Eq)]
enum SeatState {
    Free,
    Held {
        reservation: String,
        until: DateTime<Utc>,
    },
    Sold {
        reservation: String,
    },
}

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

#[derive(Clone, Debug)]
struct HoldRecord {
    user_id: String,
    seats: Vec<usize>,
    until: DateTime<Utc>,
    state: HoldState,
    committed_at: Option<DateTime<Utc>>,
    /// The intent of the first commit, repeated to every later one.
    payment_intent_id: String,
    /// The first release's answer, repeated to every later release.
    release: Option<(ReleaseOutcome, DateTime<Utc>)>,
}

struct EventSeats {
    currency: String,
    seats: Vec<(Seat, SeatState)>,
    by_id: HashMap<String, usize>,
    holds: HashMap<String, HoldRecord>,
    /// Row of each seat (section and row together), for cheap adjacency checks.
    row_of: Vec<u32>,
    /// Every seat before this index is taken, so best-available starts here: a pick stays short
    /// while a big hall fills up, instead of rescanning the sold-out front rows each time.
    scan_from: usize,
    /// Holds by expiry, so that the ones that ran out are freed (and `scan_from` lowered) first.
    expiries: BTreeSet<(DateTime<Utc>, String)>,
    /// Finished holds (committed, released, expired) by when they finished. Their records answer
    /// repeated calls the same way, and are forgotten `keep_finished` later, or `holds` would be
    /// what grows for ever (the API's reservations are removed after the same retention).
    finished: BTreeSet<(DateTime<Utc>, String)>,
    keep_finished: chrono::Duration,
    section_names: HashMap<String, String>,
    /// The catalogue's sections, in order, for the seat map.
    sections: Vec<SectionInfo>,
}

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

impl EventSeats {
    fn is_free(&self, i: usize, now: DateTime<Utc>) -> bool {
        match &self.seats[i].1 {
            SeatState::Free => true,
            SeatState::Held { until, .. } => *until <= now,
            SeatState::Sold { .. } => false,
        }
    }

    /// The hold's state as of `now`, expiring it (and freeing its seats) if it ran out.
    fn settle_expiry(&mut self, reservation: &str, now: DateTime<Utc>) {
        let Some(h) = self.holds.get_mut(reservation) else {
            return;
        };
        if h.state == HoldState::Active && h.until <= now {
            h.state = HoldState::Expired;
            let seats = h.seats.clone();
            self.finished.insert((now, reservation.to_owned()));
            for i in seats {
                if matches!(&self.seats[i].1, SeatState::Held { reservation: r, .. } if r == reservation)
                {
                    self.free(i);
                }
            }
        }
    }

    fn free(&mut self, i: usize) {
        self.seats[i].1 = SeatState::Free;
        self.scan_from = self.scan_from.min(i);
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
            let (_, reservation) = self.finished.pop_first().expect("present");
            if self
                .holds
                .get(&reservation)
                .is_some_and(|h| h.state != HoldState::Active)
            {
                self.holds.remove(&reservation);
            }
        }
    }

    /// Free the seats of every hold that ran out by `now`, and forget long-finished holds.
    fn expire_due(&mut self, now: DateTime<Utc>) {
        self.forget_finished(now);
        while let Some((until, reservation)) = self.expiries.first().cloned() {
            if until > now {
                break;
            }
            self.expiries.pop_first();
            self.settle_expiry(&reservation, now);
        }
    }

    /// Move `scan_from` past the taken seats at its front.
    fn advance_scan(&mut self, now: DateTime<Utc>) {
        while self.scan_from < self.seats.len() && !self.is_free(self.scan_from, now) {
            self.scan_from += 1;
        }
    }

    fn seats_of(&self, idx: &[usize]) -> Vec<Seat> {
        idx.iter().map(|&i| self.seats[i].0.clone()).collect()
    }

    /// Best available: the first run of `qty` adjacent free seats in one row, best section first;
    /// failing that, the first `qty` free seats in catalogue order.
    fn pick(&self, qty: usize, now: DateTime<Utc>) -> Option<Vec<usize>> {
        let mut run: Vec<usize> = Vec::with_capacity(qty);
        for i in self.scan_from..self.seats.len() {
            let same_row = run
                .last()
                .is_some_and(|&p| self.row_of[p] == self.row_of[i]);
            if !same_row {
                run.clear();
            }
            if self.is_free(i, now) {
                run.push(i);
                if run.len() == qty {
                    return Some(run);
                }
            } else {
                run.clear();
            }
        }
        let any: Vec<usize> = (self.scan_from..self.seats.len())
            .filter(|&i| self.is_free(i, now))
            .take(qty)
            .collect();
        (any.len() == qty).then_some(any)
    }
}

impl SeatInventory {
    pub fn new(catalog: &Catalog) -> Self {
        let mut events = HashMap::new();
        let mut names = HashMap::new();
        for e in &catalog.events {
            let mut seats = Vec::new();
            let mut row_of = Vec::new();
            let mut row_no = 0u32;
            for s in &e.sections {
                for row in &s.rows {
                    row_no += 1;
                    for n in 1..=s.seats_per_row {
                        row_of.push(row_no);
                        let seat = Seat {
                            id: format!("{row}-{n}"),
                            section: s.id.clone(),
                            row: row.clone(),
                            number: n.to_string(),
                            price: s.price,
                            currency: e.currency.clone(),
                        };
                        seats.push((seat, SeatState::Free));
                    }
                }
            }
            let by_id = seats
                .iter()
                .enumerate()
                .map(|(i, (s, _))| (s.id.clone(), i))
                .collect();
            names.insert(e.id.clone(), e.name.clone());
            events.insert(
                e.id.clone(),
                Mutex::new(EventSeats {
                    currency: e.currency.clone(),
                    seats,
                    by_id,
                    holds: HashMap::new(),
                    row_of,
                    scan_from: 0,
                    expiries: BTreeSet::new(),
                    finished: BTreeSet::new(),
                    keep_finished: chrono::Duration::seconds(DEFAULT_KEEP_FINISHED_SECS),
                    section_names: e
                        .sections
                        .iter()
                        .map(|s| (s.id.clone(), s.name.clone()))
                        .collect(),
                    sections: e
                        .sections
                        .iter()
                        .map(|s| SectionInfo {
                            id: s.id.clone(),
                            name: s.name.clone(),
                            price: s.price,
                        })
                        .collect(),
                }),
            );
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

    fn event(&self, id: &str) -> Option<MutexGuard<'_, EventSeats>> {
        self.events
            .get(id)
            .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn event_name(&self, id: &str) -> Option<&str> {
        self.names.get(id).map(String::as_str)
    }

    pub fn currency(&self, event_id: &str) -> Option<String> {
        self.event(event_id).map(|e| e.currency.clone())
    }

    pub fn reserve(&self, req: &HoldRequest, now: DateTime<Utc>) -> HoldResult {
        let invalid = |field: &str, message: String| HoldResult {
            outcome: HoldOutcome::Invalid {
                field: field.into(),
                message,
            },
            state: None,
        };
        let Some(mut ev) = self.event(&req.event_id) else {
            return invalid(
                "event_id",
                format!("no event {} in the inventory", req.event_id),
            );
        };
        ev.expire_due(now);
        ev.settle_expiry(&req.reservation_id, now);
        if let Some(h) = ev.holds.get(&req.reservation_id) {
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
            match ev.pick(qty, now) {
                Some(c) => c,
                None => {
                    return HoldResult {
                        outcome: HoldOutcome::Unavailable {
                            message: format!("fewer than {qty} seats left"),
                            seat_ids: vec![],
                        },
                        state: None,
                    }
                }
            }
        } else {
            let mut idx = Vec::with_capacity(qty);
            for id in &req.seat_ids {
                match ev.by_id.get(id) {
                    Some(&i) if !idx.contains(&i) => idx.push(i),
                    Some(_) => return invalid("seat_ids", format!("seat {id} is named twice")),
                    None => return invalid("seat_ids", format!("no seat {id} at this event")),
                }
            }
            let taken: Vec<String> = idx
                .iter()
                .filter(|&&i| !ev.is_free(i, now))
                .map(|&i| ev.seats[i].0.id.clone())
                .collect();
            if !taken.is_empty() {
                return HoldResult {
                    outcome: HoldOutcome::Unavailable {
                        message: format!("seats taken: {}", taken.join(", ")),
                        seat_ids: taken,
                    },
                    state: None,
                };
            }
            idx
        };
        for &i in &chosen {
            ev.seats[i].1 = SeatState::Held {
                reservation: req.reservation_id.clone(),
                until: req.hold_expires_at,
            };
        }
        let seats = ev.seats_of(&chosen);
        ev.holds.insert(
            req.reservation_id.clone(),
            HoldRecord {
                user_id: req.user_id.clone(),
                seats: chosen,
                until: req.hold_expires_at,
                state: HoldState::Active,
                committed_at: None,
                payment_intent_id: String::new(),
                release: None,
            },
        );
        ev.expiries
            .insert((req.hold_expires_at, req.reservation_id.clone()));
        ev.advance_scan(now);
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
        let Some(h) = ev.holds.get(&req.reservation_id).cloned() else {
            return conflict("no hold for this reservation");
        };
        if h.user_id != req.user_id {
            return conflict("the hold belongs to another user");
        }
        let mut asked: Vec<&String> = req.seat_ids.iter().collect();
        let mut held: Vec<&String> = h.seats.iter().map(|&i| &ev.seats[i].0.id).collect();
        asked.sort();
        held.sort();
        if !asked.is_empty() && asked != held {
            return conflict("the seats differ from the hold");
        }
        match h.state {
            HoldState::Committed => (
                CommitOutcome::Committed {
                    committed_at: h.committed_at.unwrap_or(now),
                    payment_intent_id: h.payment_intent_id.clone(),
                },
                ev.seats_of(&h.seats),
            ),
            HoldState::Expired => (CommitOutcome::Expired, vec![]),
            HoldState::Released => conflict("the hold was released"),
            HoldState::Active => {
                for &i in &h.seats {
                    ev.seats[i].1 = SeatState::Sold {
                        reservation: req.reservation_id.clone(),
                    };
                }
                ev.finished.insert((now, req.reservation_id.clone()));
                let rec = ev.holds.get_mut(&req.reservation_id).expect("present");
                rec.state = HoldState::Committed;
                rec.committed_at = Some(now);
                rec.payment_intent_id = req.payment_intent_id.clone();
                (
                    CommitOutcome::Committed {
                        committed_at: now,
                        payment_intent_id: req.payment_intent_id.clone(),
                    },
                    ev.seats_of(&h.seats),
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
        let Some(h) = ev.holds.get(&req.reservation_id).cloned() else {
            return (ReleaseOutcome::NotFound, vec![], now);
        };
        if let Some((outcome, at)) = &h.release {
            return (outcome.clone(), ev.seats_of(&h.seats), *at);
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
                for &i in &h.seats {
                    ev.free(i);
                }
                ReleaseOutcome::Released
            }
        };
        let rec = ev.holds.get_mut(&req.reservation_id).expect("present");
        let released_now = rec.state == HoldState::Active;
        if released_now {
            rec.state = HoldState::Released;
        }
        rec.release = Some((outcome.clone(), now));
        if released_now {
            ev.finished.insert((now, req.reservation_id.clone()));
        }
        (outcome, ev.seats_of(&h.seats), now)
    }

    /// Counts per section (catalogue order) of one event.
    pub fn counts(&self, event_id: &str, now: DateTime<Utc>) -> Option<Vec<SectionCounts>> {
        let ev = self.event(event_id)?;
        let mut out: Vec<SectionCounts> = Vec::new();
        for (i, (seat, state)) in ev.seats.iter().enumerate() {
            if out.last().is_none_or(|c| c.section != seat.section) {
                out.push(SectionCounts {
                    section: seat.section.clone(),
                    name: ev
                        .section_names
                        .get(&seat.section)
                        .cloned()
                        .unwrap_or_default(),
                    min_price: seat.price,
                    max_price: seat.price,
                    ..Default::default()
                });
            }
            let c = out.last_mut().expect("pushed");
            c.total += 1;
            c.min_price = c.min_price.min(seat.price);
            c.max_price = c.max_price.max(seat.price);
            match state {
                SeatState::Sold { .. } => c.sold += 1,
                _ if ev.is_free(i, now) => c.available += 1,
                _ => c.reserved += 1,
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
        let idx: Vec<usize> = (0..ev.seats.len()).collect();
        let mut map = SeatMap {
            currency: ev.currency.clone(),
            sections: ev.sections.clone(),
            ..SeatMap::default()
        };
        let rows = idx.chunk_by(|&a, &b| ev.row_of[a] == ev.row_of[b]);
        for (r, row) in rows.enumerate().skip(first_row) {
            if !map.seats.is_empty() && map.seats.len() + row.len() > max_seats {
                map.next_row = Some(r);
                break;
            }
            for &i in row {
                let status = match &ev.seats[i].1 {
                    SeatState::Sold { .. } => SeatMapStatus::Sold,
                    _ if ev.is_free(i, now) => SeatMapStatus::Available,
                    _ => SeatMapStatus::Held,
                };
                map.seats.push((ev.seats[i].0.clone(), status));
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
            let free = (0..ev.seats.len())
                .filter(|&i| ev.is_free(i, now))
                .map(|i| ev.seats[i].0.clone())
                .collect();
            return Some((free, vec![]));
        }
        let (mut free, mut taken) = (vec![], vec![]);
        for id in seat_ids {
            match ev.by_id.get(id) {
                Some(&i) if ev.is_free(i, now) => free.push(ev.seats[i].0.clone()),
                _ => taken.push(id.clone()),
            }
        }
        Some((free, taken))
    }
}

#[cfg(test)]
mod tests {
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
}
