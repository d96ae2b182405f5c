//! Extractors that answer in the envelope: the caller (bearer JWT), the idempotency key, a JSON body.

use axum::body::{to_bytes, Body};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts, StatusCode};
use serde_json::Value;

use super::error::ApiError;
use super::strict_json::{self, StrictJsonError};
use super::AppState;
use crate::auth::AuthError;
use crate::domain::FieldErrors;
use crate::idempotency::IdempotencyKey;
use crate::service::Caller;
use crate::telemetry::trace;

pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The authenticated caller.
pub struct Authenticated(pub Caller);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                auth_failure(&AuthError::Missing);
                ApiError::unauthenticated(AuthError::Missing.to_string())
            })?;
        let user_id = match state.verifier.verify(token).await {
            Ok(u) => u,
            Err(e) => {
                auth_failure(&e);
                return Err(match e {
                    AuthError::KeysUnavailable => ApiError::unavailable(e.to_string(), 5),
                    e => ApiError::invalid_token(e.to_string()),
                });
            }
        };
        // After authentication (the limit is per user), before any work or the idempotency key.
        state
            .limits
            .check(&user_id)
            .map_err(|l| ApiError::rate_limited(&l))?;
        Ok(Self(Caller {
            user_id,
            trace_id: trace::current_trace_id(),
        }))
    }
}

fn auth_failure(e: &AuthError) {
    metrics::counter!("auth_failures_total", "reason" => e.reason()).increment(1);
}

/// A valid `Idempotency-Key` header.
pub struct IdemKey(pub IdempotencyKey);

impl<S: Send + Sync> FromRequestParts<S> for IdemKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .and_then(IdempotencyKey::parse)
            .map(Self)
            .ok_or_else(ApiError::idempotency_required)
    }
}

/// A JSON body of at most 64 KiB with `Content-Type: application/json`, kept as a `Value` so that
/// it can be fingerprinted and then validated field by field. An empty body reads as `{}` only
/// where `EMPTY_OK` (cancel takes none).
pub struct JsonBody<const EMPTY_OK: bool>(pub Value);

fn is_json(parts_ct: Option<&str>) -> bool {
    parts_ct
        .and_then(|ct| ct.split(';').next())
        .map(|m| {
            let m = m.trim().to_ascii_lowercase();
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        })
        .unwrap_or(false)
}

impl<S: Send + Sync, const EMPTY_OK: bool> FromRequest<S> for JsonBody<EMPTY_OK> {
    type Rejection = ApiError;

    async fn from_request(req: Request<Body>, _: &S) -> Result<Self, ApiError> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let declared_len = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared_len.is_some_and(|n| n > MAX_BODY_BYTES) {
            return Err(ApiError::for_status(StatusCode::PAYLOAD_TOO_LARGE));
        }
        let bytes = to_bytes(req.into_body(), MAX_BODY_BYTES)
            .await
            .map_err(|_| ApiError::for_status(StatusCode::PAYLOAD_TOO_LARGE))?;
        if bytes.iter().all(u8::is_ascii_whitespace) && EMPTY_OK {
            return Ok(Self(Value::Object(Default::default())));
        }
        if !is_json(content_type.as_deref()) {
            return Err(ApiError::for_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        }
        let value = strict_json::from_slice(&bytes).map_err(|e| match e {
            StrictJsonError::DuplicateKey(key) => ApiError::validation(
                format!("the body repeats the key {key:?}"),
                FieldErrors::from([(key, "is given more than once".to_owned())]),
            ),
            StrictJsonError::Malformed(e) => ApiError::validation(
                "the body is not valid JSON",
                FieldErrors::from([("body".to_owned(), format!("malformed JSON: {e}"))]),
            ),
        })?;
        Ok(Self(value))
    }
}

#[cfg(test)]
mod tests {
    use super::is_json;

    #[test]
    fn json_media_types() {
        assert!(is_json(Some("application/json")));
        assert!(is_json(Some("Application/JSON; charset=utf-8")));
        assert!(is_json(Some("application/merge-patch+json")));
        assert!(!is_json(Some("text/plain")));
        assert!(!is_json(None));
    }
}
