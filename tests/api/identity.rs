//! OIDC/JWKS tokens from a real issuer on loopback (tests/api/issuer.rs), and the claim rules the
//! development key shares with it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Response;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::issuer::{self, Issuer, TestKey, AUDIENCE};

async fn spawn_with_issuer(issuer: &Issuer) -> TestApp {
    let url = issuer.url.clone();
    let app = spawn_app_with(move |o| {
        o.config.jwt_issuer_uri = Some(url);
        o.config.issuer.audience = Some(AUDIENCE.into());
    })
    .await;
    wait_ready(&app).await;
    app
}

/// Readiness turns UP once the issuer's keys are loaded.
pub async fn wait_ready(app: &TestApp) {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let r = app
            .client
            .get(app.url("/actuator/health/readiness"))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            return;
        }
        assert!(
            Instant::now() < until,
            "never ready: {}",
            r.text().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An authenticated GET: 404 (no such reservation) means the token passed.
async fn probe(app: &TestApp, token: &str) -> Response {
    app.client
        .get(app.url("/v1/reservations/rsv_none"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn assert_refused(app: &TestApp, token: &str, case: &str) {
    let r = probe(app, token).await;
    assert_eq!(r.status(), 401, "{case}");
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer error=\"invalid_token\"",
        "{case}"
    );
    let body = assert_error(r, 401, "UNAUTHENTICATED").await;
    assert!(body["error"]["trace_id"].is_string(), "{case}");
}

#[tokio::test]
async fn rs256_and_es256_issuer_tokens_work_and_a_cached_token_costs_no_fetch() {
    let issuer = Issuer::start().await;
    let app = spawn_with_issuer(&issuer).await;
    let rsa = issuer.token(&issuer.rsa, "fan-rsa");
    let ec = issuer.token(&issuer.ec, "fan-ec");
    let held = app
        .client
        .post(app.url("/v1/reservations"))
        .bearer_auth(&rsa)
        .header("Idempotency-Key", "k1")
        .json(&create_body(BIG_EVENT, 1))
        .send()
        .await
        .unwrap();
    if held.status() != 201 {
        panic!("{}", held.text().await.unwrap());
    }
    let id = held.json::<Value>().await.unwrap()["reservation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v1/reservations/{id}");
    let mine = app
        .client
        .get(app.url(&path))
        .bearer_auth(&rsa)
        .send()
        .await
        .unwrap();
    assert_eq!(mine.status(), 200);
    let theirs = app
        .client
        .get(app.url(&path))
        .bearer_auth(&ec)
        .send()
        .await
        .unwrap();
    assert_error(theirs, 403, "FORBIDDEN").await;

    let fetches = issuer.jwks_hits();
    for _ in 0..50 {
        assert_eq!(probe(&app, &rsa).await.status(), 404);
    }
    assert_eq!(issuer.jwks_hits(), fetches, "no JWKS fetch for a known key");
    // The development key still works beside the issuer in local.
    assert_eq!(probe(&app, &token("dev-user")).await.status(), 404);
}

/// Tokens that break one rule each, for the issuer and (where it applies) the development key.
#[tokio::test]
async fn every_broken_rule_is_a_401_for_issuer_and_dev_tokens_alike() {
    let issuer = Issuer::start().await;
    let app = spawn_with_issuer(&issuer).await;
    let key = &issuer.rsa;
    let now = chrono::Utc::now().timestamp();
    let with = |patch: Value| {
        let mut c = issuer.claims("fan");
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let long_sub = "x".repeat(10 * 1024);
    let claim_cases: Vec<(&str, Value)> = vec![
        ("blank sub", with(json!({ "sub": "   " }))),
        ("over-long sub", with(json!({ "sub": long_sub }))),
        (
            "control characters in sub",
            with(json!({ "sub": "a\u{0}b\nc" })),
        ),
        ("no sub", with(json!({ "sub": null }))),
        ("expired", with(json!({ "exp": now - 3600 }))),
        ("nbf an hour ahead", with(json!({ "nbf": now + 3600 }))),
    ];
    let mut crit = Header::new(Algorithm::RS256);
    crit.kid = Some(key.kid.clone());
    crit.crit = Some(vec!["urn:example:unknown".into()]);
    let mut hs_public = Header::new(Algorithm::HS256);
    hs_public.kid = Some(key.kid.clone());
    let other = TestKey::rsa("other-key");
    let forged = issuer::sign(
        &TestKey {
            kid: key.kid.clone(),
            ..other
        },
        &issuer.claims("fan"),
    );
    let mut issuer_only: Vec<(&str, String)> = vec![
        (
            "wrong iss",
            issuer::sign(key, &with(json!({ "iss": "https://evil.example" }))),
        ),
        (
            "wrong aud",
            issuer::sign(key, &with(json!({ "aud": "someone-else" }))),
        ),
        (
            "missing aud",
            issuer::sign(key, &with(json!({ "aud": null }))),
        ),
        (
            "unknown crit",
            issuer::sign_with(crit, &key.encoding, &issuer.claims("fan")),
        ),
        (
            "alg none",
            issuer::unsigned(&key.kid, &issuer.claims("fan")),
        ),
        (
            "HS256 keyed with the issuer's public key",
            issuer::sign_with(
                hs_public,
                &EncodingKey::from_secret(key.public_pem.as_bytes()),
                &issuer.claims("fan"),
            ),
        ),
        ("another key under a known kid", forged),
    ];
    for (case, claims) in &claim_cases {
        issuer_only.push((case, issuer::sign(key, claims)));
        issuer_only.push((case, issuer::sign(&issuer.ec, claims)));
    }
    for (case, token) in &issuer_only {
        assert_refused(&app, token, case).await;
    }

    // The development key: the same claim rules.
    let dev = EncodingKey::from_secret(SECRET.as_bytes());
    for (case, claims) in &claim_cases {
        let t = issuer::sign_with(Header::new(Algorithm::HS256), &dev, claims);
        assert_refused(&app, &t, &format!("dev key: {case}")).await;
    }
    let mut dev_crit = Header::new(Algorithm::HS256);
    dev_crit.crit = Some(vec!["urn:example:unknown".into()]);
    let t = issuer::sign_with(dev_crit, &dev, &issuer.claims("fan"));
    assert_refused(&app, &t, "dev key: unknown crit").await;
    assert_refused(
        &app,
        &issuer::unsigned("", &issuer.claims("fan")),
        "dev: alg none",
    )
    .await;
    // And a good one of each passes.
    assert_eq!(probe(&app, &issuer.token(key, "fan")).await.status(), 404);
    let good_dev = issuer::sign_with(Header::new(Algorithm::HS256), &dev, &issuer.claims("fan"));
    assert_eq!(probe(&app, &good_dev).await.status(), 404);
    for name in ["auth_failures_total", "jwks_refresh_total"] {
        let m = app.get_json(&format!("/actuator/metrics/{name}")).await;
        assert!(
            m["samples"].as_array().is_some_and(|s| !s.is_empty()),
            "{m}"
        );
    }
}

#[tokio::test]
async fn a_storm_of_unknown_kids_costs_at_most_one_refetch_and_a_new_key_works_without_restart() {
    let issuer = Issuer::start().await;
    let app = Arc::new(spawn_with_issuer(&issuer).await);
    let mut forged = Vec::new();
    for i in 0..100 {
        let mut k = issuer.rsa.clone();
        k.kid = format!("forged-{i}");
        forged.push(issuer.token(&k, "fan"));
    }
    let answers = futures::future::join_all(forged.iter().map(|t| {
        let app = app.clone();
        async move { probe(&app, t).await.status().as_u16() }
    }))
    .await;
    assert!(answers.iter().all(|s| *s == 401), "{answers:?}");
    assert!(
        issuer.jwks_hits() <= 3,
        "{} JWKS fetches",
        issuer.jwks_hits()
    );

    let fresh = TestKey::ec("ec-2");
    issuer.publish(&fresh);
    let t = issuer.token(&fresh, "fan");
    let started = Instant::now();
    loop {
        let s = probe(&app, &t).await.status();
        if s == 404 {
            break;
        }
        assert_eq!(s, 401);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the new key never worked"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn with_the_issuer_stopped_tokens_under_known_keys_keep_working() {
    let issuer = Issuer::start().await;
    let app = spawn_with_issuer(&issuer).await;
    issuer.stop();
    // Tokens never seen before (not in the verified-token cache), under keys fetched earlier.
    for i in 0..5 {
        assert_eq!(
            probe(&app, &issuer.token(&issuer.rsa, &format!("u{i}")))
                .await
                .status(),
            404
        );
        assert_eq!(
            probe(&app, &issuer.token(&issuer.ec, &format!("u{i}")))
                .await
                .status(),
            404
        );
    }
    let ready = app.get_json("/actuator/health/readiness").await;
    assert_eq!(ready["components"]["jwks"]["status"], "UP", "{ready}");
}

#[tokio::test]
async fn readiness_is_down_until_the_keys_are_loaded_once() {
    let issuer = Issuer::start().await;
    issuer.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let url = issuer.url.clone();
    let app = spawn_app_with(move |o| o.config.jwt_issuer_uri = Some(url)).await;
    let r = app
        .client
        .get(app.url("/actuator/health/readiness"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["components"]["jwks"]["status"], "DOWN", "{body}");
    // Not the token's fault: 503 with Retry-After, never 500.
    let r = probe(&app, &issuer.token(&issuer.rsa, "fan")).await;
    assert!(r.headers().contains_key("retry-after"));
    assert_error(r, 503, "UPSTREAM_UNAVAILABLE").await;
    issuer
        .down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    wait_ready(&app).await;
    assert_eq!(
        probe(&app, &issuer.token(&issuer.rsa, "fan"))
            .await
            .status(),
        404
    );
}
