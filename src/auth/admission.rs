//! The waiting room's admission tokens (`reservation_token`), kept in Redis by the platform's
//! gateway: on admission it writes `queue:reservation:<token>` =
//! `{"event_id","user_id","waiting_token","granted_at"}` with a 30 s TTL.
//!
//! A token admits one successful hold. [`Admission::consume`] checks and consumes it in one Lua
//! script (atomic on the Redis server, so concurrent creates with one token cannot both pass) by
//! writing a *used* marker holding a random fence that lives as long as the token. If the hold
//! then fails, [`Admission::give_back`] deletes the marker only if it still holds our fence, so a
//! late give-back can never free a consumption that is not ours.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;

/// The gateway's key for a token.
pub const KEY_PREFIX: &str = "queue:reservation:";
/// Our marker of a consumed token (a namespace of our own, never written by the gateway).
pub const USED_PREFIX: &str = "reservation-api:admission-used:";
/// Longer tokens are not the gateway's: refused without asking Redis.
const MAX_TOKEN_CHARS: usize = 256;

/// KEYS[1] token key, KEYS[2] used marker; ARGV event_id, user_id, fence.
const CONSUME: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v then return 'unknown' end
local ok, doc = pcall(cjson.decode, v)
if not ok or type(doc) ~= 'table' then return 'unknown' end
if doc['event_id'] ~= ARGV[1] then return 'other_event' end
if doc['user_id'] ~= ARGV[2] then return 'other_user' end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'used' end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  redis.call('SET', KEYS[2], ARGV[3], 'PX', ttl)
else
  redis.call('SET', KEYS[2], ARGV[3])
end
return 'ok'
"#;

/// KEYS[1] used marker; ARGV[1] fence.
const GIVE_BACK: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// Why a create was not admitted (403 `FORBIDDEN`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    UnknownOrExpired,
    OtherEvent,
    OtherUser,
    AlreadyUsed,
}

impl Refusal {
    /// The `admission_decisions_total` label and the `details` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::UnknownOrExpired => "unknown_or_expired",
            Self::OtherEvent => "other_event",
            Self::OtherUser => "other_user",
            Self::AlreadyUsed => "already_used",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Self::Missing => "a reservation_token from the waiting room is required",
            Self::UnknownOrExpired => "the reservation_token is unknown or expired",
            Self::OtherEvent => "the reservation_token was granted for another event",
            Self::OtherUser => "the reservation_token was granted to another user",
            Self::AlreadyUsed => "the reservation_token was already used for a hold",
        }
    }

    /// `details` of the 403: `{"reservation_token": "<reason>"}`.
    pub fn details(self) -> BTreeMap<String, String> {
        [("reservation_token".to_owned(), self.as_str().to_owned())].into()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    #[error("{}", .0.message())]
    Refused(Refusal),
    /// Redis did not answer in time or at all: fail closed.
    #[error("the admission store is unavailable: {0}")]
    Unavailable(String),
}

/// A consumed token: give it back if the hold fails.
#[derive(Debug)]
pub struct Pass {
    used_key: String,
    fence: String,
}

pub struct Admission {
    conn: ConnectionManager,
    consume: Script,
    give_back: Script,
    timeout: Duration,
}

impl Admission {
    /// Connects lazily: the service starts while Redis is down and answers 503 until it is up.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, String> {
        let conn = crate::redis_conn::lazy(url, "REDIS_URL", timeout)?;
        Ok(Self {
            conn,
            consume: Script::new(CONSUME),
            give_back: Script::new(GIVE_BACK),
            timeout,
        })
    }

    /// Check that `token` admits `user_id` to `event_id` and consume it, atomically.
    pub async fn consume(
        &self,
        token: Option<&str>,
        event_id: &str,
        user_id: &str,
    ) -> Result<Pass, AdmissionError> {
        let result = self.try_consume(token, event_id, user_id).await;
        let label = match &result {
            Ok(_) => "admitted",
            Err(AdmissionError::Refused(r)) => r.as_str(),
            Err(AdmissionError::Unavailable(_)) => "unavailable",
        };
        metrics::counter!("admission_decisions_total", "result" => label).increment(1);
        result
    }

    async fn try_consume(
        &self,
        token: Option<&str>,
        event_id: &str,
        user_id: &str,
    ) -> Result<Pass, AdmissionError> {
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or(AdmissionError::Refused(Refusal::Missing))?;
        if token.chars().count() > MAX_TOKEN_CHARS || token.chars().any(char::is_control) {
            return Err(AdmissionError::Refused(Refusal::UnknownOrExpired));
        }
        let pass = Pass {
            used_key: format!("{USED_PREFIX}{token}"),
            fence: uuid::Uuid::new_v4().simple().to_string(),
        };
        let mut conn = self.conn.clone();
        let mut invocation = self.consume.key(format!("{KEY_PREFIX}{token}"));
        invocation
            .key(&pass.used_key)
            .arg(event_id)
            .arg(user_id)
            .arg(&pass.fence);
        let call = invocation.invoke_async::<String>(&mut conn);
        let answer = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| AdmissionError::Unavailable("Redis did not answer in time".into()))?
            .map_err(|e| AdmissionError::Unavailable(e.to_string()))?;
        let refusal = match answer.as_str() {
            "ok" => return Ok(pass),
            "other_event" => Refusal::OtherEvent,
            "other_user" => Refusal::OtherUser,
            "used" => Refusal::AlreadyUsed,
            _ => Refusal::UnknownOrExpired,
        };
        Err(AdmissionError::Refused(refusal))
    }

    /// The hold failed: make the token usable again until its TTL. Best effort — if Redis is
    /// down now, the token stays used (the fan asks the waiting room again).
    pub async fn give_back(&self, pass: Pass) {
        let mut conn = self.conn.clone();
        let mut invocation = self.give_back.key(&pass.used_key);
        invocation.arg(&pass.fence);
        let call = invocation.invoke_async::<i64>(&mut conn);
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(_)) => {
                metrics::counter!("admission_decisions_total", "result" => "given_back")
                    .increment(1);
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "could not give back an admission token"),
            Err(_) => tracing::warn!("could not give back an admission token: Redis timed out"),
        }
    }
}
