//! [`Payments`] over gRPC: `payment.v1.PaymentService/GetPaymentStatus` through the resilience
//! stack.
//!
//! `GetPaymentStatusRequest` carries only the intent and the user. The client also sends what it
//! is about to check — the reservation, the amount and the currency — as the metadata hints
//! `x-reservation-id`, `x-amount` and `x-currency`. They are hints only: a real payment service
//! ignores them and answers from its own records; the bundled simulator (which has no records)
//! echoes them, so that it approves whichever reservation, user and amount asks. The client never
//! trusts them: `payment::approve` compares the `Payment` that comes back with the query.
//!
//! The call is a read, so it is idempotent and may be retried.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tonic::transport::Channel;
use tonic::Status;
use tower::ServiceExt;

use super::convert::error_code;
use super::local::serve_in_process;
use super::payment_server::PaymentGrpc;
use super::proto::common::v1::ErrorCode;
use super::proto::payment::v1::payment_service_client::PaymentServiceClient;
use super::proto::payment::v1::payment_service_server::PaymentService;
use super::proto::payment::v1::{
    GetPaymentStatusRequest, GetPaymentStatusResponse, Payment, PaymentStatus,
};
use super::resilience::{self, insert_metadata, Call, CallError, Stack};
use super::{channel, endpoint_uri, HINT_AMOUNT, HINT_CURRENCY, HINT_RESERVATION_ID, IN_PROCESS};
use crate::config::GrpcClientSettings;
use crate::payment::{PaymentError, PaymentQuery, PaymentRecord, PaymentState, Payments};

const METHOD: &str = "payment.v1.PaymentService/GetPaymentStatus";

#[derive(Clone, Debug)]
pub struct PaymentRpc {
    pub request: GetPaymentStatusRequest,
    pub reservation_id: String,
    pub amount: i64,
    pub currency: String,
}

pub struct GrpcPayments {
    stack: Stack<PaymentRpc, GetPaymentStatusResponse>,
    timeout: Duration,
    endpoint: String,
}

pub fn state_from_wire(status: i32) -> PaymentState {
    match PaymentStatus::try_from(status) {
        Ok(PaymentStatus::Pending) => PaymentState::Pending,
        Ok(PaymentStatus::Processing) => PaymentState::Processing,
        Ok(PaymentStatus::Completed) => PaymentState::Completed,
        Ok(PaymentStatus::Failed) => PaymentState::Failed,
        Ok(PaymentStatus::Cancelled) => PaymentState::Cancelled,
        Ok(PaymentStatus::Refunded) => PaymentState::Refunded,
        Ok(PaymentStatus::Expired) => PaymentState::Expired,
        Ok(PaymentStatus::Unspecified) | Err(_) => PaymentState::Unspecified,
    }
}

pub fn record_from_wire(p: Payment) -> PaymentRecord {
    let (amount, currency) = p.amount.map(|m| (m.amount, m.currency)).unwrap_or_default();
    PaymentRecord {
        payment_intent_id: p.payment_intent_id,
        reservation_id: p.reservation_id,
        user_id: p.user_id,
        state: state_from_wire(p.status),
        amount,
        currency,
    }
}

/// The answer as the service sees it: a payment, or `None` if the intent is unknown (to us).
pub fn lookup_outcome(r: GetPaymentStatusResponse) -> Result<Option<PaymentRecord>, PaymentError> {
    if let Some(p) = r.payment {
        return Ok(Some(record_from_wire(p)));
    }
    match r.error.as_ref().map(error_code) {
        None
        | Some(
            ErrorCode::NotFound
            | ErrorCode::Forbidden
            | ErrorCode::Unauthorized
            | ErrorCode::Unauthenticated
            | ErrorCode::InvalidArgument,
        ) => Ok(None),
        Some(ErrorCode::Unavailable | ErrorCode::RateLimited) => Err(PaymentError::Unavailable {
            message: "the payment service is unavailable".into(),
            retry_after_secs: crate::schedule::retry_after_secs(),
        }),
        Some(ErrorCode::Timeout | ErrorCode::UpstreamTimeout) => Err(PaymentError::Timeout),
        Some(code) => Err(PaymentError::Internal(format!(
            "GetPaymentStatus: {} {}",
            code.as_str_name(),
            r.error.map(|e| e.message).unwrap_or_default()
        ))),
    }
}

/// Where a call's attempt goes: the payment service's gRPC channel, or the bundled simulator's
/// handler in this process, with the same request (metadata hints included) but no socket.
#[derive(Clone)]
enum Peer {
    Remote(PaymentServiceClient<Channel>),
    InProcess(Arc<PaymentGrpc>),
}

