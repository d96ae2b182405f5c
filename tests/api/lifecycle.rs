//! The happy paths and their events, and what a failed store write leaves behind.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::helpers::*;
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use reservation_api::domain::{Order, OutboxEvent, Reservation};
use reservation_api::idempotency::{Begin, IdempotencyCompletion, IdempotencyTicket};
use reservation_api::store::{Settlement, Store, StoreAudit, StoreError, Transition};
use serde_json::{json, Value};

#[tokio::test]
async fn hold_get_confirm_with_its_events() {
    let app = spawn_app().await;
    let r = app
        .create(
            "u1",
            "k1",
            &json!({"event_id": BIG_EVENT, "qty": 2, "seat_ids": ["A-1", "A-2"]}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let held: Value = r.json().await.unwrap();
    assert_eq!(held["status"], "HOLD");
    assert_eq!(held["event_id"], BIG_EVENT);
    assert_eq!(held["qty"], 2);
    assert_eq!(held["seat_ids"], json!(["A-1", "A-2"]));
    assert_eq!(held["total_price"], 330000);
    let id = held["reservation_id"].as_str().unwrap();
    assert!(id.starts_with("rsv_"));
    let expires: DateTime<Utc> = held["hold_expires_at"].as_str().unwrap().parse().unwrap();
    assert!(held["hold_expires_at"].as_str().unwrap().ends_with('Z'));
    let ahead = expires - Utc::now();
    assert!(
        ahead > Duration::seconds(55) && ahead <= Duration::seconds(60),
        "{ahead}"
    );

    let got: Value = app.get("u1", id).await.json().await.unwrap();
    for f in [
        "reservation_id",
        "status",
        "hold_expires_at",
        "event_id",
        "qty",
        "seat_ids",
        "total_price",
        "created_at",
        "updated_at",
    ] {
        assert!(got.get(f).is_some(), "GET lacks {f}: {got}");
    }
    assert!(got.get("order_id").is_none());

    let r = app.confirm("u1", id, "k2", "pay_xyz789").await;
    assert_eq!(r.status(), 200);
    let confirmed: Value = r.json().await.unwrap();
    assert_eq!(confirmed["status"], "CONFIRMED");
    let order_id = confirmed["order_id"].as_str().unwrap();
    assert!(order_id.starts_with("ord_"));

    let got: Value = app.get("u1", id).await.json().await.unwrap();
    assert_eq!(got["status"], "CONFIRMED");
    assert_eq!(got["order_id"], order_id);

    // Same intent again, with a new key: the same order. Another intent: INVALID_STATE.
    let again: Value = app
        .confirm("u1", id, "k3", "pay_xyz789")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["order_id"], order_id);
    assert_error(
        app.confirm("u1", id, "k4", "pay_other").await,
        409,
        "INVALID_STATE",
    )
    .await;
    assert_error(app.cancel("u1", id, "k5").await, 409, "INVALID_STATE").await;

    let events = app.events(id).await;
    let types: Vec<_> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["reservation.hold.created", "reservation.confirmed"]);
    let detail = &events[1].detail;
    assert_eq!(detail["order_id"], order_id);
    assert_eq!(detail["payment_intent_id"], "pay_xyz789");
    assert_eq!(detail["total_amount"], 330000);
    assert_eq!(detail["user_id"], "u1");
}

#[tokio::test]
async fn cancel_releases_the_seats_and_repeats_its_answer() {
    let app = spawn_app().await;
    let body = json!({"event_id": BIG_EVENT, "qty": 1, "seat_ids": ["B-7"]});
    let held: Value = app.create("u1", "k1", &body).await.json().await.unwrap();
    let id = held["reservation_id"].as_str().unwrap();

    let r = app.cancel("u1", id, "k2").await;
    assert_eq!(r.status(), 200);
    let first = r.text().await.unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&first).unwrap()["status"],
        "CANCELLED"
    );
    // A second cancel with another key: 200, same answer, no second event.
    let second = app.cancel("u1", id, "k3").await;
    assert_eq!(second.status(), 200);
    assert_eq!(second.text().await.unwrap(), first);
    assert_eq!(
        app.event_types(id).await,
        ["reservation.hold.created", "reservation.cancelled"]
    );

    // The seat is free for someone else.
    assert_eq!(app.create("u2", "k1", &body).await.status(), 201);
    let got: Value = app.get("u1", id).await.json().await.unwrap();
    assert_eq!(got["status"], "CANCELLED");
}

