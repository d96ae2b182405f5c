//! `GET /v1/events/{event_id}/seats`: the seat map, from the inventory over gRPC.

use super::views::SeatMapView;
use super::{ReservationService, ServiceError};
use crate::domain::input::is_event_id;
use crate::telemetry::metrics::MethodTimer;

impl ReservationService {
    /// Every seat of the event with its status now. An id that no event can have is not asked
    /// about: like an unknown one, it is `EVENT_NOT_FOUND`.
    pub async fn seat_map(&self, event_id: &str) -> Result<SeatMapView, ServiceError> {
        let _timer = MethodTimer::start("seat_map");
        if !is_event_id(event_id) {
            return Err(ServiceError::EventNotFound);
        }
        match self.inventory.seat_map(event_id).await? {
            Some(map) => Ok(SeatMapView::of(event_id, map)),
            None => Err(ServiceError::EventNotFound),
        }
    }
}
