//! Each process's per-event snapshot of seat statuses (the rows picture of [`super::view`]) kept
//! fresh at about once a second without reading the hall: the seat map, status and availability
//! are served from it, so none of them reads the table.
//!
//! - This process's own holds, commits and releases change the picture at once (the hold path
//!   marks it) and are announced to the others at most once a second as a *change note*: the row
//!   indices written, appended to one of [`SLOTS`] small items `EVT#{event}#CHG#{slot}` (`seq`, and
//!   `log`: the last [`LOG_LEN`] notes by seq). One write per process and event per second at most,
//!   whatever the hold rate — never a counter written by every hold.
//! - Every second each process reads the [`SLOTS`] note items (the cheap version check) and re-reads
//!   only the rows named by notes it has not seen, at most [`ROW_BUDGET`] a second; a note it missed
//!   (more than [`LOG_LEN`] behind) queues every row. Every [`FULL_EVERY`] all rows are queued too,
//!   for a process that died between its write and its note.
//!
//! Cost and freshness: docs/inventory.md ("The seat map and its snapshot").

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;

use super::client::{sdk_error, unavailable};
use super::layout::*;
use super::DynamoSeats;
use crate::inventory::{InventoryError, Seat};

/// How often the snapshot of each watched event is brought up to date.
pub const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// An event nobody asked about for this long is no longer refreshed (its picture is dropped).
pub const WATCH_IDLE: Duration = Duration::from_secs(60);
/// Every row is queued for a re-read this often, whatever the notes say.
pub const FULL_EVERY: Duration = Duration::from_secs(60);
/// Rows re-read per event and refresh at most (one `BatchGetItem` of 100, twice).
pub const ROW_BUDGET: usize = 200;
/// Note items per event: processes spread their notes over them (a shared slot is still correct).
pub const SLOTS: usize = 4;
/// Notes kept per slot item.
pub const LOG_LEN: i64 = 4;
/// A note naming more rows than this says "every row" instead (keeps the item under 1 KB).
const MAX_NOTE_ROWS: usize = 100;
const ALL: &str = "*";

pub fn change_key(event: &str, slot: usize) -> String {
    format!("EVT#{event}#CHG#{slot}")
}

/// One event's bookkeeping for its snapshot.
struct Watch {
    used: Instant,
    /// Rows this process changed since its last note.
    mine: BTreeSet<usize>,
    /// When this process last changed each row (a re-read in flight must not undo it).
    touched: HashMap<usize, Instant>,
    /// Rows other processes changed, to re-read.
    queue: BTreeSet<usize>,
    /// The last seq seen of each slot.
    seen: [Option<i64>; SLOTS],
    queued_all: Instant,
}

impl Watch {
    fn new(now: Instant) -> Self {
        Self {
            used: now,
            mine: BTreeSet::new(),
            touched: HashMap::new(),
            queue: BTreeSet::new(),
            seen: [None; SLOTS],
            queued_all: now,
        }
    }
}

/// The watched events of one process and the slot its notes go to.
pub struct Snapshots {
    slot: usize,
    events: Mutex<HashMap<String, Watch>>,
}

impl Default for Snapshots {
    fn default() -> Self {
        Self {
            slot: rand::random_range(0..SLOTS),
            events: Mutex::new(HashMap::new()),
        }
    }
}

/// A note as stored: the rows, or every row.
enum Note {
    Rows(Vec<usize>),
    All,
}

fn parse_note(v: &AttributeValue) -> Note {
    match v {
        AttributeValue::L(l) => Note::Rows(
            l.iter()
                .filter_map(|n| n.as_n().ok()?.parse().ok())
                .collect(),
        ),
        _ => Note::All,
    }
}

impl Snapshots {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Watch>> {
        self.events.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The event is in use: keep its snapshot fresh.
    pub fn watch(&self, event: &str) {
        let now = Instant::now();
        self.lock()
            .entry(event.to_owned())
            .or_insert_with(|| Watch::new(now))
            .used = now;
    }

    /// Rows this process just wrote (already in its picture): announce them at the next refresh.
    pub fn mine(&self, event: &str, rows: impl IntoIterator<Item = usize>) {
        let now = Instant::now();
        if let Some(w) = self.lock().get_mut(event) {
            for r in rows {
                w.mine.insert(r);
                w.touched.insert(r, now);
            }
        }
    }

    /// Events in use, after dropping (and `forget`ting, under the lock, so that no call that
    /// just watched one loses its picture) those idle past [`WATCH_IDLE`].
    fn watched(&self, forget: impl Fn(&str)) -> Vec<String> {
        let mut events = self.lock();
        events.retain(|e, w| {
            let keep = w.used.elapsed() < WATCH_IDLE;
            if !keep {
                forget(e);
            }
            keep
        });
        events.keys().cloned().collect()
    }

