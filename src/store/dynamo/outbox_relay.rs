//! The relay's side of the outbox table, priced per batch rather than per event (docs/outbox.md):
//!
//! - **find**: one query per shard of this round's window of `pending_by_due` (8 by default, in
//!   parallel; see [`ShardRounds`]) for due events;
//! - **order**: one consistent `BatchGetItem` for the predecessors (event `seq - 1` of the same
//!   reservation) that are not themselves among the candidates; an event waits while its
//!   predecessor is unsettled;
//! - **claim**: one `TransactWriteItems` of up to 100 conditional updates;
//! - **settle**: one `TransactWriteItems` of up to 100 conditional updates.
//!
//! A transaction fails as a whole when one of its conditions fails (another relay got there
//! first): the items DynamoDB names in the cancellation reasons are dropped and the rest retried.
//! Every request counts in `outbox_store_requests_total{op}`.

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::types::{TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};

use super::errors::{cancellation_reasons, sdk_err};
use super::item::{n, opt_t, s, t, Item};
use super::outbox::{self, key, PENDING_BY_DUE};
use super::requests::{batch_get_consistent, RETRY};
use super::shards::ShardRounds;
use crate::domain::{OutboxEvent, OutboxStatus};
use crate::store::{Retention, Settlement, StoreError};

/// A transaction takes at most 100 items; so does a `BatchGetItem`.
pub const MAX_BATCH: usize = 100;

fn counted(op: &'static str) {
    metrics::counter!("outbox_store_requests_total", "op" => op).increment(1);
}

