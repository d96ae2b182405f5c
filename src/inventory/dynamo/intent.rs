//! A one-row hold's intent: the hold item written first, alone, naming the seats the call is about
//! to take under a token of the call. Only the token's holder moves it or drops it; a repeat of the
//! reservation answers from it, waits out its lease, or takes over an abandoned one (see
//! docs/inventory.md, "Holds").

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use super::client;
use super::layout::*;
use super::view::Picked;
use super::{by_row, DynamoSeats};
use crate::inventory::engine::HoldResult;
use crate::inventory::{HoldRequest, InventoryError};

/// How long (µs) the call that wrote an intent owns it: a repeat that finds a younger intent whose
/// seats are not held yet answers UNAVAILABLE rather than pick seats beside a call that may still
/// be placing them. Longer than any one DynamoDB request may take.
pub(super) const LEASE_US: i64 = 30_000_000;
/// What claiming the intent for a pick found.
pub(super) enum Claim {
    /// The intent names the pick under this call's token.
    Mine,
    /// The reservation holds already (or did): its answer.
    Answer(HoldResult),
    /// The intent changed meanwhile: pick again.
    Retry,
}

impl DynamoSeats {
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
    pub(super) async fn claim(
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

    /// Out of tries or answered "no": this call's intent goes (nothing of it was placed), unless
    /// another call took it over meanwhile — its answer, if it has one, is the answer.
    pub(super) async fn give_up(
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
}

pub(super) fn in_flight() -> InventoryError {
    client::unavailable("another call of this reservation is holding; try again")
}
