//! The seat engine on a DynamoDB table shared by any number of inventory processes. Every seat
//! change is a conditional write — a hold in one row is its intent (the hold item) and then one
//! conditional `UpdateItem` of the row; a hold across rows, a commit and a release are one
//! `TransactWriteItems` of their rows and hold item — so the table, not any process, decides who
//! has a seat. Layout and costs:
//! [`layout`] and docs/inventory.md.

pub mod archive;
mod client;
mod hold;
mod intent;
pub mod layout;
mod notes;
mod reads;
mod sale;
pub mod seed;
mod snapshot;
mod view;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};

use self::client::SeatsClient;
use self::layout::*;
use self::notes::Snapshots;
use self::view::{EventView, Views};
use super::engine::{HoldResult, HoldState};
use super::seats::{EventCounts, SeatEngine};
use super::{
    CommitOutcome, CommitRequest, HoldOutcome, HoldRequest, InventoryError, ReleaseOutcome,
    ReleaseRequest, Seat, SeatMap,
};

/// Tries of one call when other processes keep winning the same seats or changing the hold.
const ATTEMPTS: usize = 6;

pub struct DynamoSeats {
    db: SeatsClient,
    views: Views,
    /// Which events to keep fresh, and this process's changes to announce (see [`snapshot`]).
    snapshots: Snapshots,
    /// One load of an event's rows at a time: a burst that finds no picture reads the table once,
    /// not once per request. Only the reads wait on it.
    loading: tokio::sync::Mutex<()>,
}

fn build_err(e: impl std::fmt::Display) -> InventoryError {
    InventoryError::Internal(e.to_string())
}

fn hold_result(outcome: HoldOutcome, state: Option<HoldState>) -> HoldResult {
    HoldResult { outcome, state }
}

fn invalid(field: &str, message: String) -> HoldResult {
    hold_result(
        HoldOutcome::Invalid {
            field: field.into(),
            message,
        },
        None,
    )
}

/// Seats grouped by row, each row's seats in order.
fn by_row(seats: &[(usize, u32)]) -> BTreeMap<usize, Vec<u32>> {
    let mut rows: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
    for &(r, k) in seats {
        rows.entry(r).or_default().push(k);
    }
    rows
}

impl DynamoSeats {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            db: SeatsClient::new(client, table),
            views: Views::default(),
            snapshots: Snapshots::default(),
            loading: tokio::sync::Mutex::new(()),
        }
    }

    pub fn table(&self) -> &str {
        &self.db.table
    }

    /// The event's catalogue entry: cached, or read with all its rows.
    async fn meta(&self, event: &str) -> Result<Option<Arc<EventMeta>>, InventoryError> {
        if let Some(m) = self.views.fresh_meta(event) {
            return Ok(Some(m));
        }
        let _one = self.loading.lock().await;
        if let Some(m) = self.views.fresh_meta(event) {
            return Ok(Some(m));
        }
        let Some(item) = self.db.get(&meta_key(event)).await? else {
            self.views.forget(event);
            return Ok(None);
        };
        let meta = Arc::new(EventMeta::from_item(&item)?);
        // The rows are kept fresh by the snapshot's refresh, not read again with the entry.
        if self.views.renew_meta(event, meta.clone()) {
            return Ok(Some(meta));
        }
        let rows = self.read_rows(event, &meta, None).await?;
        let now = Instant::now();
        self.views.put(
            event,
            EventView {
                rows: {
                    let mut all = vec![Taken::new(); meta.rows.len()];
                    for (i, t) in rows {
                        all[i] = t;
                    }
                    all
                },
                meta: meta.clone(),
                meta_read: now,
                rows_read: now,
                sold_out: None,
            },
        );
        Ok(Some(meta))
    }

    /// Rows (all, or those listed) as the table has them now.
    async fn read_rows(
        &self,
        event: &str,
        meta: &EventMeta,
        only: Option<&[usize]>,
    ) -> Result<Vec<(usize, Taken)>, InventoryError> {
        let idx: Vec<usize> = match only {
            Some(o) => o.to_vec(),
            None => (0..meta.rows.len()).collect(),
        };
        let keys: Vec<String> = idx
            .iter()
            .map(|&i| row_key(event, &meta.rows[i].label))
            .collect();
        let items = self.db.get_many(&keys).await?;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let label = get_s(&item, "row")?;
            if let Some(&i) = meta.row_index.get(&label) {
                out.push((i, taken_of(&item)));
            }
        }
        Ok(out)
    }

    /// Read every row again, unless another call did while this one waited for its turn.
    async fn reread_all(&self, event: &str, meta: &EventMeta) -> Result<(), InventoryError> {
        let asked = Instant::now();
        let _one = self.loading.lock().await;
        if self.views.rows_read(event).is_some_and(|at| at >= asked) {
            return Ok(());
        }
        let rows = self.read_rows(event, meta, None).await?;
        self.views.refresh_rows(event, rows);
        // Whoever waited during this read takes its result rather than reading again.
        self.views.touch_rows(event, Instant::now());
        Ok(())
    }

    async fn hold_item(&self, event: &str, rsv: &str) -> Result<Option<HoldItem>, InventoryError> {
        self.db
            .get(&hold_key(event, rsv))
            .await?
            .map(|i| HoldItem::from_item(&i))
            .transpose()
    }

    /// The answer to a repeated hold: the same seats, whatever became of the hold since.
    fn repeat(meta: Option<&EventMeta>, h: &HoldItem, now: DateTime<Utc>) -> HoldResult {
        let seats = meta.map(|m| m.seats_of(&h.seats)).unwrap_or_default();
        let gone = |state| {
            hold_result(
                HoldOutcome::Unavailable {
                    message: "the hold is no longer active".into(),
                    seat_ids: vec![],
                },
                Some(state),
            )
        };
        match h.state {
            StoredState::Committed => hold_result(
                HoldOutcome::Held {
                    seats,
                    hold_expires_at: h.until,
                },
                Some(HoldState::Committed),
            ),
            StoredState::Released => gone(HoldState::Released),
            StoredState::Active if h.until <= now => gone(HoldState::Expired),
            StoredState::Active => hold_result(
                HoldOutcome::Held {
                    seats,
                    hold_expires_at: h.until,
                },
                Some(HoldState::Active),
            ),
        }
    }
}

