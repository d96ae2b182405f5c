//! OpenAPI 3, generated from the handlers and types, served at `/v3/api-docs` with Swagger UI.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::ErrorEnvelope;
use super::{actuator, error, my_reservations, reservations, seats};
use crate::i18n::{message, Lang};
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
405 `METHOD_NOT_ALLOWED`, both in the error envelope. `error.message` is in Korean or English as \
`Accept-Language` asks (default English; the answer carries `Content-Language`); codes never \
change with the language."
    ),
    paths(
        reservations::create,
        my_reservations::list,
        reservations::get_one,
        reservations::confirm,
        reservations::cancel,
        seats::seat_map,
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
        views::ReservationPage,
        views::Confirmed,
        views::Cancelled,
        views::SeatMapView,
        views::SectionView,
        views::SeatView,
        crate::inventory::SeatMapStatus,
        error::ErrorEnvelope,
        error::ErrorBody,
        reservations::CreateReservationBody,
        reservations::ConfirmReservationBody,
    )),
    modifiers(&BearerAuth, &AcceptLanguage, &SeatIdRules),
    tags((name = "reservations"), (name = "events"), (name = "operations"))
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

/// `Accept-Language` on every `/v1` operation: it picks the language of `error.message`.
struct AcceptLanguage;

impl Modify for AcceptLanguage {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::{ObjectBuilder, Required, Type};
        let param = ParameterBuilder::new()
            .name("Accept-Language")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "Language of `error.message`: `ko` or `en` (default `en`; quality values \
                 honoured, e.g. `ko-KR,ko;q=0.9`). The answer says which in `Content-Language`; \
                 error codes are the same in every language.",
            ))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .examples(["ko-KR,ko;q=0.9"]),
            ))
            .build();
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/v1/") {
                continue;
            }
            for op in [&mut item.get, &mut item.post].into_iter().flatten() {
                op.parameters
                    .get_or_insert_with(Vec::new)
                    .push(utoipa::openapi::RefOr::T(param.clone()));
            }
        }
    }
}

/// The documented example of an error answer with `code`: what "Try it out" shows for that status,
/// with the English message of the catalogue (`locales/en/errors.ftl`).
pub fn error_example(code: &str) -> serde_json::Value {
    let mut example = error_envelope(code, &message(code, Lang::En));
    if code == "VALIDATION_ERROR" {
        example["error"]["details"] = serde_json::json!({ "qty": "must be between 1 and 10" });
    }
    example
}

/// 413: a body over 64 KiB.
pub fn too_large_example() -> serde_json::Value {
    error_envelope(
        "VALIDATION_ERROR",
        &message("VALIDATION_ERROR-too-large", Lang::En),
    )
}

/// 415: a body that is not `application/json`.
pub fn not_json_example() -> serde_json::Value {
    error_envelope(
        "VALIDATION_ERROR",
        &message("VALIDATION_ERROR-not-json", Lang::En),
    )
}

fn error_envelope(code: &str, message: &str) -> serde_json::Value {
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736".to_owned();
    serde_json::to_value(ErrorEnvelope::new(code, message, trace_id, None)).unwrap_or_default()
}
