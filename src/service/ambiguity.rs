//! Writes whose outcome is unknown: a timeout, a lost answer, or a retry that failed a condition
//! its own earlier attempt may have satisfied. "I don't know" is settled by reading, never guessed:
//! our write there → success; not there → failure (and only then compensate); the read fails too
//! → still unknown, so keep everything that may belong to the write and answer 503/504.

use crate::domain::Reservation;
use crate::idempotency::IdempotencyTicket;
use crate::store::StoreError;

use super::{ReservationService, ServiceError};

/// What a consistent read says about a write whose answer was lost.
#[derive(Debug)]
pub(super) enum Resolution {
    /// Our write is stored.
    Landed,
    /// Our write is not stored and can no longer land; what is stored instead, if anything.
    NotLanded(Option<Box<Reservation>>),
    /// The read failed too.
    Unknown(StoreError),
}

impl ReservationService {
    /// Decide whether our write of reservation `id` landed; `ours` recognises it in what is read.
    ///
    /// With a `fence`, "not there" is made final before it is believed: the write carries the
    /// completion of `fence` (conditional on the record still being IN_PROGRESS for it), so freeing
    /// the record first means a write still in flight can only fail. Without it, "not there" may
    /// be overtaken by a late write: use it only where nothing is compensated on that answer.
    pub(super) async fn resolve(
        &self,
        id: &str,
        ours: impl Fn(&Reservation) -> bool,
        fence: Option<&IdempotencyTicket>,
    ) -> Resolution {
        let found = match self.store.get_reservation(id).await {
            Ok(found) => found,
            Err(e) => return Resolution::Unknown(e),
        };
        if found.as_ref().is_some_and(&ours) {
            return Resolution::Landed;
        }
        let Some(ticket) = fence else {
            return Resolution::NotLanded(found.map(Box::new));
        };
        // Freeing a record that is no longer ours (completed by the write itself, or taken over
        // after its lease) changes nothing; the second read tells which.
        if let Err(e) = self.store.abandon_request(ticket).await {
            return Resolution::Unknown(e);
        }
        match self.store.get_reservation(id).await {
            Ok(found) if found.as_ref().is_some_and(&ours) => Resolution::Landed,
            Ok(found) => Resolution::NotLanded(found.map(Box::new)),
            Err(e) => Resolution::Unknown(e),
        }
    }
}

/// Is `stored` the transition `next` this request wrote (rather than another writer's)?
pub(super) fn is_transition(next: &Reservation) -> impl Fn(&Reservation) -> bool + '_ {
    move |stored| {
        stored.version == next.version
            && stored.status == next.status
            && stored.updated_at == next.updated_at
            && stored.order_id == next.order_id
    }
}

/// The answer when a write's outcome stays unknown: retry later, with the same key.
pub(super) fn unknown_outcome(e: &StoreError) -> ServiceError {
    match e {
        StoreError::Timeout => ServiceError::UpstreamTimeout("the store"),
        _ => ServiceError::UpstreamUnavailable {
            dependency: "the store",
            retry_after_secs: crate::schedule::retry_after_secs(),
        },
    }
}
