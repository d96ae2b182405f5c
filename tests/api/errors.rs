//! Every error answers in the contract's envelope with its status and code.

use crate::helpers::*;
use serde_json::json;

#[tokio::test]
async fn no_token_malformed_token_expired_token_and_wrong_key_are_401_with_www_authenticate() {
    let app = spawn_app().await;
    let expired = reservation_api::auth::jwt::mint(SECRET.as_bytes(), "u1", -3600);
    let foreign = reservation_api::auth::jwt::mint(b"another key", "u1", 3600);
    for auth in [
        None,
        Some("Bearer garbage".to_owned()),
        Some(format!("Bearer {expired}")),
        Some(format!("Bearer {foreign}")),
        Some("Basic dXNlcjpwYXNz".to_owned()),
    ] {
        let mut req = app
            .client
            .post(app.url("/v1/reservations"))
            .header("Idempotency-Key", "k1")
            .json(&create_body(BIG_EVENT, 1));
        if let Some(a) = &auth {
            req = req.header("Authorization", a);
        }
        let r = req.send().await.unwrap();
        // RFC 6750 §3.1: a bearer token that was presented and refused is `invalid_token`.
        let presented = auth.as_deref().is_some_and(|a| a.starts_with("Bearer "));
        let expected = if presented {
            "Bearer error=\"invalid_token\""
        } else {
            "Bearer"
        };
        assert_eq!(
            r.headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap()),
            Some(expected),
            "{auth:?}"
        );
        assert_error(r, 401, "UNAUTHENTICATED").await;
    }
    let r = app
        .client
        .get(app.url("/v1/reservations/rsv_x"))
        .send()
        .await
        .unwrap();
    assert_error(r, 401, "UNAUTHENTICATED").await;
}

#[tokio::test]
async fn a_missing_or_bad_idempotency_key_is_400_on_every_post() {
    let app = spawn_app().await;
    let held = app.hold("u1", BIG_EVENT, 1).await;
    let id = held["reservation_id"].as_str().unwrap();
    for key in [None, Some("has space"), Some(&*"k".repeat(256))] {
        for path in [
            "/v1/reservations".to_owned(),
            format!("/v1/reservations/{id}/confirm"),
            format!("/v1/reservations/{id}/cancel"),
        ] {
            let mut req = app
                .client
                .post(app.url(&path))
                .bearer_auth(token("u1"))
                .json(&json!({"event_id": BIG_EVENT, "qty": 1, "payment_intent_id": "pay_1"}));
            if let Some(k) = key {
                req = req.header("Idempotency-Key", k);
            }
            assert_error(req.send().await.unwrap(), 400, "IDEMPOTENCY_REQUIRED").await;
        }
    }
    // Nothing changed: the hold is still a hold.
    let now: serde_json::Value = app.get("u1", id).await.json().await.unwrap();
    assert_eq!(now["status"], "HOLD");
}

#[tokio::test]
async fn validation_errors_name_each_bad_field() {
    let app = spawn_app().await;
    let r = app
        .create(
            "u1",
            "k1",
            &json!({"event_id": "bad id!", "qty": 0, "seat_ids": ["A-1", "A-1"]}),
        )
        .await;
    let body = assert_error(r, 400, "VALIDATION_ERROR").await;
    let details = body["error"]["details"].as_object().expect("details");
    assert!(
        details.contains_key("event_id") && details.contains_key("qty"),
        "{body}"
    );

    let r = app
        .create(
            "u1",
            "k2",
            &json!({"event_id": BIG_EVENT, "qty": 2, "quantity": 3}),
        )
        .await;
    let body = assert_error(r, 400, "VALIDATION_ERROR").await;
    assert!(body["error"]["details"]["quantity"].is_string());

    let r = app
        .create("u1", "k3", &json!({"event_id": "evt_unknown", "qty": 1}))
        .await;
    let body = assert_error(r, 400, "VALIDATION_ERROR").await;
    assert!(body["error"]["details"]["event_id"].is_string(), "{body}");

    let r = app
        .create(
            "u1",
            "k4",
            &json!({"event_id": BIG_EVENT, "qty": 1, "seat_ids": ["ZZ-1"]}),
        )
        .await;
    let body = assert_error(r, 400, "VALIDATION_ERROR").await;
    assert!(body["error"]["details"]["seat_ids"].is_string(), "{body}");

    let held = app.hold("u1", BIG_EVENT, 1).await;
    let id = held["reservation_id"].as_str().unwrap();
    let r = app
        .client
        .post(app.url(&format!("/v1/reservations/{id}/confirm")))
        .bearer_auth(token("u1"))
        .header("Idempotency-Key", "k5")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let body = assert_error(r, 400, "VALIDATION_ERROR").await;
    assert!(body["error"]["details"]["payment_intent_id"].is_string());
}

