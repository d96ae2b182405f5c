//! The few DynamoDB calls the seat engine makes, with failures mapped to [`InventoryError`]:
//! consistent reads of single items and of many rows, and transactions whose condition failures
//! come back per item (they are business answers, not errors).

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{KeysAndAttributes, TransactWriteItem};
use aws_sdk_dynamodb::Client;

use super::layout::{s, Item};
use crate::inventory::InventoryError;
use crate::schedule::Backoff;

/// BatchGetItem takes at most 100 keys.
const BATCH: usize = 100;
/// Calls in flight to DynamoDB per process, at most: a burst queues here, in order, instead of as
/// thousands of open requests that time out together.
pub const MAX_IN_FLIGHT: usize = 64;

/// Unprocessed keys of a BatchGetItem (throttling) are asked again after 40, 80, 160, 320 ms ±50 %.
static UNPROCESSED_BACKOFF: LazyLock<Backoff> =
    LazyLock::new(|| Backoff::new(Duration::from_millis(40), 0.5, Duration::from_millis(320)));

/// A transaction conflict is retried after 10, 20, 40 ms ±50 %: the other transaction is short.
static CONFLICT_BACKOFF: LazyLock<Backoff> =
    LazyLock::new(|| Backoff::new(Duration::from_millis(10), 0.5, Duration::from_millis(80)));

pub fn unavailable(message: impl Into<String>) -> InventoryError {
    InventoryError::Unavailable {
        message: message.into(),
        retry_after_secs: crate::schedule::retry_after_secs(),
    }
}

/// A failed call: throttling, timeouts, a missing table and DynamoDB's own failures are worth a
/// retry; a request DynamoDB cannot read is a bug.
pub fn sdk_error<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    e: SdkError<E, R>,
) -> InventoryError {
    match &e {
        SdkError::TimeoutError(_) => InventoryError::Timeout,
        SdkError::DispatchFailure(d) if d.is_timeout() => InventoryError::Timeout,
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("Unknown");
            let msg = format!("{code}: {}", se.err().message().unwrap_or_default());
            match code {
                "ValidationException" | "SerializationException" => InventoryError::Internal(msg),
                _ => unavailable(msg),
            }
        }
        _ => unavailable(format!("seats table: {e:?}")),
    }
}

/// A transaction's end: done, or cancelled with the items whose condition failed.
pub enum Tx {
    Done,
    Failed(Vec<bool>),
}

#[derive(Clone)]
pub struct SeatsClient {
    pub client: Client,
    pub table: String,
    pub in_flight: Arc<Semaphore>,
}

impl SeatsClient {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        }
    }

    async fn permit(&self) -> Result<SemaphorePermit<'_>, InventoryError> {
        self.in_flight
            .acquire()
            .await
            .map_err(|_| unavailable("seats client closed"))
    }

    /// One conditional single-item write (a fluent builder's `send()`, not yet polled):
    /// `Ok(false)` if its condition failed (a business answer, not an error).
    pub async fn conditional<T, E, R>(
        &self,
        send: impl std::future::Future<Output = Result<T, SdkError<E, R>>>,
    ) -> Result<bool, InventoryError>
    where
        E: ProvideErrorMetadata + std::fmt::Debug,
        R: std::fmt::Debug,
    {
        let _permit = self.permit().await?;
        match send.await {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(se))
                if se.err().code() == Some("ConditionalCheckFailedException") =>
            {
                Ok(false)
            }
            Err(e) => Err(sdk_error(e)),
        }
    }

    pub async fn get(&self, pk: &str) -> Result<Option<Item>, InventoryError> {
        let _permit = self.permit().await?;
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(out.item)
    }

    /// Consistent reads of `keys`, in any order; missing items are left out.
    pub async fn get_many(&self, keys: &[String]) -> Result<Vec<Item>, InventoryError> {
        let mut found = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH) {
            let mut pending: Vec<Item> = chunk
                .iter()
                .map(|k| Item::from([("pk".to_owned(), s(k.clone()))]))
                .collect();
            // Unprocessed keys (throttling, the 16 MB cap) are asked again, a bounded number of times.
            for attempt in 0..8u32 {
                if pending.is_empty() {
                    break;
                }
                if attempt > 0 {
                    UNPROCESSED_BACKOFF.sleep(attempt - 1).await;
                }
                let ka = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut pending)))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| InventoryError::Internal(e.to_string()))?;
                let _permit = self.permit().await?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, ka)
                    .send()
                    .await
                    .map_err(sdk_error)?;
                if let Some(mut r) = out.responses {
                    found.extend(r.remove(&self.table).unwrap_or_default());
                }
                pending = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .map(|ka| ka.keys)
                    .unwrap_or_default();
            }
            if !pending.is_empty() {
                return Err(unavailable("seats table: reads throttled"));
            }
        }
        Ok(found)
    }

    /// One transaction. A conflict with another transaction in flight is retried briefly; a
    /// condition failure is answered with the items that failed.
    pub async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<Tx, InventoryError> {
        for attempt in 0..4u32 {
            let permit = self.permit().await?;
            let sent = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            drop(permit);
            let err = match sent {
                Ok(_) => return Ok(Tx::Done),
                Err(e) => e,
            };
            let service = match err {
                SdkError::ServiceError(se) => se.into_err(),
                other => return Err(sdk_error(other)),
            };
            match &service {
                TransactWriteItemsError::TransactionCanceledException(tc) => {
                    let reasons = tc.cancellation_reasons();
                    let failed: Vec<bool> = reasons
                        .iter()
                        .map(|r| r.code() == Some("ConditionalCheckFailed"))
                        .collect();
                    if failed.iter().any(|f| *f) {
                        return Ok(Tx::Failed(failed));
                    }
                    if !reasons
                        .iter()
                        .any(|r| r.code() == Some("TransactionConflict"))
                    {
                        return Err(unavailable(format!(
                            "seats transaction cancelled: {:?}",
                            tc.message()
                        )));
                    }
                }
                TransactWriteItemsError::TransactionInProgressException(_) => {}
                other => {
                    let code = other.code().unwrap_or("Unknown");
                    let msg = format!("{code}: {}", other.message().unwrap_or_default());
                    return Err(if code == "ValidationException" {
                        InventoryError::Internal(msg)
                    } else {
                        unavailable(msg)
                    });
                }
            }
            CONFLICT_BACKOFF.sleep(attempt).await;
        }
        Err(unavailable("seats transaction: conflicts persisted"))
    }
}
