//! The requests every table uses: one conditional transaction, every page of a query or scan, an
//! item by partition key, and a consistent `BatchGetItem` that asks again for what DynamoDB leaves
//! unprocessed.

use std::sync::LazyLock;
use std::time::Duration;

use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::{KeysAndAttributes, TransactWriteItem};
use aws_sdk_dynamodb::Client;

use super::errors::{cancellation_reasons, sdk_err};
use super::item::{s, Item};
use crate::schedule::Backoff;
use crate::store::{ConflictKind, StoreError};

/// The wait before asking DynamoDB again within one store call (a transaction conflict, keys left
/// unprocessed): short, since the caller is waiting.
pub static RETRY: LazyLock<Backoff> =
    LazyLock::new(|| Backoff::new(Duration::from_millis(10), 0.5, Duration::from_millis(200)));

/// `BatchGetItem` reads at most 100 keys a call.
pub const BATCH_GET_MAX: usize = 100;

/// The ClientRequestToken (at most 36 characters) of the write that moves reservation `id` to
/// `version` with event `event_id`. Every logical write has its own event, so a retry of the same
/// write repeats the token and nothing else does.
pub fn request_token(id: &str, version: u64, event_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{id}/{version}/{event_id}"));
    hex::encode(&digest[..16])
}

/// One transaction; `kinds[i]` says what a condition failure of item `i` means. A transaction
/// conflict with another in-flight transaction is retried briefly. `token` names the logical
/// write (DynamoDB's ClientRequestToken), so that DynamoDB itself answers a retry of a
/// transaction that already landed with success for 10 minutes instead of failing its
/// conditions. Not relied upon: the service also settles such failures by reading.
pub async fn transact(
    client: &Client,
    items: Vec<TransactWriteItem>,
    kinds: &[ConflictKind],
    token: String,
) -> Result<(), StoreError> {
    for attempt in 0..4 {
        let out = client
            .transact_write_items()
            .set_transact_items(Some(items.clone()))
            .client_request_token(&token)
            .send()
            .await;
        let err = match out {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let reasons = cancellation_reasons(err)?;
        if let Some(i) = reasons
            .iter()
            .position(|r| r.as_deref() == Some("ConditionalCheckFailed"))
        {
            return Err(StoreError::Conflict(
                kinds
                    .get(i)
                    .copied()
                    .unwrap_or(ConflictKind::StaleReservation),
            ));
        }
        if reasons
            .iter()
            .any(|r| r.as_deref() == Some("TransactionConflict"))
            && attempt < 3
        {
            RETRY.sleep(attempt).await;
            continue;
        }
        return Err(StoreError::Unavailable(format!(
            "transaction cancelled: {reasons:?}"
        )));
    }
    Err(StoreError::Unavailable(
        "transaction conflicts persisted".into(),
    ))
}

/// Every page of a query (the SDK's paginator follows `LastEvaluatedKey`).
pub async fn query_all(q: QueryFluentBuilder) -> Result<Vec<Item>, StoreError> {
    q.into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(sdk_err)
}

/// Every item of a table, read consistently.
pub async fn scan_all(client: &Client, table: &str) -> Result<Vec<Item>, StoreError> {
    let scan = client.scan().table_name(table).consistent_read(true);
    scan.into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(sdk_err)
}

/// The item with partition key `pk` (its sort key unknown to the caller), read consistently.
pub async fn first_by_pk(
    client: &Client,
    table: &str,
    pk: &str,
) -> Result<Option<Item>, StoreError> {
    let out = client
        .query()
        .table_name(table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", s(pk))
        .consistent_read(true)
        .limit(1)
        .send()
        .await
        .map_err(sdk_err)?;
    Ok(out.items().first().cloned())
}

/// What a [`batch_get_consistent`] found, and the keys DynamoDB still left unprocessed.
pub struct BatchGot {
    pub items: Vec<Item>,
    pub unprocessed: Vec<Item>,
}

/// A consistent `BatchGetItem` of `keys` (at most [`BATCH_GET_MAX`]) from `table`, only the
/// attributes of `projection` if given. The keys DynamoDB leaves unprocessed are asked for again
/// after a backoff, in at most `requests` requests in all; `on_request` runs before each one.
pub async fn batch_get_consistent(
    client: &Client,
    table: &str,
    keys: Vec<Item>,
    projection: Option<&str>,
    requests: u32,
    on_request: impl Fn(),
) -> Result<BatchGot, StoreError> {
    let mut got = BatchGot {
        items: Vec::with_capacity(keys.len()),
        unprocessed: keys,
    };
    for attempt in 0..requests {
        if got.unprocessed.is_empty() {
            break;
        }
        if attempt > 0 {
            RETRY.sleep(attempt - 1).await;
        }
        on_request();
        let request = KeysAndAttributes::builder()
            .set_keys(Some(std::mem::take(&mut got.unprocessed)))
            .consistent_read(true)
            .set_projection_expression(projection.map(str::to_owned))
            .build()
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        let mut out = client
            .batch_get_item()
            .request_items(table, request)
            .send()
            .await
            .map_err(sdk_err)?;
        if let Some(items) = out.responses.as_mut().and_then(|r| r.remove(table)) {
            got.items.extend(items);
        }
        if let Some(left) = out.unprocessed_keys.as_mut().and_then(|u| u.remove(table)) {
            got.unprocessed = left.keys;
        }
    }
    Ok(got)
}
