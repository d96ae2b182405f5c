//! The seat engine on a DynamoDB table shared by any number of inventory processes. Every seat
//! change is a conditional write — a hold is one `TransactWriteItems` of its row items and its
//! hold item — so the table, not any process, decides who has a seat. Layout and costs:
//! [`layout`] and docs/inventory.md.

mod client;
pub mod layout;
mod sale;
pub mod seed;
mod view;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};

use self::client::{SeatsClient, Tx};
use self::layout::*;
use self::view::{EventView, Picked, Views};
use super::engine::{HoldResult, HoldState, SectionCounts};
use super::seats::{EventCounts, SeatEngine};
use super::{
    CommitOutcome, CommitRequest, HoldOutcome, HoldRequest, InventoryError, ReleaseOutcome,
    ReleaseRequest, Seat, SeatMap, SeatMapStatus, SectionInfo,
};

/// Tries of one call when other processes keep winning the same seats or changing the hold.
const ATTEMPTS: usize = 6;

pub struct DynamoSeats {
    db: SeatsClient,
    views: Views,
    /// One load of an event's rows at a time: a burst that finds no picture reads the table once,
    /// not once per request. Only the reads wait on it.
    loading: tokio::sync::Mutex<()>,
}

fn build_err(e: impl std::fmt::Display) -> InventoryError {
    InventoryError::Internal(e.to_string())
}

fn hold_result(outcome: HoldOutcome, state: Option<HoldState>) -> HoldResult {
    HoldResult { outcome, state }
}

fn invalid(field: &str, message: String) -> HoldResult {
    hold_result(
        HoldOutcome::Invalid {
            field: field.into(),
            message,
        },
        None,
    )
}

/// Seats grouped by row, each row's seats in order.
fn by_row(seats: &[(usize, u32)]) -> BTreeMap<usize, Vec<u32>> {
    let mut rows: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
    for &(r, k) in seats {
        rows.entry(r).or_default().push(k);
    }
    rows
}

