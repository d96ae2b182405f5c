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
    modifiers(&BearerAuth),
    tags((name = "reservations"), (name = "operations"))
)]
pub struct ApiDoc;

struct BearerAuth;

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
