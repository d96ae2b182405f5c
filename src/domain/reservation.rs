//! The reservation state machine: `HOLD → CONFIRMED | CANCELLED | EXPIRED`, nothing leaves a final state.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReservationStatus {
    Hold,
    Confirmed,
    Cancelled,
    Expired,
}

impl ReservationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hold => "HOLD",
            Self::Confirmed => "CONFIRMED",
            Self::Cancelled => "CANCELLED",
            Self::Expired => "EXPIRED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "HOLD" => Self::Hold,
            "CONFIRMED" => Self::Confirmed,
            "CANCELLED" => Self::Cancelled,
            "EXPIRED" => Self::Expired,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub id: String,
    pub event_id: String,
    pub user_id: String,
    pub status: ReservationStatus,
    pub seat_ids: Vec<String>,
    pub qty: u32,
    pub total_price: i64,
    pub currency: String,
    pub hold_expires_at: DateTime<Utc>,
    pub idempotency_key: String,
    /// Bumped by every transition; each write is conditional on the version it read.
    pub version: u64,
    pub order_id: Option<String>,
    pub payment_intent_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Why a transition was refused, in the contract's terms.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("the reservation belongs to another user")]
    NotOwner,
    #[error("the hold has expired")]
    Expired,
    #[error("a {0} reservation cannot be {1}")]
    InvalidState(&'static str, &'static str),
}

/// What a confirm should do, decided from the stored reservation alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfirmPlan {
    /// A live hold: check the payment, commit the seats, write CONFIRMED.
    Proceed,
    /// Already confirmed with this payment intent: answer with the same order.
    AlreadyConfirmed { order_id: String },
    /// The hold ran out but EXPIRED was never written because the inventory refused to release
    /// it: a confirm sold the seats before the deadline and died before its write. Finish that
    /// confirm if the inventory says the seats were sold to this reservation; otherwise expired.
    ProceedIfSold,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CancelPlan {
    Proceed,
    AlreadyCancelled,
}

impl Reservation {
    /// The status every read and write sees: a hold past its expiry is EXPIRED even before the
    /// sweeper has written it.
    pub fn effective_status(&self, now: DateTime<Utc>) -> ReservationStatus {
        match self.status {
            ReservationStatus::Hold if now >= self.hold_expires_at => ReservationStatus::Expired,
            s => s,
        }
    }

    pub fn ensure_owner(&self, user_id: &str) -> Result<(), TransitionError> {
        if self.user_id == user_id {
            Ok(())
        } else {
            Err(TransitionError::NotOwner)
        }
    }

    pub fn plan_confirm(
        &self,
        user_id: &str,
        payment_intent_id: &str,
        now: DateTime<Utc>,
    ) -> Result<ConfirmPlan, TransitionError> {
        self.ensure_owner(user_id)?;
        match self.effective_status(now) {
            ReservationStatus::Hold => Ok(ConfirmPlan::Proceed),
            ReservationStatus::Expired if self.status == ReservationStatus::Hold => {
                Ok(ConfirmPlan::ProceedIfSold)
            }
            ReservationStatus::Confirmed
                if self.payment_intent_id.as_deref() == Some(payment_intent_id) =>
            {
                Ok(ConfirmPlan::AlreadyConfirmed {
                    order_id: self.order_id.clone().unwrap_or_default(),
                })
            }
            ReservationStatus::Expired => Err(TransitionError::Expired),
            s => Err(TransitionError::InvalidState(s.as_str(), "confirmed")),
        }
    }

    pub fn plan_cancel(
        &self,
        user_id: &str,
        now: DateTime<Utc>,
    ) -> Result<CancelPlan, TransitionError> {
        self.ensure_owner(user_id)?;
        match self.effective_status(now) {
            ReservationStatus::Hold => Ok(CancelPlan::Proceed),
            ReservationStatus::Cancelled => Ok(CancelPlan::AlreadyCancelled),
            ReservationStatus::Expired => Err(TransitionError::Expired),
            s => Err(TransitionError::InvalidState(s.as_str(), "cancelled")),
        }
    }

