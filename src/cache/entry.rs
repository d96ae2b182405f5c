//! What a cache entry holds: `rank|payload`, where the rank orders the versions of one key.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::Reservation;
use crate::idempotency::{Begin, StoredResponse};

/// A reservation at `version` ranks above the pending marker of that version, which ranks above
/// every earlier version.
pub fn rank(version: u64, pending: bool) -> u64 {
    version.saturating_mul(2) + u64::from(!pending)
}

fn payload(entry: &str) -> Option<&str> {
    entry
        .split_once('|')
        .map(|(_, p)| p)
        .filter(|p| !p.is_empty())
}

/// The reservation in an entry; `None` for a pending marker or an entry we cannot read.
pub fn reservation(entry: &str) -> Option<Reservation> {
    serde_json::from_str(payload(entry)?).ok()
}

pub fn answer(entry: &str) -> Option<Answer> {
    serde_json::from_str(payload(entry)?).ok()
}

/// A completed idempotency record, as much of it as a replay needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub request_hash: String,
    pub response: StoredResponse,
    pub expires_at: DateTime<Utc>,
}

impl Answer {
    /// What the store would answer a new request with `request_hash` at `now`, as
    /// [`crate::idempotency::judge`] decides it; `None` once the record has expired.
    pub fn judge(&self, request_hash: &str, now: DateTime<Utc>) -> Option<Begin> {
        crate::idempotency::judge(
            crate::idempotency::RecordView {
                same_request: self.request_hash == request_hash,
                status: crate::idempotency::RecordStatus::Completed,
                response: Some(&self.response),
                expires_at: self.expires_at,
            },
            now,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_outranks_its_marker_which_outranks_the_version_before() {
        assert!(rank(2, false) > rank(2, true));
        assert!(rank(2, true) > rank(1, false));
        assert!(rank(1, false) > rank(1, true));
    }

    #[test]
    fn a_marker_or_junk_is_a_miss() {
        assert_eq!(reservation("4|"), None);
        assert_eq!(reservation("3|not json"), None);
        assert_eq!(answer("nothing"), None);
    }

    #[test]
    fn an_answer_replays_until_its_record_expires_and_conflicts_for_another_request() {
        let now = Utc::now();
        let a = Answer {
            request_hash: "h".into(),
            response: StoredResponse {
                status: 201,
                body: "{}".into(),
            },
            expires_at: now + chrono::Duration::seconds(5),
        };
        assert_eq!(a.judge("h", now), Some(Begin::Replay(a.response.clone())));
        assert_eq!(a.judge("other", now), Some(Begin::Conflict));
        assert_eq!(a.judge("h", now + chrono::Duration::seconds(5)), None);
    }
}
