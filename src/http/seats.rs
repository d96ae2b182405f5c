//! `GET /v1/events/{event_id}/seats`: the seat map, cacheable for a second, with an `ETag`.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::docs::error_example;
use super::error::ErrorEnvelope;
use super::error::{json_response, ApiError};
use super::extract::Authenticated;
use super::AppState;
use crate::service::views::SeatMapView;

/// Fresh for one second: long enough to absorb an on-sale's refreshes, short enough that a seat
/// taken a moment ago does not look free for long.
const CACHE_CONTROL: &str = "max-age=1";

/// The seat map of an event.
///
/// Every section (id, name, price) with every seat's id, row, number and status: AVAILABLE, HELD
/// or SOLD. Who holds a seat is never shown; a hold past its expiry is AVAILABLE. Cacheable for a
/// second (`Cache-Control: max-age=1`); send the `ETag` back as `If-None-Match` to get 304 Not
/// Modified while nothing changed.
#[utoipa::path(
    get,
    path = "/v1/events/{event_id}/seats",
    tag = "events",
    params(
        ("event_id" = String, Path, description = "The event, e.g. evt_2025_1001", example = "evt_2025_1001"),
        ("If-None-Match" = Option<String>, Header, description = "An `ETag` of an earlier answer: 304 if the map is unchanged"),
    ),
    responses(
        (status = 200, description = "The seat map", body = SeatMapView, headers(
            ("ETag" = String, description = "Changes whenever any seat's status does"),
            ("Cache-Control" = String, description = "max-age=1"),
        )),
        (status = 304, description = "Not Modified: the `If-None-Match` ETag is current"),
        (status = 401, description = "UNAUTHENTICATED", body = ErrorEnvelope, example = json!(error_example("UNAUTHENTICATED"))),
        (status = 404, description = "EVENT_NOT_FOUND: the inventory has no such event", body = ErrorEnvelope, example = json!(error_example("EVENT_NOT_FOUND"))),
        (status = 429, description = "RATE_LIMITED, with Retry-After and RateLimit-* headers", body = ErrorEnvelope, example = json!(error_example("RATE_LIMITED"))),
        (status = 500, description = "INTERNAL: a bug; the message reveals nothing", body = ErrorEnvelope, example = json!(error_example("INTERNAL"))),
        (status = 503, description = "UPSTREAM_UNAVAILABLE: the inventory is down, its circuit open or its bulkhead full (Retry-After)", body = ErrorEnvelope, example = json!(error_example("UPSTREAM_UNAVAILABLE"))),
        (status = 504, description = "UPSTREAM_TIMEOUT: the inventory exceeded its deadline", body = ErrorEnvelope, example = json!(error_example("UPSTREAM_TIMEOUT"))),
    ),
    security(("bearer" = []))
)]
pub async fn seat_map(
    State(state): State<AppState>,
    Authenticated(_caller): Authenticated,
    Path(event_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let map = state.service.seat_map(&event_id).await?;
    let body = serde_json::to_string(&map).map_err(|_| ApiError::internal())?;
    let etag = format!(
        "\"{}\"",
        hex::encode(&Sha256::digest(body.as_bytes())[..16])
    );
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| matches_etag(v, &etag));
    let mut response = match unchanged {
        true => StatusCode::NOT_MODIFIED.into_response(),
        false => json_response(StatusCode::OK, body),
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
    Ok(response)
}

/// `If-None-Match` (RFC 9110 §13.1.2): `*`, or a list of entity tags compared weakly. Hand-written:
/// four lines, where a typed-header crate would be a new dependency for one comparison.
fn matches_etag(if_none_match: &str, etag: &str) -> bool {
    if_none_match
        .split(',')
        .map(|t| t.trim())
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

#[cfg(test)]
mod tests {
    use super::matches_etag;

    #[test]
    fn if_none_match_compares_weakly_and_takes_lists() {
        let tag = "\"abc\"";
        assert!(matches_etag("\"abc\"", tag));
        assert!(matches_etag("W/\"abc\"", tag));
        assert!(matches_etag("\"x\", \"abc\"", tag));
        assert!(matches_etag("*", tag));
        assert!(!matches_etag("\"abd\"", tag));
        assert!(!matches_etag("abc", tag));
    }
}
