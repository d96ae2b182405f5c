//! The OpenAPI document describes what issue 14 added: the listing's parameters and page, the
//! seat map and its new error code, and `Accept-Language` on every `/v1` operation.

use crate::helpers::*;
use serde_json::Value;

fn param<'a>(op: &'a Value, name: &str) -> &'a Value {
    op["parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("no parameter {name}: {op}"))
}

#[tokio::test]
async fn the_listing_the_seat_map_and_accept_language_are_documented() {
    let app = spawn_app().await;
    let doc = app.get_json("/v3/api-docs").await;
    let list = &doc["paths"]["/v1/reservations"]["get"];
    for name in ["status", "limit", "cursor"] {
        assert_eq!(param(list, name)["in"], "query");
    }
    assert_eq!(param(list, "limit")["schema"]["maximum"], 100);
    let page = &doc["components"]["schemas"]["ReservationPage"];
    assert!(page["properties"]["next_cursor"].is_object(), "{page}");
    assert!(page["properties"]["items"].is_object(), "{page}");

    let seats = &doc["paths"]["/v1/events/{event_id}/seats"]["get"];
    assert!(seats["responses"]["304"].is_object());
    assert!(seats["responses"]["200"]["headers"]["ETag"].is_object());
    let not_found = &seats["responses"]["404"]["content"]["application/json"]["example"];
    assert_eq!(not_found["error"]["code"], "EVENT_NOT_FOUND");
    assert_eq!(
        doc["components"]["schemas"]["SeatMapStatus"]["enum"],
        serde_json::json!(["AVAILABLE", "HELD", "SOLD"])
    );

    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/v1/") {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            let p = param(op, "Accept-Language");
            assert_eq!(p["in"], "header", "{method} {path}");
            assert_ne!(p["required"], true, "{method} {path}");
        }
    }
}
