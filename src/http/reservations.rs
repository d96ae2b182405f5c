//! `/v1/reservations`: create, get, confirm, cancel.

use std::future::Future;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::docs::{error_example, not_json_example, too_large_example};
use super::error::{json_response, ApiError, ErrorEnvelope};
use super::extract::{Authenticated, IdemKey, JsonBody};
use super::AppState;
use crate::auth::admission::Admission;
use crate::domain::{ConfirmInput, CreateInput};
use crate::idempotency::{fingerprint, Begin, IdempotencyTicket, StoredResponse};
use crate::service::views::{Cancelled, Confirmed, HoldCreated, ReservationView};
use crate::service::{Reply, ReservationService, ServiceError};
use crate::telemetry::trace;

/// Create body: `qty` (alias `quantity`) 1–10; `seat_ids` optional, exactly `qty` distinct ids of
/// the event's catalogue. An event or seat the catalogue does not have is 400 naming the field.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct CreateReservationBody {
    #[schema(
        example = "evt_2025_1001",
        min_length = 1,
        max_length = 64,
        pattern = "^[A-Za-z0-9_-]+$"
    )]
    event_id: String,
    #[schema(example = 2, minimum = 1, maximum = 10)]
    qty: u32,
    /// Distinct seat ids, exactly `qty` of them.
    #[schema(example = json!(["A-1", "A-2"]), min_items = 1, max_items = 10)]
    seat_ids: Option<std::collections::BTreeSet<String>>,
    /// Must equal the token's `sub` when given (else 403 FORBIDDEN); best left out.
    #[schema(
        example = "u123",
        max_length = 255,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$"
    )]
    user_id: Option<String>,
    /// The waiting room's admission token: required when `ADMISSION_MODE=redis`; admits one hold.
    #[schema(max_length = 512, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$")]
    reservation_token: Option<String>,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ConfirmReservationBody {
    /// From the payment service. The bundled simulator approves any id except those containing
    /// `declined` (FAILED) or `pending` (PENDING).
    #[schema(
        example = "pay_xyz789",
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$"
    )]
    payment_intent_id: String,
}

fn stored(r: StoredResponse, replayed: bool) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = json_response(status, r.body);
    if replayed {
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    resp
}

/// A create's admission check: run once the key is taken (a replay never consults Redis); a
/// refusal frees the key again, and a hold that fails gives the token back.
struct Gate {
    admission: Arc<Admission>,
    token: Option<String>,
    event_id: String,
    user_id: String,
}

/// CONTRACT §4 around one use case. The work runs in its own task, so a client that hangs up
/// cannot leave a hold without its reservation or a key stuck IN_PROGRESS.
async fn idempotent<F, Fut>(
    service: Arc<ReservationService>,
    scoped_key: String,
    fingerprint: String,
    gate: Option<Gate>,
    work: F,
) -> Response
where
    F: FnOnce(Arc<ReservationService>, IdempotencyTicket) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Reply, ServiceError>> + Send + 'static,
{
    let task = async move {
        let ticket = match service.begin(&scoped_key, &fingerprint).await {
            Err(e) => return ApiError::from(e).into_response(),
            Ok(Begin::Replay(r)) => return stored(r, true),
            Ok(Begin::InFlight) => return ApiError::idempotency_in_flight().into_response(),
            Ok(Begin::Conflict) => return ApiError::idempotency_conflict().into_response(),
            Ok(Begin::Started(t)) => t,
        };
        let pass = match gate {
            None => None,
            Some(g) => match g
                .admission
                .consume(g.token.as_deref(), &g.event_id, &g.user_id)
                .await
            {
                Ok(pass) => Some((g.admission, pass)),
                Err(e) => {
                    // Not admitted: the request did nothing, so the key stays free.
                    service.finish(ticket, None).await;
                    return ApiError::from(e).into_response();
                }
            },
        };
        let result = work(service.clone(), ticket.clone()).await;
        if let Some((admission, pass)) = pass {
            if !matches!(&result, Ok(r) if (200..300).contains(&r.response.status)) {
                admission.give_back(pass).await;
            }
        }
        match result {
            Ok(reply) => {
                if !reply.recorded {
                    service.finish(ticket, Some(reply.response.clone())).await;
                }
                stored(reply.response, false)
            }
            Err(e) if e.is_client_error() => {
                let answer = ApiError::from(e).to_stored();
                service.finish(ticket, Some(answer.clone())).await;
                stored(answer, false)
            }
            Err(e) => {
                service.finish(ticket, None).await;
                ApiError::from(e).into_response()
            }
        }
    };
    // The work runs on even if the client hangs up, still in the request's span and language.
    let lang = crate::i18n::current();
    let handle = tokio::spawn(crate::i18n::scope(
        lang,
        tracing::Instrument::in_current_span(task),
    ));
    handle
        .await
        .unwrap_or_else(|_| ApiError::internal().into_response())
}

