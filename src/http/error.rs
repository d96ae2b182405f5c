//! The error envelope of CONTRACT §2: `{"error":{"code","message","trace_id","details"?}}`.

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::domain::FieldErrors;
use crate::idempotency::StoredResponse;
use crate::service::ServiceError;
use crate::telemetry::trace;

// One type for what the server sends and what the OpenAPI documents, so the two cannot drift.
/// Error envelope (every non-2xx answer).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error code (README *Errors*); each response below shows its own.
    pub code: String,
    pub message: String,
    #[schema(example = "4bf92f3577b34da6a3ce929d0e0e4736")]
    pub trace_id: String,
    /// Field → problem, for VALIDATION_ERROR.
    // Spelled out, not `FieldErrors`: utoipa would document the alias as a `$ref` to nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<std::collections::BTreeMap<String, String>>,
}

impl ErrorEnvelope {
    pub fn new(code: &str, message: &str, trace_id: String, details: Option<FieldErrors>) -> Self {
        Self {
            error: ErrorBody {
                code: code.to_owned(),
                message: message.to_owned(),
                trace_id,
                details,
            },
        }
    }
}

#[derive(Clone, Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<FieldErrors>,
    pub retry_after: Option<u64>,
    /// Further headers of this answer (`WWW-Authenticate`, `RateLimit-*`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after: None,
            headers: Vec::new(),
        }
    }

    pub fn validation(message: impl Into<String>, details: FieldErrors) -> Self {
        Self {
            details: Some(details),
            ..Self::new(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message)
        }
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", message)
    }

    /// A token that was presented and refused (RFC 6750 §3.1).
    pub fn invalid_token(message: impl Into<String>) -> Self {
        Self {
            headers: vec![(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            )],
            ..Self::unauthenticated(message)
        }
    }

    /// 429 `RATE_LIMITED` with `Retry-After` and the `RateLimit-*` headers.
    pub fn rate_limited(l: &crate::http::rate_limit::Limited) -> Self {
        Self {
            retry_after: Some(l.retry_after_secs),
            headers: vec![
                (
                    HeaderName::from_static("ratelimit-limit"),
                    HeaderValue::from(l.limit),
                ),
                (
                    HeaderName::from_static("ratelimit-remaining"),
                    HeaderValue::from(0u32),
                ),
                (
                    HeaderName::from_static("ratelimit-reset"),
                    HeaderValue::from(l.retry_after_secs),
                ),
            ],
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMITED",
                format!("too many requests ({} limit); retry later", l.scope),
            )
        }
    }

    /// 503 `UPSTREAM_UNAVAILABLE`: a dependency is down; the client may retry after `secs`.
    pub fn unavailable(message: impl Into<String>, secs: u64) -> Self {
        Self {
            retry_after: Some(secs.max(1)),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "UPSTREAM_UNAVAILABLE",
                message,
            )
        }
    }

    pub fn idempotency_required() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "IDEMPOTENCY_REQUIRED",
            "Idempotency-Key must be 1-255 visible ASCII characters",
        )
    }

    pub fn idempotency_conflict() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "IDEMPOTENCY_CONFLICT",
            "this Idempotency-Key was used for a different request",
        )
    }

    pub fn idempotency_in_flight() -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::CONFLICT,
                "IDEMPOTENCY_CONFLICT",
                "the first request with this Idempotency-Key is still in flight",
            )
        }
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "internal error",
        )
    }

    /// The envelope for a status that reached us without one (router, panic, layer). Only a
    /// request that is malformed as sent is a `VALIDATION_ERROR`; a 4xx no code fits is
    /// `REQUEST_REFUSED`, its status kept.
    pub fn for_status(status: StatusCode) -> Self {
        match status.as_u16() {
            404 | 410 => Self::new(status, "NOT_FOUND", "no such route"),
            405 => Self::new(
                status,
                "METHOD_NOT_ALLOWED",
                "method not allowed on this route",
            ),
            413 => Self::new(status, "VALIDATION_ERROR", "the body is over 64 KiB"),
            415 => Self::new(
                status,
                "VALIDATION_ERROR",
                "Content-Type must be application/json",
            ),
            400 | 411 | 422 => Self::new(status, "VALIDATION_ERROR", "the request is malformed"),
            414 => Self::new(status, "VALIDATION_ERROR", "the URI is too long"),
            431 => Self::new(
                status,
                "VALIDATION_ERROR",
                "the request's headers are too large",
            ),
            401 => Self::unauthenticated("authentication required"),
            403 => Self::new(status, "FORBIDDEN", "forbidden"),
            429 => Self {
                retry_after: Some(1),
                ..Self::new(status, "RATE_LIMITED", "too many requests")
            },
            408 | 504 => Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                "UPSTREAM_TIMEOUT",
                "the request timed out",
            ),
            s if s < 500 => Self::new(status, "REQUEST_REFUSED", format!("refused with {s}")),
            _ => Self::internal(),
        }
    }

    /// The catalogue message of this answer: its code's, or a more precise variant of it.
    fn message_id(&self) -> String {
        let variant = match (self.code, self.status.as_u16()) {
            ("VALIDATION_ERROR", 413) => Some("too-large"),
            ("VALIDATION_ERROR", 415) => Some("not-json"),
            ("IDEMPOTENCY_CONFLICT", _) if self.retry_after.is_some() => Some("in-flight"),
            ("UNAUTHENTICATED", _)
                if self
                    .headers
                    .iter()
                    .any(|(n, _)| n == header::WWW_AUTHENTICATE) =>
            {
                Some("invalid-token")
            }
            _ => None,
        };
        match variant {
            Some(v) => format!("{}-{v}", self.code),
            None => self.code.to_owned(),
        }
    }

    /// The envelope, its message in the request's language (`Accept-Language`) from the
    /// catalogues in `locales/`. The specific reason (English, for operators) goes to the log.
    pub fn body(&self) -> String {
        tracing::info!(target: "http", code = self.code, reason = %self.message, "error answer");
        let message = crate::i18n::message(&self.message_id(), crate::i18n::current());
        let envelope = ErrorEnvelope::new(
            self.code,
            &message,
            trace::current_trace_id(),
            self.details.clone(),
        );
        // Strings and a map of strings: serialising cannot fail.
        serde_json::to_string(&envelope).unwrap_or_default()
    }

    /// The answer as stored for idempotent replay.
    pub fn to_stored(&self) -> StoredResponse {
        StoredResponse {
            status: self.status.as_u16(),
            body: self.body(),
        }
    }
}

