//! Per-user and global token buckets in front of `/v1/*`.

use std::sync::Arc;
use std::time::Duration;

use reservation_api::config::RateLimitSettings;

use crate::helpers::*;

#[tokio::test]
async fn one_user_flooding_is_limited_while_another_is_not() {
    let app = Arc::new(
        spawn_app_with(|o| {
            o.config.rate_limits = RateLimitSettings {
                user_rps: 2,
                user_burst: 5,
                global_rps: 0,
            }
        })
        .await,
    );
    let flood = futures::future::join_all((0..40).map(|_| {
        let app = app.clone();
        async move { app.get("flooder", "rsv_none").await }
    }));
    // The other user paces at 1 request a second, under their limit, during the flood.
    let calm = async {
        let mut statuses = Vec::new();
        for _ in 0..3 {
            statuses.push(app.get("calm", "rsv_none").await.status().as_u16());
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        statuses
    };
    let (flood, calm) = tokio::join!(flood, calm);
    assert!(calm.iter().all(|s| *s == 404), "{calm:?}");
    let limited: Vec<_> = flood.into_iter().filter(|r| r.status() == 429).collect();
    assert!(limited.len() >= 30, "{} limited", limited.len());
    let r = limited.into_iter().next().unwrap();
    let h = r.headers().clone();
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
    assert_eq!(h["ratelimit-limit"], "5");
    assert_eq!(h["ratelimit-remaining"], "0");
    assert!(h.contains_key("ratelimit-reset"));
    assert_error(r, 429, "RATE_LIMITED").await;
    let m = app.get_json("/actuator/metrics/rate_limited_total").await;
    assert!(
        m["samples"].as_array().is_some_and(|s| !s.is_empty()),
        "{m}"
    );
}

#[tokio::test]
async fn a_create_answered_429_succeeds_later_with_the_same_idempotency_key() {
    let app = spawn_app_with(|o| {
        o.config.rate_limits = RateLimitSettings {
            user_rps: 1,
            user_burst: 2,
            global_rps: 0,
        }
    })
    .await;
    let body = create_body(BIG_EVENT, 1);
    while app.get("fan", "rsv_none").await.status() != 429 {}
    let r = app.create("fan", "same-key", &body).await;
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_error(r, 429, "RATE_LIMITED").await;
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let r = app.create("fan", "same-key", &body).await;
    assert_eq!(r.status(), 201);
    assert!(!r.headers().contains_key("idempotent-replayed"));
}

#[tokio::test]
async fn the_global_limit_applies_to_everyone() {
    let app = Arc::new(
        spawn_app_with(|o| {
            o.config.rate_limits = RateLimitSettings {
                user_rps: 0,
                user_burst: 0,
                global_rps: 2,
            }
        })
        .await,
    );
    // Ten users at once: the replica's bucket (2) lets a few through, whatever the store's speed.
    let statuses = futures::future::join_all((0..10).map(|i| {
        let app = app.clone();
        async move {
            app.get(&format!("u{i}"), "rsv_none")
                .await
                .status()
                .as_u16()
        }
    }))
    .await;
    assert!(
        statuses.iter().filter(|s| **s == 429).count() >= 5,
        "{statuses:?}"
    );
    assert!(statuses.contains(&404), "{statuses:?}");
}