/// A path id with a control character is refused; any other unknown id is simply not found. Only
/// a well-formed id is noted for the request's log lines (a junk id is logged once, cut short, as
/// the access log's path).
fn path_id(id: &str) -> Result<(), ApiError> {
    if crate::domain::input::has_control(id) {
        return Err(validation(crate::domain::FieldErrors::from([(
            "id".to_owned(),
            "must not contain control characters".to_owned(),
        )])));
    }
    if crate::domain::ids::is_reservation_id(id) {
        trace::note_reservation(id);
    }
    Ok(())
}

fn validation(details: crate::domain::FieldErrors) -> ApiError {
    ApiError::validation("the request is invalid", details)
}

/// Hold seats.
#[utoipa::path(
    post,
    path = "/v1/reservations",
    tag = "reservations",
    request_body(content = CreateReservationBody, example = json!({"event_id": "evt_2025_1001", "qty": 2})),
    params(("Idempotency-Key" = String, Header, description = "1–255 visible ASCII characters; scoped to the user", min_length = 1, max_length = 255, pattern = "^[!-~]+$")),
    responses(
        (status = 201, description = "Seats held", body = HoldCreated),
        (status = 400, description = "VALIDATION_ERROR or IDEMPOTENCY_REQUIRED", body = ErrorEnvelope, examples(
            ("VALIDATION_ERROR" = (value = json!(error_example("VALIDATION_ERROR")))),
            ("IDEMPOTENCY_REQUIRED" = (value = json!(error_example("IDEMPOTENCY_REQUIRED"))))
        )),
        (status = 401, description = "UNAUTHENTICATED", body = ErrorEnvelope, example = json!(error_example("UNAUTHENTICATED"))),
        (status = 403, description = "FORBIDDEN: user_id differs from the token's subject, or (admission on) the reservation_token is missing, unknown or expired, for another event or user, or already used — `details.reservation_token` says which", body = ErrorEnvelope, example = json!(error_example("FORBIDDEN"))),
        (status = 409, description = "INVENTORY_CONFLICT or IDEMPOTENCY_CONFLICT", body = ErrorEnvelope, examples(
            ("INVENTORY_CONFLICT" = (value = json!(error_example("INVENTORY_CONFLICT")))),
            ("IDEMPOTENCY_CONFLICT" = (value = json!(error_example("IDEMPOTENCY_CONFLICT"))))
        )),
        (status = 413, description = "VALIDATION_ERROR: the body is over 64 KiB", body = ErrorEnvelope, example = json!(too_large_example())),
        (status = 415, description = "VALIDATION_ERROR: the body is not application/json", body = ErrorEnvelope, example = json!(not_json_example())),
        (status = 429, description = "RATE_LIMITED, with Retry-After and RateLimit-* headers", body = ErrorEnvelope, example = json!(error_example("RATE_LIMITED"))),
        (status = 500, description = "INTERNAL: a bug; the message reveals nothing", body = ErrorEnvelope, example = json!(error_example("INTERNAL"))),
        (status = 503, description = "UPSTREAM_UNAVAILABLE: a dependency is down, its circuit open or its bulkhead full (Retry-After)", body = ErrorEnvelope, example = json!(error_example("UPSTREAM_UNAVAILABLE"))),
        (status = 504, description = "UPSTREAM_TIMEOUT: a dependency exceeded its deadline", body = ErrorEnvelope, example = json!(error_example("UPSTREAM_TIMEOUT"))),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    IdemKey(key): IdemKey,
    JsonBody(body): JsonBody<false>,
) -> Result<Response, ApiError> {
    let input = CreateInput::parse(&body).map_err(validation)?;
    state.service.check_create(&caller, &input)?;
    let fp = fingerprint("POST", "/v1/reservations", &[], &body);
    let scoped = key.scoped(&caller.user_id);
    let gate = state.admission.clone().map(|admission| Gate {
        admission,
        token: input.reservation_token.clone(),
        event_id: input.event_id.clone(),
        user_id: caller.user_id.clone(),
    });
    Ok(idempotent(
        state.service.clone(),
        scoped,
        fp,
        gate,
        move |svc, ticket| async move { svc.create(&caller, &input, key.as_str(), &ticket).await },
    )
    .await)
}

