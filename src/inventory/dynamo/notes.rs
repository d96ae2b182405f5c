//! The bookkeeping of each process's seat snapshots (no I/O): which events are watched, the rows
//! this process changed and must announce, and the change notes of other processes read so far.
//! The refresh that reads and writes them: [`super::snapshot`].

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;

use super::layout::Item;
#[cfg(test)]
use super::layout::{n, s};

/// How often each process reads the change notes of a watched event, and writes its own at most.
pub const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// An event nobody asked about for this long is no longer refreshed (its picture is dropped).
pub const WATCH_IDLE: Duration = Duration::from_secs(60);
/// Every row is queued for a re-read this often, whatever the notes say.
pub const FULL_EVERY: Duration = Duration::from_secs(60);
/// Rows re-read per event and refresh at most (one `BatchGetItem`).
pub const ROW_BUDGET: usize = 100;
/// Note items per event: processes spread their notes over them (a shared slot is still correct).
pub const SLOTS: usize = 4;
/// Notes kept per slot item.
pub const LOG_LEN: i64 = 4;
/// A note naming more rows than this says "every row" instead (keeps the item under 1 KB).
pub(super) const MAX_NOTE_ROWS: usize = 100;
pub(super) const ALL: &str = "*";

/// The attribute of note `seq` in its slot item.
pub fn note_attr(seq: i64) -> String {
    format!("n{seq}")
}

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
    /// When the notes were last read and this process's last note written (`None`: due now).
    read_at: Option<Instant>,
    noted_at: Option<Instant>,
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
            read_at: None,
            noted_at: None,
        }
    }
}

/// The watched events of one process and the slot its notes go to.
pub struct Snapshots {
    pub(super) slot: usize,
    events: Mutex<HashMap<String, Watch>>,
    /// Reservations this process is holding seats for right now (their picks are marked before
    /// their write, and a re-read must keep them).
    reserving: Mutex<HashMap<String, usize>>,
}

impl Default for Snapshots {
    fn default() -> Self {
        Self {
            slot: rand::random_range(0..SLOTS),
            events: Mutex::new(HashMap::new()),
            reserving: Mutex::new(HashMap::new()),
        }
    }
}

/// A hold in flight in this process, until dropped.
pub(super) struct Reserving<'a> {
    snapshots: &'a Snapshots,
    rsv: String,
}

