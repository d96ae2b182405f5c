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
    // The key is named in `details`; the message is the catalogue's, in the caller's language.
    assert!(
        err["error"]["details"]["qty"]
            .as_str()
            .unwrap()
            .contains("more than once"),
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

/// Send `request` on a raw connection (writing in the background: the server may answer before
/// it has read it all) and return the whole answer.
async fn raw_exchange(app: &TestApp, request: Vec<u8>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let conn = tokio::net::TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap();
    let (mut rd, mut wr) = conn.into_split();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&request).await;
        wr
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        rd.read_to_end(&mut answer),
    )
    .await
    .expect("an answer within 10 s");
    let _ = read;
    writer.abort();
    String::from_utf8_lossy(&answer).into_owned()
}

fn assert_enveloped(answer: &str, status: u16) {
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status} ")),
        "{:.300}",
        answer
    );
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let v: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    assert_eq!(v["error"]["code"], "VALIDATION_ERROR", "{v}");
    assert_eq!(
        v["error"]["trace_id"].as_str().map(str::len),
        Some(32),
        "{v}"
    );
}

#[tokio::test]
async fn a_control_byte_in_a_header_is_400_in_the_envelope() {
    let app = spawn_app().await;
    let answer = raw_exchange(
        &app,
        b"GET /actuator/health HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n".to_vec(),
    )
    .await;
    assert_enveloped(&answer, 400);
}

#[tokio::test]
async fn a_200_kb_uri_is_414_in_the_envelope() {
    let app = spawn_app().await;
    let request = format!(
        "GET /v1/reservations/rsv_{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(200 * 1024)
    );
    assert_enveloped(&raw_exchange(&app, request.into_bytes()).await, 414);
}

#[tokio::test]
async fn a_1_mb_header_is_431_in_the_envelope() {
    let app = spawn_app().await;
    let request = format!(
        "GET /actuator/health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1024 * 1024)
    );
    assert_enveloped(&raw_exchange(&app, request.into_bytes()).await, 431);
    let many: String = (0..5000).map(|i| format!("X-H{i}: v\r\n")).collect();
    let request = format!("GET /actuator/health HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    assert_enveloped(&raw_exchange(&app, request.into_bytes()).await, 431);
}

#[tokio::test]
async fn the_openapi_document_carries_the_rules_the_server_enforces() {
    let app = spawn_app().await;
    let doc = app.get_json("/v3/api-docs").await;
    let params = &doc["paths"]["/v1/reservations/{id}/confirm"]["post"]["parameters"];
    let param = |name: &str| {
        params
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no parameter {name}"))["schema"]
            .clone()
    };
    let key = param("Idempotency-Key");
    assert_eq!(
        (key["minLength"].as_u64(), key["maxLength"].as_u64()),
        (Some(1), Some(255))
    );
    assert_eq!(key["pattern"], "^[!-~]+$");
    let id = param("id");
    assert_eq!(id["pattern"], "^rsv_[A-Za-z0-9]+$");
    assert_eq!(id["maxLength"], 64);
    let schemas = &doc["components"]["schemas"];
    let create = &schemas["CreateReservationBody"]["properties"];
    assert_eq!(
        (
            create["qty"]["minimum"].as_u64(),
            create["qty"]["maximum"].as_u64()
        ),
        (Some(1), Some(10))
    );
    assert_eq!(create["event_id"]["pattern"], "^[A-Za-z0-9_-]+$");
    let seats = &create["seat_ids"];
    assert_eq!(seats["uniqueItems"], true, "{seats}");
    assert_eq!(seats["maxItems"], 10, "{seats}");
    assert_eq!(seats["items"]["minLength"], 1, "{seats}");
    assert_eq!(seats["items"]["maxLength"], 32, "{seats}");
    assert_eq!(seats["items"]["pattern"], "^[A-Za-z0-9-]+$", "{seats}");
    let intent = &schemas["ConfirmReservationBody"]["properties"]["payment_intent_id"];
    assert_eq!(
        (intent["minLength"].as_u64(), intent["maxLength"].as_u64()),
        (Some(1), Some(128))
    );
    assert!(
        intent["pattern"].as_str().unwrap().contains("u0000"),
        "{intent}"
    );
}
