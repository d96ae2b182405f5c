//! The seats table's items (one `pk` string key; see docs/inventory.md):
//!
//! - `EVT#{event}` — the event: name, currency and its catalogue entry (sections and rows, best
//!   first) as JSON. Read once per process and cached.
//! - `EVT#{event}#ROW#{row}` — one row: its section, seat count and price, and for each taken seat
//!   `k` the holder `h{k}` and `u{k}`, the hold's end in microseconds ([`SOLD`] once sold). A seat
//!   is free when `u{k}` is absent or in the past, so an abandoned hold frees itself.
//! - `EVT#{event}#HOLD#{reservation}` — one hold: user, seats, end, state, commit and release,
//!   and `ttl` (epoch seconds: [`HOLD_RETENTION_SECS`] past its end, commit or release). A hold in
//!   one row is written first, alone, as the reservation's intent (with a token `tok` and its time
//!   `at`), then its seats by one conditional update of the row; a hold across rows is one
//!   transaction of its rows and this item. Either way a reservation holds at most once.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, TimeZone, Utc};

use crate::inventory::catalog::EventSpec;
use crate::inventory::hall::split_seat_id;
use crate::inventory::{InventoryError, Seat};

pub type Item = HashMap<String, AttributeValue>;

/// `u{k}` of a sold seat: later than any hold's end.
pub const SOLD: i64 = i64::MAX;

/// How long a finished hold item is kept (then DynamoDB's TTL deletes it): past its end, commit
/// or release. Longer than the reservations' own retention (`RESERVATION_RETENTION_SECONDS`, one
/// day by default), so no repeat of a live reservation ever finds its hold gone.
pub const HOLD_RETENTION_SECS: i64 = 7 * 86_400;

/// The `ttl` of a hold item finished (or ending) at `us`.
pub fn ttl_after(us: i64) -> AttributeValue {
    n(us.div_euclid(1_000_000).saturating_add(HOLD_RETENTION_SECS))
}

pub fn meta_key(event: &str) -> String {
    format!("EVT#{event}")
}

pub fn row_key(event: &str, row: &str) -> String {
    format!("EVT#{event}#ROW#{row}")
}

pub fn hold_key(event: &str, reservation: &str) -> String {
    format!("EVT#{event}#HOLD#{reservation}")
}

pub fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub fn from_micros(us: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(us).single().unwrap_or_default()
}

pub fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn corrupt(what: &str) -> InventoryError {
    InventoryError::Internal(format!("seats table: item lacks or mistypes {what}"))
}

pub fn get_s(item: &Item, name: &str) -> Result<String, InventoryError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .ok_or_else(|| corrupt(name))
}

pub fn opt_n(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

pub fn get_n(item: &Item, name: &str) -> Result<i64, InventoryError> {
    opt_n(item, name).ok_or_else(|| corrupt(name))
}

/// One row of an event, in catalogue order.
#[derive(Clone, Debug, PartialEq)]
pub struct RowMeta {
    pub section: String,
    pub label: String,
    pub seats: u32,
    pub price: i64,
}

/// An event as the engine needs it: the catalogue entry, flattened to rows.
#[derive(Clone, Debug)]
pub struct EventMeta {
    pub spec: EventSpec,
    pub rows: Vec<RowMeta>,
    pub row_index: HashMap<String, usize>,
}

impl EventMeta {
    pub fn new(spec: EventSpec) -> Self {
        let rows: Vec<RowMeta> = spec
            .sections
            .iter()
            .flat_map(|s| {
                s.rows.iter().map(|r| RowMeta {
                    section: s.id.clone(),
                    label: r.clone(),
                    seats: s.seats_per_row,
                    price: s.price,
                })
            })
            .collect();
        let row_index = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (r.label.clone(), i))
            .collect();
        Self {
            spec,
            rows,
            row_index,
        }
    }

    pub fn from_item(item: &Item) -> Result<Self, InventoryError> {
        let spec: EventSpec =
            serde_json::from_str(&get_s(item, "spec")?).map_err(|_| corrupt("spec"))?;
        Ok(Self::new(spec))
    }

    /// `(row index, seat number)` of a seat id `{row}-{k}`, if the event has it.
    pub fn locate(&self, seat_id: &str) -> Option<(usize, u32)> {
        let (row, k) = split_seat_id(seat_id)?;
        let row = *self.row_index.get(row)?;
        (k >= 1 && k <= self.rows[row].seats).then_some((row, k))
    }

    pub fn seat(&self, row: usize, k: u32) -> Seat {
        let r = &self.rows[row];
        Seat {
            id: format!("{}-{k}", r.label),
            section: r.section.clone(),
            row: r.label.clone(),
            number: k.to_string(),
            price: r.price,
            currency: self.spec.currency.clone(),
        }
    }

    pub fn seats_of(&self, ids: &[String]) -> Vec<Seat> {
        ids.iter()
            .filter_map(|id| self.locate(id).map(|(r, k)| self.seat(r, k)))
            .collect()
    }
}

