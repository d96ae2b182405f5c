//! Confirm asks the payment service over gRPC; only a completed payment for this reservation, this
//! user and this amount confirms. The mismatches come from a test-owned payment service that
//! answers crafted payments.

use serde_json::Value;

use crate::helpers::*;
use crate::peers::ScriptedPayments;

/// Confirm must refuse `intent` with 412, leave the reservation held, and still confirm it with a
/// good intent afterwards.
async fn refused_then_confirmable(app: &TestApp, user: &str, intent: &str, good: &str) {
    let held = app.hold(user, SMALL_EVENT, 2).await;
    let id = held["reservation_id"].as_str().unwrap();
    let r = app.confirm(user, id, &format!("k-{intent}"), intent).await;
    assert_error(r, 412, "PAYMENT_NOT_APPROVED").await;

    let r = app.get(user, id).await;
    assert_eq!(r.status(), 200);
    let view: Value = r.json().await.unwrap();
    assert_eq!(view["status"], "HOLD", "still held after {intent}");

    let r = app
        .confirm(user, id, &format!("k-good-{intent}"), good)
        .await;
    assert_eq!(r.status(), 200, "confirmable after {intent}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "CONFIRMED");
}

#[tokio::test]
async fn an_approved_payment_confirms() {
    let app = spawn_app().await;
    let held = app.hold("alice", SMALL_EVENT, 1).await;
    let id = held["reservation_id"].as_str().unwrap();
    let r = app.confirm("alice", id, "k1", "pay_xyz789").await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "CONFIRMED");
    assert!(body["order_id"].as_str().unwrap().starts_with("ord_"));
}

#[tokio::test]
async fn pending_and_declined_payments_are_not_approved() {
    let app = spawn_app().await;
    refused_then_confirmable(&app, "bob", "pay_pending_1", "pay_xyz789").await;
    refused_then_confirmable(&app, "bob", "pay_declined_1", "pay_xyz789").await;
}

#[tokio::test]
async fn a_payment_for_another_user_reservation_or_amount_is_not_approved() {
    let payments = ScriptedPayments::default();
    let peer = payments.serve().await;
    let app = spawn_app_with(|o| o.config.payment_grpc_address = Some(peer.endpoint())).await;
    for intent in [
        "pay_other_user",
        "pay_other_reservation",
        "pay_wrong_amount",
        "pay_wrong_currency",
        "pay_other_intent",
        "pay_unknown",
        "pay_grpc_not_found",
    ] {
        refused_then_confirmable(&app, "carol", intent, &format!("pay_good_after_{intent}")).await;
    }
    // The client sent what it checks as hints, and checked the answer against its own query.
    let hints = payments.hints.lock().unwrap().clone();
    let (rsv, amount, currency) = &hints["pay_wrong_amount"];
    assert!(rsv.starts_with("rsv_"));
    assert_eq!((amount.as_str(), currency.as_str()), ("110000", "KRW"));
}

#[tokio::test]
async fn an_unreachable_payment_service_is_a_503_and_the_hold_stays() {
    let addr = crate::peers::dead_address().await;
    let app = spawn_app_with(|o| o.config.payment_grpc_address = Some(addr.to_string())).await;
    let held = app.hold("dave", SMALL_EVENT, 1).await;
    let id = held["reservation_id"].as_str().unwrap();
    let r = app.confirm("dave", id, "k1", "pay_xyz789").await;
    assert_error(r, 503, "UPSTREAM_UNAVAILABLE").await;
    let view: Value = app.get("dave", id).await.json().await.unwrap();
    assert_eq!(view["status"], "HOLD");
}
