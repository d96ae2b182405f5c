//! Each process's picture of an event's rows, so that best-available picks seats without reading
//! the hall. It may be stale — the conditional writes decide, and a row that refused a write is
//! read again — but it never makes a seat taken or free: only the table does that.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::layout::{is_free, EventMeta, Taken};

/// How long the event's catalogue entry is trusted: a seed that adds seats shows within this.
pub const META_TTL: Duration = Duration::from_secs(10);
/// A "sold out" picture older than this is read again before the answer is given.
pub const SOLD_OUT_RECHECK: Duration = Duration::from_secs(1);

pub struct EventView {
    pub meta: Arc<EventMeta>,
    pub rows: Vec<Taken>,
    pub meta_read: Instant,
    pub rows_read: Instant,
    /// A full read found no `qty` free seats at this instant (the smallest such `qty`).
    pub sold_out: Option<(Instant, usize)>,
}

#[derive(Default)]
pub struct Views {
    events: Mutex<HashMap<String, EventView>>,
}

/// Seats as `(row index, seat number)`.
pub type Picked = Vec<(usize, u32)>;

impl Views {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, EventView>> {
        self.events.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached catalogue entry, if read within [`META_TTL`].
    pub fn fresh_meta(&self, event: &str) -> Option<Arc<EventMeta>> {
        self.lock()
            .get(event)
            .filter(|v| v.meta_read.elapsed() < META_TTL)
            .map(|v| v.meta.clone())
    }

    /// When every row was last read.
    pub fn rows_read(&self, event: &str) -> Option<Instant> {
        self.lock().get(event).map(|v| v.rows_read)
    }

    /// A full read less than [`SOLD_OUT_RECHECK`] ago found fewer than `qty` seats.
    pub fn sold_out_recently(&self, event: &str, qty: usize) -> bool {
        self.lock()
            .get(event)
            .and_then(|v| v.sold_out)
            .is_some_and(|(at, q)| at.elapsed() < SOLD_OUT_RECHECK && qty >= q)
    }

    pub fn mark_sold_out(&self, event: &str, qty: usize) {
        if let Some(v) = self.lock().get_mut(event) {
            let q = match v.sold_out {
                Some((at, q)) if at.elapsed() < SOLD_OUT_RECHECK => q.min(qty),
                _ => qty,
            };
            v.sold_out = Some((Instant::now(), q));
        }
    }

    pub fn put(&self, event: &str, view: EventView) {
        self.lock().insert(event.to_owned(), view);
    }

    pub fn forget(&self, event: &str) {
        self.lock().remove(event);
    }

    /// Replace rows just read from the table.
    pub fn refresh_rows(&self, event: &str, rows: Vec<(usize, Taken)>) {
        if let Some(v) = self.lock().get_mut(event) {
            v.sold_out = None;
            for (i, t) in rows {
                if let Some(r) = v.rows.get_mut(i) {
                    *r = t;
                }
            }
        }
    }

    pub fn touch_rows(&self, event: &str, at: Instant) {
        if let Some(v) = self.lock().get_mut(event) {
            v.rows_read = at;
        }
    }

    /// Record seats as held by `holder` until `until` (µs), or free them (`None`).
    pub fn mark(&self, event: &str, seats: &[(usize, u32)], holder: Option<(&str, i64)>) {
        if let Some(v) = self.lock().get_mut(event) {
            for &(row, k) in seats {
                let Some(r) = v.rows.get_mut(row) else {
                    continue;
                };
                match holder {
                    Some((h, until)) => {
                        r.insert(k, (h.to_owned(), until));
                    }
                    None => {
                        r.remove(&k);
                        v.sold_out = None;
                    }
                }
            }
        }
    }

    /// Seats of `row` whose holds ran out by the picture (never sold ones), at most `max`: the
    /// next write of the row removes them, under the condition that they still read as run out.
    pub fn expired(&self, event: &str, row: usize, now_us: i64, max: usize) -> Vec<u32> {
        let events = self.lock();
        let Some(r) = events.get(event).and_then(|v| v.rows.get(row)) else {
            return vec![];
        };
        let mut ks: Vec<u32> = r
            .iter()
            .filter(|(_, (_, until))| *until <= now_us)
            .map(|(k, _)| *k)
            .collect();
        ks.sort_unstable();
        ks.truncate(max);
        ks
    }