impl Peer {
    async fn attempt(
        self,
        call: Call<PaymentRpc>,
        left: Duration,
    ) -> Result<GetPaymentStatusResponse, Status> {
        let rpc = &call.rpc;
        let mut req = call.request(rpc.request.clone(), left);
        let m = req.metadata_mut();
        insert_metadata(m, HINT_RESERVATION_ID, &rpc.reservation_id);
        insert_metadata(m, HINT_AMOUNT, &rpc.amount.to_string());
        insert_metadata(m, HINT_CURRENCY, &rpc.currency);
        match self {
            Self::Remote(mut client) => Ok(client.get_payment_status(req).await?.into_inner()),
            Self::InProcess(server) => {
                serve_in_process(call.method, async {
                    Ok(server.get_payment_status(req).await?.into_inner())
                })
                .await
            }
        }
    }
}

impl GrpcPayments {
    /// The payment service at `address`, over gRPC.
    pub fn connect(address: &str, settings: &GrpcClientSettings) -> Result<Self, String> {
        let client = PaymentServiceClient::new(channel(address, settings)?);
        Self::over(Peer::Remote(client), endpoint_uri(address), settings)
    }

    /// The bundled simulator in this process: the same client stack around its handler.
    pub fn in_process(server: PaymentGrpc, settings: &GrpcClientSettings) -> Result<Self, String> {
        Self::over(
            Peer::InProcess(Arc::new(server)),
            IN_PROCESS.to_owned(),
            settings,
        )
    }

    fn over(peer: Peer, endpoint: String, settings: &GrpcClientSettings) -> Result<Self, String> {
        let stack = resilience::stack(
            "payment",
            settings,
            move |call: Call<PaymentRpc>, left: Duration| peer.clone().attempt(call, left),
        )?;
        Ok(Self {
            stack,
            timeout: settings.timeout,
            endpoint,
        })
    }

    /// `http://host:port`, or [`IN_PROCESS`] for the bundled simulator called in process.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

#[async_trait]
impl Payments for GrpcPayments {
    async fn lookup(&self, q: &PaymentQuery) -> Result<Option<PaymentRecord>, PaymentError> {
        let rpc = PaymentRpc {
            request: GetPaymentStatusRequest {
                payment_intent_id: q.payment_intent_id.clone(),
                user_id: q.user_id.clone(),
            },
            reservation_id: q.reservation_id.clone(),
            amount: q.amount,
            currency: q.currency.clone(),
        };
        // A read: safe to retry.
        match self
            .stack
            .clone()
            .oneshot(Call::new(METHOD, rpc, self.timeout, true))
            .await
        {
            Ok(r) => lookup_outcome(r),
            Err(CallError::Failed(s)) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(CallError::Timeout) => Err(PaymentError::Timeout),
            Err(CallError::Unavailable {
                message,
                retry_after_secs,
            }) => Err(PaymentError::Unavailable {
                message,
                retry_after_secs,
            }),
            Err(CallError::Failed(s)) if resilience::is_peer_failure(s.code()) => {
                Err(PaymentError::Unavailable {
                    message: format!("GetPaymentStatus: {}", resilience::code_name(s.code())),
                    retry_after_secs: crate::schedule::retry_after_secs(),
                })
            }
            Err(CallError::Failed(s)) => Err(PaymentError::Internal(format!(
                "GetPaymentStatus: {} {}",
                resilience::code_name(s.code()),
                s.message()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::convert::{error, money};

    #[test]
    fn unknown_intents_are_none_and_payments_are_records() {
        let nf = GetPaymentStatusResponse {
            payment: None,
            error: Some(error(ErrorCode::NotFound, "no")),
        };
        assert_eq!(lookup_outcome(nf).unwrap(), None);
        let internal = GetPaymentStatusResponse {
            payment: None,
            error: Some(error(ErrorCode::Internal, "x")),
        };
        assert!(lookup_outcome(internal).is_err());
        let p = Payment {
            payment_intent_id: "pay_1".into(),
            reservation_id: "rsv_1".into(),
            user_id: "u1".into(),
            status: PaymentStatus::Completed as i32,
            amount: Some(money(100, "KRW")),
            ..Default::default()
        };
        let rec = lookup_outcome(GetPaymentStatusResponse {
            payment: Some(p),
            error: None,
        })
        .unwrap()
        .unwrap();
        assert_eq!(rec.state, PaymentState::Completed);
        assert_eq!((rec.amount, rec.currency.as_str()), (100, "KRW"));
    }
}
