//! Admission tokens in a real Redis (`REDIS_TEST_URL`, started by `./run_local.sh test`), written
//! the way the platform's gateway writes them.

use std::sync::Arc;

use reservation_api::config::AdmissionMode;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::moto::Proxy;

/// Redis from `./run_local.sh test`. The tests that need it are `#[ignore]`d (a plain `cargo test`
/// reports them as not run); run with `--include-ignored` and no Redis, they fail.
pub fn redis_url() -> String {
    std::env::var("REDIS_TEST_URL")
        .expect("REDIS_TEST_URL is unset: start redis-server (./run_local.sh test)")
}

/// What the gateway does on admission.
async fn admit(url: &str, event: &str, user: &str) -> String {
    let token = format!("rt_{}", uuid::Uuid::new_v4().simple());
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let value = json!({
        "event_id": event, "user_id": user, "waiting_token": "wt_1",
        "granted_at": chrono::Utc::now().to_rfc3339(),
    });
    redis::cmd("SET")
        .arg(format!("queue:reservation:{token}"))
        .arg(value.to_string())
        .arg("EX")
        .arg(30)
        .exec_async(&mut conn)
        .await
        .unwrap();
    token
}

async fn spawn_admitting(redis: String) -> TestApp {
    spawn_app_with(move |o| {
        // About admission, not deadlines: a loaded debug build must not turn holds into 504s.
        under_load(o);
        o.config.admission.mode = AdmissionMode::Redis;
        o.config.admission.redis_url = Some(redis.into());
    })
    .await
}

fn body(event: &str, token: Option<&str>) -> Value {
    let mut b = json!({ "event_id": event, "qty": 1 });
    if let Some(t) = token {
        b["reservation_token"] = json!(t);
    }
    b
}

async fn assert_refused(r: reqwest::Response, reason: &str) {
    let body = assert_error(r, 403, "FORBIDDEN").await;
    assert_eq!(
        body["error"]["details"]["reservation_token"], reason,
        "{body}"
    );
}

#[tokio::test]
#[ignore = "needs redis-server: run ./run_local.sh test"]
async fn only_a_token_for_this_event_and_user_admits_and_only_once() {
    let redis = redis_url();
    let app = spawn_admitting(redis.clone()).await;
    let key = || uuid::Uuid::new_v4().to_string();
    assert_refused(
        app.create("fan", &key(), &body(BIG_EVENT, None)).await,
        "missing",
    )
    .await;
    let unknown = body(BIG_EVENT, Some("rt_never_granted"));
    assert_refused(
        app.create("fan", &key(), &unknown).await,
        "unknown_or_expired",
    )
    .await;
    let t = admit(&redis, SMALL_EVENT, "fan").await;
    assert_refused(
        app.create("fan", &key(), &body(BIG_EVENT, Some(&t))).await,
        "other_event",
    )
    .await;
    assert_refused(
        app.create("other", &key(), &body(SMALL_EVENT, Some(&t)))
            .await,
        "other_user",
    )
    .await;
    let first = app
        .create("fan", &key(), &body(SMALL_EVENT, Some(&t)))
        .await;
    assert_eq!(first.status(), 201);
    assert_refused(
        app.create("fan", &key(), &body(SMALL_EVENT, Some(&t)))
            .await,
        "already_used",
    )
    .await;
    let m = app
        .get_json("/actuator/metrics/admission_decisions_total")
        .await;
    assert!(m["samples"].as_array().is_some_and(|s| s.len() >= 5), "{m}");
}

#[tokio::test]
#[ignore = "needs redis-server: run ./run_local.sh test"]
async fn a_refusal_does_not_use_up_the_idempotency_key_and_a_replay_skips_redis() {
    let redis = redis_url();
    let proxy = Proxy::start(
        redis
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .into(),
    )
    .await;
    let app = spawn_admitting(format!("redis://127.0.0.1:{}", proxy.port)).await;
    let token = format!("rt_{}", uuid::Uuid::new_v4().simple());
    let b = body(BIG_EVENT, Some(&token));
    assert_refused(app.create("fan", "key-1", &b).await, "unknown_or_expired").await;
    // The gateway admits the fan under that very token; the same key now holds.
    let client = redis::Client::open(redis.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let value =
        json!({"event_id": BIG_EVENT, "user_id": "fan", "waiting_token": "w", "granted_at": "now"});
    redis::cmd("SET")
        .arg(format!("queue:reservation:{token}"))
        .arg(value.to_string())
        .arg("EX")
        .arg(30)
        .exec_async(&mut conn)
        .await
        .unwrap();
    let held = app.create("fan", "key-1", &b).await;
    assert_eq!(held.status(), 201);
    let first: Value = held.json().await.unwrap();
    // With Redis unreachable, the replay still answers: it never consults Redis.
    proxy.set_up(false);
    let replay = app.create("fan", "key-1", &b).await;
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.json::<Value>().await.unwrap(), first);
}

