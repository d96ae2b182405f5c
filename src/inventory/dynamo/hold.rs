//! Holding seats on the table. A hold in one row — every best-available pick of adjacent seats,
//! named seats of one row — is two single-item writes and no transaction: the hold item first,
//! alone, as the reservation's intent (which seats, under a token), then one conditional
//! `UpdateItem` of the row that takes the seats only if they are free. A hold across rows stays
//! one transaction of its rows and the hold item. Why no seat is held twice and a repeat never
//! holds a second set: docs/inventory.md, "Holds".

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use chrono::{DateTime, Utc};

use super::client::{self, Tx};
use super::layout::*;
use super::view::{pick_start, Picked};
use super::{build_err, by_row, hold_result, invalid, DynamoSeats, ATTEMPTS};
use crate::inventory::engine::{HoldResult, HoldState};
use crate::inventory::{HoldOutcome, HoldRequest, InventoryError};

/// How long (µs) the call that wrote an intent owns it: a repeat that finds a younger intent whose
/// seats are not held yet answers UNAVAILABLE rather than pick seats beside a call that may still
/// be placing them. Longer than any one DynamoDB request may take.
pub(super) const LEASE_US: i64 = 30_000_000;
/// Run-out seats removed from a row by one hold's write, at most (bounds the expression).
const MAX_SLIM: usize = 16;

/// What claiming the intent for a pick found.
enum Claim {
    /// The intent names the pick under this call's token.
    Mine,
    /// The reservation holds already (or did): its answer.
    Answer(HoldResult),
    /// The intent changed meanwhile: pick again.
    Retry,
}

