//! An event's hall as both seat engines read it: the catalogue entry flattened to rows, seat ids
//! computed from (row, number) instead of stored, and the seat map's pages of whole rows.

use std::collections::HashMap;
use std::ops::Range;

use super::catalog::EventSpec;
use super::{Seat, SectionInfo};

/// One row, in catalogue order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HallRow {
    pub label: Box<str>,
    /// Index into [`Hall::sections`].
    pub section: u32,
    pub seats: u32,
    /// The event-wide index of the row's seat 1 (seats are numbered in catalogue order).
    pub first: u32,
}

/// An event's seats without a string per seat: a seat is `(row, number)` or its event-wide index.
#[derive(Clone, Debug)]
pub struct Hall {
    pub currency: String,
    pub sections: Vec<SectionInfo>,
    pub rows: Vec<HallRow>,
    row_index: HashMap<Box<str>, u32>,
    seats: u32,
}

/// The sections of an event, in catalogue order (the seat map sends them on every page).
pub fn section_infos(spec: &EventSpec) -> Vec<SectionInfo> {
    spec.sections
        .iter()
        .map(|s| SectionInfo {
            id: s.id.clone(),
            name: s.name.clone(),
            price: s.price,
        })
        .collect()
}

/// The rows of one seat-map page: whole rows from `first_row`, at most `max_seats` seats unless
/// the first row alone has more, and the row the next page starts at (`None` on the last page).
pub fn page_rows(
    sizes: impl IntoIterator<Item = u32>,
    first_row: usize,
    max_seats: usize,
) -> (Range<usize>, Option<usize>) {
    let (mut end, mut count) = (first_row, 0usize);
    for (i, n) in sizes.into_iter().enumerate().skip(first_row) {
        if end > first_row && count + n as usize > max_seats {
            return (first_row..end, Some(i));
        }
        end = i + 1;
        count += n as usize;
    }
    (first_row..end.max(first_row), None)
}

/// `(row label, number)` of a seat id `{row}-{number}`, the number written as the engines write
/// it (no sign, no leading zero).
pub fn split_seat_id(id: &str) -> Option<(&str, u32)> {
    let (row, k) = id.rsplit_once('-')?;
    let n: u32 = k.parse().ok()?;
    (k.starts_with(|c: char| c.is_ascii_digit()) && !k.starts_with('0')).then_some((row, n))
}

impl Hall {
    pub fn new(spec: &EventSpec) -> Self {
        let rows_total: usize = spec.sections.iter().map(|s| s.rows.len()).sum();
        let mut rows = Vec::with_capacity(rows_total);
        let mut row_index = HashMap::with_capacity(rows_total);
        let mut first = 0u64;
        for (si, s) in spec.sections.iter().enumerate() {
            for label in &s.rows {
                let label: Box<str> = label.as_str().into();
                // Labels are unique per event (`Catalog::parse` refuses a repeat).
                row_index.insert(label.clone(), rows.len() as u32);
                rows.push(HallRow {
                    label,
                    section: si as u32,
                    seats: s.seats_per_row,
                    first: u32::try_from(first).expect("an event has under 2^32 seats"),
                });
                first += u64::from(s.seats_per_row);
            }
        }
        Self {
            currency: spec.currency.clone(),
            sections: section_infos(spec),
            rows,
            row_index,
            seats: u32::try_from(first).expect("an event has under 2^32 seats"),
        }
    }

    /// Seats in the event.
    pub fn len(&self) -> usize {
        self.seats as usize
    }

    pub fn is_empty(&self) -> bool {
        self.seats == 0
    }

    /// The event-wide index of a seat id, if the event has it.
    pub fn locate(&self, seat_id: &str) -> Option<u32> {
        let (label, k) = split_seat_id(seat_id)?;
        let row = &self.rows[*self.row_index.get(label)? as usize];
        (k >= 1 && k <= row.seats).then(|| row.first + k - 1)
    }

    /// The row holding seat `i`.
    pub fn row_of(&self, i: u32) -> usize {
        self.rows.partition_point(|r| r.first <= i) - 1
    }

    /// The seat indices of row `r`.
    pub fn row_seats(&self, r: usize) -> Range<u32> {
        let row = &self.rows[r];
        row.first..row.first + row.seats
    }

    pub fn seat_id(&self, i: u32) -> String {
        let row = &self.rows[self.row_of(i)];
        format!("{}-{}", row.label, i - row.first + 1)
    }

    /// Seat `i` as the API answers it.
    pub fn seat(&self, i: u32) -> Seat {
        let row = &self.rows[self.row_of(i)];
        let section = &self.sections[row.section as usize];
        let k = i - row.first + 1;
        Seat {
            id: format!("{}-{k}", row.label),
            section: section.id.clone(),
            row: row.label.to_string(),
            number: k.to_string(),
            price: section.price,
            currency: self.currency.clone(),
        }
    }

    /// The rows of one seat-map page (see [`page_rows`]).
    pub fn page(&self, first_row: usize, max_seats: usize) -> (Range<usize>, Option<usize>) {
        page_rows(self.rows.iter().map(|r| r.seats), first_row, max_seats)
    }

    /// Heap bytes this hall keeps (labels counted once per copy), for the footprint accounting.
    pub fn heap_bytes(&self) -> usize {
        let labels: usize = self.rows.iter().map(|r| r.label.len()).sum();
        self.rows.capacity() * std::mem::size_of::<HallRow>()
            + self.row_index.capacity() * (std::mem::size_of::<(Box<str>, u32)>() + 1)
            + 2 * labels
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::catalog::Catalog;

    #[test]
    fn seat_ids_round_trip_and_only_the_written_form_is_a_seat() {
        let c = Catalog::bundled();
        let h = Hall::new(&c.events[0]);
        for i in 0..h.len() as u32 {
            assert_eq!(h.locate(&h.seat_id(i)), Some(i));
            assert_eq!(h.seat(i).id, h.seat_id(i));
        }
        for bad in [
            "A-0", "A-01", "A-+1", "A-21", "Z-1", "A1", "A-", "-1", "A-1-",
        ] {
            assert_eq!(h.locate(bad), None, "{bad}");
        }
        assert_eq!(split_seat_id("X-Y-12"), Some(("X-Y", 12)));
    }

    #[test]
    fn pages_are_whole_rows_within_the_size_unless_one_row_is_bigger() {
        let sizes = [3u32, 3, 3, 5];
        assert_eq!(page_rows(sizes, 0, 6), (0..2, Some(2)));
        assert_eq!(page_rows(sizes, 2, 6), (2..3, Some(3)));
        assert_eq!(page_rows(sizes, 3, 2), (3..4, None));
        assert_eq!(page_rows(sizes, 0, usize::MAX), (0..4, None));
        assert_eq!(page_rows(sizes, 9, 6), (9..9, None));
    }
}