#[async_trait]
impl SeatEngine for DynamoSeats {
    fn kind(&self) -> &'static str {
        "dynamodb"
    }

    async fn reserve(
        &self,
        req: &HoldRequest,
        now: DateTime<Utc>,
    ) -> Result<HoldResult, InventoryError> {
        self.snapshots.watch(&req.event_id);
        let _reserving = self.snapshots.reserving(&req.reservation_id);
        let meta = self.meta(&req.event_id).await?;
        let Some(meta) = meta else {
            return Ok(invalid(
                "event_id",
                format!("no event {} in the inventory", req.event_id),
            ));
        };
        let qty = req.qty as usize;
        let bad = if qty == 0 || (!req.seat_ids.is_empty() && req.seat_ids.len() != qty) {
            Some(invalid(
                "qty",
                "qty must be positive and match seat_ids".into(),
            ))
        } else if req.hold_expires_at <= now {
            Some(invalid("hold_expires_at", "must be in the future".into()))
        } else {
            None
        };
        // A repeat is answered as the first call was, even if it no longer reads as valid (a
        // retry after the hold ran out). A valid new hold finds a repeat by its transaction.
        if let Some(bad) = bad {
            return Ok(
                match self.hold_item(&req.event_id, &req.reservation_id).await? {
                    Some(h) => self
                        .settled(&meta, &req.reservation_id, &h, now)
                        .await?
                        .unwrap_or(bad),
                    None => bad,
                },
            );
        }
        let held = if req.seat_ids.is_empty() {
            self.reserve_best(&meta, req, now).await?
        } else {
            self.reserve_named(&meta, req, now).await?
        };
        if let HoldOutcome::Held { seats, .. } = &held.outcome {
            self.changed(&req.event_id, seats);
        }
        Ok(held)
    }

    async fn commit(
        &self,
        req: &CommitRequest,
        now: DateTime<Utc>,
    ) -> Result<(CommitOutcome, Vec<Seat>), InventoryError> {
        self.snapshots.watch(&req.event_id);
        let out = self.commit_hold(req, now).await?;
        if let CommitOutcome::Committed { .. } = out.0 {
            self.changed(&req.event_id, &out.1);
        }
        Ok(out)
    }

    async fn release(
        &self,
        req: &ReleaseRequest,
        now: DateTime<Utc>,
    ) -> Result<(ReleaseOutcome, Vec<Seat>, DateTime<Utc>), InventoryError> {
        self.snapshots.watch(&req.event_id);
        let out = self.release_hold(req, now).await?;
        if let ReleaseOutcome::Released = out.0 {
            self.changed(&req.event_id, &out.1);
        }
        Ok(out)
    }

    async fn counts(
        &self,
        event_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<EventCounts>, InventoryError> {
        self.in_snapshot(event_id, |meta, rows| reads::count_seats(meta, rows, now))
            .await
    }

    async fn available(
        &self,
        event_id: &str,
        seat_ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<Option<(Vec<Seat>, Vec<String>)>, InventoryError> {
        self.in_snapshot(event_id, |meta, rows| {
            reads::free_seats(meta, rows, seat_ids, now)
        })
        .await
    }

    async fn seat_page(
        &self,
        event_id: &str,
        first_row: usize,
        max_seats: usize,
        now: DateTime<Utc>,
    ) -> Result<Option<SeatMap>, InventoryError> {
        let page = (first_row, max_seats);
        self.in_snapshot(event_id, |meta, rows| reads::page(meta, rows, page, now))
            .await
    }
}