#[tokio::test]
#[ignore = "needs redis-server: run ./run_local.sh test"]
async fn ten_concurrent_creates_with_one_token_make_exactly_one_hold() {
    let redis = redis_url();
    let app = Arc::new(spawn_admitting(redis.clone()).await);
    let t = admit(&redis, BIG_EVENT, "fan").await;
    let answers = futures::future::join_all((0..10).map(|i| {
        let (app, t) = (app.clone(), t.clone());
        async move {
            let r = app
                .create("fan", &format!("race-{i}"), &body(BIG_EVENT, Some(&t)))
                .await;
            r.status().as_u16()
        }
    }))
    .await;
    assert_eq!(
        answers.iter().filter(|s| **s == 201).count(),
        1,
        "{answers:?}"
    );
    assert!(
        answers.iter().all(|s| *s == 201 || *s == 403),
        "{answers:?}"
    );
}

#[tokio::test]
#[ignore = "needs redis-server: run ./run_local.sh test"]
async fn a_token_whose_hold_failed_still_admits_the_next_try() {
    let redis = redis_url();
    let app = spawn_admitting(redis.clone()).await;
    let rival = admit(&redis, BIG_EVENT, "rival").await;
    let taken =
        json!({"event_id": BIG_EVENT, "qty": 1, "seat_ids": ["H-1"], "reservation_token": rival});
    assert_eq!(app.create("rival", "r1", &taken).await.status(), 201);
    let t = admit(&redis, BIG_EVENT, "fan").await;
    let same_seat =
        json!({"event_id": BIG_EVENT, "qty": 1, "seat_ids": ["H-1"], "reservation_token": t});
    assert_error(
        app.create("fan", "f1", &same_seat).await,
        409,
        "INVENTORY_CONFLICT",
    )
    .await;
    let other_seat =
        json!({"event_id": BIG_EVENT, "qty": 1, "seat_ids": ["H-2"], "reservation_token": t});
    assert_eq!(app.create("fan", "f2", &other_seat).await.status(), 201);
}

#[tokio::test]
#[ignore = "needs redis-server: run ./run_local.sh test"]
async fn with_redis_down_creates_fail_closed_and_reads_confirms_and_cancels_still_work() {
    let redis = redis_url();
    let proxy = Proxy::start(
        redis
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .into(),
    )
    .await;
    let app = spawn_admitting(format!("redis://127.0.0.1:{}", proxy.port)).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let t = admit(&redis, BIG_EVENT, "fan").await;
        let r = app
            .create(
                "fan",
                &uuid::Uuid::new_v4().to_string(),
                &body(BIG_EVENT, Some(&t)),
            )
            .await;
        assert_eq!(r.status(), 201);
        ids.push(
            r.json::<Value>().await.unwrap()["reservation_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    proxy.set_up(false);
    let t = admit(&redis, BIG_EVENT, "fan").await;
    let r = app
        .create("fan", "down-1", &body(BIG_EVENT, Some(&t)))
        .await;
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    assert_error(r, 503, "UPSTREAM_UNAVAILABLE").await;
    assert_eq!(app.get("fan", &ids[0]).await.status(), 200);
    assert_eq!(
        app.confirm("fan", &ids[0], "c1", "pay_ok").await.status(),
        200
    );
    assert_eq!(app.cancel("fan", &ids[1], "x1").await.status(), 200);
    // Back up: the same key was not used up by the 503.
    proxy.set_up(true);
    let mut status = 0;
    for _ in 0..50 {
        status = app
            .create("fan", "down-1", &body(BIG_EVENT, Some(&t)))
            .await
            .status()
            .as_u16();
        if status == 201 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, 201);
}
