//! `GET /v1/reservations`: the caller's own reservations, newest first, a page at a time.

use axum::extract::{RawQuery, State};
use axum::Json;

use super::docs::error_example;
use super::error::ApiError;
use super::error::ErrorEnvelope;
use super::extract::Authenticated;
use super::AppState;
use crate::service::listing::ListQuery;
use crate::service::views::ReservationPage;

/// List my reservations, newest first.
///
/// Pages through the caller's reservations by `created_at` (newest first). Reservations made while
/// a client pages appear on no page twice and leave no gap: a page starts strictly after the last
/// one shown. A HOLD past its expiry shows as EXPIRED (and matches `status=EXPIRED`).
#[utoipa::path(
    get,
    path = "/v1/reservations",
    tag = "reservations",
    params(
        ("status" = Option<String>, Query, description = "Only these statuses: any of HOLD, CONFIRMED, CANCELLED, EXPIRED; repeat the parameter or separate with commas", example = "HOLD,CONFIRMED", pattern = "^(HOLD|CONFIRMED|CANCELLED|EXPIRED)(,(HOLD|CONFIRMED|CANCELLED|EXPIRED))*$"),
        ("limit" = Option<u32>, Query, description = "Page size, 1–100", minimum = 1, maximum = 100, example = 20),
        ("cursor" = Option<String>, Query, description = "The previous page's `next_cursor`; leave out for the first page"),
    ),
    responses(
        (status = 200, description = "One page; `next_cursor` is null on the last", body = ReservationPage),
        (status = 400, description = "VALIDATION_ERROR: `details` names `status`, `limit` or `cursor` (a tampered cursor or another caller's)", body = ErrorEnvelope, example = json!(error_example("VALIDATION_ERROR"))),
        (status = 401, description = "UNAUTHENTICATED", body = ErrorEnvelope, example = json!(error_example("UNAUTHENTICATED"))),
        (status = 429, description = "RATE_LIMITED, with Retry-After and RateLimit-* headers", body = ErrorEnvelope, example = json!(error_example("RATE_LIMITED"))),
        (status = 500, description = "INTERNAL: a bug; the message reveals nothing", body = ErrorEnvelope, example = json!(error_example("INTERNAL"))),
        (status = 503, description = "UPSTREAM_UNAVAILABLE: the store is down (Retry-After)", body = ErrorEnvelope, example = json!(error_example("UPSTREAM_UNAVAILABLE"))),
        (status = 504, description = "UPSTREAM_TIMEOUT: the store exceeded its deadline", body = ErrorEnvelope, example = json!(error_example("UPSTREAM_TIMEOUT"))),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    RawQuery(query): RawQuery,
) -> Result<Json<ReservationPage>, ApiError> {
    let query = ListQuery::parse(query.as_deref())
        .map_err(|details| ApiError::validation("the query is invalid", details))?;
    Ok(Json(state.service.list(&caller, &query).await?))
}