/// Read one reservation (owner only).
#[utoipa::path(
    get,
    path = "/v1/reservations/{id}",
    tag = "reservations",
    params(("id" = String, Path, description = "rsv_…", min_length = 5, max_length = 64, pattern = "^rsv_[A-Za-z0-9]+$")),
    responses(
        (status = 200, description = "The reservation", body = ReservationView),
        (status = 400, description = "VALIDATION_ERROR: the id has control characters", body = ErrorEnvelope, example = json!(error_example("VALIDATION_ERROR"))),
        (status = 401, description = "UNAUTHENTICATED", body = ErrorEnvelope, example = json!(error_example("UNAUTHENTICATED"))),
        (status = 403, description = "FORBIDDEN: another user's reservation", body = ErrorEnvelope, example = json!(error_example("FORBIDDEN"))),
        (status = 404, description = "RESERVATION_NOT_FOUND", body = ErrorEnvelope, example = json!(error_example("RESERVATION_NOT_FOUND"))),
        (status = 429, description = "RATE_LIMITED, with Retry-After and RateLimit-* headers", body = ErrorEnvelope, example = json!(error_example("RATE_LIMITED"))),
        (status = 500, description = "INTERNAL: a bug; the message reveals nothing", body = ErrorEnvelope, example = json!(error_example("INTERNAL"))),
        (status = 503, description = "UPSTREAM_UNAVAILABLE: a dependency is down, its circuit open or its bulkhead full (Retry-After)", body = ErrorEnvelope, example = json!(error_example("UPSTREAM_UNAVAILABLE"))),
        (status = 504, description = "UPSTREAM_TIMEOUT: a dependency exceeded its deadline", body = ErrorEnvelope, example = json!(error_example("UPSTREAM_TIMEOUT"))),
    ),
    security(("bearer" = []))
)]
pub async fn get_one(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<ReservationView>, ApiError> {
    path_id(&id)?;
    Ok(Json(state.service.get(&caller, &id).await?))
}

/// Confirm a hold after payment.
#[utoipa::path(
    post,
    path = "/v1/reservations/{id}/confirm",
    tag = "reservations",
    request_body(content = ConfirmReservationBody, example = json!({"payment_intent_id": "pay_xyz789"})),
    params(
        ("id" = String, Path, description = "rsv_…", min_length = 5, max_length = 64, pattern = "^rsv_[A-Za-z0-9]+$"),
        ("Idempotency-Key" = String, Header, description = "1–255 visible ASCII characters", min_length = 1, max_length = 255, pattern = "^[!-~]+$"),
    ),
    responses(
        (status = 200, description = "Confirmed; repeating with the same payment intent returns the same order", body = Confirmed),
        (status = 400, description = "VALIDATION_ERROR or IDEMPOTENCY_REQUIRED", body = ErrorEnvelope, examples(
            ("VALIDATION_ERROR" = (value = json!(error_example("VALIDATION_ERROR")))),
            ("IDEMPOTENCY_REQUIRED" = (value = json!(error_example("IDEMPOTENCY_REQUIRED"))))
        )),
        (status = 401, description = "UNAUTHENTICATED", body = ErrorEnvelope, example = json!(error_example("UNAUTHENTICATED"))),
        (status = 403, description = "FORBIDDEN: another user's reservation", body = ErrorEnvelope, example = json!(error_example("FORBIDDEN"))),
        (status = 404, description = "RESERVATION_NOT_FOUND", body = ErrorEnvelope, example = json!(error_example("RESERVATION_NOT_FOUND"))),
        (status = 409, description = "RESERVATION_EXPIRED, INVALID_STATE or IDEMPOTENCY_CONFLICT", body = ErrorEnvelope, examples(
            ("RESERVATION_EXPIRED" = (value = json!(error_example("RESERVATION_EXPIRED")))),
            ("INVALID_STATE" = (value = json!(error_example("INVALID_STATE")))),
            ("IDEMPOTENCY_CONFLICT" = (value = json!(error_example("IDEMPOTENCY_CONFLICT"))))
        )),
        (status = 412, description = "PAYMENT_NOT_APPROVED; the hold stays", body = ErrorEnvelope, example = json!(error_example("PAYMENT_NOT_APPROVED"))),
        (status = 413, description = "VALIDATION_ERROR: the body is over 64 KiB", body = ErrorEnvelope, example = json!(too_large_example())),
        (status = 415, description = "VALIDATION_ERROR: the body is not application/json", body = ErrorEnvelope, example = json!(not_json_example())),
        (status = 429, description = "RATE_LIMITED, with Retry-After and RateLimit-* headers", body = ErrorEnvelope, example = json!(error_example("RATE_LIMITED"))),
        (status = 500, description = "INTERNAL: a bug; the message reveals nothing", body = ErrorEnvelope, example = json!(error_example("INTERNAL"))),
        (status = 503, description = "UPSTREAM_UNAVAILABLE: a dependency is down, its circuit open or its bulkhead full (Retry-After)", body = ErrorEnvelope, example = json!(error_example("UPSTREAM_UNAVAILABLE"))),
        (status = 504, description = "UPSTREAM_TIMEOUT: a dependency exceeded its deadline", body = ErrorEnvelope, example = json!(error_example("UPSTREAM_TIMEOUT"))),
    ),
    security(("bearer" = []))
)]
pub async fn confirm(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
    IdemKey(key): IdemKey,
    JsonBody(body): JsonBody<false>,
) -> Result<Response, ApiError> {
    path_id(&id)?;
    let input = ConfirmInput::parse(&body).map_err(validation)?;
    let fp = fingerprint("POST", "/v1/reservations/{id}/confirm", &[&id], &body);
    let scoped = key.scoped(&caller.user_id);
    Ok(idempotent(
        state.service.clone(),
        scoped,
        fp,
        None,
        move |svc, ticket| async move { svc.confirm(&caller, &id, &input, &ticket).await },
    )
    .await)
}

