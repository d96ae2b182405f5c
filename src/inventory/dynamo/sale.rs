//! Commit and release on the seats table: the hold item's state moves only from `ACTIVE`, in the
//! same transaction as its seats, so a commit and a release (or two of either) never both win.
//! Both set the hold item's `ttl` (it is finished) and drop a one-row hold's intent token.

use aws_sdk_dynamodb::types::{TransactWriteItem, Update};
use chrono::{DateTime, Utc};

use super::client::{unavailable, Tx};
use super::layout::*;
use super::{build_err, by_row, DynamoSeats, ATTEMPTS};
use crate::inventory::{
    CommitOutcome, CommitRequest, InventoryError, ReleaseOutcome, ReleaseRequest, Seat,
};

const RELEASED: &str = "RELEASED";
const ALREADY_RELEASED: &str = "ALREADY_RELEASED";

fn conflict(m: &str) -> (CommitOutcome, Vec<Seat>) {
    (CommitOutcome::Conflict { message: m.into() }, vec![])
}

fn release_outcome(stored: &str) -> ReleaseOutcome {
    if stored == RELEASED {
        ReleaseOutcome::Released
    } else {
        ReleaseOutcome::AlreadyReleased
    }
}

impl DynamoSeats {
    /// `(row, seat)` of the hold's seats.
    fn located(meta: &EventMeta, h: &HoldItem) -> Vec<(usize, u32)> {
        h.seats.iter().filter_map(|id| meta.locate(id)).collect()
    }

    /// Row updates that act on seats only while `rsv` has them.
    fn row_updates(
        &self,
        event: &str,
        meta: &EventMeta,
        seats: &[(usize, u32)],
        rsv: &str,
        sell: bool,
    ) -> Result<Vec<TransactWriteItem>, InventoryError> {
        let mut items = Vec::new();
        for (row, ks) in by_row(seats) {
            let expr = if sell {
                let set: Vec<String> = ks.iter().map(|k| format!("u{k} = :sold")).collect();
                format!("SET {}", set.join(", "))
            } else {
                let rm: Vec<String> = ks.iter().map(|k| format!("u{k}, h{k}")).collect();
                format!("REMOVE {}", rm.join(", "))
            };
            let cond: Vec<String> = ks
                .iter()
                .map(|k| format!("h{k} = :h AND u{k} < :sold"))
                .collect();
            let update = Update::builder()
                .table_name(&self.db.table)
                .key("pk", s(row_key(event, &meta.rows[row].label)))
                .update_expression(expr)
                .condition_expression(cond.join(" AND "))
                .expression_attribute_values(":h", s(rsv))
                .expression_attribute_values(":sold", n(SOLD))
                .build()
                .map_err(build_err)?;
            items.push(TransactWriteItem::builder().update(update).build());
        }
        Ok(items)
    }

