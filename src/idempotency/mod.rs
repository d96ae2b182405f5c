//! The idempotency protocol of CONTRACT §4: the key, the request fingerprint, and the record's life.
//!
//! `begin` marks a key IN_PROGRESS with a lease; the final answer is stored with the state change
//! (see `Store::create_hold` / `Store::transition`) or on its own for answers that change nothing.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A validated `Idempotency-Key`: 1–255 visible ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Option<Self> {
        ((1..=255).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_graphic()))
            .then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The record's key: scoped to the user, so two users may use the same key independently.
    /// Hashed so that any `sub` and key fit a store key without escaping.
    pub fn scoped(&self, user_id: &str) -> String {
        let mut h = Sha256::new();
        h.update((user_id.len() as u64).to_be_bytes());
        h.update(user_id.as_bytes());
        h.update(self.0.as_bytes());
        format!("idem_{}", hex::encode(h.finalize()))
    }
}

/// SHA-256 of method, route template, path parameters and the canonical JSON body.
pub fn fingerprint(method: &str, route: &str, path_params: &[&str], body: &Value) -> String {
    let mut h = Sha256::new();
    for part in [method, route]
        .into_iter()
        .chain(path_params.iter().copied())
    {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.update(canonical_json(body).as_bytes());
    hex::encode(h.finalize())
}

/// JSON with object keys sorted at every depth (serde_json's map is ordered by key).
pub fn canonical_json(v: &Value) -> String {
    // Round-tripping through `Value` re-sorts keys; numbers and strings keep their serde_json form.
    serde_json::to_string(v).unwrap_or_default()
}

/// A stored final answer, replayed byte for byte.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
}

impl StoredResponse {
    pub fn json<T: Serialize>(status: u16, value: &T) -> Self {
        Self {
            status,
            body: serde_json::to_string(value).unwrap_or_else(|_| "{}".into()),
        }
    }
}

/// The right to complete one in-flight request: whoever began it holds the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyTicket {
    pub scoped_key: String,
    pub token: String,
    /// When the completed record stops being replayed.
    pub expires_at: DateTime<Utc>,
}

/// The completion to store atomically with a state change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyCompletion {
    pub ticket: IdempotencyTicket,
    pub response: StoredResponse,
}

/// What `begin` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Begin {
    /// The key is ours to work with.
    Started(IdempotencyTicket),
    /// Completed before with the same request: replay this.
    Replay(StoredResponse),
    /// Another request with this key is still working.
    InFlight,
    /// The key was used for a different request.
    Conflict,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RecordStatus {
    InProgress,
    Completed,
}

/// The idempotency record as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub scoped_key: String,
    pub request_hash: String,
    pub status: RecordStatus,
    pub token: String,
    pub response: Option<StoredResponse>,
    /// IN_PROGRESS: the end of the lease; COMPLETED: the end of the record's life.
    pub expires_at: DateTime<Utc>,
}

impl IdempotencyRecord {
    /// What a new request with `request_hash` finds in this record at `now`. `None`: the record is
    /// dead (expired, or an abandoned lease) and may be replaced.
    pub fn judge(&self, request_hash: &str, now: DateTime<Utc>) -> Option<Begin> {
        judge(
            RecordView {
                same_request: self.request_hash == request_hash,
                status: self.status,
                response: self.response.as_ref(),
                expires_at: self.expires_at,
            },
            now,
        )
    }
}

/// What [`judge`] reads of a stored record, whatever form a store keeps it in.
#[derive(Clone, Copy, Debug)]
pub struct RecordView<'a> {
    /// Whether the new request's fingerprint is the record's.
    pub same_request: bool,
    pub status: RecordStatus,
    pub response: Option<&'a StoredResponse>,
    pub expires_at: DateTime<Utc>,
}

/// [`IdempotencyRecord::judge`] of a record seen through `r`.
pub fn judge(r: RecordView<'_>, now: DateTime<Utc>) -> Option<Begin> {
    if r.expires_at <= now {
        return None;
    }
    if !r.same_request {
        return Some(Begin::Conflict);
    }
    Some(match (r.status, r.response) {
        (RecordStatus::Completed, Some(resp)) => Begin::Replay(resp.clone()),
        _ => Begin::InFlight,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_visible_ascii_up_to_255() {
        assert!(IdempotencyKey::parse("abc-123_!~").is_some());
        assert!(IdempotencyKey::parse("").is_none());
        assert!(IdempotencyKey::parse("has space").is_none());
        assert!(IdempotencyKey::parse("ключ").is_none());
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_some());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_none());
    }

    #[test]
    fn scope_separates_users() {
        let k = IdempotencyKey::parse("k1").unwrap();
        assert_ne!(k.scoped("u1"), k.scoped("u2"));
        assert_eq!(k.scoped("u1"), k.scoped("u1"));
        // Length-prefixing keeps ("ab","c") and ("a","bc") apart.
        assert_ne!(
            IdempotencyKey::parse("c").unwrap().scoped("ab"),
            IdempotencyKey::parse("bc").unwrap().scoped("a")
        );
    }

    #[test]
    fn fingerprint_ignores_key_order_but_not_content() {
        let a = fingerprint(
            "POST",
            "/v1/reservations",
            &[],
            &json!({"qty":1,"event_id":"e"}),
        );
        let b = fingerprint(
            "POST",
            "/v1/reservations",
            &[],
            &json!({"event_id":"e","qty":1}),
        );
        let c = fingerprint(
            "POST",
            "/v1/reservations",
            &[],
            &json!({"event_id":"e","qty":2}),
        );
        let d = fingerprint(
            "POST",
            "/v1/reservations/{id}/confirm",
            &["rsv_1"],
            &json!({"event_id":"e","qty":1}),
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }

    #[test]
    fn a_record_replays_conflicts_or_dies() {
        let now = Utc::now();
        let mut r = IdempotencyRecord {
            scoped_key: "s".into(),
            request_hash: "h".into(),
            status: RecordStatus::InProgress,
            token: "t".into(),
            response: None,
            expires_at: now + chrono::Duration::seconds(10),
        };
        assert_eq!(r.judge("h", now), Some(Begin::InFlight));
        assert_eq!(r.judge("other", now), Some(Begin::Conflict));
        r.status = RecordStatus::Completed;
        r.response = Some(StoredResponse {
            status: 201,
            body: "{}".into(),
        });
        assert_eq!(
            r.judge("h", now),
            Some(Begin::Replay(StoredResponse {
                status: 201,
                body: "{}".into()
            }))
        );
        assert_eq!(r.judge("h", now + chrono::Duration::seconds(10)), None);
    }
}
