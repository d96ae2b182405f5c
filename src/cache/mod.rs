//! The optional Redis read-through cache (`CACHE_REDIS_URL`; unset: off) for `GET
//! /v1/reservations/{id}` and for completed idempotent answers. The store stays the source of
//! truth: [`CachedStore`] writes every state change through after the store write commits (in
//! the background: no answer waits on it), and a Redis that is down or slower than
//! `CACHE_TIMEOUT_MS` only costs a store read (counted in `cache_requests_total`), never a failed
//! request nor a wait longer than that deadline per lookup.
//!
//! The staleness rule (the README's *The Redis read-through cache* says the same):
//! - A reservation entry carries its version; Redis replaces an entry only by a higher version
//!   (one Lua script, atomic on the server), so a late fill from an old read can never overwrite
//!   a newer state, in any process.
//! - Before a transition, its writer puts a *pending* marker at the new version, which readers
//!   treat as a miss; after the write commits, the new state replaces the marker. A write that
//!   fails or whose outcome is unknown leaves the marker: readers go to the store until a read
//!   of that version or a later one replaces it, or for `CACHE_TTL_SECONDS` at most.
//! - So once a writer's marker or write-through reached Redis, no process reads an older version
//!   from the cache. Only if Redis was unreachable for both of the writer's calls and reachable
//!   for a reader may that reader see the previous version, for at most `CACHE_TTL_SECONDS`.
//! - A completed idempotent answer never changes until its record expires: it is cached until
//!   exactly that expiry, so a replay served from Redis is the store's own answer.

mod entry;
mod store;

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;

use crate::domain::Reservation;
pub use entry::Answer;
pub use store::CachedStore;

/// Our keys' namespace (the admission keys have their own).
const PREFIX: &str = "reservation-api:cache:";

/// KEYS[1] the entry; ARGV rank, payload, TTL in ms. Replace only a lower rank (`rank|payload`).
const PUT_NEWER: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur then
  local rank = tonumber(string.match(cur, '^(%d+)|'))
  if rank and rank >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'PX', ARGV[3])
return 1
"#;

/// How one cache call ended, for `cache_requests_total{result}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Hit,
    Miss,
    Ok,
    Error,
    Timeout,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Timeout => "timeout",
        }
    }
}

/// Every `(op, result)` series of `cache_requests_total`, for the metric catalogue.
pub fn series() -> Vec<(&'static str, &'static str)> {
    let reads = ["get_reservation", "get_answer"]
        .into_iter()
        .flat_map(|op| ["hit", "miss", "error", "timeout"].map(|r| (op, r)));
    let writes = ["put_reservation", "mark_pending", "put_answer"]
        .into_iter()
        .flat_map(|op| ["ok", "error", "timeout"].map(|r| (op, r)));
    reads.chain(writes).collect()
}

pub struct RedisCache {
    conn: ConnectionManager,
    put_newer: Script,
    timeout: Duration,
    ttl: Duration,
}

impl RedisCache {
    /// Connects lazily: the service starts, and serves from the store, while Redis is down.
    pub fn new(url: &str, timeout: Duration, ttl: Duration) -> Result<Self, String> {
        let conn = crate::redis_conn::lazy(url, "CACHE_REDIS_URL", timeout)?;
        Ok(Self {
            conn,
            put_newer: Script::new(PUT_NEWER),
            timeout,
            ttl,
        })
    }

    /// The cache `CACHE_REDIS_URL` names, if any.
    pub fn configured(settings: &crate::config::CacheSettings) -> Result<Option<Self>, String> {
        use secrecy::ExposeSecret;
        settings
            .redis_url
            .as_ref()
            .map(|url| Self::new(url.expose_secret(), settings.timeout, settings.ttl))
            .transpose()
    }

    /// The cached reservation `id`; `None` on a miss, a pending marker, or any failure.
    pub async fn reservation(&self, id: &str) -> Option<Reservation> {
        let got = self.get("get_reservation", &reservation_key(id)).await?;
        let found = entry::reservation(&got);
        count(
            "get_reservation",
            if found.is_some() {
                Outcome::Hit
            } else {
                Outcome::Miss
            },
        );
        found
    }

    /// Put `r` unless the cache holds its version or a newer one (a pending marker at its version
    /// is replaced).
    pub async fn put_reservation(&self, r: &Reservation) {
        let Ok(payload) = serde_json::to_string(r) else {
            return;
        };
        let rank = entry::rank(r.version, false);
        self.put(
            "put_reservation",
            &reservation_key(&r.id),
            rank,
            &payload,
            self.ttl,
        )
        .await;
    }

    /// Mark `id` as being moved to `version`: readers miss until the new state replaces this.
    pub async fn mark_pending(&self, id: &str, version: u64) {
        let rank = entry::rank(version, true);
        self.put("mark_pending", &reservation_key(id), rank, "", self.ttl)
            .await;
    }

    /// The completed answer cached for `scoped_key`, if any.
    pub async fn answer(&self, scoped_key: &str) -> Option<Answer> {
        let got = self.get("get_answer", &answer_key(scoped_key)).await?;
        let found = entry::answer(&got);
        count(
            "get_answer",
            if found.is_some() {
                Outcome::Hit
            } else {
                Outcome::Miss
            },
        );
        found
    }

    /// Cache a completed answer until its record expires (an answer never changes before then).
    pub async fn put_answer(&self, scoped_key: &str, answer: &Answer) {
        let left = answer.expires_at - chrono::Utc::now();
        let Ok(left) = left.to_std() else { return };
        if left.is_zero() {
            return;
        }
        let Ok(payload) = serde_json::to_string(answer) else {
            return;
        };
        // Rank 1: every put of a completed answer replaces what is there (an expired record's).
        self.put("put_answer", &answer_key(scoped_key), 1, &payload, left)
            .await;
    }

    /// GET within the deadline. `None` (absent, failed, timed out) is counted here; what is
    /// found, the caller counts once it has judged it.
    async fn get(&self, op: &'static str, key: &str) -> Option<String> {
        let mut conn = self.conn.clone();
        let mut get = redis::cmd("GET");
        get.arg(key);
        let call = get.query_async::<Option<String>>(&mut conn);
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(Some(v))) => Some(v),
            Ok(Ok(None)) => {
                count(op, Outcome::Miss);
                None
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, op, "cache read failed; reading the store");
                count(op, Outcome::Error);
                None
            }
            Err(_) => {
                count(op, Outcome::Timeout);
                None
            }
        }
    }

    async fn put(&self, op: &'static str, key: &str, rank: u64, payload: &str, ttl: Duration) {
        let mut conn = self.conn.clone();
        let mut invocation = self.put_newer.key(key);
        invocation
            .arg(rank)
            .arg(payload)
            .arg(ttl.as_millis().max(1) as u64);
        let call = invocation.invoke_async::<i64>(&mut conn);
        let outcome = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(_)) => Outcome::Ok,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, op, "cache write failed");
                Outcome::Error
            }
            Err(_) => Outcome::Timeout,
        };
        count(op, outcome);
    }
}

fn count(op: &'static str, outcome: Outcome) {
    metrics::counter!("cache_requests_total", "op" => op, "result" => outcome.as_str())
        .increment(1);
}

fn reservation_key(id: &str) -> String {
    format!("{PREFIX}rsv:{id}")
}

fn answer_key(scoped_key: &str) -> String {
    format!("{PREFIX}idem:{scoped_key}")
}
