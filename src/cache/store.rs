//! [`CachedStore`]: a [`Store`] that writes every state change and every completed answer
//! through to the cache, and answers a replay from it. Reads of reservations pass through
//! untouched (confirm, cancel and the resolution of a lost answer need the store's consistent
//! read); only `GET /v1/reservations/{id}` reads the cache, in the service.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use super::{Answer, RedisCache};
use crate::domain::{Order, OutboxEvent, Reservation};
use crate::idempotency::{Begin, IdempotencyCompletion, IdempotencyTicket};
use crate::store::{Settlement, Store, StoreAudit, StoreError, Transition, UserListPosition};

/// Requests begun here and not yet answered, beyond which the map starts afresh: a completion
/// whose hash was forgotten is only not cached.
const MAX_BEGUN: usize = 65_536;

pub struct CachedStore {
    inner: Arc<dyn Store>,
    cache: Arc<RedisCache>,
    /// The request hash of each request begun in this process, by its ticket's token: the
    /// completion does not carry it, and a cached answer must.
    begun: Mutex<HashMap<String, String>>,
}

impl CachedStore {
    pub fn new(inner: Arc<dyn Store>, cache: Arc<RedisCache>) -> Self {
        Self {
            inner,
            cache,
            begun: Mutex::new(HashMap::new()),
        }
    }

    fn remember(&self, token: &str, request_hash: &str) {
        let mut begun = self.begun.lock().unwrap_or_else(|p| p.into_inner());
        if begun.len() >= MAX_BEGUN {
            begun.clear();
        }
        begun.insert(token.to_owned(), request_hash.to_owned());
    }

    fn forget(&self, token: &str) -> Option<String> {
        let mut begun = self.begun.lock().unwrap_or_else(|p| p.into_inner());
        begun.remove(token)
    }

    /// Write `r` and the completion the store has just committed through to the cache, in the
    /// background: the caller's answer does not wait on Redis (a reader that comes first misses,
    /// and versions only move forward, so arriving late is harmless).
    fn write_through(&self, r: &Reservation, c: Option<&IdempotencyCompletion>) {
        let answer = c.and_then(|c| {
            let request_hash = self.forget(&c.ticket.token)?;
            let answer = Answer {
                request_hash,
                response: c.response.clone(),
                expires_at: c.ticket.expires_at,
            };
            Some((c.ticket.scoped_key.clone(), answer))
        });
        let (cache, r) = (self.cache.clone(), r.clone());
        tokio::spawn(async move {
            let answer = async {
                if let Some((key, answer)) = &answer {
                    cache.put_answer(key, answer).await;
                }
            };
            tokio::join!(cache.put_reservation(&r), answer);
        });
    }
}

#[async_trait]
impl Store for CachedStore {
    async fn begin_request(
        &self,
        scoped_key: &str,
        request_hash: &str,
        now: DateTime<Utc>,
        lease: Duration,
        ttl: Duration,
    ) -> Result<Begin, StoreError> {
        if let Some(found) = self.cache.answer(scoped_key).await {
            if let Some(judged) = found.judge(request_hash, now) {
                return Ok(judged);
            }
        }
        let begun = self
            .inner
            .begin_request(scoped_key, request_hash, now, lease, ttl)
            .await?;
        if let Begin::Started(t) = &begun {
            self.remember(&t.token, request_hash);
        }
        Ok(begun)
    }

    async fn complete_request(&self, completion: &IdempotencyCompletion) -> Result<(), StoreError> {
        let out = self.inner.complete_request(completion).await;
        let request_hash = self.forget(&completion.ticket.token);
        if let (Ok(()), Some(request_hash)) = (&out, request_hash) {
            let answer = Answer {
                request_hash,
                response: completion.response.clone(),
                expires_at: completion.ticket.expires_at,
            };
            let (cache, key) = (self.cache.clone(), completion.ticket.scoped_key.clone());
            tokio::spawn(async move { cache.put_answer(&key, &answer).await });
        }
        out
    }

    async fn abandon_request(&self, ticket: &IdempotencyTicket) -> Result<(), StoreError> {
        self.forget(&ticket.token);
        self.inner.abandon_request(ticket).await
    }

    async fn create_hold(
        &self,
        reservation: &Reservation,
        event: &OutboxEvent,
        completion: Option<&IdempotencyCompletion>,
    ) -> Result<(), StoreError> {
        // A new id: nothing is cached under it, so no marker is needed.
        self.inner
            .create_hold(reservation, event, completion)
            .await?;
        self.write_through(reservation, completion);
        Ok(())
    }

    async fn transition(&self, t: Transition<'_>) -> Result<(), StoreError> {
        let (next, completion) = (t.next, t.completion);
        // The marker is awaited (alongside the write, so it adds no wait unless Redis is slower
        // than the store): once the caller has its answer, no reader gets the old state.
        let ((), written) = tokio::join!(
            self.cache.mark_pending(&next.id, next.version),
            self.inner.transition(t)
        );
        written?;
        self.write_through(next, completion);
        Ok(())
    }

    async fn get_reservation(&self, id: &str) -> Result<Option<Reservation>, StoreError> {
        self.inner.get_reservation(id).await
    }

    async fn get_order(&self, id: &str) -> Result<Option<Order>, StoreError> {
        self.inner.get_order(id).await
    }

    async fn reservations_of_user(
        &self,
        user_id: &str,
        after: Option<&UserListPosition>,
        limit: usize,
    ) -> Result<Vec<Reservation>, StoreError> {
        self.inner.reservations_of_user(user_id, after, limit).await
    }

    async fn due_holds(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Reservation>, StoreError> {
        self.inner.due_holds(now, limit).await
    }

    // The expiry schedule and the outbox's redrive change nothing a cached answer or GET shows.
    async fn defer_expiry(
        &self,
        r: &Reservation,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        self.inner.defer_expiry(r, retry_at).await
    }

    async fn failed_events(&self, limit: usize) -> Result<Vec<OutboxEvent>, StoreError> {
        self.inner.failed_events(limit).await
    }

    async fn redrive_event(
        &self,
        event: &OutboxEvent,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.inner.redrive_event(event, now).await
    }

    async fn claim_events(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        self.inner
            .claim_events(owner, now, lease_until, limit)
            .await
    }

    async fn settle_events(
        &self,
        owner: &str,
        batch: &[(OutboxEvent, Settlement)],
    ) -> Result<Vec<String>, StoreError> {
        self.inner.settle_events(owner, batch).await
    }

    async fn settle_event(
        &self,
        event: &OutboxEvent,
        owner: &str,
        how: Settlement,
    ) -> Result<(), StoreError> {
        self.inner.settle_event(event, owner, how).await
    }

    async fn events_for(&self, reservation_id: &str) -> Result<Vec<OutboxEvent>, StoreError> {
        self.inner.events_for(reservation_id).await
    }

    async fn pending_events(&self) -> Result<usize, StoreError> {
        self.inner.pending_events().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn audit(&self) -> Result<StoreAudit, StoreError> {
        self.inner.audit().await
    }

    async fn purge_expired(&self, now: DateTime<Utc>, limit: usize) -> Result<usize, StoreError> {
        self.inner.purge_expired(now, limit).await
    }

    async fn item_counts(&self) -> Option<Vec<(&'static str, usize)>> {
        self.inner.item_counts().await
    }
}