/// Cancel a hold and release its seats.
#[utoipa::path(
    post,
    path = "/v1/reservations/{id}/cancel",
    tag = "reservations",
    params(
        ("id" = String, Path, description = "rsv_…", min_length = 5, max_length = 64, pattern = "^rsv_[A-Za-z0-9]+$"),
        ("Idempotency-Key" = String, Header, description = "1–255 visible ASCII characters", min_length = 1, max_length = 255, pattern = "^[!-~]+$"),
    ),
    responses(
        (status = 200, description = "Cancelled (also for an already cancelled reservation)", body = Cancelled),
        (status = 400, description = "IDEMPOTENCY_REQUIRED, or VALIDATION_ERROR for a body that is not JSON (the body is optional)", body = ErrorEnvelope, examples(
            ("IDEMPOTENCY_REQUIRED" = (value = json!(error_example("IDEMPOTENCY_REQUIRED")))),
            ("VALIDATION_ERROR" = (value = json!(error_example("VALIDATION_ERROR"))))
        )),
        (status = 401, description = "UNAUTHENTICATED", body = ErrorEnvelope, example = json!(error_example("UNAUTHENTICATED"))),
        (status = 403, description = "FORBIDDEN: another user's reservation", body = ErrorEnvelope, example = json!(error_example("FORBIDDEN"))),
        (status = 404, description = "RESERVATION_NOT_FOUND", body = ErrorEnvelope, example = json!(error_example("RESERVATION_NOT_FOUND"))),
        (status = 409, description = "RESERVATION_EXPIRED, INVALID_STATE or IDEMPOTENCY_CONFLICT", body = ErrorEnvelope, examples(
            ("RESERVATION_EXPIRED" = (value = json!(error_example("RESERVATION_EXPIRED")))),
            ("INVALID_STATE" = (value = json!(error_example("INVALID_STATE")))),
            ("IDEMPOTENCY_CONFLICT" = (value = json!(error_example("IDEMPOTENCY_CONFLICT"))))
        )),
        (status = 413, description = "VALIDATION_ERROR: the body is over 64 KiB", body = ErrorEnvelope, example = json!(too_large_example())),
        (status = 415, description = "VALIDATION_ERROR: the body is not application/json", body = ErrorEnvelope, example = json!(not_json_example())),
        (status = 429, description = "RATE_LIMITED, with Retry-After and RateLimit-* headers", body = ErrorEnvelope, example = json!(error_example("RATE_LIMITED"))),
        (status = 500, description = "INTERNAL: a bug; the message reveals nothing", body = ErrorEnvelope, example = json!(error_example("INTERNAL"))),
        (status = 503, description = "UPSTREAM_UNAVAILABLE: a dependency is down, its circuit open or its bulkhead full (Retry-After)", body = ErrorEnvelope, example = json!(error_example("UPSTREAM_UNAVAILABLE"))),
        (status = 504, description = "UPSTREAM_TIMEOUT: a dependency exceeded its deadline", body = ErrorEnvelope, example = json!(error_example("UPSTREAM_TIMEOUT"))),
    ),
    security(("bearer" = []))
)]
pub async fn cancel(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
    IdemKey(key): IdemKey,
    JsonBody(body): JsonBody<true>,
) -> Result<Response, ApiError> {
    path_id(&id)?;
    let fp = fingerprint("POST", "/v1/reservations/{id}/cancel", &[&id], &body);
    let scoped = key.scoped(&caller.user_id);
    Ok(idempotent(
        state.service.clone(),
        scoped,
        fp,
        None,
        move |svc, ticket| async move { svc.cancel(&caller, &id, &ticket).await },
    )
    .await)
}