#[tokio::test]
async fn malformed_json_wrong_content_type_oversized_body_unknown_route_and_wrong_method() {
    let app = spawn_app().await;
    let post = |body: String, ct: &'static str| {
        app.client
            .post(app.url("/v1/reservations"))
            .bearer_auth(token("u1"))
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .header("Content-Type", ct)
            .body(body)
    };
    assert_error(
        post("{\"event_id\":".into(), "application/json")
            .send()
            .await
            .unwrap(),
        400,
        "VALIDATION_ERROR",
    )
    .await;
    assert_error(
        post("{}".into(), "text/plain").send().await.unwrap(),
        415,
        "VALIDATION_ERROR",
    )
    .await;
    let big = format!("{{\"event_id\":\"{}\",\"qty\":1}}", "x".repeat(70 * 1024));
    assert_error(
        post(big, "application/json").send().await.unwrap(),
        413,
        "VALIDATION_ERROR",
    )
    .await;

    let r = app
        .client
        .get(app.url("/v1/nothing-here"))
        .send()
        .await
        .unwrap();
    assert_error(r, 404, "NOT_FOUND").await;
    let r = app
        .client
        .delete(app.url("/v1/reservations"))
        .bearer_auth(token("u1"))
        .send()
        .await
        .unwrap();
    assert_error(r, 405, "METHOD_NOT_ALLOWED").await;
    let r = app
        .client
        .put(app.url("/actuator/health"))
        .send()
        .await
        .unwrap();
    assert_error(r, 405, "METHOD_NOT_ALLOWED").await;
}

#[tokio::test]
async fn an_oversized_chunked_body_is_413_too() {
    let app = spawn_app().await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..80).map(|_| Ok(vec![b' '; 1024])).collect();
    let r = app
        .client
        .post(app.url("/v1/reservations"))
        .bearer_auth(token("u1"))
        .header("Idempotency-Key", "k1")
        .header("Content-Type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_error(r, 413, "VALIDATION_ERROR").await;
}

#[tokio::test]
async fn forbidden_not_found_and_invalid_state() {
    let app = spawn_app().await;
    let r = app
        .create(
            "u1",
            "k1",
            &json!({"event_id": BIG_EVENT, "qty": 1, "user_id": "someone-else"}),
        )
        .await;
    assert_error(r, 403, "FORBIDDEN").await;

    let held = app.hold("u1", BIG_EVENT, 1).await;
    let id = held["reservation_id"].as_str().unwrap();
    assert_error(app.get("u2", id).await, 403, "FORBIDDEN").await;
    assert_error(app.confirm("u2", id, "k2", "pay_1").await, 403, "FORBIDDEN").await;
    assert_error(app.cancel("u2", id, "k3").await, 403, "FORBIDDEN").await;

    assert_error(
        app.get("u1", "rsv_doesnotexist").await,
        404,
        "RESERVATION_NOT_FOUND",
    )
    .await;
    assert_error(
        app.get("u1", "not-an-id").await,
        404,
        "RESERVATION_NOT_FOUND",
    )
    .await;
    assert_error(
        app.confirm("u1", "rsv_doesnotexist", "k4", "pay_1").await,
        404,
        "RESERVATION_NOT_FOUND",
    )
    .await;

    assert_eq!(app.cancel("u1", id, "k5").await.status(), 200);
    assert_error(
        app.confirm("u1", id, "k6", "pay_1").await,
        409,
        "INVALID_STATE",
    )
    .await;
}

#[tokio::test]
async fn payment_not_approved_is_412_and_the_hold_stays() {
    let app = spawn_app().await;
    let held = app.hold("u1", BIG_EVENT, 2).await;
    let id = held["reservation_id"].as_str().unwrap();
    assert_error(
        app.confirm("u1", id, "k1", "pay_declined_1").await,
        412,
        "PAYMENT_NOT_APPROVED",
    )
    .await;
    assert_error(
        app.confirm("u1", id, "k2", "pay_pending_1").await,
        412,
        "PAYMENT_NOT_APPROVED",
    )
    .await;
    let now: serde_json::Value = app.get("u1", id).await.json().await.unwrap();
    assert_eq!(now["status"], "HOLD");
    assert_eq!(app.confirm("u1", id, "k3", "pay_ok_1").await.status(), 200);
}

#[tokio::test]
async fn inventory_conflict_when_seats_are_taken() {
    let app = spawn_app().await;
    let r = app
        .create(
            "u1",
            "k1",
            &json!({"event_id": BIG_EVENT, "qty": 2, "seat_ids": ["A-1", "A-2"]}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = app
        .create(
            "u2",
            "k1",
            &json!({"event_id": BIG_EVENT, "qty": 1, "seat_ids": ["A-2"]}),
        )
        .await;
    assert_error(r, 409, "INVENTORY_CONFLICT").await;
    let r = app
        .create("u2", "k2", &json!({"event_id": SMALL_EVENT, "qty": 10}))
        .await;
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn a_panic_or_internal_failure_answers_500_internal_without_detail() {
    use reservation_api::http::error::ApiError;
    let e = ApiError::from(reservation_api::service::ServiceError::Internal(
        "secret table name".into(),
    ));
    assert_eq!(e.status.as_u16(), 500);
    assert_eq!(e.code, "INTERNAL");
    assert!(!e.body().contains("secret"));
}

#[tokio::test]
async fn the_trace_id_comes_from_traceparent() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(app.url("/v1/reservations/rsv_nope"))
        .bearer_auth(token("u1"))
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .send()
        .await
        .unwrap();
    let body = assert_error(r, 404, "RESERVATION_NOT_FOUND").await;
    assert_eq!(
        body["error"]["trace_id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
}
