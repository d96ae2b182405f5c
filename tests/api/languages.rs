//! `Accept-Language` picks the language of `error.message` (Korean or English, default English);
//! the answer says which in `Content-Language`; the code never changes.

use std::collections::HashMap;

use crate::helpers::*;
use serde_json::{json, Value};

/// A catalogue under `locales/`: message id → text.
fn catalogue(lang: &str) -> HashMap<String, String> {
    let path = format!("{}/locales/{lang}/errors.ftl", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path)
        .expect("catalogue")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(" = "))
        .map(|(id, text)| (id.trim().to_owned(), text.trim().to_owned()))
        .collect()
}

/// The codes of the README's errors table.
fn documented_codes() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    readme
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("| code | HTTP |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|row| {
            row.split('|')
                .nth(1)
                .unwrap()
                .trim()
                .trim_matches('`')
                .to_owned()
        })
        .collect()
}

#[test]
fn every_error_code_has_a_korean_and_an_english_message() {
    let codes = documented_codes();
    assert!(codes.len() >= 17, "{codes:?}");
    let (en, ko) = (catalogue("en"), catalogue("ko"));
    for code in &codes {
        for (lang, messages) in [("en", &en), ("ko", &ko)] {
            assert!(
                messages.get(code).is_some_and(|m| !m.is_empty()),
                "{code} has no {lang} message"
            );
        }
        assert_ne!(
            en[code], ko[code],
            "{code}: the Korean message is the English one"
        );
    }
    let mut en_ids: Vec<&String> = en.keys().collect();
    let mut ko_ids: Vec<&String> = ko.keys().collect();
    en_ids.sort();
    ko_ids.sort();
    assert_eq!(en_ids, ko_ids, "both catalogues have the same messages");
}

/// One request of each kind of error: `(what, request)`.
fn requests(app: &TestApp) -> Vec<(&'static str, reqwest::RequestBuilder)> {
    let authed = |m: reqwest::Method, path: &str| {
        app.client
            .request(m, app.url(path))
            .bearer_auth(token("polyglot"))
    };
    vec![
        (
            "RESERVATION_NOT_FOUND",
            authed(reqwest::Method::GET, "/v1/reservations/rsv_nope"),
        ),
        (
            "EVENT_NOT_FOUND",
            authed(reqwest::Method::GET, "/v1/events/evt_none/seats"),
        ),
        (
            "VALIDATION_ERROR",
            authed(reqwest::Method::GET, "/v1/reservations?limit=0"),
        ),
        (
            "IDEMPOTENCY_REQUIRED",
            authed(reqwest::Method::POST, "/v1/reservations").json(&json!({})),
        ),
        (
            "UNAUTHENTICATED",
            app.client.get(app.url("/v1/reservations")),
        ),
        ("NOT_FOUND", app.client.get(app.url("/v1/nowhere"))),
        (
            "METHOD_NOT_ALLOWED",
            app.client.delete(app.url("/v1/reservations")),
        ),
    ]
}

#[tokio::test]
async fn accept_language_picks_korean_or_english_and_the_code_stays() {
    let app = spawn_app().await;
    let (en, ko) = (catalogue("en"), catalogue("ko"));
    for (accept, lang) in [
        (Some("ko-KR,ko;q=0.9"), "ko"),
        (Some("en;q=0.1, ko;q=0.9"), "ko"),
        (Some("ko;q=0.2, en-US;q=0.8"), "en"),
        (Some("fr-FR"), "en"),
        (None, "en"),
    ] {
        for (code, req) in requests(&app) {
            let req = match accept {
                Some(a) => req.header("Accept-Language", a),
                None => req,
            };
            let r = req.send().await.unwrap();
            assert_eq!(
                r.headers()["content-language"],
                lang,
                "{code} for {accept:?}"
            );
            let vary = r.headers().get_all("vary").iter().any(|v| {
                v.to_str()
                    .unwrap()
                    .to_ascii_lowercase()
                    .contains("accept-language")
            });
            assert!(vary, "{code}: Vary names Accept-Language");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], code, "{accept:?}: {body}");
            let message = body["error"]["message"].as_str().unwrap();
            let catalogue = if lang == "ko" { &ko } else { &en };
            assert!(
                catalogue.values().any(|m| m == message),
                "{code} for {accept:?}: {message:?} is not a {lang} message"
            );
            if lang == "ko" {
                assert!(
                    message.chars().any(|c| ('가'..='힣').contains(&c)),
                    "{message}"
                );
            }
        }
    }
    // The Korean message of the code itself.
    let r = app
        .client
        .get(app.url("/v1/reservations/rsv_nope"))
        .bearer_auth(token("polyglot"))
        .header("Accept-Language", "ko-KR,ko;q=0.9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-language"], "ko");
    let body = assert_error(r, 404, "RESERVATION_NOT_FOUND").await;
    assert_eq!(body["error"]["message"], ko["RESERVATION_NOT_FOUND"]);
}
