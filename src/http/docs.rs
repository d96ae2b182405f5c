//! OpenAPI 3, generated from the handlers and types, served at `/v3/api-docs` with Swagger UI.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{actuator, reservations};
use crate::service::views;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "reservation-api",
        description = "Hold seats for a short time, pay, then confirm or cancel.\n\n\
Every POST needs an `Idempotency-Key` (scoped to the caller): a replay returns the stored answer \
byte for byte with `Idempotent-Replayed: true` (a stored error keeps its original `trace_id`); the \
same key with another body is 409 IDEMPOTENCY_CONFLICT. Requests rejected before any work \
(401, 400 IDEMPOTENCY_REQUIRED/VALIDATION_ERROR, 403 for a foreign `user_id`, 413, 415) do not \
use up the key. Holds last `HOLD_TTL_SECONDS` (60 s by default). An unknown `event_id` or seat is \
400 VALIDATION_ERROR naming the field. Unknown routes answer 404 `NOT_FOUND` and wrong methods \
405 `METHOD_NOT_ALLOWED`, both in the error envelope."
    ),
    paths(
        reservations::create,
        reservations::get_one,
        reservations::confirm,
        reservations::cancel,
        actuator::health,
        actuator::liveness,
        actuator::readiness,
        actuator::info,
        actuator::prometheus,
        actuator::metric_names,
        actuator::metric,
    ),
    components(schemas(
        views::HoldCreated,
        views::ReservationView,
        views::Confirmed,
        views::Cancelled,
        reservations::ErrorEnvelope,
        reservations::ErrorBody,
        reservations::CreateReservationBody,
        reservations::ConfirmReservationBody,
    )),
    modifiers(&BearerAuth, &SeatIdRules),
    tags((name = "reservations"), (name = "operations"))
)]
pub struct ApiDoc;

struct BearerAuth;

/// `seat_ids`' items carry the seat id rules (utoipa's field attributes reach the array only).
struct SeatIdRules;

impl Modify for SeatIdRules {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{ArrayItems, ObjectBuilder, Schema, Type};
        use utoipa::openapi::RefOr;
        let body = openapi
            .components
            .as_mut()
            .and_then(|c| c.schemas.get_mut("CreateReservationBody"));
        let Some(RefOr::T(Schema::Object(body))) = body else {
            return;
        };
        if let Some(RefOr::T(Schema::Array(seats))) = body.properties.get_mut("seat_ids") {
            let item = ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(32))
                .pattern(Some("^[A-Za-z0-9-]+$"));
            seats.items = ArrayItems::RefOrSchema(Box::new(item.into()));
        }
    }
}

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The documented example of an error answer with `code`: what "Try it out" shows for that status.
pub fn error_example(code: &str) -> serde_json::Value {
    let message = match code {
        "UNAUTHENTICATED" => "missing bearer token",
        "FORBIDDEN" => "this reservation belongs to another user",
        "IDEMPOTENCY_REQUIRED" => "Idempotency-Key must be 1-255 visible ASCII characters",
        "IDEMPOTENCY_CONFLICT" => "this Idempotency-Key was used for a different request",
        "RESERVATION_EXPIRED" => "the hold has expired",
        "PAYMENT_NOT_APPROVED" => "payment not approved: the payment intent is FAILED",
        "INVENTORY_CONFLICT" => "seats A-1, A-2 are not available",
        "VALIDATION_ERROR" => "the request is invalid",
        "RESERVATION_NOT_FOUND" => "reservation not found",
        "INVALID_STATE" => "a CONFIRMED reservation cannot be cancelled",
        "UPSTREAM_TIMEOUT" => "inventory did not answer in time",
        "UPSTREAM_UNAVAILABLE" => "inventory is unavailable",
        "NOT_FOUND" => "no metric named nope",
        "RATE_LIMITED" => "too many requests; retry after the time in Retry-After",
        _ => "internal error",
    };
    let mut example = error_envelope(code, message);
    if code == "VALIDATION_ERROR" {
        example["error"]["details"] = serde_json::json!({ "qty": "must be between 1 and 10" });
    }
    example
}

/// 413: a body over 64 KiB.
pub fn too_large_example() -> serde_json::Value {
    error_envelope("VALIDATION_ERROR", "the body is over 64 KiB")
}

/// 415: a body that is not `application/json`.
pub fn not_json_example() -> serde_json::Value {
    error_envelope("VALIDATION_ERROR", "Content-Type must be application/json")
}

fn error_envelope(code: &str, message: &str) -> serde_json::Value {
    serde_json::json!({ "error": {
        "code": code,
        "message": message,
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    }})
}