impl DynamoSeats {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            db: SeatsClient::new(client, table),
            views: Views::default(),
            loading: tokio::sync::Mutex::new(()),
        }
    }

    pub fn table(&self) -> &str {
        &self.db.table
    }

    /// The event's catalogue entry: cached, or read with all its rows.
    async fn meta(&self, event: &str) -> Result<Option<Arc<EventMeta>>, InventoryError> {
        if let Some(m) = self.views.fresh_meta(event) {
            return Ok(Some(m));
        }
        let _one = self.loading.lock().await;
        if let Some(m) = self.views.fresh_meta(event) {
            return Ok(Some(m));
        }
        let Some(item) = self.db.get(&meta_key(event)).await? else {
            self.views.forget(event);
            return Ok(None);
        };
        let meta = Arc::new(EventMeta::from_item(&item)?);
        let rows = self.read_rows(event, &meta, None).await?;
        let now = Instant::now();
        self.views.put(
            event,
            EventView {
                rows: {
                    let mut all = vec![Taken::new(); meta.rows.len()];
                    for (i, t) in rows {
                        all[i] = t;
                    }
                    all
                },
                meta: meta.clone(),
                meta_read: now,
                rows_read: now,
                sold_out: None,
            },
        );
        Ok(Some(meta))
    }

    /// Rows (all, or those listed) as the table has them now.
    async fn read_rows(
        &self,
        event: &str,
        meta: &EventMeta,
        only: Option<&[usize]>,
    ) -> Result<Vec<(usize, Taken)>, InventoryError> {
        let idx: Vec<usize> = match only {
            Some(o) => o.to_vec(),
            None => (0..meta.rows.len()).collect(),
        };
        let keys: Vec<String> = idx
            .iter()
            .map(|&i| row_key(event, &meta.rows[i].label))
            .collect();
        let items = self.db.get_many(&keys).await?;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let label = get_s(&item, "row")?;
            if let Some(&i) = meta.row_index.get(&label) {
                out.push((i, taken_of(&item)));
            }
        }
        Ok(out)
    }

    /// Read every row again, unless another call did while this one waited for its turn.
    async fn reread_all(&self, event: &str, meta: &EventMeta) -> Result<(), InventoryError> {
        let asked = Instant::now();
        let _one = self.loading.lock().await;
        if self.views.rows_read(event).is_some_and(|at| at >= asked) {
            return Ok(());
        }
        let rows = self.read_rows(event, meta, None).await?;
        self.views.refresh_rows(event, rows);
        // Whoever waited during this read takes its result rather than reading again.
        self.views.touch_rows(event, Instant::now());
        Ok(())
    }

    async fn hold_item(&self, event: &str, rsv: &str) -> Result<Option<HoldItem>, InventoryError> {
        self.db
            .get(&hold_key(event, rsv))
            .await?
            .map(|i| HoldItem::from_item(&i))
            .transpose()
    }

    /// The answer to a repeated hold: the same seats, whatever became of the hold since.
    fn repeat(meta: Option<&EventMeta>, h: &HoldItem, now: DateTime<Utc>) -> HoldResult {
        let seats = meta.map(|m| m.seats_of(&h.seats)).unwrap_or_default();
        let gone = |state| {
            hold_result(
                HoldOutcome::Unavailable {
                    message: "the hold is no longer active".into(),
                    seat_ids: vec![],
                },
                Some(state),
            )
        };
        match h.state {
            StoredState::Committed => hold_result(
                HoldOutcome::Held {
                    seats,
                    hold_expires_at: h.until,
                },
                Some(HoldState::Committed),
            ),
            StoredState::Released => gone(HoldState::Released),
            StoredState::Active if h.until <= now => gone(HoldState::Expired),
            StoredState::Active => hold_result(
                HoldOutcome::Held {
                    seats,
                    hold_expires_at: h.until,
                },
                Some(HoldState::Active),
            ),
        }
    }

    /// The hold's transaction: each row's seats taken if free, and the hold item if new.
    fn hold_tx(
        &self,
        event: &str,
        meta: &EventMeta,
        req: &HoldRequest,
        seats: &[(usize, u32)],
        now_us: i64,
    ) -> Result<Vec<TransactWriteItem>, InventoryError> {
        let until = micros(req.hold_expires_at);
        let mut items = Vec::new();
        for (row, ks) in by_row(seats) {
            let set: Vec<String> = ks.iter().map(|k| format!("u{k} = :u, h{k} = :h")).collect();
            let cond: Vec<String> = ks
                .iter()
                .map(|k| format!("(attribute_not_exists(u{k}) OR u{k} <= :now)"))
                .collect();
            let update = Update::builder()
                .table_name(&self.db.table)
                .key("pk", s(row_key(event, &meta.rows[row].label)))
                .update_expression(format!("SET {}", set.join(", ")))
                .condition_expression(format!("attribute_exists(pk) AND {}", cond.join(" AND ")))
                .expression_attribute_values(":u", n(until))
                .expression_attribute_values(":h", s(&req.reservation_id))
                .expression_attribute_values(":now", n(now_us))
                .build()
                .map_err(build_err)?;
            items.push(TransactWriteItem::builder().update(update).build());
        }
        let ids: Vec<AttributeValue> = seats.iter().map(|&(r, k)| s(meta.seat(r, k).id)).collect();
        let put = Put::builder()
            .table_name(&self.db.table)
            .item("pk", s(hold_key(event, &req.reservation_id)))
            .item("user", s(&req.user_id))
            .item("seats", AttributeValue::L(ids))
            .item("until", n(until))
            .item("state", s(StoredState::Active.as_str()))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build_err)?;
        items.push(TransactWriteItem::builder().put(put).build());
        Ok(items)
    }

    /// Try to hold `seats`: `Ok(None)` if held, else the rows whose seats were taken, or `Err`
    /// with the repeat answer if the reservation already holds.
    async fn try_hold(
        &self,
        event: &str,
        meta: &EventMeta,
        req: &HoldRequest,
        seats: &[(usize, u32)],
        now: DateTime<Utc>,
    ) -> Result<Result<(), Attempt>, InventoryError> {
        let items = self.hold_tx(event, meta, req, seats, micros(now))?;
        let rows: Vec<usize> = by_row(seats).into_keys().collect();
        match self.db.transact(items).await? {
            Tx::Done => Ok(Ok(())),
            Tx::Failed(failed) => {
                if failed.last().copied().unwrap_or(false) {
                    let h = self.hold_item(event, &req.reservation_id).await?;
                    return Ok(Err(Attempt::Repeat(
                        h.map(|h| Self::repeat(Some(meta), &h, now)),
                    )));
                }
                let lost: Vec<usize> = rows
                    .iter()
                    .zip(&failed)
                    .filter(|(_, f)| **f)
                    .map(|(r, _)| *r)
                    .collect();
                let fresh = self.read_rows(event, meta, Some(&lost)).await?;
                self.views.refresh_rows(event, fresh.clone());
                Ok(Err(Attempt::Lost(fresh)))
            }
        }
    }

    async fn reserve_named(
        &self,
        meta: &EventMeta,
        req: &HoldRequest,
        now: DateTime<Utc>,
    ) -> Result<HoldResult, InventoryError> {
        let mut seats: Picked = Vec::with_capacity(req.seat_ids.len());
        for id in &req.seat_ids {
            match meta.locate(id) {
                Some(p) if !seats.contains(&p) => seats.push(p),
                Some(_) => return Ok(invalid("seat_ids", format!("seat {id} is named twice"))),
                None => return Ok(invalid("seat_ids", format!("no seat {id} at this event"))),
            }
        }
        for _ in 0..ATTEMPTS {
            match self.try_hold(&req.event_id, meta, req, &seats, now).await? {
                Ok(()) => {
                    let until = micros(req.hold_expires_at);
                    self.views
                        .mark(&req.event_id, &seats, Some((&req.reservation_id, until)));
                    return Ok(held(meta, &seats, req.hold_expires_at));
                }
                Err(Attempt::Repeat(Some(r))) => return Ok(r),
                Err(Attempt::Repeat(None)) => continue,
                Err(Attempt::Lost(rows)) => {
                    let now_us = micros(now);
                    let taken: Vec<String> = seats
                        .iter()
                        .filter(|(r, k)| {
                            rows.iter().any(|(i, t)| i == r && !is_free(t, *k, now_us))
                        })
                        .map(|&(r, k)| meta.seat(r, k).id)
                        .collect();
                    if !taken.is_empty() {
                        return Ok(hold_result(
                            HoldOutcome::Unavailable {
                                message: format!("seats taken: {}", taken.join(", ")),
                                seat_ids: taken,
                            },
                            None,
                        ));
                    }
                }
            }
        }
        Err(client::unavailable("seats kept changing; try again"))
    }

    async fn reserve_best(
        &self,
        meta: &EventMeta,
        req: &HoldRequest,
        now: DateTime<Utc>,
    ) -> Result<HoldResult, InventoryError> {
        let qty = req.qty as usize;
        let now_us = micros(now);
        let mine = (req.reservation_id.as_str(), micros(req.hold_expires_at));
        let mut spread = false;
        for _ in 0..ATTEMPTS {
            let event = &req.event_id;
            let seats = match self.views.pick(event, qty, now_us, spread, mine) {
                Some(s) => s,
                // Sold out by this picture, which may count picks of this process still in flight
                // or miss seats other processes freed: read the table before saying so, at most
                // once per SOLD_OUT_RECHECK.
                None if self.views.sold_out_recently(event, qty) => break,
                None => {
                    self.reread_all(event, meta).await?;
                    match self.views.pick(event, qty, now_us, spread, mine) {
                        Some(s) => s,
                        None => {
                            self.views.mark_sold_out(event, qty);
                            break;
                        }
                    }
                }
            };
            match self.try_hold(&req.event_id, meta, req, &seats, now).await? {
                Ok(()) => return Ok(held(meta, &seats, req.hold_expires_at)),
                Err(Attempt::Repeat(r)) => {
                    self.views.mark(&req.event_id, &seats, None);
                    match r {
                        Some(r) => return Ok(r),
                        None => continue,
                    }
                }
                Err(Attempt::Lost(_)) => spread = true,
            }
        }
        // A repeat of a hold made earlier finds its own seats taken: it gets its hold back.
        if let Some(h) = self.hold_item(&req.event_id, &req.reservation_id).await? {
            return Ok(Self::repeat(Some(meta), &h, now));
        }
        Ok(hold_result(
            HoldOutcome::Unavailable {
                message: format!("fewer than {qty} seats left"),
                seat_ids: vec![],
            },
            None,
        ))
    }
}

