//! The embedded store's records as kept in memory: the domain types without their duplicates.
//!
//! A reservation's id is one shared `Arc<str>` for the map and every index that names it; event
//! ids, currencies and user ids are shared per value; an outbox event's `detail` is kept as its
//! compact JSON text (a `serde_json::Value` tree costs several times that), parsed again when a
//! relay claims it; the idempotency record's key is the map's key only. Strings are boxed (no
//! spare capacity). `docs/performance.md` has the bytes per reservation before and after.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::domain::{EventType, OutboxEvent, OutboxStatus, Reservation, ReservationStatus};
use crate::idempotency::{IdempotencyRecord, RecordStatus, StoredResponse};

pub(super) type Shared = Arc<str>;

/// One copy of each repeated value (event ids, currencies): bounded by the catalogue.
#[derive(Default)]
pub(super) struct Interner(BTreeSet<Shared>);

impl Interner {
    pub(super) fn get(&mut self, s: &str) -> Shared {
        if let Some(found) = self.0.get(s) {
            return found.clone();
        }
        let shared: Shared = Arc::from(s);
        self.0.insert(shared.clone());
        shared
    }
}

fn boxed(s: &str) -> Box<str> {
    Box::from(s)
}

pub(super) struct StoredReservation {
    pub event_id: Shared,
    pub user_id: Shared,
    pub currency: Shared,
    pub status: ReservationStatus,
    pub qty: u32,
    pub seat_ids: Box<[Box<str>]>,
    pub total_price: i64,
    pub hold_expires_at: DateTime<Utc>,
    pub idempotency_key: Box<str>,
    pub version: u64,
    pub order_id: Option<Box<str>>,
    pub payment_intent_id: Option<Box<str>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl StoredReservation {
    pub(super) fn new(r: &Reservation, user_id: Shared, strings: &mut Interner) -> Self {
        Self {
            event_id: strings.get(&r.event_id),
            user_id,
            currency: strings.get(&r.currency),
            status: r.status,
            qty: r.qty,
            seat_ids: r.seat_ids.iter().map(|s| boxed(s)).collect(),
            total_price: r.total_price,
            hold_expires_at: r.hold_expires_at,
            idempotency_key: boxed(&r.idempotency_key),
            version: r.version,
            order_id: r.order_id.as_deref().map(boxed),
            payment_intent_id: r.payment_intent_id.as_deref().map(boxed),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }

    pub(super) fn to_domain(&self, id: &str) -> Reservation {
        Reservation {
            id: id.to_owned(),
            event_id: self.event_id.to_string(),
            user_id: self.user_id.to_string(),
            status: self.status,
            seat_ids: self.seat_ids.iter().map(|s| s.to_string()).collect(),
            qty: self.qty,
            total_price: self.total_price,
            currency: self.currency.to_string(),
            hold_expires_at: self.hold_expires_at,
            idempotency_key: self.idempotency_key.to_string(),
            version: self.version,
            order_id: self.order_id.as_deref().map(str::to_owned),
            payment_intent_id: self.payment_intent_id.as_deref().map(str::to_owned),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

pub(super) struct StoredEvent {
    pub event_type: EventType,
    pub reservation_id: Shared,
    pub seq: u64,
    /// The `detail` document as compact JSON text.
    pub detail: Box<str>,
    pub status: OutboxStatus,
    pub attempts: u32,
    pub next_retry_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub lease_owner: Option<Box<str>>,
    pub lease_until: Option<DateTime<Utc>>,
    pub last_error: Option<Box<str>>,
    pub published_at: Option<DateTime<Utc>>,
    pub traceparent: Option<Box<str>>,
}

impl StoredEvent {
    pub(super) fn new(e: &OutboxEvent, reservation_id: Shared) -> Self {
        Self {
            event_type: e.event_type,
            reservation_id,
            seq: e.seq,
            detail: serde_json::to_string(&e.detail)
                .unwrap_or_default()
                .into_boxed_str(),
            status: e.status,
            attempts: e.attempts,
            next_retry_at: e.next_retry_at,
            created_at: e.created_at,
            lease_owner: e.lease_owner.as_deref().map(boxed),
            lease_until: e.lease_until,
            last_error: e.last_error.as_deref().map(boxed),
            published_at: e.published_at,
            traceparent: e.traceparent.as_deref().map(boxed),
        }
    }

    pub(super) fn to_domain(&self, id: &str) -> OutboxEvent {
        OutboxEvent {
            id: id.to_owned(),
            event_type: self.event_type,
            reservation_id: self.reservation_id.to_string(),
            seq: self.seq,
            // Written from a `Value` by `new`, so it parses back to the same document.
            detail: serde_json::from_str(&self.detail).unwrap_or_default(),
            status: self.status,
            attempts: self.attempts,
            next_retry_at: self.next_retry_at,
            created_at: self.created_at,
            lease_owner: self.lease_owner.as_deref().map(str::to_owned),
            lease_until: self.lease_until,
            last_error: self.last_error.as_deref().map(str::to_owned),
            published_at: self.published_at,
            traceparent: self.traceparent.as_deref().map(str::to_owned),
        }
    }

    /// [`OutboxEvent::is_claimable`] of the stored form.
    pub(super) fn is_claimable(&self, now: DateTime<Utc>) -> bool {
        match self.status {
            OutboxStatus::Pending => self.next_retry_at <= now,
            OutboxStatus::Claimed => self.lease_until.is_none_or(|t| t <= now),
            OutboxStatus::Published | OutboxStatus::Failed => false,
        }
    }
}

/// A request fingerprint: the 32 bytes of a hex SHA-256 (what `idempotency::fingerprint` makes),
/// else the text as given.
pub(super) enum Fingerprint {
    Sha256([u8; 32]),
    Text(Box<str>),
}

impl Fingerprint {
    pub(super) fn new(hash: &str) -> Self {
        let mut bytes = [0u8; 32];
        match hex::decode_to_slice(hash, &mut bytes) {
            // Lower-case only, so that the text comes back exactly as it went in.
            Ok(()) if !hash.bytes().any(|b| b.is_ascii_uppercase()) => Self::Sha256(bytes),
            _ => Self::Text(Box::from(hash)),
        }
    }

    pub(super) fn matches(&self, hash: &str) -> bool {
        match self {
            Self::Sha256(bytes) => {
                let mut other = [0u8; 32];
                hex::decode_to_slice(hash, &mut other).is_ok()
                    && !hash.bytes().any(|b| b.is_ascii_uppercase())
                    && other == *bytes
            }
            Self::Text(text) => **text == *hash,
        }
    }

    fn to_text(&self) -> String {
        match self {
            Self::Sha256(bytes) => hex::encode(bytes),
            Self::Text(text) => text.to_string(),
        }
    }
}

pub(super) struct StoredRecord {
    pub request_hash: Fingerprint,
    pub status: RecordStatus,
    /// The lease holder's token: the store makes it, a UUID.
    pub token: uuid::Uuid,
    pub response: Option<StoredResponse>,
    pub expires_at: DateTime<Utc>,
}

impl StoredRecord {
    /// Whether `token` (a ticket's) is this record's.
    pub(super) fn held_by(&self, token: &str) -> bool {
        uuid::Uuid::try_parse(token).is_ok_and(|t| t == self.token)
    }

    pub(super) fn to_domain(&self, scoped_key: &str) -> IdempotencyRecord {
        IdempotencyRecord {
            scoped_key: scoped_key.to_owned(),
            request_hash: self.request_hash.to_text(),
            status: self.status,
            token: self.token.to_string(),
            response: self.response.clone(),
            expires_at: self.expires_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn a_reservation_and_its_event_come_back_as_they_went_in() {
        let now = Utc::now();
        let r = Reservation {
            id: "rsv_1".into(),
            event_id: "evt_1".into(),
            user_id: "u1".into(),
            status: ReservationStatus::Confirmed,
            seat_ids: vec!["A-1".into(), "A-2".into()],
            qty: 2,
            total_price: 200,
            currency: "KRW".into(),
            hold_expires_at: now + Duration::seconds(60),
            idempotency_key: "k".into(),
            version: 2,
            order_id: Some("ord_1".into()),
            payment_intent_id: Some("pay_1".into()),
            created_at: now,
            updated_at: now,
        };
        let mut strings = Interner::default();
        let stored = StoredReservation::new(&r, Arc::from("u1"), &mut strings);
        assert_eq!(stored.to_domain("rsv_1"), r);
        let mut e = OutboxEvent::for_reservation(EventType::Confirmed, &r, None, "t", now);
        e.traceparent = Some("00-x-y-01".into());
        e.last_error = Some("boom".into());
        assert_eq!(StoredEvent::new(&e, Arc::from("rsv_1")).to_domain(&e.id), e);
        // One copy of a repeated value.
        assert!(Arc::ptr_eq(&strings.get("KRW"), &stored.currency));
    }

    #[test]
    fn a_fingerprint_comes_back_as_it_went_in_and_matches_only_itself() {
        let sha = "ab".repeat(32);
        for text in [sha.as_str(), "hash", &"AB".repeat(32), ""] {
            let f = Fingerprint::new(text);
            assert_eq!(f.to_text(), text);
            assert!(f.matches(text));
            assert!(!f.matches("other"));
        }
        assert!(matches!(Fingerprint::new(&sha), Fingerprint::Sha256(_)));
        assert!(!Fingerprint::new(&sha).matches(&"AB".repeat(32)));
        assert!(!Fingerprint::new(&sha).matches(&"cd".repeat(32)));
    }
}
