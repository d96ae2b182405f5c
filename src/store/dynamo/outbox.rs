//! The outbox table: `pk` = `<reservation id>#<seq>` (see [`key`]); `event_id, type, seq,
//! reservation_id, payload, status, attempts, next_retry_at, …`. Unsettled events (PENDING,
//! CLAIMED) carry the sparse `pending_by_due` index attributes (`due_at` = when a relay may take it
//! next, or, once claimed, when it was due); settled ones drop them.
//!
//! Keying by reservation and sequence lets a relay look up the event that must be settled before
//! another one by key (one `BatchGetItem` for a whole batch) instead of a query per event.

use aws_sdk_dynamodb::types::Put;
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};

use super::item::{get_n, get_s, get_t, n, opt_s, opt_t, s, shard_of, t, Item};
use crate::domain::{EventType, OutboxEvent, OutboxStatus};
use crate::store::StoreError;

pub const PENDING_BY_DUE: &str = "pending_by_due";
pub const EVENTS_BY_RESERVATION: &str = "events_by_reservation";

/// The table key of event `seq` of a reservation. Zero-padded so that `events_by_reservation`
/// (sorted by `pk`) lists a reservation's events in order.
pub fn key(reservation_id: &str, seq: u64) -> String {
    format!("{reservation_id}#{seq:08}")
}

pub fn to_item(e: &OutboxEvent, shards: u32) -> Item {
    let mut item = Item::from([
        ("pk".into(), s(key(&e.reservation_id, e.seq))),
        ("event_id".into(), s(&e.id)),
        ("seq".into(), n(e.seq)),
        ("type".into(), s(e.event_type.as_str())),
        ("reservation_id".into(), s(&e.reservation_id)),
        ("payload".into(), s(e.detail.to_string())),
        ("status".into(), s(e.status.as_str())),
        ("attempts".into(), n(e.attempts)),
        ("next_retry_at".into(), t(e.next_retry_at)),
        ("created_at".into(), t(e.created_at)),
    ]);
    if matches!(e.status, OutboxStatus::Pending | OutboxStatus::Claimed) {
        item.insert("pending_shard".into(), s(shard_of(&e.id, shards)));
        // A claim leaves `due_at` as it was (see `outbox_relay::claim_update`).
        item.insert("due_at".into(), t(e.next_retry_at));
    }
    for (k, v) in [
        ("lease_owner", &e.lease_owner),
        ("last_error", &e.last_error),
        ("traceparent", &e.traceparent),
    ] {
        if let Some(v) = v {
            item.insert(k.into(), s(v));
        }
    }
    for (k, v) in [
        ("lease_until", e.lease_until),
        ("published_at", e.published_at),
    ] {
        if let Some(v) = v {
            item.insert(k.into(), t(v));
        }
    }
    item
}

pub fn from_item(item: &Item) -> Result<OutboxEvent, StoreError> {
    let bad = |what: &str| StoreError::Internal(format!("outbox item has a bad {what}"));
    Ok(OutboxEvent {
        id: get_s(item, "event_id")?,
        event_type: EventType::parse(&get_s(item, "type")?).ok_or_else(|| bad("type"))?,
        reservation_id: get_s(item, "reservation_id")?,
        seq: get_n(item, "seq")?,
        detail: serde_json::from_str(&get_s(item, "payload")?).map_err(|_| bad("payload"))?,
        status: OutboxStatus::parse(&get_s(item, "status")?).ok_or_else(|| bad("status"))?,
        attempts: get_n(item, "attempts")?,
        next_retry_at: get_t(item, "next_retry_at")?,
        created_at: get_t(item, "created_at")?,
        lease_owner: opt_s(item, "lease_owner"),
        lease_until: opt_t(item, "lease_until"),
        last_error: opt_s(item, "last_error"),
        published_at: opt_t(item, "published_at"),
        traceparent: opt_s(item, "traceparent"),
    })
}

pub fn put_new(table: &str, e: &OutboxEvent, shards: u32) -> Result<Put, StoreError> {
    Put::builder()
        .table_name(table)
        .set_item(Some(to_item(e, shards)))
        .condition_expression("attribute_not_exists(pk)")
        .build()
        .map_err(|e| StoreError::Internal(e.to_string()))
}

/// A reservation's events, in `seq` order, through `events_by_reservation`.
pub async fn events_for(
    client: &Client,
    table: &str,
    reservation_id: &str,
) -> Result<Vec<OutboxEvent>, StoreError> {
    let q = client
        .query()
        .table_name(table)
        .index_name(EVENTS_BY_RESERVATION)
        .key_condition_expression("reservation_id = :r")
        .expression_attribute_values(":r", s(reservation_id));
    super::requests::query_all(q)
        .await?
        .iter()
        .map(from_item)
        .collect()
}

/// Whether a stored event still waits for a relay (PENDING or CLAIMED).
pub fn is_unsettled(item: &Item) -> bool {
    item.contains_key("pending_shard")
}

/// The event as claimed by `owner` until `lease_until`.
pub fn claimed(e: &OutboxEvent, owner: &str, lease_until: DateTime<Utc>) -> OutboxEvent {
    let mut c = e.clone();
    c.status = OutboxStatus::Claimed;
    c.lease_owner = Some(owner.to_owned());
    c.lease_until = Some(lease_until);
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::reservation::tests::hold;

    #[test]
    fn an_event_round_trips_and_only_unsettled_ones_are_indexed() {
        let now = crate::service::now_ms();
        let e = OutboxEvent::for_reservation(EventType::HoldCreated, &hold(now), None, "t", now);
        let item = to_item(&e, 8);
        assert_eq!(from_item(&item).unwrap(), e);
        assert!(item.contains_key("due_at") && is_unsettled(&item));
        assert_eq!(item["pk"], s(format!("{}#00000001", e.reservation_id)));
        let mut p = e.clone();
        p.status = OutboxStatus::Published;
        p.published_at = Some(now);
        let item = to_item(&p, 8);
        assert_eq!(from_item(&item).unwrap(), p);
        assert!(!item.contains_key("due_at"));
    }
}
