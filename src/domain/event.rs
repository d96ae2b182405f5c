//! Domain events, written to the outbox in the same atomic write as the state change they describe.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::{ids, Order, Reservation};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "reservation.hold.created")]
    HoldCreated,
    #[serde(rename = "reservation.confirmed")]
    Confirmed,
    #[serde(rename = "reservation.cancelled")]
    Cancelled,
    #[serde(rename = "reservation.hold.expired")]
    HoldExpired,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HoldCreated => "reservation.hold.created",
            Self::Confirmed => "reservation.confirmed",
            Self::Cancelled => "reservation.cancelled",
            Self::HoldExpired => "reservation.hold.expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::HoldCreated,
            Self::Confirmed,
            Self::Cancelled,
            Self::HoldExpired,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutboxStatus {
    Pending,
    /// Claimed by one relay until `lease_until`; after that any relay may take it again.
    Claimed,
    Published,
    Failed,
}

impl OutboxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Claimed => "CLAIMED",
            Self::Published => "PUBLISHED",
            Self::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Claimed, Self::Published, Self::Failed]
            .into_iter()
            .find(|t| t.as_str() == s)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutboxEvent {
    pub id: String,
    pub event_type: EventType,
    pub reservation_id: String,
    /// The reservation's version this event describes: 1 for `hold.created`, then one more per
    /// transition. A reservation's events are published in `seq` order, so event `seq` waits
    /// while event `seq - 1` of the same reservation is unsettled.
    pub seq: u64,
    /// The EventBridge `Detail`, fixed at write time.
    pub detail: serde_json::Value,
    pub status: OutboxStatus,
    pub attempts: u32,
    pub next_retry_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub published_at: Option<DateTime<Utc>>,
    /// The W3C `traceparent` of the span that wrote the event (when it was in a trace), so that its
    /// publish span continues that trace.
    #[serde(default)]
    pub traceparent: Option<String>,
}

/// The EventBridge `Detail` of an event (CONTRACT §6, README "Events"). Its field names are the
/// documented ones: a test compares them with both documents.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventDetail {
    /// The event's id, fixed when it is written: consumers dedupe on it.
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub occurred_at: String,
    pub trace_id: String,
    pub reservation_id: String,
    pub event_id: String,
    pub user_id: String,
    pub qty: u32,
    pub seat_ids: Vec<String>,
    pub status: String,
    pub hold_expires_at: String,
    /// Only for `reservation.confirmed`.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub order: Option<OrderDetail>,
}

/// The order fields of a `reservation.confirmed` detail.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderDetail {
    pub order_id: String,
    pub payment_intent_id: String,
    pub total_amount: i64,
}

