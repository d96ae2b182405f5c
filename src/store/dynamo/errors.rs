//! DynamoDB failures in the store's terms: timeouts and throttling are worth a retry (503), a
//! cancelled transaction names each item's reason, anything else is a bug (500).

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;

use crate::store::StoreError;

/// Map an SDK failure that is not a condition failure.
pub fn sdk_err<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    e: SdkError<E, R>,
) -> StoreError {
    match &e {
        SdkError::TimeoutError(_) => StoreError::Timeout,
        SdkError::DispatchFailure(d) if d.is_timeout() => StoreError::Timeout,
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StoreError::Unavailable(format!("{e:?}"))
        }
        SdkError::ServiceError(se) => service_err(se.err().code(), se.err().message()),
        _ => StoreError::Internal(format!("{e:?}")),
    }
}

/// Throttling and DynamoDB's own failures are worth a retry (503); anything else is a bug (500).
pub fn service_err(code: Option<&str>, message: Option<&str>) -> StoreError {
    let code = code.unwrap_or("Unknown");
    let msg = format!("{code}: {}", message.unwrap_or_default());
    match code {
        "ProvisionedThroughputExceededException"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "InternalServerError"
        | "InternalFailure"
        | "ServiceUnavailable"
        // Another attempt with the same ClientRequestToken is still running: its outcome is not
        // known yet, so this is an ambiguous failure, settled by reading.
        | "TransactionInProgressException"
        // The token was used with other items: a retried operation that changed, never a bug of
        // the caller's request; treated like a lost answer.
        | "IdempotentParameterMismatchException" => StoreError::Unavailable(msg),
        _ => StoreError::Internal(msg),
    }
}

/// Each item's cancellation reason code when DynamoDB cancelled a transaction; any other failure
/// mapped as [`sdk_err`] does.
pub fn cancellation_reasons<R: std::fmt::Debug>(
    err: SdkError<TransactWriteItemsError, R>,
) -> Result<Vec<Option<String>>, StoreError> {
    let service = match err {
        SdkError::ServiceError(se) => se.into_err(),
        other => return Err(sdk_err(other)),
    };
    match &service {
        TransactWriteItemsError::TransactionCanceledException(tc) => Ok(tc
            .cancellation_reasons()
            .iter()
            .map(|r| r.code().map(str::to_owned))
            .collect()),
        _ => Err(service_err(service.code(), service.message())),
    }
}

pub fn is_condition_failure<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    matches!(e, SdkError::ServiceError(se) if se.err().code() == Some("ConditionalCheckFailedException"))
}

/// A request builder's complaint (a missing required field): a bug.
pub fn build_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(e.to_string())
}
