//! Holding seats on the table: named seats, or the best available picked from this process's
//! picture of the rows; either way one transaction of the rows' conditional updates and the new
//! hold item, retried when other processes win the same seats.

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use chrono::{DateTime, Utc};

use super::client::{self, Tx};
use super::layout::*;
use super::view::Picked;
use super::{build_err, by_row, hold_result, invalid, DynamoSeats, ATTEMPTS};
use crate::inventory::engine::{HoldResult, HoldState};
use crate::inventory::{HoldOutcome, HoldRequest, InventoryError};

impl DynamoSeats {
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

    pub(super) async fn reserve_best(
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