    /// Take the notes read: queue the rows of those not seen yet (every row if one was missed).
    fn take_notes(&self, event: &str, rows: usize, notes: Vec<(usize, i64, Item)>) {
        let mut events = self.lock();
        let Some(w) = events.get_mut(event) else {
            return;
        };
        for (slot, seq, item) in notes {
            let log = item.get("log").and_then(|l| l.as_m().ok());
            let from = match w.seen[slot] {
                Some(seen) if seen == seq => continue,
                // First sight: the notes still logged may postdate this process's first read.
                None => seq - LOG_LEN + 1,
                Some(seen) if seen < seq => seen + 1,
                // The item was deleted and written again (an archive): trust nothing.
                Some(_) => i64::MIN,
            };
            let mut all = from == i64::MIN || (w.seen[slot].is_some() && seq - from >= LOG_LEN);
            for s in from.max(1)..=seq {
                if all {
                    break;
                }
                match log.and_then(|l| l.get(&s.to_string())).map(parse_note) {
                    Some(Note::Rows(r)) => w.queue.extend(r.into_iter().filter(|&i| i < rows)),
                    Some(Note::All) => all = true,
                    None if w.seen[slot].is_some() => all = true,
                    None => {}
                }
            }
            if all {
                w.queue.extend(0..rows);
            }
            w.seen[slot] = Some(seq);
        }
        if w.queued_all.elapsed() >= FULL_EVERY {
            w.queue.extend(0..rows);
            w.queued_all = Instant::now();
        }
    }

    fn next_batch(&self, event: &str) -> Vec<usize> {
        let mut events = self.lock();
        let Some(w) = events.get_mut(event) else {
            return vec![];
        };
        let batch: Vec<usize> = w.queue.iter().take(ROW_BUDGET).copied().collect();
        for r in &batch {
            w.queue.remove(r);
        }
        batch
    }

    /// Rows of `batch` this process wrote since `since`: the re-read may predate the write.
    fn written_since(&self, event: &str, batch: &[usize], since: Instant) -> Vec<usize> {
        let mut events = self.lock();
        let Some(w) = events.get_mut(event) else {
            return vec![];
        };
        let again: Vec<usize> = batch
            .iter()
            .copied()
            .filter(|r| w.touched.get(r).is_some_and(|&at| at >= since))
            .collect();
        w.touched.retain(|_, at| *at >= since);
        again
    }

    /// This process's rows to announce, and the slot's seq they follow.
    fn take_mine(&self, event: &str) -> Option<(Vec<usize>, Option<i64>)> {
        let mut events = self.lock();
        let w = events.get_mut(event)?;
        if w.mine.is_empty() {
            return None;
        }
        Some((
            std::mem::take(&mut w.mine).into_iter().collect(),
            w.seen[self.slot],
        ))
    }

    fn noted(&self, event: &str, rows: Vec<usize>, seq: Option<i64>) {
        if let Some(w) = self.lock().get_mut(event) {
            match seq {
                Some(s) => w.seen[self.slot] = Some(s),
                // Another process noted first: try again next time, after reading its note.
                None => w.mine.extend(rows),
            }
        }
    }
}

impl DynamoSeats {
    /// Refresh the snapshots of the watched events every [`REFRESH_EVERY`] for as long as the
    /// engine is in use. A failed refresh is tried again at the next tick.
    pub fn spawn_refresh(self: &Arc<Self>) {
        let engine: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(REFRESH_EVERY).await;
                let Some(e) = engine.upgrade() else { return };
                e.refresh_watched().await;
            }
        });
    }

    /// One refresh of every watched event (the background task's tick; tests call it directly).
    pub async fn refresh_watched(&self) {
        for e in self.snapshots.watched(|e| self.views.forget(e)) {
            if let Err(err) = self.refresh_event(&e).await {
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
        if self.meta(event).await?.is_none() {
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

    async fn refresh_event(&self, event: &str) -> Result<(), InventoryError> {
        let Some(meta) = self.meta(event).await? else {
            return Ok(());
        };
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
        if !batch.is_empty() {
            let started = Instant::now();
            let rows = self.read_rows(event, &meta, Some(&batch)).await?;
            self.views.refresh_rows(event, rows);
            let again = self.snapshots.written_since(event, &batch, started);
            if !again.is_empty() {
                let rows = self.read_rows(event, &meta, Some(&again)).await?;
                self.views.refresh_rows(event, rows);
            }
        }
        if let Some((rows, prev)) = self.snapshots.take_mine(event) {
            let seq = self.note(event, &rows, prev).await;
            let seq = match seq {
                Ok(s) => s,
                Err(e) => {
                    self.snapshots.noted(event, rows, None);
                    return Err(e);
                }
            };
            self.snapshots.noted(event, rows, seq);
        }
        Ok(())
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
        let u = match prev {
            None => u
                .update_expression("SET seq = :next, #log = :log")
                .condition_expression("attribute_not_exists(pk)")
                .expression_attribute_names("#log", "log")
                .expression_attribute_values(
                    ":log",
                    AttributeValue::M([(next.to_string(), note)].into()),
                ),
            Some(p) => u
                .update_expression("SET seq = :next, #log.#n = :note REMOVE #log.#o")
                .condition_expression("seq = :prev")
                .expression_attribute_names("#log", "log")
                .expression_attribute_names("#n", next.to_string())
                .expression_attribute_names("#o", (next - LOG_LEN).to_string())
                .expression_attribute_values(":note", note)
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
