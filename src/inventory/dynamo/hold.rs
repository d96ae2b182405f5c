//! Holding seats on the table. A hold in one row — every best-available pick of adjacent seats,
//! named seats of one row — is two single-item writes and no transaction: the hold item first,
//! alone, as the reservation's intent (which seats, under a token), then one conditional
//! `UpdateItem` of the row that takes the seats only if they are free. A hold across rows stays
//! one transaction of its rows and the hold item. Why no seat is held twice and a repeat never
//! holds a second set: docs/inventory.md, "Holds".

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use chrono::{DateTime, Utc};

use super::client::{self, Tx};
use super::intent::{in_flight, Claim};
use super::layout::*;
use super::view::{pick_start, Picked};
use super::{build_err, by_row, hold_result, invalid, DynamoSeats, ATTEMPTS};
use crate::inventory::engine::{HoldResult, HoldState};
use crate::inventory::{HoldOutcome, HoldRequest, InventoryError};

/// Run-out seats removed from a row by one hold's write, at most (bounds the expression).
const MAX_SLIM: usize = 16;

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

    pub(super) fn hold_fields(
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
                self.try_hold(&req.event_id, meta, req, &seats, now)
                    .await?
                    .err()
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
                self.try_hold(event, meta, req, &seats, now).await?.err()
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
