//! The running app removes finished records after their retention, in the background.

use std::time::Duration;

use crate::helpers::*;

#[tokio::test]
async fn finished_reservations_their_events_and_keys_leave_the_embedded_store() {
    let app = spawn_app_with(|o| {
        o.config.idempotency_ttl = std::time::Duration::from_secs(1);
        o.config.retention.outbox = std::time::Duration::from_secs(1);
        o.config.retention.reservation = std::time::Duration::from_secs(1);
        o.config.retention.sweep_interval = std::time::Duration::from_millis(100);
    })
    .await;
    if app.store.item_counts().await.is_none() {
        // DynamoDB expires by TTL (tests/retention.rs checks the attribute and the tables).
        return;
    }
    for i in 0..10 {
        let held = app.hold("u1", BIG_EVENT, 1).await;
        let id = held["reservation_id"].as_str().unwrap();
        assert_eq!(
            app.cancel("u1", id, &format!("cancel-{i}")).await.status(),
            200
        );
    }
    let live = app.hold("u1", BIG_EVENT, 1).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let counts = app.store.item_counts().await.unwrap();
        // The live hold and its event stay; its key (1 s) and everything finished go.
        if counts
            == [
                ("reservations", 1),
                ("orders", 0),
                ("idempotency", 0),
                ("outbox", 0),
            ]
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still held after 15 s: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let id = live["reservation_id"].as_str().unwrap();
    let now: serde_json::Value = app.get("u1", id).await.json().await.unwrap();
    assert_eq!(now["status"], "HOLD");
    let text = app.prometheus().await;
    assert!(
        text.contains("store_items{kind=\"reservations\"}"),
        "{text}"
    );
}
