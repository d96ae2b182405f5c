//! Domain events, written to the outbox in the same atomic write as the state change they describe.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

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
        let mut detail = json!({
            "id": id,
            "type": event_type.as_str(),
            "occurred_at": rfc3339(now),
            "trace_id": trace_id,
            "reservation_id": r.id,
            "event_id": r.event_id,
            "user_id": r.user_id,
            "qty": r.qty,
            "seat_ids": r.seat_ids,
            "status": r.status.as_str(),
            "hold_expires_at": rfc3339(r.hold_expires_at),
        });
        if let Some(o) = order {
            detail["order_id"] = json!(o.id);
            detail["payment_intent_id"] = json!(o.payment_intent_id);
            detail["total_amount"] = json!(o.total_amount);
        }
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
