//! Payment status, read side only: is this intent paid, for this reservation, user and amount?

pub mod simulator;

use async_trait::async_trait;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentState {
    Unspecified,
    Pending,
    Processing,
    Completed,
    Failed,
    Cancelled,
    Refunded,
    Expired,
}

/// What confirm asks about. `reservation_id`, `amount` and `currency` are what the intent must match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentQuery {
    pub payment_intent_id: String,
    pub user_id: String,
    pub reservation_id: String,
    pub amount: i64,
    pub currency: String,
}

/// What the payment service says about an intent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentRecord {
    pub payment_intent_id: String,
    pub reservation_id: String,
    pub user_id: String,
    pub state: PaymentState,
    pub amount: i64,
    pub currency: String,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    #[error("payment deadline exceeded")]
    Timeout,
    #[error("payment unavailable: {message}")]
    Unavailable {
        message: String,
        retry_after_secs: u64,
    },
    #[error("payment failure: {0}")]
    Internal(String),
}

#[async_trait]
pub trait Payments: Send + Sync + 'static {
    /// `Ok(None)`: the payment service does not know the intent.
    async fn lookup(&self, q: &PaymentQuery) -> Result<Option<PaymentRecord>, PaymentError>;
}

/// Why an intent does not pay for this reservation, or `Ok` if it does.
pub fn approve(q: &PaymentQuery, rec: Option<&PaymentRecord>) -> Result<(), String> {
    let Some(rec) = rec else {
        return Err("the payment intent is unknown".into());
    };
    if rec.payment_intent_id != q.payment_intent_id {
        return Err("the payment service answered about another intent".into());
    }
    if rec.state != PaymentState::Completed {
        return Err(format!(
            "the payment is {}, not COMPLETED",
            format!("{:?}", rec.state).to_uppercase()
        ));
    }
    if rec.user_id != q.user_id {
        return Err("the payment belongs to another user".into());
    }
    if rec.reservation_id != q.reservation_id {
        return Err("the payment is for another reservation".into());
    }
    if rec.amount != q.amount || !rec.currency.eq_ignore_ascii_case(&q.currency) {
        return Err("the payment amount does not match the reservation".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q() -> PaymentQuery {
        PaymentQuery {
            payment_intent_id: "pay_1".into(),
            user_id: "u1".into(),
            reservation_id: "rsv_1".into(),
            amount: 100,
            currency: "KRW".into(),
        }
    }

    fn paid() -> PaymentRecord {
        PaymentRecord {
            payment_intent_id: "pay_1".into(),
            reservation_id: "rsv_1".into(),
            user_id: "u1".into(),
            state: PaymentState::Completed,
            amount: 100,
            currency: "KRW".into(),
        }
    }

    #[test]
    fn only_a_completed_matching_payment_is_approved() {
        assert!(approve(&q(), Some(&paid())).is_ok());
        assert!(approve(&q(), None).is_err());
        let mut r = paid();
        r.state = PaymentState::Pending;
        assert!(approve(&q(), Some(&r)).is_err());
        for change in [
            |r: &mut PaymentRecord| r.user_id = "u2".into(),
            |r: &mut PaymentRecord| r.reservation_id = "rsv_2".into(),
            |r: &mut PaymentRecord| r.amount = 99,
            |r: &mut PaymentRecord| r.currency = "USD".into(),
            |r: &mut PaymentRecord| r.payment_intent_id = "pay_2".into(),
        ] {
            let mut r = paid();
            change(&mut r);
            assert!(approve(&q(), Some(&r)).is_err(), "{r:?}");
        }
    }
}
