//! Prefixed identifiers: `rsv_…` for reservations, `ord_…` for orders.

use uuid::Uuid;

/// A new reservation id. UUIDv7 keeps ids roughly time-ordered, which helps logs and scans.
pub fn new_reservation_id() -> String {
    format!("rsv_{}", Uuid::now_v7().simple())
}

pub fn new_order_id() -> String {
    format!("ord_{}", Uuid::now_v7().simple())
}

/// Outbox event ids are plain UUIDs, fixed when the event is written so consumers can de-duplicate.
pub fn new_event_id() -> String {
    Uuid::now_v7().to_string()
}

/// A reservation id as a client may send it in a path; anything else cannot exist.
pub fn is_reservation_id(s: &str) -> bool {
    s.len() <= 64
        && s.strip_prefix("rsv_")
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_prefix_and_are_unique() {
        let a = new_reservation_id();
        let b = new_reservation_id();
        assert!(a.starts_with("rsv_") && is_reservation_id(&a));
        assert_ne!(a, b);
        assert!(new_order_id().starts_with("ord_"));
        assert!(Uuid::parse_str(&new_event_id()).is_ok());
    }

    #[test]
    fn foreign_ids_are_not_reservation_ids() {
        assert!(!is_reservation_id("ord_123"));
        assert!(!is_reservation_id("rsv_"));
        assert!(!is_reservation_id("rsv_a/b"));
    }
}
