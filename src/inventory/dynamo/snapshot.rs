//! Each process's per-event snapshot of seat statuses (the rows picture of [`super::view`]) kept
//! fresh at about once a second without reading the hall: the seat map, status and availability
//! are served from it, so none of them reads the table.
//!
//! - This process's own holds, commits and releases change the picture at once (the hold path
//!   marks it) and are announced to the others at most once a second as a *change note*: the row
//!   indices written, appended to one of [`SLOTS`] small items `EVT#{event}#CHG#{slot}` (`seq`,
//!   and `n{seq}`: the last [`LOG_LEN`] notes). One write per process and event per second at
//!   most, whatever the hold rate — never a counter written by every hold.
//! - Every second each process reads the [`SLOTS`] note items (the cheap version check) and
//!   re-reads only the rows named by notes it has not seen, at most
//!   [`super::notes::ROW_BUDGET`] a second; a note it missed (more than [`LOG_LEN`] behind)
//!   queues every row, and so does every [`super::notes::FULL_EVERY`], for a process that died
//!   between its write and its note. The bookkeeping: [`super::notes`].
//!
//! Cost and freshness: docs/inventory.md ("The seat map and its snapshot").

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;

use super::client::{sdk_error, unavailable};
use super::layout::*;
use super::notes::{change_key, note_attr, ALL, LOG_LEN, MAX_NOTE_ROWS, SLOTS};
use super::DynamoSeats;
use crate::inventory::{InventoryError, Seat};

/// The background task's tick: notes are read every [`super::notes::REFRESH_EVERY`], and a change is noted
/// within a tick of it (rather than up to a second later).
pub const TICK: Duration = Duration::from_millis(250);
impl DynamoSeats {
    /// Refresh the snapshots of the watched events (notes read every [`super::notes::REFRESH_EVERY`], own notes
    /// written within a [`TICK`]) for as long as the engine is in use. A failed refresh is tried
    /// again at the next tick.
    pub fn spawn_refresh(self: &Arc<Self>) {
        let engine: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(TICK).await;
                let Some(e) = engine.upgrade() else { return };
                e.refresh(false).await;
            }
        });
    }

    /// One whole refresh of every watched event now: the notes read, then this process's written.
    pub async fn refresh_watched(&self) {
        self.refresh(true).await;
    }

    /// What is due of the refresh (`all`: everything, due or not).
    async fn refresh(&self, all: bool) {
        for e in self.snapshots.watched(|e| self.views.forget(e)) {
            if let Err(err) = self.refresh_event(&e, all).await {
                tracing::warn!(event = %e, error = %err, "seat snapshot refresh failed");
            }
        }
    }

    /// `f` of the event's snapshot (the seat map, status, availability: no read of the rows).
    /// `None`: no such event.
    pub(super) async fn in_snapshot<R>(
        &self,
        event: &str,
        f: impl FnOnce(&EventMeta, &[Taken]) -> R,
    ) -> Result<Option<R>, InventoryError> {
        self.snapshots.watch(event);
        // A picture there is used as it is: the refresh reads the event item again, not the call.
        let pictured = self.views.rows_read(event).is_some();
        if !pictured && self.meta(event).await?.is_none() {
            return Ok(None);
        }
        // Dropped meanwhile (unreachable while watched): not "no such event".
        self.views
            .read(event, f)
            .map(Some)
            .ok_or_else(|| unavailable("the event's seats are being loaded; try again"))
    }

    /// Seats this process just wrote (its picture has them): announce their rows.
    pub(super) fn changed(&self, event: &str, seats: &[Seat]) {
        let rows: Vec<usize> = self
            .views
            .read(event, |meta, _| {
                seats
                    .iter()
                    .filter_map(|s| meta.row_index.get(&s.row).copied())
                    .collect()
            })
            .unwrap_or_default();
        self.snapshots.mine(event, rows);
    }

    async fn refresh_event(&self, event: &str, all: bool) -> Result<(), InventoryError> {
        let Some(meta) = self.meta(event).await? else {
            return Ok(());
        };
        if all || self.snapshots.read_due(event) {
            self.read_notes(event, &meta).await?;
        }
        if all || self.snapshots.note_due(event) {
            self.write_note(event).await?;
        }
        Ok(())
    }

    /// The cheap version check: the note items, then up to [`super::notes::ROW_BUDGET`] of the
    /// rows other processes changed.
    async fn read_notes(&self, event: &str, meta: &EventMeta) -> Result<(), InventoryError> {
        let keys: Vec<String> = (0..SLOTS).map(|i| change_key(event, i)).collect();
        let mut notes = Vec::with_capacity(SLOTS);
        for item in self.db.get_many(&keys).await? {
            let pk = get_s(&item, "pk")?;
            let slot = keys.iter().position(|k| *k == pk);
            if let (Some(slot), Some(seq)) = (slot, opt_n(&item, "seq")) {
                notes.push((slot, seq, item));
            }
        }
        self.snapshots.take_notes(event, meta.rows.len(), notes);
        let batch = self.snapshots.next_batch(event);
        if batch.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let rows = self.read_rows(event, meta, Some(&batch)).await?;
        let keep = |h: &str| self.snapshots.is_reserving(h);
        self.views.refresh_rows_keeping(event, rows, keep);
        let again = self.snapshots.written_since(event, &batch, started);
        if !again.is_empty() {
            let rows = self.read_rows(event, meta, Some(&again)).await?;
            self.views.refresh_rows_keeping(event, rows, keep);
        }
        Ok(())
    }

    /// This process's note of the rows it changed, if any.
    async fn write_note(&self, event: &str) -> Result<(), InventoryError> {
        let Some((rows, prev)) = self.snapshots.take_mine(event) else {
            return Ok(());
        };
        match self.note(event, &rows, prev).await {
            Ok(seq) => {
                self.snapshots.noted(event, rows, seq);
                Ok(())
            }
            Err(e) => {
                self.snapshots.noted(event, rows, None);
                Err(e)
            }
        }
    }

    /// Append a note of `rows` to this process's slot after seq `prev`: the new seq, or `None`
    /// when the slot moved on meanwhile.
    async fn note(
        &self,
        event: &str,
        rows: &[usize],
        prev: Option<i64>,
    ) -> Result<Option<i64>, InventoryError> {
        let next = prev.unwrap_or(0) + 1;
        let note = if rows.len() > MAX_NOTE_ROWS {
            s(ALL)
        } else {
            AttributeValue::L(rows.iter().map(n).collect())
        };
        let u = self
            .db
            .client
            .update_item()
            .table_name(&self.db.table)
            .key("pk", s(change_key(event, self.snapshots.slot)))
            .expression_attribute_values(":next", n(next));
        let u = u
            .expression_attribute_names("#n", note_attr(next))
            .expression_attribute_values(":note", note);
        let u = match prev {
            None => u
                .update_expression("SET seq = :next, #n = :note")
                .condition_expression("attribute_not_exists(pk)"),
            Some(p) => u
                .update_expression("SET seq = :next, #n = :note REMOVE #o")
                .condition_expression("seq = :prev")
                .expression_attribute_names("#o", note_attr(next - LOG_LEN))
                .expression_attribute_values(":prev", n(p)),
        };
        let _permit = self
            .db
            .in_flight
            .acquire()
            .await
            .map_err(|_| unavailable("seats client closed"))?;
        match u.send().await {
            Ok(_) => Ok(Some(next)),
            Err(SdkError::ServiceError(se)) if se.err().is_conditional_check_failed_exception() => {
                Ok(None)
            }
            Err(e) => Err(sdk_error(e)),
        }
    }
}
