//! The payment simulator (INVENTORY.md): an intent id containing `declined` is FAILED, one
//! containing `pending` is PENDING, any other non-empty id is COMPLETED for whichever reservation,
//! user and amount asks about it.

use async_trait::async_trait;

use super::{PaymentError, PaymentQuery, PaymentRecord, PaymentState, Payments};

#[derive(Clone, Copy, Debug, Default)]
pub struct PaymentSimulator;

impl PaymentSimulator {
    pub fn state_of(intent: &str) -> Option<PaymentState> {
        if intent.is_empty() {
            None
        } else if intent.contains("declined") {
            Some(PaymentState::Failed)
        } else if intent.contains("pending") {
            Some(PaymentState::Pending)
        } else {
            Some(PaymentState::Completed)
        }
    }

    pub fn simulate(q: &PaymentQuery) -> Option<PaymentRecord> {
        Some(PaymentRecord {
            payment_intent_id: q.payment_intent_id.clone(),
            reservation_id: q.reservation_id.clone(),
            user_id: q.user_id.clone(),
            state: Self::state_of(&q.payment_intent_id)?,
            amount: q.amount,
            currency: q.currency.clone(),
        })
    }
}

#[async_trait]
impl Payments for PaymentSimulator {
    async fn lookup(&self, q: &PaymentQuery) -> Result<Option<PaymentRecord>, PaymentError> {
        Ok(Self::simulate(q))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_of_the_simulator() {
        assert_eq!(
            PaymentSimulator::state_of("pay_xyz789"),
            Some(PaymentState::Completed)
        );
        assert_eq!(
            PaymentSimulator::state_of("pay_declined_1"),
            Some(PaymentState::Failed)
        );
        assert_eq!(
            PaymentSimulator::state_of("pay_pending_1"),
            Some(PaymentState::Pending)
        );
        assert_eq!(PaymentSimulator::state_of(""), None);
    }
}
