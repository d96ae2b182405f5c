//! CONTRACT §4 under a race, on replay, on conflict and across users.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::helpers::*;
use futures::future::join_all;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_identical_creates_with_one_key_make_one_reservation() {
    let app = Arc::new(spawn_app_with(under_load).await);
    let body = create_body(SMALL_EVENT, 1);
    let barrier = Arc::new(tokio::sync::Barrier::new(200));
    let tasks = (0..200).map(|_| {
        let (app, body, barrier) = (app.clone(), body.clone(), barrier.clone());
        tokio::spawn(async move {
            barrier.wait().await;
            // In-flight 409s are retried until the first request's answer replays.
            for _ in 0..200 {
                let r = app.create("u1", "the-key", &body).await;
                let status = r.status().as_u16();
                let retry_after = r
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_owned());
                let text = r.text().await.unwrap();
                if status == 409 && text.contains("still in flight") {
                    assert_eq!(retry_after.as_deref(), Some("1"));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                return (status, text);
            }
            panic!("the key stayed in flight");
        })
    });
    let answers: Vec<(u16, String)> = join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let distinct: HashSet<&(u16, String)> = answers.iter().collect();
    assert_eq!(distinct.len(), 1, "answers differ: {distinct:?}");
    let (status, body_text) = &answers[0];
    assert_eq!(*status, 201);
    let created: serde_json::Value = serde_json::from_str(body_text).unwrap();
    let id = created["reservation_id"].as_str().unwrap();
    assert_eq!(app.event_types(id).await, ["reservation.hold.created"]);

    // A replay after completion: byte-identical, marked as a replay.
    let r = app.create("u1", "the-key", &body).await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers().get("idempotent-replayed").unwrap(), "true");
    assert_eq!(&r.text().await.unwrap(), body_text);

    // Only one seat was taken: the other 99 can still be held.
    for i in 0..99 {
        assert_eq!(app.create(&format!("o{i}"), "k", &body).await.status(), 201);
    }
    assert_error(
        app.create("o100", "k", &body).await,
        409,
        "INVENTORY_CONFLICT",
    )
    .await;
}

#[tokio::test]
async fn the_same_key_with_another_body_is_a_conflict() {
    let app = spawn_app().await;
    assert_eq!(
        app.create("u1", "k1", &create_body(BIG_EVENT, 1))
            .await
            .status(),
        201
    );
    assert_error(
        app.create("u1", "k1", &create_body(BIG_EVENT, 2)).await,
        409,
        "IDEMPOTENCY_CONFLICT",
    )
    .await;
    // Key order in the body does not matter.
    let reordered = json!({"qty": 1, "event_id": BIG_EVENT});
    let r = app.create("u1", "k1", &reordered).await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers().get("idempotent-replayed").unwrap(), "true");
}

#[tokio::test]
async fn two_users_may_use_the_same_key() {
    let app = spawn_app().await;
    let a: serde_json::Value = app
        .create("u1", "shared", &create_body(BIG_EVENT, 1))
        .await
        .json()
        .await
        .unwrap();
    let r = app.create("u2", "shared", &create_body(BIG_EVENT, 1)).await;
    assert_eq!(r.status(), 201);
    assert!(r.headers().get("idempotent-replayed").is_none());
    let b: serde_json::Value = r.json().await.unwrap();
    assert_ne!(a["reservation_id"], b["reservation_id"]);
}

#[tokio::test]
async fn a_stored_4xx_replays_and_runs_nothing_again() {
    let app = spawn_app().await;
    let held = app.hold("u1", BIG_EVENT, 1).await;
    let id = held["reservation_id"].as_str().unwrap();
    let first = app.confirm("u1", id, "pk", "pay_declined").await;
    assert_eq!(first.status(), 412);
    let first_body = first.text().await.unwrap();
    let again = app.confirm("u1", id, "pk", "pay_declined").await;
    assert_eq!(again.status(), 412);
    assert_eq!(again.headers().get("idempotent-replayed").unwrap(), "true");
    assert_eq!(again.text().await.unwrap(), first_body);
}

#[tokio::test]
async fn confirm_and_cancel_replays_emit_no_second_event() {
    let app = spawn_app().await;
    let held = app.hold("u1", BIG_EVENT, 1).await;
    let id = held["reservation_id"].as_str().unwrap();
    let a = app
        .confirm("u1", id, "ck", "pay_1")
        .await
        .text()
        .await
        .unwrap();
    let b = app.confirm("u1", id, "ck", "pay_1").await;
    assert_eq!(b.headers().get("idempotent-replayed").unwrap(), "true");
    assert_eq!(b.text().await.unwrap(), a);
    assert_eq!(
        app.event_types(id).await,
        ["reservation.hold.created", "reservation.confirmed"]
    );

    let held = app.hold("u1", BIG_EVENT, 1).await;
    let id = held["reservation_id"].as_str().unwrap();
    let a = app.cancel("u1", id, "xk").await.text().await.unwrap();
    let b = app.cancel("u1", id, "xk").await;
    assert_eq!(b.headers().get("idempotent-replayed").unwrap(), "true");
    assert_eq!(b.text().await.unwrap(), a);
    assert_eq!(
        app.event_types(id).await,
        ["reservation.hold.created", "reservation.cancelled"]
    );
    // The same key on another path is another request: a conflict, not a replay.
    assert_error(
        app.cancel("u1", "rsv_other", "xk").await,
        409,
        "IDEMPOTENCY_CONFLICT",
    )
    .await;
}

#[tokio::test]
async fn records_expire_after_their_ttl() {
    let app =
        spawn_app_with(|o| o.config.idempotency_ttl = std::time::Duration::from_secs(1)).await;
    let body = create_body(BIG_EVENT, 1);
    let a: serde_json::Value = app.create("u1", "k", &body).await.json().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = app.create("u1", "k", &body).await;
    assert_eq!(r.status(), 201);
    assert!(r.headers().get("idempotent-replayed").is_none());
    let b: serde_json::Value = r.json().await.unwrap();
    assert_ne!(a["reservation_id"], b["reservation_id"]);
}
