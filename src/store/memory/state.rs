//! The store's state under its lock: each write checks all its conditions, then changes it.

use super::*;

impl State {
    pub(super) fn check_completion(
        &self,
        c: Option<&IdempotencyCompletion>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let Some(c) = c else { return Ok(()) };
        match self.idempotency.get(c.ticket.scoped_key.as_str()) {
            Some(r)
                if r.status == RecordStatus::InProgress
                    && r.held_by(&c.ticket.token)
                    && r.expires_at > now =>
            {
                Ok(())
            }
            _ => Err(StoreError::Conflict(ConflictKind::IdempotencyLost)),
        }
    }

    pub(super) fn apply_completion(&mut self, c: Option<&IdempotencyCompletion>) {
        let Some(c) = c else { return };
        let key = c.ticket.scoped_key.as_str();
        let Some(shared) = self.idempotency.get_key_value(key).map(|(k, _)| k.clone()) else {
            return;
        };
        if let Some(r) = self.idempotency.get_mut(key) {
            // The lease's entry in the index is stale from now on: drop it rather than keep it
            // until the lease would have ended.
            self.expiring
                .remove(&(r.expires_at, Expiring::Idempotency, shared.clone()));
            r.status = RecordStatus::Completed;
            r.response = Some(c.response.clone());
            r.expires_at = c.ticket.expires_at;
            self.expiring
                .insert((c.ticket.expires_at, Expiring::Idempotency, shared));
        }
    }

    /// Handle at most `limit` due entries of the index (removing their items, or dropping a stale
    /// entry); answers how many it handled.
    pub(super) fn purge(&mut self, now: DateTime<Utc>, limit: usize) -> usize {
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

    /// The shared copy of a reservation id the store holds, or a new one.
    pub(super) fn reservation_key(&self, id: &str) -> Shared {
        self.reservations
            .get_key_value(id)
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| Arc::from(id))
    }

    pub(super) fn add_event(&mut self, e: &OutboxEvent) {
        let rid = self.reservation_key(&e.reservation_id);
        let id: Shared = Arc::from(e.id.as_str());
        self.unsettled.insert(id.clone());
        self.by_reservation
            .entry(rid.clone())
            // A reservation has two events (created, then its end) but for a few.
            .or_insert_with(|| Vec::with_capacity(2))
            .push(id.clone());
        self.outbox.insert(id, StoredEvent::new(e, rid));
    }

    /// Settle an event `owner` holds the claim of; false if the claim was lost.
    pub(super) fn settle(&mut self, id: &str, owner: &str, how: Settlement) -> bool {
        let Some((key, e)) = self.outbox.get_key_value(id) else {
            return false;
        };
        if e.status != OutboxStatus::Claimed || e.lease_owner.as_deref() != Some(owner) {
            return false;
        }
        let key = key.clone();
        let retention = self.retention.outbox;
        let Some(e) = self.outbox.get_mut(id) else {
            return false;
        };
        e.lease_owner = None;
        e.lease_until = None;
        let settled = match how {
            Settlement::Published { at } => {
                e.status = OutboxStatus::Published;
                e.published_at = Some(at);
                e.attempts += 1;
                self.expiring
                    .insert((at + retention, Expiring::Outbox, key));
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
                e.last_error = Some(error.into_boxed_str());
                false
            }
            Settlement::Failed { attempts, error } => {
                e.status = OutboxStatus::Failed;
                e.attempts = attempts;
                e.last_error = Some(error.into_boxed_str());
                let until = Utc::now() + self.retention.failed;
                self.expiring.insert((until, Expiring::Outbox, key));
                true
            }
        };
        if settled {
            self.unsettled.remove(id);
        }
        true
    }

    /// True if an earlier event of the same reservation is still unsettled.
    pub(super) fn waits_for_earlier(&self, id: &str, e: &StoredEvent) -> bool {
        self.by_reservation
            .get(&e.reservation_id)
            .is_some_and(|ids| {
                ids.iter()
                    .take_while(|i| ***i != *id)
                    .any(|i| self.unsettled.contains(i))
            })
    }

    pub(super) fn purge_record(&mut self, key: &str, now: DateTime<Utc>) {
        // A record renewed since (completed, or taken again) has a later entry of its own.
        if self
            .idempotency
            .get(key)
            .is_some_and(|r| r.expires_at <= now)
        {
            self.idempotency.remove(key);
        }
    }

    /// Put a FAILED event back to PENDING, due at `now`, with no attempts; false if it is not
    /// FAILED.
    pub(super) fn redrive(&mut self, id: &str, now: DateTime<Utc>) -> bool {
        let Some((key, e)) = self.outbox.get_key_value(id) else {
            return false;
        };
        if e.status != OutboxStatus::Failed {
            return false;
        }
        let key = key.clone();
        if let Some(e) = self.outbox.get_mut(id) {
            e.status = OutboxStatus::Pending;
            e.attempts = 0;
            e.next_retry_at = now;
        }
        self.unsettled.insert(key);
        true
    }

    pub(super) fn purge_event(&mut self, id: &str) {
        // Settled events go: PUBLISHED after its retention, FAILED after the longer one (a
        // redriven event, unsettled again, stays).
        if !self
            .outbox
            .get(id)
            .is_some_and(|e| matches!(e.status, OutboxStatus::Published | OutboxStatus::Failed))
        {
            return;
        }
        let Some(e) = self.outbox.remove(id) else {
            return;
        };
        if let Some(ids) = self.by_reservation.get_mut(&e.reservation_id) {
            ids.retain(|i| **i != *id);
            if ids.is_empty() {
                self.by_reservation.remove(&e.reservation_id);
            }
        }
    }

    pub(super) fn purge_reservation(&mut self, id: &str, now: DateTime<Utc>) {
        let (retention, failed) = (self.retention.reservations, self.retention.failed);
        let abandoned = matches!(self.deferred.get(id), Some(None));
        let due = self.reservations.get(id).is_some_and(|r| match r.status {
            ReservationStatus::Hold => abandoned && r.hold_expires_at + failed <= now,
            _ => r.updated_at + retention <= now,
        });
        if !due {
            return;
        }
        self.deferred.remove(id);
        let Some((key, r)) = self.reservations.remove_entry(id) else {
            return;
        };
        if let Some(order) = &r.order_id {
            self.orders.remove(order);
        }
        // The user's listing index goes with it, or the index would be what grows.
        if let Some(mine) = self.by_user.get_mut(&r.user_id) {
            mine.remove(&(r.created_at, key));
            if mine.is_empty() {
                self.by_user.remove(&r.user_id);
            }
        }
    }

    pub(super) fn reservation(&self, id: &str) -> Option<Reservation> {
        self.reservations.get(id).map(|r| r.to_domain(id))
    }

    pub(super) fn event(&self, id: &str) -> Option<OutboxEvent> {
        self.outbox.get(id).map(|e| e.to_domain(id))
    }
}