impl From<crate::auth::admission::AdmissionError> for ApiError {
    fn from(e: crate::auth::admission::AdmissionError) -> Self {
        use crate::auth::admission::AdmissionError as A;
        match e {
            A::Refused(r) => Self {
                details: Some(r.details()),
                ..Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", r.message())
            },
            A::Unavailable(detail) => {
                tracing::warn!(error = %detail, "admission check failed closed");
                Self::unavailable("the admission check is unavailable; retry shortly", 1)
            }
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        use StatusCode as S;
        let msg = e.to_string();
        match e {
            ServiceError::Validation(m, details) => Self::validation(m, details),
            ServiceError::Forbidden(_) => Self::new(S::FORBIDDEN, "FORBIDDEN", msg),
            ServiceError::NotFound => Self::new(S::NOT_FOUND, "RESERVATION_NOT_FOUND", msg),
            ServiceError::EventNotFound => Self::new(S::NOT_FOUND, "EVENT_NOT_FOUND", msg),
            ServiceError::Expired => Self::new(S::CONFLICT, "RESERVATION_EXPIRED", msg),
            ServiceError::InvalidState(_) => Self::new(S::CONFLICT, "INVALID_STATE", msg),
            ServiceError::InventoryConflict(_) => Self::new(S::CONFLICT, "INVENTORY_CONFLICT", msg),
            ServiceError::PaymentNotApproved(_) => {
                Self::new(S::PRECONDITION_FAILED, "PAYMENT_NOT_APPROVED", msg)
            }
            ServiceError::IdempotencyInFlight => Self::idempotency_in_flight(),
            // The call may have happened: the same request with the same key settles it.
            ServiceError::UpstreamTimeout(_) => Self {
                retry_after: Some(crate::schedule::retry_after_secs()),
                ..Self::new(S::GATEWAY_TIMEOUT, "UPSTREAM_TIMEOUT", msg)
            },
            ServiceError::UpstreamUnavailable {
                retry_after_secs, ..
            } => Self {
                retry_after: Some(retry_after_secs.max(1)),
                ..Self::new(S::SERVICE_UNAVAILABLE, "UPSTREAM_UNAVAILABLE", msg)
            },
            ServiceError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                Self::internal()
            }
        }
    }
}

pub fn json_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = json_response(self.status, self.body());
        let h = r.headers_mut();
        if let Some(secs) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        for (name, value) in self.headers {
            h.insert(name, value);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_without_an_envelope_gets_a_fitting_code_and_validation_only_for_bad_input() {
        for (status, code) in [
            (400, "VALIDATION_ERROR"),
            (413, "VALIDATION_ERROR"),
            (415, "VALIDATION_ERROR"),
            (422, "VALIDATION_ERROR"),
            (401, "UNAUTHENTICATED"),
            (403, "FORBIDDEN"),
            (404, "NOT_FOUND"),
            (405, "METHOD_NOT_ALLOWED"),
            (429, "RATE_LIMITED"),
            (406, "REQUEST_REFUSED"),
            (409, "REQUEST_REFUSED"),
            (417, "REQUEST_REFUSED"),
            (500, "INTERNAL"),
        ] {
            let e = ApiError::for_status(StatusCode::from_u16(status).unwrap());
            assert_eq!(e.code, code, "{status}");
            assert!(e.status.as_u16() == status || e.status.as_u16() == 500);
        }
        assert_eq!(
            ApiError::for_status(StatusCode::TOO_MANY_REQUESTS).retry_after,
            Some(1)
        );
    }

    #[test]
    fn the_body_is_the_documented_envelope() {
        let mut details = FieldErrors::new();
        details.insert("qty".into(), "must be between 1 and 10".into());
        let body: serde_json::Value =
            serde_json::from_str(&ApiError::validation("bad qty", details).body()).unwrap();
        let error = body["error"].as_object().unwrap();
        let mut keys: Vec<_> = error.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["code", "details", "message", "trace_id"]);
        assert_eq!(error["code"], "VALIDATION_ERROR");
        assert_eq!(error["details"]["qty"], "must be between 1 and 10");
        let plain: serde_json::Value = serde_json::from_str(&ApiError::internal().body()).unwrap();
        assert!(plain["error"].get("details").is_none(), "{plain}");
    }
}