impl DynamoSeats {
    /// The hold's transaction (holds across rows): each row's seats taken if free, and the hold
    /// item if new.
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
        let put = Put::builder()
            .table_name(&self.db.table)
            .set_item(Some(self.hold_fields(event, meta, req, seats)))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build_err)?;
        items.push(TransactWriteItem::builder().put(put).build());
        Ok(items)
    }

    fn hold_fields(
        &self,
        event: &str,
        meta: &EventMeta,
        req: &HoldRequest,
        seats: &[(usize, u32)],
    ) -> Item {
        let until = micros(req.hold_expires_at);
        let ids: Vec<AttributeValue> = seats.iter().map(|&(r, k)| s(meta.seat(r, k).id)).collect();
        Item::from([
            ("pk".to_owned(), s(hold_key(event, &req.reservation_id))),
            ("user".to_owned(), s(&req.user_id)),
            ("seats".to_owned(), AttributeValue::L(ids)),
            ("until".to_owned(), n(until)),
            ("state".to_owned(), s(StoredState::Active.as_str())),
            ("ttl".to_owned(), ttl_after(until)),
        ])
    }

    /// A hold across rows: `Ok(Ok(()))` if held, else the repeat's answer or the lost race.
    async fn try_hold(
        &self,
        event: &str,
        meta: &EventMeta,
        req: &HoldRequest,
        seats: &[(usize, u32)],
        now: DateTime<Utc>,
    ) -> Result<Result<(), Option<HoldResult>>, InventoryError> {
        let items = self.hold_tx(event, meta, req, seats, micros(now))?;
        let rows: Vec<usize> = by_row(seats).into_keys().collect();
        match self.db.transact(items).await? {
            Tx::Done => Ok(Ok(())),
            Tx::Failed(failed) => {
                if failed.last().copied().unwrap_or(false) {
                    return match self.hold_item(event, &req.reservation_id).await? {
                        Some(h) => match self.settled(meta, &req.reservation_id, &h, now).await? {
                            Some(r) => Ok(Err(Some(r))),
                            None => Err(in_flight()),
                        },
                        None => Ok(Err(None)),
                    };
                }
                race_lost();
                let lost: Vec<usize> = rows
                    .iter()
                    .zip(&failed)
                    .filter(|(_, f)| **f)
                    .map(|(r, _)| *r)
                    .collect();
                let fresh = self.read_rows(event, meta, Some(&lost)).await?;
                self.views.refresh_rows(event, fresh);
                Ok(Err(None))
            }
        }
    }

    /// The answer to a repeat from its hold item, unless it is an intent whose seats the table
    /// does not show held (yet): `None` then.
    pub(super) async fn settled(
        &self,
        meta: &EventMeta,
        rsv: &str,
        h: &HoldItem,
        now: DateTime<Utc>,
    ) -> Result<Option<HoldResult>, InventoryError> {
        let answer = Some(Self::repeat(Some(meta), h, now));
        if h.intent.is_none() || h.state != StoredState::Active || h.until <= now {
            return Ok(answer);
        }
        let seats: Vec<(usize, u32)> = h.seats.iter().filter_map(|id| meta.locate(id)).collect();
        let rows: Vec<usize> = by_row(&seats).into_keys().collect();
        let event = &meta.spec.id;
        let read = self.read_rows(event, meta, Some(&rows)).await?;
        let now_us = micros(now);
        let held = seats.iter().all(|(r, k)| {
            read.iter()
                .any(|(i, t)| i == r && t.get(k).is_some_and(|(who, u)| *who == rsv && *u > now_us))
        });
        Ok(held.then_some(answer).flatten())
    }

    /// Make the intent name `seats` under a new token of this call: a new hold item, or this
    /// call's intent moved, or an abandoned intent of the same reservation taken over.
    async fn claim(
        &self,
        meta: &EventMeta,
        req: &HoldRequest,
        seats: &Picked,
        intent: &mut Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Claim, InventoryError> {
        let event = &req.event_id;
        let tok = uuid::Uuid::new_v4().simple().to_string();
        let now_us = micros(now);
        let ok = match intent.take() {
            None => {
                let mut item = self.hold_fields(event, meta, req, seats);
                item.insert("tok".into(), s(&tok));
                item.insert("at".into(), n(now_us));
                let put = self
                    .db
                    .client
                    .put_item()
                    .table_name(&self.db.table)
                    .set_item(Some(item))
                    .condition_expression("attribute_not_exists(pk)");
                self.db.conditional(put.send()).await?
            }
            Some(old) => {
                self.move_intent(meta, req, seats, &old, &tok, now_us)
                    .await?
            }
        };
        if ok {
            *intent = Some(tok);
            return Ok(Claim::Mine);
        }
        // Another call's: the first of this reservation, or a repeat of it.
        let Some(h) = self.hold_item(event, &req.reservation_id).await? else {
            return Ok(Claim::Retry);
        };
        if let Some(r) = self.settled(meta, &req.reservation_id, &h, now).await? {
            return Ok(Claim::Answer(r));
        }
        let Some((old, at)) = h.intent else {
            return Ok(Claim::Retry);
        };
        if now_us - at < LEASE_US {
            return Err(in_flight());
        }
        // Abandoned (its call died between the two writes, or lost every race): take it over.
        if self
            .move_intent(meta, req, seats, &old, &tok, now_us)
            .await?
        {
            *intent = Some(tok);
            return Ok(Claim::Mine);
        }
        Ok(Claim::Retry)
    }

    /// The intent names `seats` under `tok` now, if it was still `old`'s and active.
    async fn move_intent(
        &self,
        meta: &EventMeta,
        req: &HoldRequest,
        seats: &Picked,
        old: &str,
        tok: &str,
        now_us: i64,
    ) -> Result<bool, InventoryError> {
        let ids: Vec<AttributeValue> = seats.iter().map(|&(r, k)| s(meta.seat(r, k).id)).collect();
        let up = self
            .db
            .client
            .update_item()
            .table_name(&self.db.table)
            .key("pk", s(hold_key(&req.event_id, &req.reservation_id)))
            .update_expression("SET seats = :s, tok = :t, #at = :at")
            .condition_expression("tok = :old AND #st = :active")
            .expression_attribute_names("#at", "at")
            .expression_attribute_names("#st", "state")
            .expression_attribute_values(":s", AttributeValue::L(ids))
            .expression_attribute_values(":t", s(tok))
            .expression_attribute_values(":at", n(now_us))
            .expression_attribute_values(":old", s(old))
            .expression_attribute_values(":active", s(StoredState::Active.as_str()));
        self.db.conditional(up.send()).await
    }

    /// Remove this call's intent (its seats were never placed): a later call starts afresh.
    async fn drop_intent(&self, req: &HoldRequest, tok: &str) -> Result<bool, InventoryError> {
        let del = self
            .db
            .client
            .delete_item()
            .table_name(&self.db.table)
            .key("pk", s(hold_key(&req.event_id, &req.reservation_id)))
            .condition_expression("tok = :t")
            .expression_attribute_values(":t", s(tok));
        self.db.conditional(del.send()).await
    }

    /// The row's one conditional write: `seats` (all in this row) taken if free, and the row's
    /// run-out seats removed if they still read as run out. False if another hold won.
    async fn place(
        &self,
        meta: &EventMeta,
        req: &HoldRequest,
        seats: &Picked,
        now_us: i64,
    ) -> Result<bool, InventoryError> {
        let event = &req.event_id;
        let row = seats[0].0;
        let ks: Vec<u32> = seats.iter().map(|&(_, k)| k).collect();
        let slim: Vec<u32> = self
            .views
            .expired(event, row, now_us, MAX_SLIM)
            .into_iter()
            .filter(|k| !ks.contains(k))
            .collect();
        let set: Vec<String> = ks.iter().map(|k| format!("u{k} = :u, h{k} = :h")).collect();
        let mut expr = format!("SET {}", set.join(", "));
        if !slim.is_empty() {
            let rm: Vec<String> = slim.iter().map(|k| format!("u{k}, h{k}")).collect();
            expr.push_str(&format!(" REMOVE {}", rm.join(", ")));
        }
        let cond: Vec<String> = ks
            .iter()
            .chain(&slim)
            .map(|k| format!("(attribute_not_exists(u{k}) OR u{k} <= :now)"))
            .collect();
        let up = self
            .db
            .client
            .update_item()
            .table_name(&self.db.table)
            .key("pk", s(row_key(event, &meta.rows[row].label)))
            .update_expression(expr)
            .condition_expression(format!("attribute_exists(pk) AND {}", cond.join(" AND ")))
            .expression_attribute_values(":u", n(micros(req.hold_expires_at)))
            .expression_attribute_values(":h", s(&req.reservation_id))
            .expression_attribute_values(":now", n(now_us));
        if self.db.conditional(up.send()).await? {
            return Ok(true);
        }
        race_lost();
        let fresh = self.read_rows(event, meta, Some(&[row])).await?;
        self.views.refresh_rows(event, fresh);
        Ok(false)
    }

    /// One attempt at a one-row hold: `Ok(None)` if `seats` are held now, `Ok(Some(None))` to try
    /// again, `Ok(Some(Some(answer)))` for the reservation's earlier answer.
    async fn hold_one_row(
        &self,
        meta: &EventMeta,
        req: &HoldRequest,
        seats: &Picked,
        intent: &mut Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Option<Option<HoldResult>>, InventoryError> {
        match self.claim(meta, req, seats, intent, now).await? {
            Claim::Answer(r) => return Ok(Some(Some(r))),
            Claim::Retry => return Ok(Some(None)),
            Claim::Mine => {}
        }
        if self.place(meta, req, seats, micros(now)).await? {
            Ok(None)
        } else {
            Ok(Some(None))
        }
    }

    /// Out of tries or answered "no": this call's intent goes (nothing of it was placed), unless
    /// another call took it over meanwhile — its answer, if it has one, is the answer.
    async fn give_up(
        &self,
        meta: &EventMeta,
        req: &HoldRequest,
        intent: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Option<HoldResult>, InventoryError> {
        let Some(tok) = intent else {
            return Ok(None);
        };
        if self.drop_intent(req, &tok).await? {
            return Ok(None);
        }
        match self.hold_item(&req.event_id, &req.reservation_id).await? {
            Some(h) => match self.settled(meta, &req.reservation_id, &h, now).await? {
                Some(r) => Ok(Some(r)),
                None => Err(in_flight()),
            },
            None => Ok(None),
        }
    }

    pub(super) async fn reserve_named(
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
        let one_row = by_row(&seats).len() == 1;
        let mut intent = None;
        let until = micros(req.hold_expires_at);
        let now_us = micros(now);
        for _ in 0..ATTEMPTS {
            let step = if one_row {
                self.hold_one_row(meta, req, &seats, &mut intent, now)
                    .await?
            } else {
                match self.try_hold(&req.event_id, meta, req, &seats, now).await? {
                    Ok(()) => None,
                    Err(r) => Some(r),
                }
            };
            match step {
                None => {
                    self.views
                        .mark(&req.event_id, &seats, Some((&req.reservation_id, until)));
                    return Ok(held(meta, &seats, req.hold_expires_at));
                }
                Some(Some(r)) => return Ok(r),
                Some(None) => {}
            }
            // Lost: a seat that a consistent read shows taken by another hold is a "no".
            let rows: Vec<usize> = by_row(&seats).into_keys().collect();
            let fresh = self.read_rows(&req.event_id, meta, Some(&rows)).await?;
            let taken: Vec<(usize, u32)> = seats
                .iter()
                .filter(|(r, k)| fresh.iter().any(|(i, t)| i == r && !is_free(t, *k, now_us)))
                .copied()
                .collect();
            self.views.refresh_rows(&req.event_id, fresh);
            if !taken.is_empty() {
                if let Some(r) = self.give_up(meta, req, intent, now).await? {
                    return Ok(r);
                }
                let ids: Vec<String> = taken.iter().map(|&(r, k)| meta.seat(r, k).id).collect();
                return Ok(hold_result(
                    HoldOutcome::Unavailable {
                        message: format!("seats taken: {}", ids.join(", ")),
                        seat_ids: ids,
                    },
                    None,
                ));
            }
        }
        if let Some(r) = self.give_up(meta, req, intent, now).await? {
            return Ok(r);
        }
        Err(client::unavailable("seats kept changing; try again"))
    }

    pub(super) async fn reserve_best(
        &self,
        meta: &EventMeta,
        req: &HoldRequest,
        now: DateTime<Utc>,
    ) -> Result<HoldResult, InventoryError> {
        let qty = req.qty as usize;
        let now_us = micros(now);
        let mine = (req.reservation_id.as_str(), micros(req.hold_expires_at));
        let event = &req.event_id;
        let mut intent: Option<String> = None;
        let mut sold_out = false;
        for attempt in 0..ATTEMPTS {
            let start = pick_start(&req.reservation_id, attempt);
            let seats = match self.views.pick(event, qty, now_us, start, mine) {
                Some(s) => s,
                // Sold out by this picture, which may count picks of this process still in flight
                // or miss seats other processes freed: read the table before saying so, at most
                // once per SOLD_OUT_RECHECK.
                None if self.views.sold_out_recently(event, qty) => {
                    sold_out = true;
                    break;
                }
                None => {
                    self.reread_all(event, meta).await?;
                    match self.views.pick(event, qty, now_us, start, mine) {
                        Some(s) => s,
                        None => {
                            self.views.mark_sold_out(event, qty);
                            sold_out = true;
                            break;
                        }
                    }
                }
            };
            let step = if by_row(&seats).len() == 1 {
                self.hold_one_row(meta, req, &seats, &mut intent, now)
                    .await?
            } else {
                // Across rows: a transaction, which creates the hold item itself.
                if let Some(r) = self.give_up(meta, req, intent.take(), now).await? {
                    self.views.mark(event, &seats, None);
                    return Ok(r);
                }
                match self.try_hold(event, meta, req, &seats, now).await? {
                    Ok(()) => None,
                    Err(r) => Some(r),
                }
            };
            match step {
                None => return Ok(held(meta, &seats, req.hold_expires_at)),
                Some(Some(r)) => {
                    self.views.mark(event, &seats, None);
                    return Ok(r);
                }
                Some(None) => {}
            }
        }
        if let Some(r) = self.give_up(meta, req, intent, now).await? {
            return Ok(r);
        }
        // Lost every race with seats left: "I don't know", never "sold out".
        if !sold_out {
            return Err(client::unavailable("seats kept changing; try again"));
        }
        // A repeat of a hold made earlier finds its own seats taken: it gets its hold back.
        if let Some(h) = self.hold_item(event, &req.reservation_id).await? {
            if let Some(r) = self.settled(meta, &req.reservation_id, &h, now).await? {
                return Ok(r);
            }
            return Err(in_flight());
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

fn in_flight() -> InventoryError {
    client::unavailable("another call of this reservation is holding; try again")
}

/// A hold's write refused because another hold took a seat first.
fn race_lost() {
    metrics::counter!("inventory_hold_races_lost_total").increment(1);
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