enum Attempt {
    /// The reservation holds already (its repeat answer), or held and then vanished (`None`).
    Repeat(Option<HoldResult>),
    /// Seats were taken: the rows that refused, as read again.
    Lost(Vec<(usize, Taken)>),
}

fn held(meta: &EventMeta, seats: &[(usize, u32)], until: DateTime<Utc>) -> HoldResult {
    hold_result(
        HoldOutcome::Held {
            seats: seats.iter().map(|&(r, k)| meta.seat(r, k)).collect(),
            hold_expires_at: until,
        },
        Some(HoldState::Active),
    )
}

impl DynamoSeats {
    /// Every row as the table has it now (also refreshing this process's picture).
    async fn all_rows(
        &self,
        event: &str,
    ) -> Result<Option<(Arc<EventMeta>, Vec<Taken>)>, InventoryError> {
        let Some(meta) = self.meta(event).await? else {
            return Ok(None);
        };
        let read = self.read_rows(event, &meta, None).await?;
        let mut rows = vec![Taken::new(); meta.rows.len()];
        for (i, t) in &read {
            rows[*i] = t.clone();
        }
        self.views.refresh_rows(event, read);
        Ok(Some((meta, rows)))
    }
}

#[async_trait]
impl SeatEngine for DynamoSeats {
    fn kind(&self) -> &'static str {
        "dynamodb"
    }

    async fn reserve(
        &self,
        req: &HoldRequest,
        now: DateTime<Utc>,
    ) -> Result<HoldResult, InventoryError> {
        let meta = self.meta(&req.event_id).await?;
        let Some(meta) = meta else {
            return Ok(invalid(
                "event_id",
                format!("no event {} in the inventory", req.event_id),
            ));
        };
        let qty = req.qty as usize;
        let bad = if qty == 0 || (!req.seat_ids.is_empty() && req.seat_ids.len() != qty) {
            Some(invalid(
                "qty",
                "qty must be positive and match seat_ids".into(),
            ))
        } else if req.hold_expires_at <= now {
            Some(invalid("hold_expires_at", "must be in the future".into()))
        } else {
            None
        };
        // A repeat is answered as the first call was, even if it no longer reads as valid (a
        // retry after the hold ran out). A valid new hold finds a repeat by its transaction.
        if let Some(bad) = bad {
            return Ok(
                match self.hold_item(&req.event_id, &req.reservation_id).await? {
                    Some(h) => Self::repeat(Some(&meta), &h, now),
                    None => bad,
                },
            );
        }
        if req.seat_ids.is_empty() {
            self.reserve_best(&meta, req, now).await
        } else {
            self.reserve_named(&meta, req, now).await
        }
    }

    async fn commit(
        &self,
        req: &CommitRequest,
        now: DateTime<Utc>,
    ) -> Result<(CommitOutcome, Vec<Seat>), InventoryError> {
        self.commit_hold(req, now).await
    }

    async fn release(
        &self,
        req: &ReleaseRequest,
        now: DateTime<Utc>,
    ) -> Result<(ReleaseOutcome, Vec<Seat>, DateTime<Utc>), InventoryError> {
        self.release_hold(req, now).await
    }

    async fn counts(
        &self,
        event_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<EventCounts>, InventoryError> {
        let Some((meta, rows)) = self.all_rows(event_id).await? else {
            return Ok(None);
        };
        let now_us = micros(now);
        let mut sections: Vec<SectionCounts> = meta
            .spec
            .sections
            .iter()
            .map(|s| SectionCounts {
                section: s.id.clone(),
                name: s.name.clone(),
                min_price: s.price,
                max_price: s.price,
                ..Default::default()
            })
            .collect();
        for (row, taken) in meta.rows.iter().zip(&rows) {
            let Some(c) = sections.iter_mut().find(|c| c.section == row.section) else {
                continue;
            };
            c.total += row.seats;
            for k in 1..=row.seats {
                match taken.get(&k) {
                    Some((_, SOLD)) => c.sold += 1,
                    Some((_, until)) if *until > now_us => c.reserved += 1,
                    _ => c.available += 1,
                }
            }
        }
        Ok(Some(EventCounts {
            name: meta.spec.name.clone(),
            currency: meta.spec.currency.clone(),
            sections,
        }))
    }

    async fn available(
        &self,
        event_id: &str,
        seat_ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<Option<(Vec<Seat>, Vec<String>)>, InventoryError> {
        let Some((meta, rows)) = self.all_rows(event_id).await? else {
            return Ok(None);
        };
        let now_us = micros(now);
        if seat_ids.is_empty() {
            let free = meta
                .rows
                .iter()
                .enumerate()
                .flat_map(|(i, r)| (1..=r.seats).map(move |k| (i, k)))
                .filter(|&(i, k)| is_free(&rows[i], k, now_us))
                .map(|(i, k)| meta.seat(i, k))
                .collect();
            return Ok(Some((free, vec![])));
        }
        let (mut free, mut taken) = (vec![], vec![]);
        for id in seat_ids {
            match meta.locate(id) {
                Some((i, k)) if is_free(&rows[i], k, now_us) => free.push(meta.seat(i, k)),
                _ => taken.push(id.clone()),
            }
        }
        Ok(Some((free, taken)))
    }

    async fn seat_page(
        &self,
        event_id: &str,
        first_row: usize,
        max_seats: usize,
        now: DateTime<Utc>,
    ) -> Result<Option<SeatMap>, InventoryError> {
        let Some(meta) = self.meta(event_id).await? else {
            return Ok(None);
        };
        let mut map = SeatMap {
            currency: meta.spec.currency.clone(),
            sections: meta
                .spec
                .sections
                .iter()
                .map(|s| SectionInfo {
                    id: s.id.clone(),
                    name: s.name.clone(),
                    price: s.price,
                })
                .collect(),
            ..SeatMap::default()
        };
        let (mut rows, mut count) = (Vec::new(), 0usize);
        for (i, row) in meta.rows.iter().enumerate().skip(first_row) {
            let n = row.seats as usize;
            if !rows.is_empty() && count + n > max_seats {
                map.next_row = Some(i);
                break;
            }
            rows.push(i);
            count += n;
        }
        // Only the page's rows are read, consistently: the picture may be stale.
        let mut taken: HashMap<usize, Taken> = self
            .read_rows(event_id, &meta, Some(&rows))
            .await?
            .into_iter()
            .collect();
        let now_us = micros(now);
        for i in rows {
            let t = taken.remove(&i).unwrap_or_default();
            for k in 1..=meta.rows[i].seats {
                let status = match t.get(&k) {
                    Some((_, SOLD)) => SeatMapStatus::Sold,
                    Some((_, until)) if *until > now_us => SeatMapStatus::Held,
                    _ => SeatMapStatus::Available,
                };
                map.seats.push((meta.seat(i, k), status));
            }
        }
        Ok(Some(map))
    }
}
