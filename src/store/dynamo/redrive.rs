//! The outbox table's side of `outbox redrive` (see `store::redrive`): finding FAILED events (a
//! filtered scan: an operator's command, rare, priced by the table's size) and putting one back
//! into `pending_by_due`.

use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};

use super::errors::{is_condition_failure, sdk_err};
use super::item::{n, s, shard_of, t};
use super::outbox::{self, key};
use crate::domain::{OutboxEvent, OutboxStatus};
use crate::store::StoreError;

/// Every FAILED event, oldest first, at most `limit`.
pub async fn failed(
    client: &Client,
    table: &str,
    limit: usize,
) -> Result<Vec<OutboxEvent>, StoreError> {
    let mut found = Vec::new();
    let mut start = None;
    loop {
        let out = client
            .scan()
            .table_name(table)
            .filter_expression("#status = :failed")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":failed", s(OutboxStatus::Failed.as_str()))
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(sdk_err)?;
        for item in out.items() {
            found.push(outbox::from_item(item)?);
        }
        match out.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => break,
        }
    }
    found.sort_by(|a, b| a.id.cmp(&b.id));
    found.truncate(limit);
    Ok(found)
}

/// `e` back to PENDING, due at `now`, with no attempts and no TTL, in shard `shard_of(id,
/// shards)`; false if it is no longer FAILED.
pub async fn put_back(
    client: &Client,
    table: &str,
    e: &OutboxEvent,
    now: DateTime<Utc>,
    shards: u32,
) -> Result<bool, StoreError> {
    let out = client
        .update_item()
        .table_name(table)
        .key("pk", s(key(&e.reservation_id, e.seq)))
        .condition_expression("#status = :failed AND event_id = :id")
        .update_expression(
            "SET #status = :pending, attempts = :zero, next_retry_at = :now, due_at = :now, \
             pending_shard = :shard REMOVE #ttl, lease_owner, lease_until",
        )
        .expression_attribute_names("#status", "status")
        .expression_attribute_names("#ttl", "ttl")
        .expression_attribute_values(":failed", s(OutboxStatus::Failed.as_str()))
        .expression_attribute_values(":pending", s(OutboxStatus::Pending.as_str()))
        .expression_attribute_values(":id", s(&e.id))
        .expression_attribute_values(":zero", n(0))
        .expression_attribute_values(":now", t(now))
        .expression_attribute_values(":shard", s(shard_of(&e.id, shards)))
        .send()
        .await;
    match out {
        Ok(_) => Ok(true),
        Err(err) if is_condition_failure(&err) => Ok(false),
        Err(err) => Err(sdk_err(err)),
    }
}