/// Claim up to `limit` due events for `owner` until `lease_until`.
pub async fn claim(
    client: &Client,
    table: &str,
    rounds: &ShardRounds,
    owner: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<OutboxEvent>, StoreError> {
    let limit = limit.clamp(1, MAX_BATCH);
    let (candidates, shard_of) = due_candidates(client, table, rounds, now, limit).await?;
    let waiting = unsettled_predecessors(client, table, &candidates).await?;
    // What waits is read again next round (it may be free by then), and so is what it waits for:
    // a predecessor in a shard outside this window would otherwise be reached only when the
    // cursor comes round to it.
    for (id, pred) in &waiting {
        if let Some(&shard) = shard_of.get(id) {
            rounds.mark(shard);
        }
        if let Some(shard) = pred.shard {
            rounds.mark(shard);
        }
    }
    let (blocked, chosen): (Vec<OutboxEvent>, Vec<OutboxEvent>) = candidates
        .into_iter()
        .partition(|e| waiting.contains_key(&e.id));
    let mut updates = chosen
        .iter()
        .map(|e| claim_update(table, e, owner, now, lease_until))
        .collect::<Result<Vec<_>, _>>()?;
    // Blocked successors move behind their predecessor in the index, in the room the claim leaves
    // in this round (a round's transaction never grows past the round's size).
    for e in blocked.iter().take(limit.saturating_sub(updates.len())) {
        if let Some(Waiting {
            due_at: Some(pred_due),
            ..
        }) = waiting.get(&e.id)
        {
            let after = (*pred_due).max(now) + BLOCKED_BEHIND;
            updates.push(defer_update(table, e, after)?);
        }
    }
    let mut applied = transact_each(client, "claim", updates, false).await?;
    applied.truncate(chosen.len());
    Ok(chosen
        .iter()
        .zip(applied)
        .filter(|(_, ok)| *ok)
        .map(|(e, _)| outbox::claimed(e, owner, lease_until))
        .collect())
}

/// Settle claimed events together; answers the ids whose claim was lost.
pub async fn settle(
    client: &Client,
    table: &str,
    owner: &str,
    batch: &[(OutboxEvent, Settlement)],
    retention: &Retention,
) -> Result<Vec<String>, StoreError> {
    let mut lost = Vec::new();
    for chunk in batch.chunks(MAX_BATCH) {
        let updates = chunk
            .iter()
            .map(|(e, how)| settle_update(table, e, owner, how, retention))
            .collect::<Result<Vec<_>, _>>()?;
        let applied = transact_each(client, "settle", updates, true).await?;
        lost.extend(
            chunk
                .iter()
                .zip(applied)
                .filter(|(_, ok)| !ok)
                .map(|((e, _), _)| e.id.clone()),
        );
    }
    Ok(lost)
}

/// Unsettled events, counted over every shard of the sparse index (for the pending gauge), the
/// shards in parallel: the relay waits for this count on an idle tick.
pub async fn pending(client: &Client, table: &str, span: u32) -> Result<usize, StoreError> {
    let counts = (0..span).map(|shard| async move {
        counted("count");
        let out = client
            .query()
            .table_name(table)
            .index_name(PENDING_BY_DUE)
            .key_condition_expression("pending_shard = :s")
            .expression_attribute_values(":s", s(shard.to_string()))
            .select(aws_sdk_dynamodb::types::Select::Count)
            .send()
            .await
            .map_err(sdk_err)?;
        Ok::<_, StoreError>(out.count() as usize)
    });
    let counts: Vec<usize> = futures::stream::iter(counts)
        .buffer_unordered(16)
        .try_collect()
        .await?;
    Ok(counts.into_iter().sum())
}

/// Due events of this round's shards, oldest first (UUIDv7 ids sort by write time), at most one
/// per reservation (its lowest `seq`: a later one waits for it anyway), at most `limit`, with the
/// shard each was found in. A shard that filled its page is read again next round.
async fn due_candidates(
    client: &Client,
    table: &str,
    rounds: &ShardRounds,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<(Vec<OutboxEvent>, HashMap<String, u32>), StoreError> {
    let shards = rounds.next_round();
    let queries = shards
        .iter()
        .map(|&shard| due_in_shard(client, table, shard, now, limit));
    let mut all = Vec::new();
    let mut shard_of = HashMap::new();
    for (out, &shard) in futures::future::join_all(queries)
        .await
        .into_iter()
        .zip(&shards)
    {
        let (due, more) = out?;
        if more {
            rounds.mark(shard);
        }
        shard_of.extend(due.iter().map(|e| (e.id.clone(), shard)));
        all.extend(due);
    }
    let mut first: HashMap<String, u64> = HashMap::new();
    for e in &all {
        let seq = first.entry(e.reservation_id.clone()).or_insert(e.seq);
        *seq = (*seq).min(e.seq);
    }
    all.retain(|e| first[&e.reservation_id] == e.seq);
    all.sort_by(|a, b| a.id.cmp(&b.id));
    all.truncate(limit);
    // A claimable event left out of this round (a later one of its reservation, or past the
    // batch) is read again next round.
    let kept: HashSet<&str> = all.iter().map(|e| e.id.as_str()).collect();
    for (id, &shard) in &shard_of {
        if !kept.contains(id.as_str()) {
            rounds.mark(shard);
        }
    }
    Ok((all, shard_of))
}

/// What a blocked successor waits for: its predecessor's place in `pending_by_due`, where known.
#[derive(Clone, Copy, Debug, Default)]
struct Waiting {
    due_at: Option<DateTime<Utc>>,
    shard: Option<u32>,
}

/// The candidates whose predecessor is still unsettled, read consistently in one
/// `BatchGetItem`, each with where its predecessor sits in the index (unknown when unprocessed). A key DynamoDB leaves unprocessed
/// after a retry counts as unsettled: the event waits a round rather than risk going out of
/// order. A missing predecessor (removed after its retention) is settled.
async fn unsettled_predecessors(
    client: &Client,
    table: &str,
    candidates: &[OutboxEvent],
) -> Result<HashMap<String, Waiting>, StoreError> {
    let mut by_key: HashMap<String, String> = candidates
        .iter()
        .filter_map(|e| {
            e.predecessor_seq()
                .map(|p| (key(&e.reservation_id, p), e.id.clone()))
        })
        .collect();
    if by_key.is_empty() {
        return Ok(HashMap::new());
    }
    let keys = by_key
        .keys()
        .map(|k| Item::from([("pk".to_owned(), s(k))]))
        .collect();
    let got = batch_get_consistent(
        client,
        table,
        keys,
        Some("pk, pending_shard, due_at"),
        3,
        || counted("read"),
    )
    .await?;
    let mut waiting = HashMap::new();
    for item in &got.items {
        let Some(pk) = item.get("pk").and_then(|v| v.as_s().ok()) else {
            continue;
        };
        if let Some(id) = by_key.remove(pk) {
            if outbox::is_unsettled(item) {
                let shard = item
                    .get("pending_shard")
                    .and_then(|v| v.as_s().ok())
                    .and_then(|v| v.parse().ok());
                let due_at = opt_t(item, "due_at");
                waiting.insert(id, Waiting { due_at, shard });
            }
        }
    }
    // What was asked and answered by nobody does not exist; what is still unprocessed waits.
    for k in got.unprocessed {
        if let Some(id) = k
            .get("pk")
            .and_then(|v| v.as_s().ok())
            .and_then(|pk| by_key.get(pk))
        {
            waiting.insert(id.clone(), Waiting::default());
        }
    }
    Ok(waiting)
}

/// Pages of `pending_by_due` read per shard and round, at most: a claimed event stays in range
/// while its lease lasts (its claim leaves `due_at`), so a page may start with other relays'
/// claims, and the next page has what is claimable.
const PAGES_PER_SHARD: usize = 3;

/// The claimable events of one shard (up to `limit`), and whether the shard may have more.
async fn due_in_shard(
    client: &Client,
    table: &str,
    shard: u32,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<(Vec<OutboxEvent>, bool), StoreError> {
    let mut due = Vec::new();
    let mut start = None;
    for _ in 0..PAGES_PER_SHARD {
        counted("query");
        let out = client
            .query()
            .table_name(table)
            .index_name(PENDING_BY_DUE)
            .key_condition_expression("pending_shard = :s AND due_at <= :now")
            .expression_attribute_values(":s", s(shard.to_string()))
            .expression_attribute_values(":now", t(now))
            .limit(MAX_BATCH as i32)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(sdk_err)?;
        for item in out.items() {
            let e = outbox::from_item(item)?;
            if e.is_claimable(now) {
                due.push(e);
            }
        }
        let full = out.items().len() >= MAX_BATCH;
        match out.last_evaluated_key() {
            Some(k) if full && due.len() < limit => start = Some(k.clone()),
            _ => return Ok((due, full)),
        }
    }
    Ok((due, true))
}

fn claim_update(
    table: &str,
    e: &OutboxEvent,
    owner: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
) -> Result<Update, StoreError> {
    // `attempts` as read: a candidate another relay settled and re-queued meanwhile is skipped
    // rather than claimed with a stale count. `due_at` stays: moving the index's sort key would
    // write the index twice (a delete and a put); a claimed event stays in range and readers skip
    // it while its lease lasts (docs/outbox.md, "Index writes per event").
    Update::builder()
        .table_name(table)
        .key("pk", s(key(&e.reservation_id, e.seq)))
        .update_expression("SET #status = :claimed, lease_owner = :owner, lease_until = :until")
        .condition_expression(
            "attempts = :attempts AND ((#status = :pending AND next_retry_at <= :now) \
             OR (#status = :claimed AND lease_until <= :now))",
        )
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":claimed", s(OutboxStatus::Claimed.as_str()))
        .expression_attribute_values(":pending", s(OutboxStatus::Pending.as_str()))
        .expression_attribute_values(":owner", s(owner))
        .expression_attribute_values(":until", t(lease_until))
        .expression_attribute_values(":now", t(now))
        .expression_attribute_values(":attempts", n(e.attempts))
        .build()
        .map_err(|e| StoreError::Internal(e.to_string()))
}

/// How far behind its predecessor's `due_at` (or now, if that is past) a blocked successor is put
/// in the index.
const BLOCKED_BEHIND: chrono::Duration = chrono::Duration::milliseconds(500);

/// Move a blocked successor's `due_at` to `after`. The index is ordered by `due_at`, and a
/// predecessor that was retried or leased sorts after its successor: without this, a window of
/// the oldest due events can fill up with successors that all wait, and no round claims anything
/// (a stall, not a delay). Only ever later, only while the event is pending as read.
fn defer_update(table: &str, e: &OutboxEvent, after: DateTime<Utc>) -> Result<Update, StoreError> {
    Update::builder()
        .table_name(table)
        .key("pk", s(key(&e.reservation_id, e.seq)))
        .update_expression("SET due_at = :after")
        .condition_expression("#status = :pending AND attempts = :attempts AND due_at < :after")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":pending", s(OutboxStatus::Pending.as_str()))
        .expression_attribute_values(":attempts", n(e.attempts))
        .expression_attribute_values(":after", t(after))
        .build()
        .map_err(|e| StoreError::Internal(e.to_string()))
}

/// When DynamoDB's TTL removes an event that went FAILED at `at` (unless redriven before).
pub fn failed_ttl(at: DateTime<Utc>, retention: &Retention) -> i64 {
    (at + retention.failed).timestamp() + 1
}

fn settle_update(
    table: &str,
    e: &OutboxEvent,
    owner: &str,
    how: &Settlement,
    retention: &Retention,
) -> Result<Update, StoreError> {
    let u = Update::builder()
        .table_name(table)
        .key("pk", s(key(&e.reservation_id, e.seq)))
        .condition_expression("#status = :claimed AND lease_owner = :owner")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":claimed", s(OutboxStatus::Claimed.as_str()))
        .expression_attribute_values(":owner", s(owner));
    let u = match how {
        Settlement::Published { at } => u
            .update_expression(
                "SET #status = :published, published_at = :at, attempts = attempts + :one, \
                 #ttl = :ttl REMOVE pending_shard, due_at, lease_owner, lease_until",
            )
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":published", s(OutboxStatus::Published.as_str()))
            .expression_attribute_values(":at", t(*at))
            .expression_attribute_values(":ttl", n((*at + retention.outbox).timestamp() + 1))
            .expression_attribute_values(":one", n(1)),
        Settlement::Retry {
            attempts,
            next_retry_at,
            error,
        } => u
            .update_expression(
                "SET #status = :pending, attempts = :attempts, next_retry_at = :next, \
                 due_at = :next, last_error = :error REMOVE lease_owner, lease_until",
            )
            .expression_attribute_values(":pending", s(OutboxStatus::Pending.as_str()))
            .expression_attribute_values(":attempts", n(attempts))
            .expression_attribute_values(":next", t(*next_retry_at))
            .expression_attribute_values(":error", s(error)),
        Settlement::Failed { attempts, error } => u
            .update_expression(
                "SET #status = :failed, attempts = :attempts, last_error = :error, #ttl = :ttl \
                 REMOVE pending_shard, due_at, lease_owner, lease_until",
            )
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":ttl", n(failed_ttl(Utc::now(), retention)))
            .expression_attribute_values(":failed", s(OutboxStatus::Failed.as_str()))
            .expression_attribute_values(":attempts", n(attempts))
            .expression_attribute_values(":error", s(error)),
    };
    u.build().map_err(|e| StoreError::Internal(e.to_string()))
}

