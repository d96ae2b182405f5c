//! The reservations table: `pk` = reservation_id, `sk` = event_id. A HOLD carries the sparse
//! `holds_by_expiry` index attributes; every other status drops them.

use aws_sdk_dynamodb::types::{AttributeValue, Put};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};

use super::errors::sdk_err;
use super::item::{get_list, get_n, get_s, get_t, list, n, opt_s, s, shard_of, t, Item};
use super::shards::ShardRounds;
use crate::domain::{Reservation, ReservationStatus};
use crate::store::StoreError;

pub const HOLDS_BY_EXPIRY: &str = "holds_by_expiry";

pub fn to_item(r: &Reservation, shards: u32) -> Item {
    let mut item = Item::from([
        ("pk".into(), s(&r.id)),
        ("sk".into(), s(&r.event_id)),
        ("user_id".into(), s(&r.user_id)),
        ("status".into(), s(r.status.as_str())),
        ("seat_ids".into(), list(&r.seat_ids)),
        ("qty".into(), n(r.qty)),
        ("total_price".into(), n(r.total_price)),
        ("currency".into(), s(&r.currency)),
        ("hold_expires_at".into(), t(r.hold_expires_at)),
        ("idempotency_key".into(), s(&r.idempotency_key)),
        ("version".into(), n(r.version)),
        ("created_at".into(), t(r.created_at)),
        ("updated_at".into(), t(r.updated_at)),
    ]);
    if let Some(o) = &r.order_id {
        item.insert("order_id".into(), s(o));
    }
    if let Some(p) = &r.payment_intent_id {
        item.insert("payment_intent_id".into(), s(p));
    }
    if r.status == ReservationStatus::Hold {
        item.insert("expiry_shard".into(), s(shard_of(&r.id, shards)));
        item.insert("expiry_at".into(), t(r.hold_expires_at));
    }
    item
}

pub fn from_item(item: &Item) -> Result<Reservation, StoreError> {
    let status = get_s(item, "status")?;
    Ok(Reservation {
        id: get_s(item, "pk")?,
        event_id: get_s(item, "sk")?,
        user_id: get_s(item, "user_id")?,
        status: ReservationStatus::parse(&status)
            .ok_or_else(|| StoreError::Internal(format!("unknown reservation status {status}")))?,
        seat_ids: get_list(item, "seat_ids")?,
        qty: get_n(item, "qty")?,
        total_price: get_n(item, "total_price")?,
        currency: get_s(item, "currency")?,
        hold_expires_at: get_t(item, "hold_expires_at")?,
        idempotency_key: get_s(item, "idempotency_key")?,
        version: get_n(item, "version")?,
        order_id: opt_s(item, "order_id"),
        payment_intent_id: opt_s(item, "payment_intent_id"),
        created_at: get_t(item, "created_at")?,
        updated_at: get_t(item, "updated_at")?,
    })
}

/// A new reservation: only if no item has its key.
pub fn put_new(table: &str, r: &Reservation, shards: u32) -> Result<Put, StoreError> {
    Put::builder()
        .table_name(table)
        .set_item(Some(to_item(r, shards)))
        .condition_expression("attribute_not_exists(pk)")
        .build()
        .map_err(|e| StoreError::Internal(e.to_string()))
}

/// When DynamoDB's TTL may remove a reservation in a final state (and its order): `retention`
/// after its last change, in epoch seconds. A HOLD has none.
pub fn final_ttl(r: &Reservation, retention: chrono::Duration) -> Option<i64> {
    (r.status != ReservationStatus::Hold).then(|| (r.updated_at + retention).timestamp() + 1)
}

/// The next version: only if the stored one is still HOLD at `expected_version`.
pub fn put_transition(
    table: &str,
    next: &Reservation,
    expected_version: u64,
    shards: u32,
    retention: chrono::Duration,
) -> Result<Put, StoreError> {
    let mut item = to_item(next, shards);
    if let Some(ttl) = final_ttl(next, retention) {
        item.insert("ttl".into(), n(ttl));
    }
    Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("#status = :hold AND #version = :expected")
        .expression_attribute_names("#status", "status")
        .expression_attribute_names("#version", "version")
        .expression_attribute_values(":hold", s(ReservationStatus::Hold.as_str()))
        .expression_attribute_values(":expected", n(expected_version))
        .build()
        .map_err(|e| StoreError::Internal(e.to_string()))
}

