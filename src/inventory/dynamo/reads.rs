//! What looks at the whole hall or a page of it: `GetInventoryStatus`, `CheckAvailability` and the
//! seat map, all answered from the process's snapshot of the rows ([`super::snapshot`]).

use chrono::{DateTime, Utc};

use super::layout::*;
use crate::inventory::engine::SectionCounts;
use crate::inventory::hall::{page_rows, section_infos};
use crate::inventory::seats::EventCounts;
use crate::inventory::{Seat, SeatMap, SeatMapStatus};

/// One seat-map page of an event's snapshot: whole rows from `first_row`, up to `max_seats`.
pub(super) fn page(
    meta: &EventMeta,
    taken: &[Taken],
    (first_row, max_seats): (usize, usize),
    now: DateTime<Utc>,
) -> SeatMap {
    let mut map = SeatMap {
        currency: meta.spec.currency.clone(),
        sections: section_infos(&meta.spec),
        ..SeatMap::default()
    };
    let (rows, next_row) = page_rows(meta.rows.iter().map(|r| r.seats), first_row, max_seats);
    map.next_row = next_row;
    let now_us = micros(now);
    for i in rows {
        let t = &taken[i];
        for k in 1..=meta.rows[i].seats {
            let status = match t.get(&k) {
                Some((_, SOLD)) => SeatMapStatus::Sold,
                Some((_, until)) if *until > now_us => SeatMapStatus::Held,
                _ => SeatMapStatus::Available,
            };
            map.seats.push((meta.seat(i, k), status));
        }
    }
    map
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