    /// Best available by the picture, marked held by `holder` at once so that concurrent picks in
    /// this process choose other seats: `qty` adjacent free seats in one row of the best section
    /// that has such a row — the first run of the row, the row chosen among all such rows of the
    /// section by `start` (a hash of the reservation and the attempt), so that a rush spreads over
    /// the section's rows instead of queueing on its first one; failing that, the first `qty`
    /// free seats of the hall.
    pub fn pick(
        &self,
        event: &str,
        qty: usize,
        now_us: i64,
        start: u64,
        holder: (&str, i64),
    ) -> Option<Picked> {
        let mut events = self.lock();
        let v = events.get_mut(event)?;
        let mut candidates: Vec<Picked> = Vec::new();
        let mut section: Option<&str> = None;
        for (i, row) in v.meta.rows.iter().enumerate() {
            if section.is_some_and(|s| s != row.section) {
                // The best section with room is known: its rows are all the candidates.
                break;
            }
            let mut run: Picked = Vec::with_capacity(qty);
            for k in 1..=row.seats {
                if is_free(&v.rows[i], k, now_us) {
                    run.push((i, k));
                    if run.len() == qty {
                        break;
                    }
                } else {
                    run.clear();
                }
            }
            if run.len() == qty {
                candidates.push(run);
                section = Some(&row.section);
            }
        }
        let chosen = if candidates.is_empty() {
            let any: Picked = v
                .meta
                .rows
                .iter()
                .enumerate()
                .flat_map(|(i, row)| (1..=row.seats).map(move |k| (i, k)))
                .filter(|&(i, k)| is_free(&v.rows[i], k, now_us))
                .take(qty)
                .collect();
            (any.len() == qty).then_some(any)?
        } else {
            let i = (start % candidates.len() as u64) as usize;
            candidates.swap_remove(i)
        };
        for &(row, k) in &chosen {
            v.rows[row].insert(k, (holder.0.to_owned(), holder.1));
        }
        Some(chosen)
    }

    /// `f` of the event's catalogue entry and rows as pictured now (the snapshot), under the lock.
    pub fn read<R>(&self, event: &str, f: impl FnOnce(&EventMeta, &[Taken]) -> R) -> Option<R> {
        self.lock().get(event).map(|v| f(&v.meta, &v.rows))
    }

    /// A catalogue entry read again: kept with the picture when its rows are the same (true);
    /// false when there is no picture or the rows changed (a seed added some): load it whole.
    pub fn renew_meta(&self, event: &str, meta: Arc<EventMeta>) -> bool {
        let mut events = self.lock();
        match events.get_mut(event) {
            Some(v) if v.meta.rows == meta.rows => {
                v.meta = meta;
                v.meta_read = Instant::now();
                true
            }
            _ => false,
        }
    }

    /// Replace rows re-read by the snapshot's refresh, keeping the marks of holds this process
    /// still has in flight (`in_flight(holder)`): the read may predate their write.
    pub fn refresh_rows_keeping(
        &self,
        event: &str,
        rows: Vec<(usize, Taken)>,
        in_flight: impl Fn(&str) -> bool,
    ) {
        if let Some(v) = self.lock().get_mut(event) {
            v.sold_out = None;
            for (i, mut t) in rows {
                if let Some(r) = v.rows.get_mut(i) {
                    for (k, (h, until)) in r.iter() {
                        if !t.contains_key(k) && in_flight(h) {
                            t.insert(*k, (h.clone(), *until));
                        }
                    }
                    *r = t;
                }
            }
        }
    }
}

/// Where a reservation's pick starts on its `attempt`: stable for a reservation, different for
/// each attempt and spread evenly over reservations.
pub fn pick_start(reservation: &str, attempt: usize) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    let h = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default();
    h.hash_one((reservation, attempt))
}
