//! The error envelope of CONTRACT §2: `{"error":{"code","message","trace_id","details"?}}`.

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::domain::FieldErrors;
use crate::idempotency::StoredResponse;
use crate::service::ServiceError;
use crate::telemetry::trace;

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

    /// The envelope for a status that reached us without one (router, panic, layer).
    pub fn for_status(status: StatusCode) -> Self {
        match status.as_u16() {
            404 => Self::new(status, "NOT_FOUND", "no such route"),
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
            400 => Self::new(status, "VALIDATION_ERROR", "the request is malformed"),
            414 => Self::new(status, "VALIDATION_ERROR", "the URI is too long"),
            431 => Self::new(
                status,
                "VALIDATION_ERROR",
                "the request's headers are too large",
            ),
            401 => Self::unauthenticated("authentication required"),
            408 | 504 => Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                "UPSTREAM_TIMEOUT",
                "the request timed out",
            ),
            s if s < 500 => Self::new(status, "VALIDATION_ERROR", "bad request"),
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
        let mut error = json!({
            "code": self.code,
            "message": message,
            "trace_id": trace::current_trace_id(),
        });
        if let Some(d) = &self.details {
            error["details"] = json!(d);
        }
        json!({ "error": error }).to_string()
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
                retry_after: Some(1),
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
