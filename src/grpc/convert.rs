//! Conversions between the wire types of the contracts and the service's own types.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

use super::proto::common::v1 as common;
use crate::inventory::Seat;

pub fn timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// `None` for a timestamp out of chrono's range or with invalid nanoseconds.
pub fn datetime(t: &Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)
}

pub fn money(amount: i64, currency: &str) -> common::Money {
    common::Money {
        amount,
        currency: currency.to_owned(),
    }
}

pub fn seat_to_wire(s: &Seat, status: common::SeatStatus) -> common::Seat {
    common::Seat {
        id: s.id.clone(),
        section: s.section.clone(),
        row: s.row.clone(),
        number: s.number.clone(),
        price: Some(money(s.price, &s.currency)),
        status: status as i32,
    }
}

pub fn seat_from_wire(s: common::Seat) -> Seat {
    let (price, currency) = s.price.map(|m| (m.amount, m.currency)).unwrap_or_default();
    Seat {
        id: s.id,
        section: s.section,
        row: s.row,
        number: s.number,
        price,
        currency,
    }
}

/// A business error for the `error` field of a response.
pub fn error(code: common::ErrorCode, message: impl Into<String>) -> common::Error {
    common::Error {
        code: code as i32,
        message: message.into(),
        trace_id: String::new(),
        details: vec![],
    }
}

pub fn detail(field: &str, reason: &str, value: &str) -> common::ErrorDetail {
    common::ErrorDetail {
        field: field.into(),
        reason: reason.into(),
        value: value.into(),
    }
}

/// The error's code, `Unspecified` for a value this build does not know.
pub fn error_code(e: &common::Error) -> common::ErrorCode {
    common::ErrorCode::try_from(e.code).unwrap_or(common::ErrorCode::Unspecified)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_to_the_nanosecond() {
        let t = DateTime::parse_from_rfc3339("2025-06-01T10:00:00.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(datetime(&timestamp(t)), Some(t));
        assert_eq!(
            datetime(&Timestamp {
                seconds: 0,
                nanos: -1
            }),
            None
        );
    }

    #[test]
    fn seats_round_trip() {
        let s = Seat {
            id: "A-1".into(),
            section: "VIP".into(),
            row: "A".into(),
            number: "1".into(),
            price: 165000,
            currency: "KRW".into(),
        };
        let w = seat_to_wire(&s, common::SeatStatus::Reserved);
        assert_eq!(w.status, common::SeatStatus::Reserved as i32);
        assert_eq!(seat_from_wire(w), s);
    }
}
