//! `reservation-api inventory archive --event ID`: the summary of a finished event (sold seats per
//! row, the sales' holders), then its items deleted from the seats table so the table stops
//! growing. "Finished" is what the catalogue can tell (it has no dates): no hold of the event is
//! still live (`ACTIVE` and not run out), and the operator says the event is over (`--yes`).
//! Without `--yes`, or with a live hold, nothing is deleted.

use std::sync::LazyLock;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, WriteRequest};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::client::{sdk_error, SeatsClient};
use super::layout::*;
use super::notes::{change_key, SLOTS};
use crate::schedule::Backoff;

/// BatchWriteItem takes at most 25 requests.
const WRITE_BATCH: usize = 25;

/// Unprocessed deletes are sent again after 50, 100, 200, 400 ms ±50 %.
static UNPROCESSED_BACKOFF: LazyLock<Backoff> =
    LazyLock::new(|| Backoff::new(Duration::from_millis(50), 0.5, Duration::from_millis(400)));

#[derive(Debug, Serialize)]
pub struct RowSummary {
    pub row: String,
    pub section: String,
    pub seats: u32,
    /// The numbers of the row's sold seats.
    pub sold: Vec<u32>,
}

#[derive(Debug, Serialize)]
pub struct Sale {
    pub reservation_id: String,
    pub user_id: String,
    pub seats: Vec<String>,
    pub committed_at: Option<DateTime<Utc>>,
    pub payment_intent_id: Option<String>,
}

/// What an archive found (and, when `deleted` is set, removed).
#[derive(Debug, Serialize)]
pub struct ArchiveSummary {
    pub event_id: String,
    pub name: String,
    pub seats: u64,
    pub sold: u64,
    pub rows: Vec<RowSummary>,
    pub sales: Vec<Sale>,
    /// Holds that were released or ran out (no seat of theirs is kept).
    pub unsold_holds: usize,
    /// The event's items in the seats table, in the order [`delete`] removes them.
    #[serde(skip)]
    pub keys: Vec<String>,
}

/// Why an archive changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("no event {0} in the seats table")]
    NoEvent(String),
    #[error("event {event} still has {live} live hold(s); archive it once they have ended")]
    LiveHolds { event: String, live: usize },
    #[error("seats table: {0}")]
    Store(String),
}

fn store(e: impl std::fmt::Display) -> ArchiveError {
    ArchiveError::Store(e.to_string())
}

/// Every hold item of `event`: a Scan of the table (the hold keys are not known otherwise), so
/// its cost is the table's size — an operator's command, never on a request path.
async fn hold_items(client: &Client, table: &str, event: &str) -> Result<Vec<Item>, ArchiveError> {
    let prefix = hold_key(event, "");
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let out = client
            .scan()
            .table_name(table)
            .filter_expression("begins_with(pk, :p)")
            .expression_attribute_values(":p", s(&prefix))
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| store(sdk_error(e)))?;
        items.extend(out.items.unwrap_or_default());
        start = out.last_evaluated_key;
        if start.is_none() {
            return Ok(items);
        }
    }
}

/// Summarise `event` (refused while a hold of it is live), listing its items for [`delete`].
pub async fn summarise(
    client: &Client,
    table: &str,
    event: &str,
    now: DateTime<Utc>,
) -> Result<ArchiveSummary, ArchiveError> {
    let db = SeatsClient::new(client.clone(), table);
    let meta_item = db.get(&meta_key(event)).await.map_err(store)?;
    let meta = EventMeta::from_item(&meta_item.ok_or_else(|| ArchiveError::NoEvent(event.into()))?)
        .map_err(store)?;
    let holds = hold_items(client, table, event).await?;
    let mut sales = Vec::new();
    // Live: active and not run out. An active hold past its end holds no seat.
    let (mut live, mut unsold) = (0, 0);
    for item in &holds {
        let h = HoldItem::from_item(item).map_err(store)?;
        match h.state {
            StoredState::Active if h.until > now => live += 1,
            StoredState::Committed => sales.push(Sale {
                reservation_id: get_s(item, "pk")
                    .map_err(store)?
                    .trim_start_matches(&hold_key(event, ""))
                    .to_owned(),
                user_id: h.user,
                seats: h.seats,
                committed_at: h.committed_at,
                payment_intent_id: h.payment_intent_id,
            }),
            _ => unsold += 1,
        }
    }
    if live > 0 {
        return Err(ArchiveError::LiveHolds {
            event: event.into(),
            live,
        });
    }
    let row_keys: Vec<String> = meta.rows.iter().map(|r| row_key(event, &r.label)).collect();
    let mut rows: Vec<RowSummary> = meta
        .rows
        .iter()
        .map(|r| RowSummary {
            row: r.label.clone(),
            section: r.section.clone(),
            seats: r.seats,
            sold: vec![],
        })
        .collect();
    for item in db.get_many(&row_keys).await.map_err(store)? {
        let label = get_s(&item, "row").map_err(store)?;
        if let Some(&i) = meta.row_index.get(&label) {
            let mut sold: Vec<u32> = taken_of(&item)
                .into_iter()
                .filter(|(_, (_, until))| *until == SOLD)
                .map(|(k, _)| k)
                .collect();
            sold.sort_unstable();
            rows[i].sold = sold;
        }
    }
    sales.sort_by(|a, b| a.reservation_id.cmp(&b.reservation_id));
    let mut keys = row_keys;
    for h in &holds {
        keys.push(get_s(h, "pk").map_err(store)?);
    }
    keys.extend((0..SLOTS).map(|i| change_key(event, i)));
    keys.push(meta_key(event));
    Ok(ArchiveSummary {
        event_id: event.into(),
        name: meta.spec.name.clone(),
        seats: meta.rows.iter().map(|r| u64::from(r.seats)).sum(),
        sold: rows.iter().map(|r| r.sold.len() as u64).sum(),
        rows,
        sales,
        unsold_holds: unsold,
        keys,
    })
}

/// Delete a summarised event's items, 25 at a time: rows first (a hold's condition needs its row,
/// so none can start after), then holds and change notes, and the event item last, so that an
/// archive cut short is finished by running it again. The count deleted.
pub async fn delete(
    client: &Client,
    table: &str,
    summary: &ArchiveSummary,
) -> Result<usize, ArchiveError> {
    for chunk in summary.keys.chunks(WRITE_BATCH) {
        let mut pending: Vec<WriteRequest> = chunk
            .iter()
            .map(|k| {
                let d = DeleteRequest::builder()
                    .key("pk", AttributeValue::S(k.clone()))
                    .build()
                    .map_err(store)?;
                Ok(WriteRequest::builder().delete_request(d).build())
            })
            .collect::<Result<_, ArchiveError>>()?;
        for attempt in 0..8u32 {
            if pending.is_empty() {
                break;
            }
            if attempt > 0 {
                UNPROCESSED_BACKOFF.sleep(attempt - 1).await;
            }
            let out = client
                .batch_write_item()
                .request_items(table, std::mem::take(&mut pending))
                .send()
                .await
                .map_err(|e| store(sdk_error(e)))?;
            pending = out
                .unprocessed_items
                .and_then(|mut u| u.remove(table))
                .unwrap_or_default();
        }
        if !pending.is_empty() {
            return Err(store("deletes throttled; run the archive again to finish"));
        }
    }
    Ok(summary.keys.len())
}
