//! The embedded store: everything in one process, each operation atomic under one short lock.
//!
//! The lock is a plain `std::sync::Mutex` held for microseconds and never across an `.await`.
//! What has outlived its retention is removed in small batches by [`Store::purge_expired`] (the
//! `RetentionSweeper` calls it), each batch one short hold of the lock.
//!
//! Every structure is a B-tree, never a hash table: a hash table grows by rehashing all of its
//! entries at once, and under this lock that stalled every request for the length of the copy
//! (at 7/8 of each power of two: 114,688, 229,376, 458,752 reservations; issue #17). A B-tree
//! grows one node at a time, so no insert costs more than a few node splits. The records are
//! kept in compact forms (`compact.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

mod compact;
mod state;

use compact::{Fingerprint, Interner, Shared, StoredEvent, StoredRecord, StoredReservation};

use super::{
    ConflictKind, Retention, Settlement, Store, StoreAudit, StoreError, Transition,
    UserListPosition,
};
use crate::domain::{Order, OutboxEvent, OutboxStatus, Reservation, ReservationStatus};
use crate::idempotency::{
    self, Begin, IdempotencyCompletion, IdempotencyTicket, RecordStatus, RecordView,
};

#[derive(Default)]
struct State {
    reservations: BTreeMap<Shared, StoredReservation>,
    orders: BTreeMap<Box<str>, Order>,
    idempotency: BTreeMap<Shared, StoredRecord>,
    outbox: BTreeMap<Shared, StoredEvent>,
    /// HOLDs by expiry, for the sweeper.
    holds: BTreeSet<(DateTime<Utc>, Shared)>,
    /// HOLDs the sweeper could not expire: due again at `Some(at)` (their entry in `holds`), or
    /// given up on (`None`: out of `holds`, removed after `Retention::failed` from their end).
    deferred: BTreeMap<Shared, Option<DateTime<Utc>>>,
    /// Unsettled event ids; UUIDv7 ids sort by write time.
    unsettled: BTreeSet<Shared>,
    by_reservation: BTreeMap<Shared, Vec<Shared>>,
    /// Each user's reservations by (created_at, id), for listing; its key is the one copy of the
    /// user id its reservations share.
    by_user: BTreeMap<Shared, BTreeSet<(DateTime<Utc>, Shared)>>,
    /// When each item may go, oldest first. An entry may be stale (the item changed or went since):
    /// the purge checks the item itself before removing it.
    expiring: BTreeSet<(DateTime<Utc>, Expiring, Shared)>,
    strings: Interner,
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
        if let Some(found) = s.idempotency.get(scoped_key).and_then(|r| {
            idempotency::judge(
                RecordView {
                    same_request: r.request_hash.matches(request_hash),
                    status: r.status,
                    response: r.response.as_ref(),
                    expires_at: r.expires_at,
                },
                now,
            )
        }) {
            return Ok(found);
        }
        let token = uuid::Uuid::new_v4();
        let key: Shared = Arc::from(scoped_key);
        s.expiring
            .insert((now + lease, Expiring::Idempotency, key.clone()));
        s.idempotency.insert(
            key,
            StoredRecord {
                request_hash: Fingerprint::new(request_hash),
                status: RecordStatus::InProgress,
                token,
                response: None,
                expires_at: now + lease,
            },
        );
        Ok(Begin::Started(IdempotencyTicket {
            scoped_key: scoped_key.to_owned(),
            token: token.to_string(),
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
            .get(ticket.scoped_key.as_str())
            .is_some_and(|r| r.held_by(&ticket.token) && r.status == RecordStatus::InProgress)
        {
            s.idempotency.remove(ticket.scoped_key.as_str());
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
        if s.reservations.contains_key(r.id.as_str()) {
            return Err(StoreError::Conflict(ConflictKind::ReservationExists));
        }
        s.check_completion(completion, Utc::now())?;
        let id: Shared = Arc::from(r.id.as_str());
        let user = s
            .by_user
            .get_key_value(r.user_id.as_str())
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| Arc::from(r.user_id.as_str()));
        let State {
            reservations,
            strings,
            ..
        } = &mut *s;
        reservations.insert(id.clone(), StoredReservation::new(r, user.clone(), strings));
        s.holds.insert((r.hold_expires_at, id.clone()));
        s.by_user
            .entry(user)
            .or_default()
            .insert((r.created_at, id));
        s.add_event(event);
        s.apply_completion(completion);
        Ok(())
    }

    async fn transition(&self, t: Transition<'_>) -> Result<(), StoreError> {
        let mut s = self.lock();
        let (id, user) = match s.reservations.get_key_value(t.next.id.as_str()) {
            Some((id, cur))
                if cur.status == ReservationStatus::Hold && cur.version == t.expected_version =>
            {
                (id.clone(), cur.user_id.clone())
            }
            _ => return Err(StoreError::Conflict(ConflictKind::StaleReservation)),
        };
        s.check_completion(t.completion, Utc::now())?;
        let State {
            reservations,
            strings,
            ..
        } = &mut *s;
        let next = StoredReservation::new(t.next, user, strings);
        if let Some(old) = reservations.insert(id.clone(), next) {
            s.holds.remove(&(old.hold_expires_at, id.clone()));
        }
        if let Some(Some(at)) = s.deferred.remove(&id) {
            s.holds.remove(&(at, id.clone()));
        }
        if t.next.status == ReservationStatus::Hold {
            s.holds.insert((t.next.hold_expires_at, id));
        } else {
            let at = t.next.updated_at + s.retention.reservations;
            s.expiring.insert((at, Expiring::Reservation, id));
        }
        if let Some(o) = t.order {
            s.orders.insert(Box::from(o.id.as_str()), o.clone());
        }
        s.add_event(t.event);
        s.apply_completion(t.completion);
        Ok(())
    }

    async fn get_reservation(&self, id: &str) -> Result<Option<Reservation>, StoreError> {
        Ok(self.lock().reservation(id))
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
        let newest_first: Box<dyn Iterator<Item = &(DateTime<Utc>, Shared)>> = match after {
            Some(p) => Box::new(
                mine.range(..(p.created_at, Shared::from(p.id.as_str())))
                    .rev(),
            ),
            None => Box::new(mine.iter().rev()),
        };
        Ok(newest_first
            .take(limit)
            .filter_map(|(_, id)| s.reservation(id))
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
            .filter_map(|(_, id)| s.reservation(id))
            .collect())
    }

    async fn defer_expiry(
        &self,
        r: &Reservation,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let mut s = self.lock();
        let id = match s.reservations.get_key_value(r.id.as_str()) {
            Some((id, cur))
                if cur.status == ReservationStatus::Hold && cur.version == r.version =>
            {
                id.clone()
            }
            _ => return Ok(false),
        };
        let now_at = match s.deferred.get(&id) {
            Some(Some(at)) => *at,
            Some(None) => return Ok(true),
            None => r.hold_expires_at,
        };
        s.holds.remove(&(now_at, id.clone()));
        match retry_at {
            Some(at) => {
                s.holds.insert((at, id.clone()));
            }
            None => {
                let at = r.hold_expires_at + s.retention.failed;
                s.expiring.insert((at, Expiring::Reservation, id.clone()));
            }
        }
        s.deferred.insert(id, retry_at);
        Ok(true)
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
        let ids: Vec<Shared> = s
            .unsettled
            .iter()
            .filter(|id| {
                let e = &s.outbox[*id];
                e.is_claimable(now) && !s.waits_for_earlier(id, e)
            })
            .take(limit)
            .cloned()
            .collect();
        Ok(ids
            .iter()
            .filter_map(|id| {
                let e = s.outbox.get_mut(id)?;
                e.status = OutboxStatus::Claimed;
                e.lease_owner = Some(Box::from(owner));
                e.lease_until = Some(lease_until);
                Some(e.to_domain(id))
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
            .map(|ids| ids.iter().filter_map(|id| s.event(id)).collect())
            .unwrap_or_default())
    }

    async fn failed_events(&self, limit: usize) -> Result<Vec<OutboxEvent>, StoreError> {
        let s = self.lock();
        let mut failed: Vec<OutboxEvent> = s
            .outbox
            .iter()
            .filter(|(_, e)| e.status == OutboxStatus::Failed)
            .map(|(id, e)| e.to_domain(id))
            .collect();
        failed.sort_by(|a, b| a.id.cmp(&b.id));
        failed.truncate(limit);
        Ok(failed)
    }

    async fn redrive_event(
        &self,
        event: &OutboxEvent,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Ok(self.lock().redrive(&event.id, now))
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
            s.reservations
                .iter()
                .map(|(id, r)| r.to_domain(id))
                .collect(),
            s.outbox.iter().map(|(id, e)| e.to_domain(id)).collect(),
            s.idempotency.iter().map(|(k, r)| r.to_domain(k)).collect(),
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

#[cfg(test)]
mod no_stall;
