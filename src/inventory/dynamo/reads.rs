//! What reads the whole hall or a page of it: `GetInventoryStatus`, `CheckAvailability` and the
//! seat map. Consistent reads of the rows, never on the hold path.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::layout::*;
use super::DynamoSeats;
use crate::inventory::engine::SectionCounts;
use crate::inventory::hall::{page_rows, section_infos};
use crate::inventory::seats::EventCounts;
use crate::inventory::{InventoryError, Seat, SeatMap, SeatMapStatus};

impl DynamoSeats {
    /// Every row as the table has it now (also refreshing this process's picture).
    pub(super) async fn all_rows(
        &self,
        event: &str,
    ) -> Result<Option<(Arc<EventMeta>, Vec<Taken>)>, InventoryError> {
        let Some(meta) = self.meta(event).await? else {
            return Ok(None);
        };
        let read = self.read_rows(event, &meta, None).await?;
        let mut rows = vec![Taken::new(); meta.rows.len()];
        for (i, t) in &read {
            rows[*i] = t.clone();
        }
        self.views.refresh_rows(event, read);
        Ok(Some((meta, rows)))
    }

    /// One seat-map page; only the page's rows are read.
    pub(super) async fn read_page(
        &self,
        event_id: &str,
        meta: &EventMeta,
        (first_row, max_seats): (usize, usize),
        now: DateTime<Utc>,
    ) -> Result<SeatMap, InventoryError> {
        let mut map = SeatMap {
            currency: meta.spec.currency.clone(),
            sections: section_infos(&meta.spec),
            ..SeatMap::default()
        };
        let (rows, next_row) = page_rows(meta.rows.iter().map(|r| r.seats), first_row, max_seats);
        map.next_row = next_row;
        let rows: Vec<usize> = rows.collect();
        // Only the page's rows are read, consistently: the picture may be stale.
        let mut taken: HashMap<usize, Taken> = self
            .read_rows(event_id, meta, Some(&rows))
            .await?
            .into_iter()
            .collect();
        let now_us = micros(now);
        for i in rows {
            let t = taken.remove(&i).unwrap_or_default();
            for k in 1..=meta.rows[i].seats {
                let status = match t.get(&k) {
                    Some((_, SOLD)) => SeatMapStatus::Sold,
                    Some((_, until)) if *until > now_us => SeatMapStatus::Held,
                    _ => SeatMapStatus::Available,
                };
                map.seats.push((meta.seat(i, k), status));
            }
        }
        Ok(map)
    }
}

/// `GetInventoryStatus` counts of an event whose rows were just read.
pub(super) fn count_seats(meta: &EventMeta, rows: &[Taken], now: DateTime<Utc>) -> EventCounts {
    let now_us = micros(now);
    let mut sections: Vec<SectionCounts> = meta
        .spec
        .sections
        .iter()
        .map(|s| SectionCounts {
            section: s.id.clone(),
            name: s.name.clone(),
            min_price: s.price,
            max_price: s.price,
            ..Default::default()
        })
        .collect();
    for (row, taken) in meta.rows.iter().zip(rows) {
        let Some(c) = sections.iter_mut().find(|c| c.section == row.section) else {
            continue;
        };
        c.total += row.seats;
        for k in 1..=row.seats {
            match taken.get(&k) {
                Some((_, SOLD)) => c.sold += 1,
                Some((_, until)) if *until > now_us => c.reserved += 1,
                _ => c.available += 1,
            }
        }
    }
    EventCounts {
        name: meta.spec.name.clone(),
        currency: meta.spec.currency.clone(),
        sections,
    }
}

/// `CheckAvailability` of an event whose rows were just read: the free seats among `seat_ids`
/// (all free seats when empty) and the taken ones.
pub(super) fn free_seats(
    meta: &EventMeta,
    rows: &[Taken],
    seat_ids: &[String],
    now: DateTime<Utc>,
) -> (Vec<Seat>, Vec<String>) {
    let now_us = micros(now);
    if seat_ids.is_empty() {
        let free = meta
            .rows
            .iter()
            .enumerate()
            .flat_map(|(i, r)| (1..=r.seats).map(move |k| (i, k)))
            .filter(|&(i, k)| is_free(&rows[i], k, now_us))
            .map(|(i, k)| meta.seat(i, k))
            .collect();
        return (free, vec![]);
    }
    let (mut free, mut taken) = (vec![], vec![]);
    for id in seat_ids {
        match meta.locate(id) {
            Some((i, k)) if is_free(&rows[i], k, now_us) => free.push(meta.seat(i, k)),
            _ => taken.push(id.clone()),
        }
    }
    (free, taken)
}