/// Apply `updates` in as few transactions as the races allow; answers which were applied. An item
/// whose condition failed is dropped; one in conflict with another transaction is dropped too
/// (another relay is claiming it) unless `retry_conflicts` (our own settlement must land).
async fn transact_each(
    client: &Client,
    op: &'static str,
    updates: Vec<Update>,
    retry_conflicts: bool,
) -> Result<Vec<bool>, StoreError> {
    let mut applied = vec![false; updates.len()];
    let mut live: Vec<usize> = (0..updates.len()).collect();
    for attempt in 0..4 {
        if live.is_empty() {
            break;
        }
        counted(op);
        let items = live
            .iter()
            .map(|&i| {
                TransactWriteItem::builder()
                    .update(updates[i].clone())
                    .build()
            })
            .collect();
        let err = match client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => {
                for &i in &live {
                    applied[i] = true;
                }
                return Ok(applied);
            }
            Err(e) => e,
        };
        let reasons = cancellation_reasons(err)?;
        if reasons.len() != live.len() {
            return Err(StoreError::Unavailable(format!(
                "transaction cancelled without per-item reasons: {reasons:?}"
            )));
        }
        let mut conflicted = false;
        live = live
            .into_iter()
            .zip(reasons)
            .filter(|(_, r)| match r.as_deref() {
                Some("ConditionalCheckFailed") => false,
                Some("TransactionConflict") => {
                    conflicted = true;
                    retry_conflicts
                }
                _ => true,
            })
            .map(|(i, _)| i)
            .collect();
        if conflicted {
            RETRY.sleep(attempt).await;
        }
    }
    Ok(applied)
}