/// HOLDs due at `now`, soonest first, at most `limit`: one query per shard of this round's window
/// of `holds_by_expiry` (see [`ShardRounds`]), in parallel. A shard that filled its page is read
/// again next round.
pub async fn due_holds(
    client: &Client,
    table: &str,
    rounds: &ShardRounds,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<Reservation>, StoreError> {
    let shards = rounds.next_round();
    let per_shard = limit.div_ceil(shards.len()).max(1) as i32;
    let queries = shards.iter().map(|shard| {
        client
            .query()
            .table_name(table)
            .index_name(HOLDS_BY_EXPIRY)
            .key_condition_expression("expiry_shard = :s AND expiry_at <= :now")
            .expression_attribute_values(":s", s(shard.to_string()))
            .expression_attribute_values(":now", t(now))
            .limit(per_shard)
            .send()
    });
    let mut due = Vec::new();
    for (out, &shard) in futures::future::join_all(queries)
        .await
        .into_iter()
        .zip(&shards)
    {
        let out = out.map_err(sdk_err)?;
        if out.items().len() >= per_shard as usize {
            rounds.mark(shard);
        }
        for item in out.items() {
            due.push(from_item(item)?);
        }
    }
    due.sort_by_key(|r| r.hold_expires_at);
    due.truncate(limit);
    Ok(due)
}

/// A HOLD the sweeper could not expire: due again at `Some(at)` in `holds_by_expiry`, or (`None`)
/// out of the index for good, with a `ttl` of `failed` after its hold's end. False if it is no
/// longer HOLD at its version.
pub async fn defer_expiry(
    client: &Client,
    table: &str,
    r: &Reservation,
    retry_at: Option<DateTime<Utc>>,
    failed: chrono::Duration,
) -> Result<bool, StoreError> {
    let u = client
        .update_item()
        .table_name(table)
        .key("pk", s(&r.id))
        .key("sk", s(&r.event_id))
        .condition_expression("#status = :hold AND #version = :v AND attribute_exists(expiry_at)")
        .expression_attribute_names("#status", "status")
        .expression_attribute_names("#version", "version")
        .expression_attribute_values(":hold", s(ReservationStatus::Hold.as_str()))
        .expression_attribute_values(":v", n(r.version));
    let u = match retry_at {
        Some(at) => u
            .update_expression("SET expiry_at = :at")
            .expression_attribute_values(":at", t(at)),
        None => u
            .update_expression(
                "SET #ttl = :ttl, expiry_abandoned = :yes REMOVE expiry_shard, expiry_at",
            )
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":ttl", n((r.hold_expires_at + failed).timestamp() + 1))
            .expression_attribute_values(":yes", AttributeValue::Bool(true)),
    };
    match u.send().await {
        Ok(_) => Ok(true),
        Err(e) if super::errors::is_condition_failure(&e) => Ok(false),
        Err(e) => Err(sdk_err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::reservation::tests::hold;

    #[test]
    fn a_reservation_round_trips_and_only_a_hold_is_indexed() {
        let now = crate::service::now_ms();
        let r = hold(now);
        let item = to_item(&r, 8);
        assert_eq!(from_item(&item).unwrap(), r);
        assert!(item.contains_key("expiry_at"));
        let c = r.confirmed("ord_1", "pay_1", now).unwrap();
        let item = to_item(&c, 8);
        assert_eq!(from_item(&item).unwrap(), c);
        assert!(!item.contains_key("expiry_at") && !item.contains_key("expiry_shard"));
        let day = chrono::Duration::seconds(86_400);
        assert_eq!(final_ttl(&r, day), None);
        assert_eq!(final_ttl(&c, day), Some((now + day).timestamp() + 1));
    }
}
