//! The payment simulator as a `payment.v1.PaymentService` gRPC server (`reservation-api payment`).
//!
//! The contract's `GetPaymentStatusRequest` carries only the intent and the user, yet the
//! simulator's rule is "COMPLETED for whichever reservation, user and amount asks about it". So
//! the client sends what it is about to check as metadata hints (`x-reservation-id`, `x-amount`,
//! `x-currency`, see [`super::HINT_RESERVATION_ID`]) and the simulator echoes them into the `Payment`
//! it returns. A real payment service ignores the hints and answers from its own records; the
//! client never trusts them either way (`payment::approve` compares the answer with the query).

use chrono::Utc;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::convert::{error, money, timestamp};
use super::proto::common::v1::ErrorCode;
use super::proto::payment::v1::payment_service_server::{PaymentService, PaymentServiceServer};
use super::proto::payment::v1::{
    GetPaymentStatusRequest, GetPaymentStatusResponse, Payment, PaymentStatus,
};
use super::{HINT_AMOUNT, HINT_CURRENCY, HINT_RESERVATION_ID};
use crate::payment::simulator::PaymentSimulator;
use crate::payment::{PaymentQuery, PaymentState};

#[derive(Clone, Copy, Debug, Default)]
pub struct PaymentGrpc;

impl PaymentGrpc {
    pub fn into_server(self) -> PaymentServiceServer<Self> {
        PaymentServiceServer::new(self)
    }
}

pub fn status_to_wire(s: PaymentState) -> PaymentStatus {
    match s {
        PaymentState::Unspecified => PaymentStatus::Unspecified,
        PaymentState::Pending => PaymentStatus::Pending,
        PaymentState::Processing => PaymentStatus::Processing,
        PaymentState::Completed => PaymentStatus::Completed,
        PaymentState::Failed => PaymentStatus::Failed,
        PaymentState::Cancelled => PaymentStatus::Cancelled,
        PaymentState::Refunded => PaymentStatus::Refunded,
        PaymentState::Expired => PaymentStatus::Expired,
    }
}

fn hint(m: &MetadataMap, name: &str) -> String {
    m.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tonic::async_trait]
impl PaymentService for PaymentGrpc {
    async fn get_payment_status(
        &self,
        request: Request<GetPaymentStatusRequest>,
    ) -> Result<Response<GetPaymentStatusResponse>, Status> {
        let m = request.metadata();
        let (reservation_id, amount, currency) = (
            hint(m, HINT_RESERVATION_ID),
            hint(m, HINT_AMOUNT),
            hint(m, HINT_CURRENCY),
        );
        let r = request.into_inner();
        let q = PaymentQuery {
            payment_intent_id: r.payment_intent_id,
            user_id: r.user_id,
            reservation_id,
            amount: amount.parse().unwrap_or_default(),
            currency,
        };
        let out = match PaymentSimulator::simulate(&q) {
            None => GetPaymentStatusResponse {
                payment: None,
                error: Some(error(ErrorCode::NotFound, "no such payment intent")),
            },
            Some(rec) => GetPaymentStatusResponse {
                payment: Some(Payment {
                    payment_id: format!("pmt_{}", rec.payment_intent_id),
                    payment_intent_id: rec.payment_intent_id,
                    reservation_id: rec.reservation_id,
                    user_id: rec.user_id,
                    status: status_to_wire(rec.state) as i32,
                    amount: Some(money(rec.amount, &rec.currency)),
                    processed_at: Some(timestamp(Utc::now())),
                }),
                error: None,
            },
        };
        Ok(Response::new(out))
    }
}
