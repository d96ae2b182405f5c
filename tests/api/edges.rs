//! Strict edges: input the server refuses (control characters, duplicate keys), rejections of the
//! HTTP layer in the envelope, and log lines an attacker cannot blow up.

use crate::helpers::*;
use serde_json::json;

async fn post_raw(app: &TestApp, path: &str, key: &str, body: &str) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(token("u1"))
        .header("Idempotency-Key", key)
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_payment_intent_with_nul_is_400_and_the_hold_stays() {
    let app = spawn_app().await;
    let held = app.hold("u1", BIG_EVENT, 1).await;
    let id = held["reservation_id"].as_str().unwrap();
    let r = app.confirm("u1", id, "c-nul", "pay\u{0}x").await;
    let body = assert_error(r, 400, "VALIDATION_ERROR").await;
    assert!(
        body["error"]["details"]["payment_intent_id"]
            .as_str()
            .is_some_and(|m| m.contains("control")),
        "{body}"
    );
    let now: serde_json::Value = app.get("u1", id).await.json().await.unwrap();
    assert_eq!(now["status"], "HOLD");
    // The key was not used up: the fixed request goes through with it.
    assert_eq!(app.confirm("u1", id, "c-nul", "pay_1").await.status(), 200);
}

#[tokio::test]
async fn control_characters_in_a_path_id_or_user_id_are_400() {
    let app = spawn_app().await;
    let r = app.get("u1", "rsv_1%00x").await;
    let body = assert_error(r, 400, "VALIDATION_ERROR").await;
    assert!(body["error"]["details"]["id"].is_string(), "{body}");
    let r = app.cancel("u1", "rsv_1%0Ax", "k-ctl").await;
    assert_error(r, 400, "VALIDATION_ERROR").await;
    let r = app
        .create(
            "u1",
            "k-user",
            &json!({"event_id": BIG_EVENT, "qty": 1, "user_id": "u1\u{0}"}),
        )
        .await;
    let body = assert_error(r, 400, "VALIDATION_ERROR").await;
    assert!(body["error"]["details"]["user_id"].is_string(), "{body}");
    // An unknown id without control characters stays a 404.
    assert_error(
        app.get("u1", "rsv_unknown").await,
        404,
        "RESERVATION_NOT_FOUND",
    )
    .await;
}

#[tokio::test]
async fn a_body_with_a_duplicate_key_is_400_naming_the_key_and_holds_nothing() {
    let app = spawn_app().await;
    let body = format!(r#"{{"event_id":"{SMALL_EVENT}","qty":1,"qty":3}}"#);
    let r = post_raw(&app, "/v1/reservations", "k-dup", &body).await;
    let err = assert_error(r, 400, "VALIDATION_ERROR").await;
    assert!(err["error"]["details"]["qty"].is_string(), "{err}");
    assert!(
        err["error"]["message"].as_str().unwrap().contains("qty"),
        "{err}"
    );
    let audit = app.store.audit().await.unwrap();
    assert!(audit.reservations.is_empty(), "nothing was held");
    // Nested too, and on confirm.
    let held = app.hold("u1", BIG_EVENT, 1).await;
    let id = held["reservation_id"].as_str().unwrap();
    let r = post_raw(
        &app,
        &format!("/v1/reservations/{id}/confirm"),
        "k-dup2",
        r#"{"payment_intent_id":"pay_1","payment_intent_id":"pay_2"}"#,
    )
    .await;
    let err = assert_error(r, 400, "VALIDATION_ERROR").await;
    assert!(
        err["error"]["details"]["payment_intent_id"].is_string(),
        "{err}"
    );
}