    /// An update of the hold item, only while it is active and not run out.
    fn hold_update(
        &self,
        event: &str,
        rsv: &str,
        set: &str,
        now: DateTime<Utc>,
        values: Vec<(&str, aws_sdk_dynamodb::types::AttributeValue)>,
    ) -> Result<TransactWriteItem, InventoryError> {
        let mut u = Update::builder()
            .table_name(&self.db.table)
            .key("pk", s(hold_key(event, rsv)))
            .update_expression(set)
            .condition_expression("#st = :active AND #until > :now")
            .expression_attribute_names("#st", "state")
            .expression_attribute_names("#until", "until")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":ttl", ttl_after(micros(now)))
            .expression_attribute_values(":active", s(StoredState::Active.as_str()))
            .expression_attribute_values(":now", n(micros(now)));
        for (k, v) in values {
            u = u.expression_attribute_values(k, v);
        }
        Ok(TransactWriteItem::builder()
            .update(u.build().map_err(build_err)?)
            .build())
    }

    pub(super) async fn commit_hold(
        &self,
        req: &CommitRequest,
        now: DateTime<Utc>,
    ) -> Result<(CommitOutcome, Vec<Seat>), InventoryError> {
        let event = &req.event_id;
        // Stored in µs: the first answer must equal its repeats.
        let now = from_micros(micros(now));
        let Some(meta) = self.meta(event).await? else {
            return Ok(conflict("no such event"));
        };
        for _ in 0..ATTEMPTS {
            let Some(h) = self.hold_item(event, &req.reservation_id).await? else {
                return Ok(conflict("no hold for this reservation"));
            };
            if h.user != req.user_id {
                return Ok(conflict("the hold belongs to another user"));
            }
            let mut asked: Vec<&String> = req.seat_ids.iter().collect();
            let mut held: Vec<&String> = h.seats.iter().collect();
            asked.sort();
            held.sort();
            if !asked.is_empty() && asked != held {
                return Ok(conflict("the seats differ from the hold"));
            }
            match h.state {
                StoredState::Committed => {
                    let at = h.committed_at.unwrap_or(now);
                    return Ok((
                        CommitOutcome::Committed {
                            committed_at: at,
                            payment_intent_id: h.payment_intent_id.clone().unwrap_or_default(),
                        },
                        meta.seats_of(&h.seats),
                    ));
                }
                StoredState::Released => return Ok(conflict("the hold was released")),
                StoredState::Active if h.until <= now => {
                    return Ok((CommitOutcome::Expired, vec![]))
                }
                StoredState::Active => {}
            }
            let seats = Self::located(&meta, &h);
            let mut items = vec![self.hold_update(
                event,
                &req.reservation_id,
                "SET #st = :committed, committed_at = :at, payment_intent_id = :pi, #ttl = :ttl \
                 REMOVE tok",
                now,
                vec![
                    (":committed", s(StoredState::Committed.as_str())),
                    (":at", n(micros(now))),
                    (":pi", s(&req.payment_intent_id)),
                ],
            )?];
            items.extend(self.row_updates(event, &meta, &seats, &req.reservation_id, true)?);
            if let Tx::Done = self.db.transact(items).await? {
                self.views
                    .mark(event, &seats, Some((&req.reservation_id, SOLD)));
                return Ok((
                    CommitOutcome::Committed {
                        committed_at: now,
                        payment_intent_id: req.payment_intent_id.clone(),
                    },
                    meta.seats_of(&h.seats),
                ));
            }
            // The hold changed meanwhile (a commit, a release, or it ran out): look again.
        }
        Err(unavailable("the hold kept changing; try again"))
    }

    /// Record `ALREADY_RELEASED` on a hold that ran out; false if it changed meanwhile.
    async fn record_release(&self, key: &str, now: DateTime<Utc>) -> Result<bool, InventoryError> {
        let u = Update::builder()
            .table_name(&self.db.table)
            .key("pk", s(key))
            .update_expression("SET rel = :rel, rel_at = :at, #ttl = :ttl")
            .condition_expression("attribute_not_exists(rel) AND #st <> :committed")
            .expression_attribute_names("#st", "state")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":ttl", ttl_after(micros(now)))
            .expression_attribute_values(":rel", s(ALREADY_RELEASED))
            .expression_attribute_values(":at", n(micros(now)))
            .expression_attribute_values(":committed", s(StoredState::Committed.as_str()))
            .build()
            .map_err(build_err)?;
        let item = TransactWriteItem::builder().update(u).build();
        Ok(matches!(self.db.transact(vec![item]).await?, Tx::Done))
    }

    /// A one-row hold's intent whose seats the table does not hold (its call died between the
    /// two writes, or is still placing them): recorded `ALREADY_RELEASED` once the intent's lease
    /// is over and nothing can place them any more; `None` if it changed meanwhile.
    async fn release_unplaced(
        &self,
        meta: &EventMeta,
        req: &ReleaseRequest,
        h: &HoldItem,
        now: DateTime<Utc>,
    ) -> Result<Option<ReleaseOutcome>, InventoryError> {
        let Some((tok, at)) = &h.intent else {
            return Ok(None);
        };
        if self
            .settled(meta, &req.reservation_id, h, now)
            .await?
            .is_some()
        {
            return Ok(None);
        }
        if micros(now) - at < super::intent::LEASE_US {
            return Err(unavailable("the hold is still being placed; try again"));
        }
        let u = self
            .db
            .client
            .update_item()
            .table_name(&self.db.table)
            .key("pk", s(hold_key(&req.event_id, &req.reservation_id)))
            .update_expression(
                "SET #st = :released, rel = :rel, rel_at = :at, #ttl = :ttl REMOVE tok",
            )
            .condition_expression("tok = :tok")
            .expression_attribute_names("#st", "state")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":released", s(StoredState::Released.as_str()))
            .expression_attribute_values(":rel", s(ALREADY_RELEASED))
            .expression_attribute_values(":at", n(micros(now)))
            .expression_attribute_values(":ttl", ttl_after(micros(now)))
            .expression_attribute_values(":tok", s(tok));
        Ok(self
            .db
            .conditional(u.send())
            .await?
            .then_some(ReleaseOutcome::AlreadyReleased))
    }

    pub(super) async fn release_hold(
        &self,
        req: &ReleaseRequest,
        now: DateTime<Utc>,
    ) -> Result<(ReleaseOutcome, Vec<Seat>, DateTime<Utc>), InventoryError> {
        let event = &req.event_id;
        let now = from_micros(micros(now));
        let Some(meta) = self.meta(event).await? else {
            return Ok((ReleaseOutcome::NotFound, vec![], now));
        };
        for _ in 0..ATTEMPTS {
            let Some(h) = self.hold_item(event, &req.reservation_id).await? else {
                return Ok((ReleaseOutcome::NotFound, vec![], now));
            };
            let seats = meta.seats_of(&h.seats);
            if let Some((stored, at)) = &h.release {
                return Ok((release_outcome(stored), seats, *at));
            }
            let key = hold_key(event, &req.reservation_id);
            // Sold seats are never freed; not recorded, so the answer stays the same later too.
            if h.state == StoredState::Committed {
                let refused = ReleaseOutcome::Refused {
                    message: "the seats are sold".into(),
                };
                return Ok((refused, vec![], now));
            }
            let done = if h.state == StoredState::Released || h.until <= now {
                // Ran out: nothing to free, but the answer is recorded like any release.
                self.record_release(&key, now)
                    .await?
                    .then_some(ReleaseOutcome::AlreadyReleased)
            } else {
                let located = Self::located(&meta, &h);
                let mut items = vec![self.hold_update(
                    event,
                    &req.reservation_id,
                    "SET #st = :released, rel = :rel, rel_at = :at, #ttl = :ttl REMOVE tok",
                    now,
                    vec![
                        (":released", s(StoredState::Released.as_str())),
                        (":rel", s(RELEASED)),
                        (":at", n(micros(now))),
                    ],
                )?];
                items.extend(self.row_updates(
                    event,
                    &meta,
                    &located,
                    &req.reservation_id,
                    false,
                )?);
                let done = matches!(self.db.transact(items).await?, Tx::Done);
                if done {
                    self.views.mark(event, &located, None);
                    Some(ReleaseOutcome::Released)
                } else {
                    self.release_unplaced(&meta, req, &h, now).await?
                }
            };
            if let Some(outcome) = done {
                return Ok((outcome, seats, now));
            }
        }
        Err(unavailable("the hold kept changing; try again"))
    }
}
