use crate::domain::{FieldErrors, TransitionError};
use crate::inventory::InventoryError;
use crate::payment::PaymentError;
use crate::store::{ConflictKind, StoreError};

/// Everything a use case can answer besides success, in the contract's terms.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Validation(String, FieldErrors),
    #[error("{0}")]
    Forbidden(String),
    #[error("reservation not found")]
    NotFound,
    #[error("event not found")]
    EventNotFound,
    #[error("the hold has expired")]
    Expired,
    #[error("{0}")]
    InvalidState(String),
    #[error("{0}")]
    InventoryConflict(String),
    #[error("payment not approved: {0}")]
    PaymentNotApproved(String),
    #[error("the first request with this key is still in flight")]
    IdempotencyInFlight,
    #[error("{0} did not answer in time")]
    UpstreamTimeout(&'static str),
    #[error("{dependency} is unavailable")]
    UpstreamUnavailable {
        dependency: &'static str,
        retry_after_secs: u64,
    },
    /// Logged with its detail; the client sees a generic message.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    /// 4xx answers are stored for replay; 5xx answers free the key.
    pub fn is_client_error(&self) -> bool {
        !matches!(
            self,
            Self::UpstreamTimeout(_)
                | Self::UpstreamUnavailable { .. }
                | Self::Internal(_)
                | Self::IdempotencyInFlight
        )
    }
}

impl From<TransitionError> for ServiceError {
    fn from(e: TransitionError) -> Self {
        match e {
            TransitionError::NotOwner => {
                Self::Forbidden("the reservation belongs to another user".into())
            }
            TransitionError::Expired => Self::Expired,
            e @ TransitionError::InvalidState(..) => Self::InvalidState(e.to_string()),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Timeout => Self::UpstreamTimeout("the store"),
            StoreError::Unavailable(_) => Self::UpstreamUnavailable {
                dependency: "the store",
                retry_after_secs: crate::schedule::retry_after_secs(),
            },
            StoreError::Conflict(ConflictKind::IdempotencyLost) => Self::IdempotencyInFlight,
            e => Self::Internal(e.to_string()),
        }
    }
}

impl From<InventoryError> for ServiceError {
    fn from(e: InventoryError) -> Self {
        match e {
            InventoryError::Timeout => Self::UpstreamTimeout("the inventory"),
            InventoryError::Unavailable {
                retry_after_secs, ..
            } => Self::UpstreamUnavailable {
                dependency: "the inventory",
                retry_after_secs,
            },
            InventoryError::Internal(m) => Self::Internal(format!("inventory: {m}")),
        }
    }
}

impl From<PaymentError> for ServiceError {
    fn from(e: PaymentError) -> Self {
        match e {
            PaymentError::Timeout => Self::UpstreamTimeout("the payment service"),
            PaymentError::Unavailable {
                retry_after_secs, ..
            } => Self::UpstreamUnavailable {
                dependency: "the payment service",
                retry_after_secs,
            },
            PaymentError::Internal(m) => Self::Internal(format!("payment: {m}")),
        }
    }
}
