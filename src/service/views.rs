//! The resource shapes the API answers with (CONTRACT §1).

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::event::rfc3339;
use crate::domain::{Reservation, ReservationStatus};
use crate::inventory::{SeatMap, SeatMapStatus};

/// 201 answer to a create.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct HoldCreated {
    #[schema(example = "rsv_0192f1c3a4b57c6d8e9f0a1b2c3d4e5f")]
    pub reservation_id: String,
    pub status: ReservationStatus,
    #[schema(example = "2025-10-01T12:01:00.000Z")]
    pub hold_expires_at: String,
    #[schema(example = "evt_2025_1001")]
    pub event_id: String,
    pub qty: u32,
    #[schema(example = json!(["A-1", "A-2"]))]
    pub seat_ids: Vec<String>,
    /// Sum of the held seats' prices in the currency's minor unit.
    pub total_price: i64,
    #[schema(example = "KRW")]
    pub currency: String,
}

/// A reservation as `GET /v1/reservations/{id}` shows it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ReservationView {
    pub reservation_id: String,
    /// A HOLD past `hold_expires_at` reads as EXPIRED even before the sweeper has written it.
    pub status: ReservationStatus,
    pub hold_expires_at: String,
    pub event_id: String,
    pub qty: u32,
    pub seat_ids: Vec<String>,
    pub total_price: i64,
    pub currency: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// 200 answer to a confirm.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Confirmed {
    #[schema(example = "ord_0192f1c3a4b57c6d8e9f0a1b2c3d4e5f")]
    pub order_id: String,
    pub status: ReservationStatus,
    pub reservation_id: String,
}

/// 200 answer to a cancel.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Cancelled {
    pub status: ReservationStatus,
    pub reservation_id: String,
}

impl HoldCreated {
    pub fn of(r: &Reservation) -> Self {
        Self {
            reservation_id: r.id.clone(),
            status: r.status,
            hold_expires_at: rfc3339(r.hold_expires_at),
            event_id: r.event_id.clone(),
            qty: r.qty,
            seat_ids: r.seat_ids.clone(),
            total_price: r.total_price,
            currency: r.currency.clone(),
        }
    }
}

impl ReservationView {
    pub fn of(r: &Reservation, status: ReservationStatus) -> Self {
        Self {
            reservation_id: r.id.clone(),
            status,
            hold_expires_at: rfc3339(r.hold_expires_at),
            event_id: r.event_id.clone(),
            qty: r.qty,
            seat_ids: r.seat_ids.clone(),
            total_price: r.total_price,
            currency: r.currency.clone(),
            order_id: r.order_id.clone(),
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
        }
    }
}

impl Confirmed {
    pub fn of(reservation_id: &str, order_id: &str) -> Self {
        Self {
            order_id: order_id.into(),
            status: ReservationStatus::Confirmed,
            reservation_id: reservation_id.into(),
        }
    }
}

impl Cancelled {
    pub fn of(reservation_id: &str) -> Self {
        Self {
            status: ReservationStatus::Cancelled,
            reservation_id: reservation_id.into(),
        }
    }
}

/// 200 answer to `GET /v1/reservations`: the caller's reservations, newest first.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ReservationPage {
    /// Each as `GET /v1/reservations/{id}` shows it.
    pub items: Vec<ReservationView>,
    /// Pass as `cursor` to get the next page; `null` on the last page. Opaque, and good only for
    /// the caller it was given to.
    #[schema(
        required = true,
        example = "djF8MTc2NDE3MDQwMDAwMHxyc3ZfMDE5MmYxYzNhNGI1N2M2ZDhlOWYwYTFiMmMzZDRlNWY"
    )]
    pub next_cursor: Option<String>,
}

/// 200 answer to `GET /v1/events/{event_id}/seats`: every seat of the event by section.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SeatMapView {
    #[schema(example = "evt_2025_1001")]
    pub event_id: String,
    #[schema(example = "KRW")]
    pub currency: String,
    /// Best first, as the catalogue orders them.
    pub sections: Vec<SectionView>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SectionView {
    #[schema(example = "VIP")]
    pub id: String,
    #[schema(example = "VIP")]
    pub name: String,
    /// Price of each seat in the currency's minor unit.
    #[schema(example = 165000)]
    pub price: i64,
    pub seats: Vec<SeatView>,
}

/// A seat and whether it can be held now; who holds it is never shown.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SeatView {
    #[schema(example = "A-12")]
    pub id: String,
    #[schema(example = "A")]
    pub row: String,
    #[schema(example = "12")]
    pub number: String,
    pub status: SeatMapStatus,
}

impl SeatMapView {
    pub fn of(event_id: &str, map: SeatMap) -> Self {
        let mut sections: Vec<SectionView> = map
            .sections
            .into_iter()
            .map(|s| SectionView {
                id: s.id,
                name: s.name,
                price: s.price,
                seats: Vec::new(),
            })
            .collect();
        for (seat, status) in map.seats {
            let view = SeatView {
                id: seat.id,
                row: seat.row,
                number: seat.number,
                status,
            };
            match sections.iter_mut().find(|s| s.id == seat.section) {
                Some(s) => s.seats.push(view),
                // A seat of a section the answer did not list: shown under its own id.
                None => sections.push(SectionView {
                    id: seat.section.clone(),
                    name: seat.section,
                    price: seat.price,
                    seats: vec![view],
                }),
            }
        }
        Self {
            event_id: event_id.to_owned(),
            currency: map.currency,
            sections,
        }
    }
}
