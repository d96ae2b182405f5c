//! The embedded store: everything in one process, each operation atomic under one short lock.
//!
//! The lock is a plain `std::sync::Mutex` held for microseconds and never across an `.await`.
//! What has outlived its retention is removed in small batches by [`Store::purge_expired`] (the
//! `RetentionSweeper` calls it), each batch one short hold of the lock.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use super::{
    ConflictKind, Retention, Settlement, Store, StoreAudit, StoreError, Transition,
    UserListPosition,
};
use crate::domain::{Order, OutboxEvent, OutboxStatus, Reservation, ReservationStatus};
use crate::idempotency::{
    Begin, IdempotencyCompletion, IdempotencyRecord, IdempotencyTicket, RecordStatus,
};

#[derive(Default)]
struct State {
    reservations: HashMap<String, Reservation>,
    orders: HashMap<String, Order>,
    idempotency: HashMap<String, IdempotencyRecord>,
    outbox: HashMap<String, OutboxEvent>,
    /// HOLDs by expiry, for the sweeper.
    holds: BTreeSet<(DateTime<Utc>, String)>,
    /// Unsettled event ids; UUIDv7 ids sort by write time.
    unsettled: BTreeSet<String>,
    by_reservation: HashMap<String, Vec<String>>,
    /// Each user's reservations by (created_at, id), for listing.
    by_user: HashMap<String, BTreeSet<(DateTime<Utc>, String)>>,
    /// When each item may go, oldest first. An entry may be stale (the item changed or went since):
    /// the purge checks the item itself before removing it.
    expiring: BTreeSet<(DateTime<Utc>, Expiring, String)>,
    retention: Retention,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Expiring {
    Idempotency,
    Outbox,
    Reservation,
}

#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_retention(retention: Retention) -> Self {
        Self {
            state: Mutex::new(State {
                retention,
                ..State::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied write: every write checks all
        // its conditions before it changes anything.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn check_completion(
        &self,
        c: Option<&IdempotencyCompletion>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let Some(c) = c else { return Ok(()) };
        match self.idempotency.get(&c.ticket.scoped_key) {
            Some(r)
                if r.status == RecordStatus::InProgress
                    && r.token == c.ticket.token
                    && r.expires_at > now =>
            {
                Ok(())
            }
            _ => Err(StoreError::Conflict(ConflictKind::IdempotencyLost)),
        }
    }

    fn apply_completion(&mut self, c: Option<&IdempotencyCompletion>) {
        if let Some(c) = c {
            if let Some(r) = self.idempotency.get_mut(&c.ticket.scoped_key) {
                r.status = RecordStatus::Completed;
                r.response = Some(c.response.clone());
                r.expires_at = c.ticket.expires_at;
                self.expiring.insert((
                    c.ticket.expires_at,
                    Expiring::Idempotency,
                    c.ticket.scoped_key.clone(),
                ));
            }
        }
    }

    /// Handle at most `limit` due entries of the index (removing their items, or dropping a stale
    /// entry); answers how many it handled.
    fn purge(&mut self, now: DateTime<Utc>, limit: usize) -> usize {
        let mut handled = 0;
        for _ in 0..limit {
            match self.expiring.first() {
                Some((at, _, _)) if *at <= now => {}
                _ => break,
            }
            let Some((_, kind, id)) = self.expiring.pop_first() else {
                break;
            };
            match kind {
                Expiring::Idempotency => self.purge_record(&id, now),
                Expiring::Outbox => self.purge_event(&id),
                Expiring::Reservation => self.purge_reservation(&id, now),
            };
            handled += 1;
        }
        handled
    }

    fn add_event(&mut self, e: &OutboxEvent) {
        self.unsettled.insert(e.id.clone());
        self.by_reservation
            .entry(e.reservation_id.clone())
            .or_default()
            .push(e.id.clone());
        self.outbox.insert(e.id.clone(), e.clone());
    }

    /// Settle an event `owner` holds the claim of; false if the claim was lost.
    fn settle(&mut self, id: &str, owner: &str, how: Settlement) -> bool {
        let Some(e) = self.outbox.get_mut(id) else {
            return false;
        };
        if e.status != OutboxStatus::Claimed || e.lease_owner.as_deref() != Some(owner) {
            return false;
        }
        e.lease_owner = None;
        e.lease_until = None;
        let settled = match how {
            Settlement::Published { at } => {
                e.status = OutboxStatus::Published;
                e.published_at = Some(at);
                e.attempts += 1;
                self.expiring
                    .insert((at + self.retention.outbox, Expiring::Outbox, id.to_owned()));
                true
            }
            Settlement::Retry {
                attempts,
                next_retry_at,
                error,
            } => {
                e.status = OutboxStatus::Pending;
                e.attempts = attempts;
                e.next_retry_at = next_retry_at;
                e.last_error = Some(error);
                false
            }
            Settlement::Failed { attempts, error } => {
                e.status = OutboxStatus::Failed;
                e.attempts = attempts;
                e.last_error = Some(error);
                true
            }
        };
        if settled {
            self.unsettled.remove(id);
        }
        true
    }

    /// True if an earlier event of the same reservation is still unsettled.
    fn waits_for_earlier(&self, e: &OutboxEvent) -> bool {
        self.by_reservation
            .get(&e.reservation_id)
            .is_some_and(|ids| {
                ids.iter()
                    .take_while(|id| **id != e.id)
                    .any(|id| self.unsettled.contains(id))
            })
    }

    fn purge_record(&mut self, key: &str, now: DateTime<Utc>) {
        // A record renewed since (completed, or taken again) has a later entry of its own.
        if self
            .idempotency
            .get(key)
            .is_some_and(|r| r.expires_at <= now)
        {
            self.idempotency.remove(key);
        }
    }

    fn purge_event(&mut self, id: &str) {
        // Only PUBLISHED events go; a FAILED one stays for operators.
        if !self
            .outbox
            .get(id)
            .is_some_and(|e| e.status == OutboxStatus::Published)
        {
            return;
        }
        let Some(e) = self.outbox.remove(id) else {
            return;
        };
        if let Some(ids) = self.by_reservation.get_mut(&e.reservation_id) {
            ids.retain(|i| i != id);
            if ids.is_empty() {
                self.by_reservation.remove(&e.reservation_id);
            }
        }
    }

    fn purge_reservation(&mut self, id: &str, now: DateTime<Utc>) {
        let retention = self.retention.reservations;
        let due = self.reservations.get(id).is_some_and(|r| {
            r.status != ReservationStatus::Hold && r.updated_at + retention <= now
        });
        if !due {
            return;
        }
        let Some(r) = self.reservations.remove(id) else {
            return;
        };
        if let Some(order) = &r.order_id {
            self.orders.remove(order);
        }
        // The user's listing index goes with it, or the index would be what grows.
        if let Some(mine) = self.by_user.get_mut(&r.user_id) {
            mine.remove(&(r.created_at, r.id.clone()));
            if mine.is_empty() {
                self.by_user.remove(&r.user_id);
            }
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn begin_request(
        &self,
        scoped_key: &str,
        request_hash: &str,
        now: DateTime<Utc>,
        lease: Duration,
        ttl: Duration,
    ) -> Result<Begin, StoreError> {
        let mut s = self.lock();
        if let Some(found) = s
            .idempotency
            .get(scoped_key)
            .and_then(|r| r.judge(request_hash, now))
        {
            return Ok(found);
        }
        let token = uuid::Uuid::new_v4().to_string();
        s.expiring
            .insert((now + lease, Expiring::Idempotency, scoped_key.to_owned()));
        s.idempotency.insert(
            scoped_key.to_owned(),
            IdempotencyRecord {
                scoped_key: scoped_key.to_owned(),
                request_hash: request_hash.to_owned(),
                status: RecordStatus::InProgress,
                token: token.clone(),
                response: None,
                expires_at: now + lease,
            },
        );
        Ok(Begin::Started(IdempotencyTicket {
            scoped_key: scoped_key.to_owned(),
            token,
            expires_at: now + ttl,
        }))
    }

    async fn complete_request(&self, completion: &IdempotencyCompletion) -> Result<(), StoreError> {
        let mut s = self.lock();
        s.check_completion(Some(completion), Utc::now())?;
        s.apply_completion(Some(completion));
        Ok(())
    }

    async fn abandon_request(&self, ticket: &IdempotencyTicket) -> Result<(), StoreError> {
        let mut s = self.lock();
        if s.idempotency
            .get(&ticket.scoped_key)
            .is_some_and(|r| r.token == ticket.token && r.status == RecordStatus::InProgress)
        {
            s.idempotency.remove(&ticket.scoped_key);
        }
        Ok(())
    }

    async fn create_hold(
        &self,
        r: &Reservation,
        event: &OutboxEvent,
        completion: Option<&IdempotencyCompletion>,
    ) -> Result<(), StoreError> {
        let mut s = self.lock();
        if s.reservations.contains_key(&r.id) {
            return Err(StoreError::Conflict(ConflictKind::ReservationExists));
        }
        s.check_completion(completion, Utc::now())?;
        s.reservations.insert(r.id.clone(), r.clone());
        s.holds.insert((r.hold_expires_at, r.id.clone()));
        s.by_user
            .entry(r.user_id.clone())
            .or_default()
            .insert((r.created_at, r.id.clone()));
        s.add_event(event);
        s.apply_completion(completion);
        Ok(())
    }

    async fn transition(&self, t: Transition<'_>) -> Result<(), StoreError> {
        let mut s = self.lock();
        match s.reservations.get(&t.next.id) {
            Some(cur)
                if cur.status == ReservationStatus::Hold && cur.version == t.expected_version => {}
            _ => return Err(StoreError::Conflict(ConflictKind::StaleReservation)),
        }
        s.check_completion(t.completion, Utc::now())?;
        if let Some(old) = s.reservations.insert(t.next.id.clone(), t.next.clone()) {
            s.holds.remove(&(old.hold_expires_at, old.id));
        }
        if t.next.status == ReservationStatus::Hold {
            s.holds.insert((t.next.hold_expires_at, t.next.id.clone()));
        } else {
            let at = t.next.updated_at + s.retention.reservations;
            s.expiring
                .insert((at, Expiring::Reservation, t.next.id.clone()));
        }
        if let Some(o) = t.order {
            s.orders.insert(o.id.clone(), o.clone());
        }
        s.add_event(t.event);
        s.apply_completion(t.completion);
        Ok(())
    }

    async fn get_reservation(&self, id: &str) -> Result<Option<Reservation>, StoreError> {
        Ok(self.lock().reservations.get(id).cloned())
    }

    async fn get_order(&self, id: &str) -> Result<Option<Order>, StoreError> {
        Ok(self.lock().orders.get(id).cloned())
    }

    async fn reservations_of_user(
        &self,
        user_id: &str,
        after: Option<&UserListPosition>,
        limit: usize,
    ) -> Result<Vec<Reservation>, StoreError> {
        let s = self.lock();
        let Some(mine) = s.by_user.get(user_id) else {
            return Ok(Vec::new());
        };
        let newest_first: Box<dyn Iterator<Item = &(DateTime<Utc>, String)>> = match after {
            Some(p) => Box::new(mine.range(..(p.created_at, p.id.clone())).rev()),
            None => Box::new(mine.iter().rev()),
        };
        Ok(newest_first
            .take(limit)
            .filter_map(|(_, id)| s.reservations.get(id).cloned())
            .collect())
    }

    async fn due_holds(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Reservation>, StoreError> {
        let s = self.lock();
        Ok(s.holds
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(limit)
            .filter_map(|(_, id)| s.reservations.get(id).cloned())
            .collect())
    }

    async fn claim_events(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        metrics::counter!("outbox_store_requests_total", "op" => "claim").increment(1);
        let mut s = self.lock();
        let ids: Vec<String> = s
            .unsettled
            .iter()
            .filter(|id| {
                let e = &s.outbox[*id];
                e.is_claimable(now) && !s.waits_for_earlier(e)
            })
            .take(limit)
            .cloned()
            .collect();
        Ok(ids
            .iter()
            .filter_map(|id| {
                let e = s.outbox.get_mut(id)?;
                e.status = OutboxStatus::Claimed;
                e.lease_owner = Some(owner.to_owned());
                e.lease_until = Some(lease_until);
                Some(e.clone())
            })
            .collect())
    }

    async fn settle_events(
        &self,
        owner: &str,
        batch: &[(OutboxEvent, Settlement)],
    ) -> Result<Vec<String>, StoreError> {
        metrics::counter!("outbox_store_requests_total", "op" => "settle").increment(1);
        let mut s = self.lock();
        let mut lost = Vec::new();
        for (event, how) in batch {
            if !s.settle(&event.id, owner, how.clone()) {
                lost.push(event.id.clone());
            }
        }
        Ok(lost)
    }

    async fn events_for(&self, reservation_id: &str) -> Result<Vec<OutboxEvent>, StoreError> {
        let s = self.lock();
        Ok(s.by_reservation
            .get(reservation_id)
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| s.outbox.get(id).cloned())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn pending_events(&self) -> Result<usize, StoreError> {
        Ok(self.lock().unsettled.len())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn audit(&self) -> Result<StoreAudit, StoreError> {
        let s = self.lock();
        Ok(StoreAudit::new(
            s.reservations.values().cloned().collect(),
            s.outbox.values().cloned().collect(),
            s.idempotency.values().cloned().collect(),
        ))
    }

    async fn purge_expired(&self, now: DateTime<Utc>, limit: usize) -> Result<usize, StoreError> {
        Ok(self.lock().purge(now, limit))
    }

    async fn item_counts(&self) -> Option<Vec<(&'static str, usize)>> {
        let s = self.lock();
        Some(vec![
            ("reservations", s.reservations.len()),
            ("orders", s.orders.len()),
            ("idempotency", s.idempotency.len()),
            ("outbox", s.outbox.len()),
        ])
    }
}