#[tokio::test]
async fn cancel_takes_an_empty_body_or_an_empty_object() {
    let app = spawn_app().await;
    let a = app.hold("u1", BIG_EVENT, 1).await;
    let r = app
        .client
        .post(app.url(&format!(
            "/v1/reservations/{}/cancel",
            a["reservation_id"].as_str().unwrap()
        )))
        .bearer_auth(token("u1"))
        .header("Idempotency-Key", "k")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// A store whose writes can be made to fail, wrapping the configured one.
struct FlakyStore {
    inner: Arc<dyn Store>,
    fail_writes: Arc<AtomicBool>,
}

#[async_trait]
impl Store for FlakyStore {
    async fn begin_request(
        &self,
        k: &str,
        h: &str,
        now: DateTime<Utc>,
        lease: Duration,
        ttl: Duration,
    ) -> Result<Begin, StoreError> {
        self.inner.begin_request(k, h, now, lease, ttl).await
    }
    async fn complete_request(&self, c: &IdempotencyCompletion) -> Result<(), StoreError> {
        self.inner.complete_request(c).await
    }
    async fn abandon_request(&self, t: &IdempotencyTicket) -> Result<(), StoreError> {
        self.inner.abandon_request(t).await
    }
    async fn create_hold(
        &self,
        r: &Reservation,
        e: &OutboxEvent,
        c: Option<&IdempotencyCompletion>,
    ) -> Result<(), StoreError> {
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(StoreError::Internal("injected failure".into()));
        }
        self.inner.create_hold(r, e, c).await
    }
    async fn transition(&self, t: Transition<'_>) -> Result<(), StoreError> {
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(StoreError::Timeout);
        }
        self.inner.transition(t).await
    }
    async fn get_reservation(&self, id: &str) -> Result<Option<Reservation>, StoreError> {
        self.inner.get_reservation(id).await
    }
    async fn get_order(&self, id: &str) -> Result<Option<Order>, StoreError> {
        self.inner.get_order(id).await
    }
    async fn reservations_of_user(
        &self,
        user_id: &str,
        after: Option<&reservation_api::store::UserListPosition>,
        limit: usize,
    ) -> Result<Vec<Reservation>, StoreError> {
        self.inner.reservations_of_user(user_id, after, limit).await
    }
    async fn due_holds(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Reservation>, StoreError> {
        self.inner.due_holds(now, limit).await
    }
    async fn claim_events(
        &self,
        o: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        self.inner.claim_events(o, now, until, limit).await
    }
    async fn settle_events(
        &self,
        o: &str,
        batch: &[(OutboxEvent, Settlement)],
    ) -> Result<Vec<String>, StoreError> {
        self.inner.settle_events(o, batch).await
    }
    async fn events_for(&self, id: &str) -> Result<Vec<OutboxEvent>, StoreError> {
        self.inner.events_for(id).await
    }
    async fn pending_events(&self) -> Result<usize, StoreError> {
        self.inner.pending_events().await
    }
    async fn defer_expiry(
        &self,
        r: &Reservation,
        at: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        self.inner.defer_expiry(r, at).await
    }
    async fn failed_events(&self, limit: usize) -> Result<Vec<OutboxEvent>, StoreError> {
        self.inner.failed_events(limit).await
    }
    async fn redrive_event(&self, e: &OutboxEvent, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.inner.redrive_event(e, now).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn audit(&self) -> Result<StoreAudit, StoreError> {
        self.inner.audit().await
    }
}

#[tokio::test]
async fn a_failed_store_write_leaves_no_orphan_hold_and_the_key_may_be_retried() {
    let fail = Arc::new(AtomicBool::new(true));
    let f = fail.clone();
    let app = spawn_app_with(move |o| {
        o.customize = Some(Box::new(move |d| {
            d.store = Arc::new(FlakyStore {
                inner: d.store.clone(),
                fail_writes: f,
            });
        }))
    })
    .await;
    let body = json!({"event_id": BIG_EVENT, "qty": 2, "seat_ids": ["C-1", "C-2"]});
    let r = app.create("u1", "k1", &body).await;
    let err = assert_error(r, 500, "INTERNAL").await;
    assert!(
        !err.to_string().contains("injected"),
        "internals leak: {err}"
    );
    // The detail went to the log instead, as the ERROR line the fault tests watch for.
    assert!(
        internal_errors()
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("injected")),
        "no ERROR internal error line"
    );
    assert!(
        app.store.audit().await.unwrap().reservations.is_empty(),
        "a reservation was written"
    );

    // The seats were released: another user can hold them now...
    fail.store(false, Ordering::SeqCst);
    let r = app.create("u2", "k1", &body).await;
    assert_eq!(
        r.status(),
        201,
        "seats were left held by the failed attempt"
    );
    let other: Value = r.json().await.unwrap();
    app.cancel("u2", other["reservation_id"].as_str().unwrap(), "c1")
        .await;

    // ...and the 5xx freed the key: the same key now works and is not a replay.
    let r = app.create("u1", "k1", &body).await;
    assert_eq!(r.status(), 201);
    assert!(r.headers().get("idempotent-replayed").is_none());

    // A transition that times out is a 504 and changes nothing.
    let held: Value = r.json().await.unwrap();
    let id = held["reservation_id"].as_str().unwrap();
    fail.store(true, Ordering::SeqCst);
    assert_error(app.cancel("u1", id, "c2").await, 504, "UPSTREAM_TIMEOUT").await;
    fail.store(false, Ordering::SeqCst);
    let got: Value = app.get("u1", id).await.json().await.unwrap();
    assert_eq!(got["status"], "HOLD");
}

