//! Swagger's "Try it out" works as shown: every operation of `/v3/api-docs`, sent with its
//! documented example as-is (a valid token, a fresh `Idempotency-Key`), gets a documented success;
//! every documented error example carries the code the README gives its status.

use std::collections::HashMap;

use crate::helpers::*;
use serde_json::Value;

/// Code → the statuses the README's errors table gives it (`| code | HTTP | when |`; "Also with
/// 413 … and 415 …" in the last column adds statuses).
fn readme_error_statuses() -> HashMap<String, Vec<u16>> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let rows = readme
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("| code | HTTP |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'));
    rows.map(|row| {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let mut statuses = vec![cells[2].parse::<u16>().expect("an HTTP status")];
        if let Some(also) = cells[3].split("Also with").nth(1) {
            statuses.extend(
                also.split(|c: char| !c.is_ascii_digit())
                    .filter_map(|n| n.parse::<u16>().ok())
                    .filter(|n| (400..600).contains(n)),
            );
        }
        (cells[1].trim_matches('`').to_owned(), statuses)
    })
    .collect()
}

/// The operations of the document: `(method, path, operation)`.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().unwrap() {
            out.push((method.to_uppercase(), path.clone(), op.clone()));
        }
    }
    out
}

/// A media type's documented examples: `example`, then each of `examples`.
fn examples(media: &Value) -> Vec<(Option<String>, Value)> {
    let mut out = Vec::new();
    if !media["example"].is_null() {
        out.push((None, media["example"].clone()));
    }
    if let Some(named) = media["examples"].as_object() {
        out.extend(
            named
                .iter()
                .map(|(name, e)| (Some(name.clone()), e["value"].clone())),
        );
    }
    out
}

/// The example body of an operation, if it takes one; an operation with a body and no example
/// would leave Swagger to make one up from the schema (that is how `"user_id":"string"` came).
fn example_body(method: &str, path: &str, op: &Value) -> Option<Value> {
    let media = op["requestBody"]["content"]
        .as_object()?
        .get("application/json")?;
    let found = examples(media);
    let (_, body) = found
        .first()
        .unwrap_or_else(|| panic!("{method} {path} takes a body but documents no example"));
    Some(body.clone())
}

#[tokio::test]
async fn every_operation_sent_with_its_documented_example_gets_a_documented_success() {
    let app = spawn_app().await;
    let doc = app.get_json("/v3/api-docs").await;
    let ops = operations(&doc);
    assert!(ops.len() >= 11, "{} operations", ops.len());
    let create = ops
        .iter()
        .find(|(m, p, _)| m == "POST" && p == "/v1/reservations")
        .map(|(m, p, op)| example_body(m, p, op).expect("create documents its body"))
        .unwrap();
    let user = "u123";

    for (method, path, op) in &ops {
        let mut url = path.clone();
        let mut needs_key = false;
        for p in op["parameters"].as_array().into_iter().flatten() {
            let name = p["name"].as_str().unwrap();
            match p["in"].as_str().unwrap() {
                "path" if name == "id" => {
                    // A reservation of the caller's own, made from the create example too.
                    let r = app
                        .create(user, &uuid::Uuid::new_v4().to_string(), &create)
                        .await;
                    assert_eq!(r.status(), 201, "the create example makes a hold");
                    let held: Value = r.json().await.unwrap();
                    let id = held["reservation_id"].as_str().unwrap();
                    url = url.replace("{id}", id);
                }
                "path" => {
                    let example = p["example"]
                        .as_str()
                        .or(p["schema"]["example"].as_str())
                        .unwrap_or_else(|| panic!("{method} {path}: no example for {name}"));
                    url = url.replace(&format!("{{{name}}}"), example);
                }
                "header" if name == "Idempotency-Key" => needs_key = true,
                // Optional query parameters and Accept-Language: the operation works without them.
                "query" | "header" if p["required"] != true => {}
                other => panic!("{method} {path}: parameter {name} in {other} is not handled"),
            }
        }
        let mut req = app.client.request(method.parse().unwrap(), app.url(&url));
        if op.get("security").is_some() {
            req = req.bearer_auth(token(user));
        }
        if needs_key {
            req = req.header("Idempotency-Key", uuid::Uuid::new_v4().to_string());
        }
        if let Some(body) = example_body(method, path, op) {
            req = req.json(&body);
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        let documented: Vec<&String> = op["responses"].as_object().unwrap().keys().collect();
        assert!(
            documented.iter().any(|s| **s == status.to_string()),
            "{method} {url}: {status} is not among the documented {documented:?}: {text}"
        );
        assert!(
            (200..300).contains(&status),
            "{method} {url}: its example answers {status}, not a success: {text}"
        );
    }
}

#[tokio::test]
async fn every_documented_error_example_carries_the_code_of_its_status() {
    let statuses = readme_error_statuses();
    assert!(
        statuses.len() >= 15,
        "the README's errors table: {statuses:?}"
    );
    let app = spawn_app().await;
    let doc = app.get_json("/v3/api-docs").await;
    let mut checked = 0;
    for (method, path, op) in operations(&doc) {
        for (status, response) in op["responses"].as_object().unwrap() {
            let status: u16 = status.parse().unwrap();
            let Some(media) = response["content"].get("application/json") else {
                continue;
            };
            if status < 400 {
                continue;
            }
            let found = examples(media);
            assert!(
                !found.is_empty(),
                "{method} {path} {status}: no example (Swagger would make one up)"
            );
            for (name, example) in found {
                let code = example["error"]["code"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{method} {path} {status}: {example}"));
                let allowed = statuses
                    .get(code)
                    .unwrap_or_else(|| panic!("{code} is not in the README's errors table"));
                assert!(
                    allowed.contains(&status),
                    "{method} {path} {status}: the example says {code}, which the README gives {allowed:?}"
                );
                if let Some(name) = name {
                    assert_eq!(name, code, "{method} {path} {status}: example named {name}");
                }
                assert!(example["error"]["message"].is_string(), "{example}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 40, "only {checked} error examples");
}
