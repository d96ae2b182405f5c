//! The calls that only read: availability, the event's status, and the seat map's pages.

// The server's imports and shared helpers.
use super::*;

impl InventoryGrpc {
    pub async fn check(
        &self,
        r: CheckAvailabilityRequest,
        now: DateTime<Utc>,
    ) -> Result<CheckAvailabilityResponse, Status> {
        let qty = required_quantity(r.quantity)?;
        let counts = self
            .seats
            .counts(&r.event_id, now)
            .await
            .map_err(engine_status)?;
        let Some(counts) = counts.map(|c| c.sections) else {
            return Ok(CheckAvailabilityResponse {
                error: Some(error(
                    ErrorCode::NotFound,
                    format!("no event {} in the inventory", r.event_id),
                )),
                ..Default::default()
            });
        };
        let remaining: u32 = counts
            .iter()
            .filter(|c| r.section.is_empty() || c.section == r.section)
            .map(|c| c.available)
            .sum();
        if !r.section.is_empty() && !counts.iter().any(|c| c.section == r.section) {
            let mut e = error(
                ErrorCode::NotFound,
                format!("no section {} at this event", r.section),
            );
            e.details = vec![detail("section", "NOT_FOUND", &r.section)];
            return Ok(CheckAvailabilityResponse {
                error: Some(e),
                ..Default::default()
            });
        }
        let (free, taken) = self
            .seats
            .available(&r.event_id, &r.seat_ids, now)
            .await
            .map_err(engine_status)?
            .unwrap_or_default();
        let free: Vec<Seat> = free
            .into_iter()
            .filter(|s| r.section.is_empty() || s.section == r.section)
            .collect();
        let available = if r.seat_ids.is_empty() {
            free.len() >= qty.max(1) as usize
        } else {
            taken.is_empty() && free.len() == r.seat_ids.len()
        };
        Ok(CheckAvailabilityResponse {
            available,
            available_seats: free
                .iter()
                .take(MAX_LISTED_SEATS)
                .map(|s| seat_to_wire(s, SeatStatus::Available))
                .collect(),
            unavailable_seat_ids: taken,
            remaining_in_section: remaining as i32,
            error: None,
        })
    }

    pub async fn status(
        &self,
        r: GetInventoryStatusRequest,
        now: DateTime<Utc>,
    ) -> Result<GetInventoryStatusResponse, Status> {
        let event = self
            .seats
            .counts(&r.event_id, now)
            .await
            .map_err(engine_status)?;
        let Some(event) = event else {
            return Ok(GetInventoryStatusResponse {
                error: Some(error(
                    ErrorCode::NotFound,
                    format!("no event {} in the inventory", r.event_id),
                )),
                ..Default::default()
            });
        };
        let counts = &event.sections;
        let currency = &event.currency;
        let event_total: u32 = counts.iter().map(|c| c.total).sum();
        let event_available: u32 = counts.iter().map(|c| c.available).sum();
        inv_metrics::available(&r.event_id, event_available);
        let shown: Vec<&SectionCounts> = counts
            .iter()
            .filter(|c| r.section.is_empty() || c.section == r.section)
            .collect();
        if shown.is_empty() {
            let mut e = error(
                ErrorCode::NotFound,
                format!("no section {} at this event", r.section),
            );
            e.details = vec![detail("section", "NOT_FOUND", &r.section)];
            return Ok(GetInventoryStatusResponse {
                error: Some(e),
                ..Default::default()
            });
        }
        let sum = |f: fn(&SectionCounts) -> u32| shown.iter().map(|c| f(c)).sum::<u32>() as i32;
        let (total, available) = (sum(|c| c.total), sum(|c| c.available));
        Ok(GetInventoryStatusResponse {
            event: Some(common::Event {
                id: r.event_id.clone(),
                name: event.name.clone(),
                total_seats: event_total as i32,
                remaining_seats: event_available as i32,
                ..Default::default()
            }),
            sections: shown
                .iter()
                .map(|c| SectionInventory {
                    section_id: c.section.clone(),
                    section_name: c.name.clone(),
                    total_seats: c.total as i32,
                    available_seats: c.available as i32,
                    reserved_seats: c.reserved as i32,
                    sold_seats: c.sold as i32,
                    blocked_seats: 0,
                    min_price: Some(convert::money(c.min_price, currency)),
                    max_price: Some(convert::money(c.max_price, currency)),
                })
                .collect(),
            stats: Some(InventoryStats {
                total_seats: total,
                available_seats: available,
                reserved_seats: sum(|c| c.reserved),
                sold_seats: sum(|c| c.sold),
                blocked_seats: 0,
                availability_percentage: if total > 0 {
                    available as f32 * 100.0 / total as f32
                } else {
                    0.0
                },
                last_updated: Some(timestamp(now)),
            }),
            error: None,
        })
    }

    pub async fn seat_page(
        &self,
        r: ListSeatsRequest,
        now: DateTime<Utc>,
    ) -> Result<ListSeatsResponse, Status> {
        let size = match r.page_size {
            0 => DEFAULT_SEAT_PAGE,
            n => usize::try_from(n)
                .map_err(|_| Status::invalid_argument("page_size must not be negative"))?
                .min(MAX_SEAT_PAGE),
        };
        let first_row = match r.page_token.as_str() {
            "" => Some(0),
            t => t.strip_prefix("row:").and_then(|n| n.parse::<usize>().ok()),
        };
        let Some(first_row) = first_row else {
            let mut e = error(
                ErrorCode::InvalidArgument,
                "not a page_token of this server",
            );
            e.details = vec![detail("page_token", "INVALID", &r.page_token)];
            return Ok(ListSeatsResponse {
                error: Some(e),
                ..Default::default()
            });
        };
        let page = self
            .seats
            .seat_page(&r.event_id, first_row, size, now)
            .await
            .map_err(engine_status)?;
        let Some(page) = page else {
            return Ok(ListSeatsResponse {
                error: Some(error(
                    ErrorCode::NotFound,
                    format!("no event {} in the inventory", r.event_id),
                )),
                ..Default::default()
            });
        };
        let currency = page.currency;
        Ok(ListSeatsResponse {
            seats: page
                .seats
                .iter()
                .map(|(s, st)| {
                    seat_to_wire(
                        s,
                        match st {
                            SeatMapStatus::Available => SeatStatus::Available,
                            SeatMapStatus::Held => SeatStatus::Reserved,
                            SeatMapStatus::Sold => SeatStatus::Sold,
                        },
                    )
                })
                .collect(),
            sections: page
                .sections
                .into_iter()
                .map(|s| SeatSection {
                    section_id: s.id,
                    name: s.name,
                    price: Some(convert::money(s.price, &currency)),
                })
                .collect(),
            next_page_token: page
                .next_row
                .map(|r| format!("row:{r}"))
                .unwrap_or_default(),
            currency,
            error: None,
        })
    }
}