impl Drop for Reserving<'_> {
    fn drop(&mut self) {
        let mut r = self
            .snapshots
            .reserving
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = r.get_mut(&self.rsv) {
            *n -= 1;
            if *n == 0 {
                r.remove(&self.rsv);
            }
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

    /// A hold of `rsv` starts; the guard ends it.
    pub(super) fn reserving<'a>(&'a self, rsv: &str) -> Reserving<'a> {
        let mut r = self.reserving.lock().unwrap_or_else(|e| e.into_inner());
        *r.entry(rsv.to_owned()).or_default() += 1;
        Reserving {
            snapshots: self,
            rsv: rsv.to_owned(),
        }
    }

    pub(super) fn is_reserving(&self, rsv: &str) -> bool {
        let r = self.reserving.lock().unwrap_or_else(|e| e.into_inner());
        r.contains_key(rsv)
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
    pub(super) fn watched(&self, forget: impl Fn(&str)) -> Vec<String> {
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
    pub(super) fn take_notes(&self, event: &str, rows: usize, notes: Vec<(usize, i64, Item)>) {
        let mut events = self.lock();
        let Some(w) = events.get_mut(event) else {
            return;
        };
        for (slot, seq, item) in notes {
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
                match item.get(&note_attr(s)).map(parse_note) {
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

    pub(super) fn next_batch(&self, event: &str) -> Vec<usize> {
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
    pub(super) fn written_since(&self, event: &str, batch: &[usize], since: Instant) -> Vec<usize> {
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
    /// The notes are due for a read (last read [`REFRESH_EVERY`] ago); counted as read.
    pub(super) fn read_due(&self, event: &str) -> bool {
        let mut events = self.lock();
        let Some(w) = events.get_mut(event) else {
            return false;
        };
        let due = w.read_at.is_none_or(|at| at.elapsed() >= REFRESH_EVERY);
        if due {
            w.read_at = Some(Instant::now());
        }
        due
    }

    /// This process has rows to announce and wrote no note for [`REFRESH_EVERY`].
    pub(super) fn note_due(&self, event: &str) -> bool {
        self.lock().get(event).is_some_and(|w| {
            !w.mine.is_empty() && w.noted_at.is_none_or(|at| at.elapsed() >= REFRESH_EVERY)
        })
    }

    pub(super) fn take_mine(&self, event: &str) -> Option<(Vec<usize>, Option<i64>)> {
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

    pub(super) fn noted(&self, event: &str, rows: Vec<usize>, seq: Option<i64>) {
        if let Some(w) = self.lock().get_mut(event) {
            match seq {
                Some(s) => {
                    w.seen[self.slot] = Some(s);
                    w.noted_at = Some(Instant::now());
                }
                // Another process noted first: read its note at the next tick, then try again.
                None => {
                    w.mine.extend(rows);
                    w.read_at = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note_item(seq: i64, notes: &[(i64, Option<&[usize]>)]) -> Item {
        let mut item = Item::from([("seq".into(), n(seq))]);
        for (at, rows) in notes {
            let v = match rows {
                Some(r) => AttributeValue::L(r.iter().map(n).collect()),
                None => s(ALL),
            };
            item.insert(note_attr(*at), v);
        }
        item
    }

    fn queued(snap: &Snapshots) -> Vec<usize> {
        let mut q = snap.next_batch("e");
        q.sort_unstable();
        q
    }

    #[test]
    fn notes_queue_the_rows_not_seen_and_a_gap_queues_every_row() {
        let snap = Snapshots::default();
        snap.watch("e");
        // First sight: the logged notes may postdate the first read.
        snap.take_notes(
            "e",
            10,
            vec![(0, 2, note_item(2, &[(1, Some(&[1])), (2, Some(&[4]))]))],
        );
        assert_eq!(queued(&snap), vec![1, 4]);
        snap.take_notes("e", 10, vec![(0, 2, note_item(2, &[(2, Some(&[4]))]))]);
        assert_eq!(queued(&snap), Vec::<usize>::new(), "seen already");
        snap.take_notes(
            "e",
            10,
            vec![(0, 4, note_item(4, &[(3, Some(&[7])), (4, Some(&[8, 99]))]))],
        );
        assert_eq!(
            queued(&snap),
            vec![7, 8],
            "both new notes; rows the hall lacks dropped"
        );
        // Five notes on: one is gone from the log, so every row.
        snap.take_notes("e", 10, vec![(0, 9, note_item(9, &[(9, Some(&[1]))]))]);
        assert_eq!(queued(&snap), (0..10).collect::<Vec<_>>());
        // A note of "every row", and a slot that went back (deleted and written again).
        snap.take_notes("e", 3, vec![(1, 1, note_item(1, &[(1, None)]))]);
        assert_eq!(
            queued(&snap),
            vec![0, 1, 2],
            "a logged note counts at first sight"
        );
        snap.take_notes("e", 3, vec![(1, 2, note_item(2, &[(2, None)]))]);
        assert_eq!(queued(&snap), vec![0, 1, 2]);
        snap.take_notes("e", 3, vec![(0, 1, note_item(1, &[(1, Some(&[0]))]))]);
        assert_eq!(queued(&snap), vec![0, 1, 2]);
    }

    #[test]
    fn own_rows_are_announced_once_and_a_lost_append_keeps_them() {
        let snap = Snapshots::default();
        snap.mine("e", [1]);
        assert!(
            snap.take_mine("e").is_none(),
            "an event not watched keeps nothing"
        );
        snap.watch("e");
        snap.mine("e", [3, 1, 3]);
        let (rows, prev) = snap.take_mine("e").unwrap();
        assert_eq!((rows.clone(), prev), (vec![1, 3], None));
        snap.noted("e", rows, None);
        let (rows, _) = snap.take_mine("e").unwrap();
        snap.noted("e", rows, Some(1));
        assert!(snap.take_mine("e").is_none());
        snap.mine("e", [2]);
        assert_eq!(
            snap.take_mine("e").unwrap().1,
            Some(1),
            "after the slot's last seq"
        );
    }
}