/// The taken seats of one row: seat number → (holder, end in µs or [`SOLD`]).
pub type Taken = HashMap<u32, (String, i64)>;

pub fn taken_of(item: &Item) -> Taken {
    item.iter()
        .filter_map(|(name, v)| {
            let k: u32 = name.strip_prefix('u')?.parse().ok()?;
            let until: i64 = v.as_n().ok()?.parse().ok()?;
            let holder = item.get(&format!("h{k}"))?.as_s().ok()?.clone();
            Some((k, (holder, until)))
        })
        .collect()
}

pub fn is_free(taken: &Taken, k: u32, now_us: i64) -> bool {
    taken.get(&k).is_none_or(|(_, until)| *until <= now_us)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredState {
    Active,
    Committed,
    Released,
}

impl StoredState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Committed => "COMMITTED",
            Self::Released => "RELEASED",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ACTIVE" => Self::Active,
            "COMMITTED" => Self::Committed,
            "RELEASED" => Self::Released,
            _ => return None,
        })
    }
}

/// A hold as stored.
#[derive(Clone, Debug)]
pub struct HoldItem {
    pub user: String,
    pub seats: Vec<String>,
    pub until: DateTime<Utc>,
    pub state: StoredState,
    pub committed_at: Option<DateTime<Utc>>,
    /// The payment intent of the commit, repeated to later commits (the sweeper's reconciliation
    /// of a sale whose confirm never wrote needs it).
    pub payment_intent_id: Option<String>,
    /// The first release's answer (`RELEASED` or `ALREADY_RELEASED`) and time.
    pub release: Option<(String, DateTime<Utc>)>,
    /// The intent's token and write time (µs) of a one-row hold; absent on transactional holds.
    pub intent: Option<(String, i64)>,
}

impl HoldItem {
    pub fn from_item(item: &Item) -> Result<Self, InventoryError> {
        let seats = match item.get("seats") {
            Some(AttributeValue::L(l)) => l
                .iter()
                .map(|v| v.as_s().cloned().map_err(|_| corrupt("seats")))
                .collect::<Result<_, _>>()?,
            _ => return Err(corrupt("seats")),
        };
        let release = match (
            item.get("rel").and_then(|v| v.as_s().ok()),
            opt_n(item, "rel_at"),
        ) {
            (Some(r), Some(at)) => Some((r.clone(), from_micros(at))),
            _ => None,
        };
        Ok(Self {
            user: get_s(item, "user")?,
            seats,
            until: from_micros(get_n(item, "until")?),
            state: StoredState::parse(&get_s(item, "state")?).ok_or_else(|| corrupt("state"))?,
            committed_at: opt_n(item, "committed_at").map(from_micros),
            payment_intent_id: item
                .get("payment_intent_id")
                .and_then(|v| v.as_s().ok())
                .cloned(),
            release,
            intent: item
                .get("tok")
                .and_then(|v| v.as_s().ok())
                .map(|t| (t.clone(), opt_n(item, "at").unwrap_or(0))),
        })
    }
}