impl EventDetail {
    /// The detail of event `id` describing `r` as it now is, with the order for a confirm.
    pub fn new(
        id: &str,
        event_type: EventType,
        r: &Reservation,
        order: Option<&Order>,
        trace_id: &str,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id: id.to_owned(),
            event_type,
            occurred_at: rfc3339(now),
            trace_id: trace_id.to_owned(),
            reservation_id: r.id.clone(),
            event_id: r.event_id.clone(),
            user_id: r.user_id.clone(),
            qty: r.qty,
            seat_ids: r.seat_ids.clone(),
            status: r.status.as_str().to_owned(),
            hold_expires_at: rfc3339(r.hold_expires_at),
            order: order.map(|o| OrderDetail {
                order_id: o.id.clone(),
                payment_intent_id: o.payment_intent_id.clone(),
                total_amount: o.total_amount,
            }),
        }
    }

    /// As stored in the outbox and sent: a JSON object, keys sorted (serde_json's map).
    pub fn to_json(&self) -> serde_json::Value {
        // Strings and numbers only, keyed by field names: serializing cannot fail.
        serde_json::to_value(self).expect("an EventDetail always serializes")
    }
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl OutboxEvent {
    /// The event describing `r` as it now is (after the transition), with the order for a confirm.
    pub fn for_reservation(
        event_type: EventType,
        r: &Reservation,
        order: Option<&Order>,
        trace_id: &str,
        now: DateTime<Utc>,
    ) -> Self {
        let id = ids::new_event_id();
        let detail = EventDetail::new(&id, event_type, r, order, trace_id, now).to_json();
        Self {
            id,
            event_type,
            reservation_id: r.id.clone(),
            seq: r.version,
            detail,
            status: OutboxStatus::Pending,
            attempts: 0,
            next_retry_at: now,
            created_at: now,
            lease_owner: None,
            lease_until: None,
            last_error: None,
            published_at: None,
            traceparent: crate::telemetry::trace::current_traceparent()
                .filter(|tp| tp.get(3..35) == Some(trace_id)),
        }
    }

    /// The event of the same reservation that must be settled before this one is published.
    pub fn predecessor_seq(&self) -> Option<u64> {
        (self.seq > 1).then(|| self.seq - 1)
    }

    /// Whether a relay may claim this event now.
    pub fn is_claimable(&self, now: DateTime<Utc>) -> bool {
        match self.status {
            OutboxStatus::Pending => self.next_retry_at <= now,
            OutboxStatus::Claimed => self.lease_until.is_none_or(|t| t <= now),
            OutboxStatus::Published | OutboxStatus::Failed => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::reservation::tests::hold;

    #[test]
    fn detail_has_the_contract_fields() {
        let now = Utc::now();
        let r = hold(now).confirmed("ord_1", "pay_1", now).unwrap();
        let order = Order {
            id: "ord_1".into(),
            reservation_id: r.id.clone(),
            user_id: "u1".into(),
            event_id: "evt_1".into(),
            seat_ids: r.seat_ids.clone(),
            total_amount: 100,
            currency: "KRW".into(),
            status: "CONFIRMED".into(),
            payment_intent_id: "pay_1".into(),
            created_at: now,
        };
        let e = OutboxEvent::for_reservation(EventType::Confirmed, &r, Some(&order), "t1", now);
        for field in [
            "id",
            "type",
            "occurred_at",
            "trace_id",
            "reservation_id",
            "event_id",
            "user_id",
            "qty",
            "seat_ids",
            "status",
            "hold_expires_at",
            "order_id",
            "payment_intent_id",
            "total_amount",
        ] {
            assert!(e.detail.get(field).is_some(), "missing {field}");
        }
        assert_eq!(e.detail["id"], e.id);
        assert_eq!(e.detail["type"], "reservation.confirmed");
        assert_eq!(e.detail["status"], "CONFIRMED");
        assert!(e.is_claimable(now));
        assert_eq!((e.seq, e.predecessor_seq()), (2, Some(1)));
    }

    fn order_of(r: &Reservation, now: DateTime<Utc>) -> Order {
        Order {
            id: "ord_1".into(),
            reservation_id: r.id.clone(),
            user_id: r.user_id.clone(),
            event_id: r.event_id.clone(),
            seat_ids: r.seat_ids.clone(),
            total_amount: 100,
            currency: "KRW".into(),
            status: "CONFIRMED".into(),
            payment_intent_id: "pay_1".into(),
            created_at: now,
        }
    }

    /// The field names of the `Detail` a document lists after `marker`: the `{…}` list, then the
    /// last backquoted list before the sentence ends (the confirm-only fields).
    fn documented(doc: &str, marker: &str) -> (Vec<String>, Vec<String>) {
        let at = doc
            .find(marker)
            .unwrap_or_else(|| panic!("{marker:?} not found"))
            + marker.len();
        let rest = &doc[at..];
        let (open, close) = (rest.find('{').unwrap(), rest.find('}').unwrap());
        let names = |list: &str| -> Vec<String> {
            list.split(',')
                .map(|f| f.trim().to_owned())
                .filter(|f| !f.is_empty())
                .collect()
        };
        let after = &rest[close..];
        let end = after.find("`.").unwrap();
        let confirm = &after[after[..end].rfind('`').unwrap() + 1..end];
        (names(&rest[open + 1..close]), names(confirm))
    }

    #[test]
    fn the_detail_fields_are_those_the_contract_and_readme_document() {
        let now = Utc::now();
        let hold = hold(now);
        let r = hold.clone().confirmed("ord_1", "pay_1", now).unwrap();
        let order = order_of(&r, now);
        let keys = |v: serde_json::Value| -> Vec<String> {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        let hold_keys =
            keys(EventDetail::new("e", EventType::HoldCreated, &hold, None, "t", now).to_json());
        let all_keys =
            keys(EventDetail::new("e", EventType::Confirmed, &r, Some(&order), "t", now).to_json());
        for (doc, marker) in [
            (
                include_str!("../../docs/spec/CONTRACT.md"),
                "`Detail` is JSON:",
            ),
            (include_str!("../../README.md"), "`Detail` is `"),
        ] {
            let (base, confirm) = documented(doc, marker);
            let mut base_sorted = base.clone();
            base_sorted.sort();
            assert_eq!(base_sorted, hold_keys, "{marker}");
            let mut both = [base, confirm].concat();
            both.sort();
            assert_eq!(both, all_keys, "{marker}");
        }
    }

    #[test]
    fn the_detail_is_the_json_it_always_was() {
        // The bytes of the detail as the `json!` literal built it before `EventDetail`.
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05.678Z")
            .unwrap()
            .with_timezone(&Utc);
        let r = hold(now).confirmed("ord_1", "pay_1", now).unwrap();
        let order = order_of(&r, now);
        let mut expected = serde_json::json!({
            "id": "e1",
            "type": "reservation.confirmed",
            "occurred_at": rfc3339(now),
            "trace_id": "t1",
            "reservation_id": r.id,
            "event_id": r.event_id,
            "user_id": r.user_id,
            "qty": r.qty,
            "seat_ids": r.seat_ids,
            "status": "CONFIRMED",
            "hold_expires_at": rfc3339(r.hold_expires_at),
        });
        expected["order_id"] = serde_json::json!("ord_1");
        expected["payment_intent_id"] = serde_json::json!("pay_1");
        expected["total_amount"] = serde_json::json!(100);
        let d = EventDetail::new("e1", EventType::Confirmed, &r, Some(&order), "t1", now);
        assert_eq!(d.to_json().to_string(), expected.to_string());
        let back: EventDetail = serde_json::from_value(d.to_json()).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn a_claimed_event_is_claimable_again_only_after_its_lease() {
        let now = Utc::now();
        let mut e =
            OutboxEvent::for_reservation(EventType::HoldCreated, &hold(now), None, "t", now);
        assert!(e.detail.get("order_id").is_none());
        e.status = OutboxStatus::Claimed;
        e.lease_until = Some(now + chrono::Duration::seconds(5));
        assert!(!e.is_claimable(now));
        assert!(e.is_claimable(now + chrono::Duration::seconds(5)));
    }
}