#[tokio::test]
async fn health_info_api_docs_and_swagger_ui() {
    let app = spawn_app().await;
    for path in [
        "/actuator/health",
        "/actuator/health/liveness",
        "/actuator/health/readiness",
    ] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let b: Value = r.json().await.unwrap();
        assert_eq!(b["status"], "UP", "{path}");
        assert!(b["components"].is_object());
    }
    let info: Value = app.get_json("/actuator/info").await;
    assert_eq!(info["app"]["name"], "reservation-api");

    let doc: Value = app.get_json("/v3/api-docs").await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for p in [
        "/v1/reservations",
        "/v1/reservations/{id}",
        "/v1/reservations/{id}/confirm",
        "/v1/reservations/{id}/cancel",
    ] {
        assert!(doc["paths"].get(p).is_some(), "OpenAPI lacks {p}");
    }
    assert!(doc["components"]["schemas"].get("HoldCreated").is_some());

    let ui = app
        .client
        .get(app.url("/swagger-ui.html"))
        .send()
        .await
        .unwrap();
    assert_eq!(ui.status(), 200);
    assert!(ui.text().await.unwrap().contains("swagger-ui"));
    let init = app
        .client
        .get(app.url("/swagger-ui/swagger-initializer.js"))
        .send()
        .await
        .unwrap();
    assert!(init.text().await.unwrap().contains("/v3/api-docs"));
}

#[tokio::test]
async fn readiness_goes_down_on_shutdown_and_in_flight_work_finishes() {
    let app = spawn_app().await;
    let held = app.hold("u1", BIG_EVENT, 1).await;
    let id = held["reservation_id"].as_str().unwrap().to_owned();
    let store = app.store.clone();
    app.stop().await;
    // The relay published what was due before it stopped.
    let events = store.events_for(&id).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].status,
        reservation_api::domain::OutboxStatus::Published
    );
}