    /// The next version of this reservation in state `to`. Only a HOLD moves.
    pub fn transitioned(
        &self,
        to: ReservationStatus,
        now: DateTime<Utc>,
    ) -> Result<Self, TransitionError> {
        if self.status != ReservationStatus::Hold || to == ReservationStatus::Hold {
            return Err(TransitionError::InvalidState(
                self.status.as_str(),
                "changed",
            ));
        }
        let mut next = self.clone();
        next.status = to;
        next.version += 1;
        next.updated_at = now;
        Ok(next)
    }

    pub fn confirmed(
        &self,
        order_id: &str,
        payment_intent_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Self, TransitionError> {
        let mut next = self.transitioned(ReservationStatus::Confirmed, now)?;
        next.order_id = Some(order_id.to_owned());
        next.payment_intent_id = Some(payment_intent_id.to_owned());
        Ok(next)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::Duration;

    pub(crate) fn hold(now: DateTime<Utc>) -> Reservation {
        Reservation {
            id: "rsv_1".into(),
            event_id: "evt_1".into(),
            user_id: "u1".into(),
            status: ReservationStatus::Hold,
            seat_ids: vec!["A-1".into()],
            qty: 1,
            total_price: 100,
            currency: "KRW".into(),
            hold_expires_at: now + Duration::seconds(60),
            idempotency_key: "k".into(),
            version: 1,
            order_id: None,
            payment_intent_id: None,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn a_hold_past_its_expiry_reads_as_expired() {
        let now = Utc::now();
        let r = hold(now);
        assert_eq!(r.effective_status(now), ReservationStatus::Hold);
        assert_eq!(
            r.effective_status(r.hold_expires_at),
            ReservationStatus::Expired
        );
    }

    #[test]
    fn only_the_owner_may_confirm_or_cancel() {
        let now = Utc::now();
        let r = hold(now);
        assert_eq!(
            r.plan_confirm("u2", "pay", now),
            Err(TransitionError::NotOwner)
        );
        assert_eq!(r.plan_cancel("u2", now), Err(TransitionError::NotOwner));
    }

    #[test]
    fn confirm_after_expiry_is_refused() {
        let now = Utc::now();
        let r = hold(now);
        let late = r.hold_expires_at + Duration::seconds(1);
        // Not yet written EXPIRED: only a sale made before the deadline may still be finished.
        assert_eq!(
            r.plan_confirm("u1", "pay", late),
            Ok(ConfirmPlan::ProceedIfSold)
        );
        let expired = r.transitioned(ReservationStatus::Expired, late).unwrap();
        assert_eq!(
            expired.plan_confirm("u1", "pay", late),
            Err(TransitionError::Expired)
        );
        assert_eq!(r.plan_cancel("u1", late), Err(TransitionError::Expired));
    }

    #[test]
    fn confirming_twice_with_the_same_intent_returns_the_order() {
        let now = Utc::now();
        let c = hold(now).confirmed("ord_1", "pay_1", now).unwrap();
        assert_eq!(c.version, 2);
        assert_eq!(
            c.plan_confirm("u1", "pay_1", now),
            Ok(ConfirmPlan::AlreadyConfirmed {
                order_id: "ord_1".into()
            })
        );
        assert!(matches!(
            c.plan_confirm("u1", "pay_2", now),
            Err(TransitionError::InvalidState(..))
        ));
        assert!(matches!(
            c.plan_cancel("u1", now),
            Err(TransitionError::InvalidState(..))
        ));
    }

    #[test]
    fn nothing_leaves_a_final_state() {
        let now = Utc::now();
        let cancelled = hold(now)
            .transitioned(ReservationStatus::Cancelled, now)
            .unwrap();
        assert_eq!(
            cancelled.plan_cancel("u1", now),
            Ok(CancelPlan::AlreadyCancelled)
        );
        for to in [
            ReservationStatus::Confirmed,
            ReservationStatus::Expired,
            ReservationStatus::Cancelled,
        ] {
            assert!(cancelled.transitioned(to, now).is_err());
        }
        assert!(matches!(
            cancelled.plan_confirm("u1", "p", now),
            Err(TransitionError::InvalidState(..))
        ));
    }
}