#[tokio::test]
async fn metrics_are_exported_for_prometheus_and_by_name() {
    let app = spawn_app().await;
    let held = app.hold("u1", BIG_EVENT, 1).await;
    app.confirm(
        "u1",
        held["reservation_id"].as_str().unwrap(),
        "m1",
        "pay_1",
    )
    .await;
    let r = app
        .client
        .get(app.url("/actuator/prometheus"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = r.text().await.unwrap();
    for name in [
        "http_server_requests_seconds_bucket",
        "grpc_client_duration_seconds_bucket",
        "reservation_status_total",
        "service_method_duration_seconds_bucket",
        "idempotency_requests_total",
    ] {
        assert!(
            text.contains(name),
            "{name} missing from /actuator/prometheus"
        );
    }
    assert!(
        text.contains(r#"uri="/v1/reservations""#),
        "routes are labelled by template"
    );

    let names: Value = app.get_json("/actuator/metrics").await;
    let names: Vec<&str> = names["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(names.contains(&"http_server_requests_seconds"), "{names:?}");
    let one: Value = app
        .get_json("/actuator/metrics/reservation_status_total")
        .await;
    assert!(one["samples"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["labels"]["status"] == "CONFIRMED"));
    let r = app
        .client
        .get(app.url("/actuator/metrics/no_such_metric"))
        .send()
        .await
        .unwrap();
    assert_error(r, 404, "NOT_FOUND").await;
}

#[tokio::test]
async fn a_confirm_that_sold_the_seats_but_died_before_its_write_is_finished_by_its_retry() {
    let fail = Arc::new(AtomicBool::new(false));
    let f = fail.clone();
    let app = spawn_app_with(move |o| {
        o.config.hold_ttl = std::time::Duration::from_secs(1);
        o.customize = Some(Box::new(move |d| {
            d.store = Arc::new(FlakyStore {
                inner: d.store.clone(),
                fail_writes: f,
            });
        }))
    })
    .await;
    let held = app.hold("u1", BIG_EVENT, 1).await;
    let id = held["reservation_id"].as_str().unwrap();
    // The inventory sells the seats, then the store write fails: 504, the key is freed.
    fail.store(true, Ordering::SeqCst);
    assert_error(
        app.confirm("u1", id, "c1", "pay_1").await,
        504,
        "UPSTREAM_TIMEOUT",
    )
    .await;
    fail.store(false, Ordering::SeqCst);
    // The hold runs out meanwhile; the sweeper cannot expire it, for its seats are sold.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let r = app.confirm("u1", id, "c1", "pay_1").await;
    assert_eq!(r.status(), 200, "the retry did not finish the sale");
    let got: Value = app.get("u1", id).await.json().await.unwrap();
    assert_eq!(got["status"], "CONFIRMED");
    assert_eq!(
        app.event_types(id).await,
        ["reservation.hold.created", "reservation.confirmed"]
    );

    // A late confirm of a hold nobody sold is still RESERVATION_EXPIRED, whatever its payment.
    let other = app.hold("u1", BIG_EVENT, 1).await;
    let other = other["reservation_id"].as_str().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_error(
        app.confirm("u1", other, "c2", "pay_declined").await,
        409,
        "RESERVATION_EXPIRED",
    )
    .await;
    assert_error(
        app.confirm("u1", other, "c3", "pay_ok").await,
        409,
        "RESERVATION_EXPIRED",
    )
    .await;
}

#[tokio::test]
async fn a_sold_hold_whose_confirm_never_wrote_is_reconciled_by_the_sweeper() {
    let fail = Arc::new(AtomicBool::new(false));
    let f = fail.clone();
    let app = spawn_app_with(move |o| {
        o.config.hold_ttl = std::time::Duration::from_secs(2);
        o.customize = Some(Box::new(move |d| {
            d.store = Arc::new(FlakyStore {
                inner: d.store.clone(),
                fail_writes: f,
            });
        }))
    })
    .await;
    let held = app.hold("u1", BIG_EVENT, 2).await;
    let id = held["reservation_id"].as_str().unwrap();
    // The inventory sells the seats, then the store write fails; the client never comes back.
    fail.store(true, Ordering::SeqCst);
    assert_error(
        app.confirm("u1", id, "c1", "pay_sold").await,
        504,
        "UPSTREAM_TIMEOUT",
    )
    .await;
    fail.store(false, Ordering::SeqCst);

    // Once the hold is due, the sweeper finds its seats sold and finishes the sale.
    let started = std::time::Instant::now();
    let got = loop {
        let got: Value = app.get("u1", id).await.json().await.unwrap();
        // A due HOLD reads as EXPIRED until the sweeper writes what it became.
        if got["status"] == "CONFIRMED" || started.elapsed() > std::time::Duration::from_secs(5) {
            break got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(got["status"], "CONFIRMED", "{got}");
    let order_id = got["order_id"].as_str().expect("an order id");
    let order = app
        .store
        .get_order(order_id)
        .await
        .unwrap()
        .expect("the order");
    assert_eq!(order.reservation_id, id);
    assert_eq!(order.payment_intent_id, "pay_sold");
    assert_eq!(order.total_amount, held["total_price"].as_i64().unwrap());
    // More sweeps change nothing: one confirmation, one event.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let events = app.events(id).await;
    let types: Vec<_> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["reservation.hold.created", "reservation.confirmed"]);
    assert_eq!(events[1].detail["order_id"], order_id);
    assert_eq!(events[1].detail["payment_intent_id"], "pay_sold");
}
