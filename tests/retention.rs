//! Retention: finished records leave the store. The embedded store removes them in small batches
//! (the RetentionSweeper); DynamoDB removes them by TTL, so the store writes each finished item's
//! `ttl` and the tables have TTL on it.

use std::sync::Arc;

use chrono::{Duration, Utc};
use reservation_api::domain::{EventType, OutboxEvent, Reservation, ReservationStatus};
use reservation_api::idempotency::{Begin, IdempotencyCompletion, StoredResponse};
use reservation_api::service::now_ms;
use reservation_api::store::memory::MemoryStore;
use reservation_api::store::retention::RetentionSweeper;
use reservation_api::store::{Retention, Settlement, Store, Transition};

const PAIRS: usize = 20_000;

fn reservation(id: String) -> Reservation {
    let now = now_ms();
    Reservation {
        id,
        event_id: "evt_1".into(),
        user_id: "u1".into(),
        status: ReservationStatus::Hold,
        seat_ids: vec!["A-1".into()],
        qty: 1,
        total_price: 100,
        currency: "KRW".into(),
        hold_expires_at: now + Duration::seconds(60),
        idempotency_key: "k".into(),
        version: 1,
        order_id: None,
        payment_intent_id: None,
        created_at: now,
        updated_at: now,
    }
}

/// Take `key` and answer it with `status` in the same write as `write` (as the service does).
async fn begin(store: &dyn Store, key: &str, ttl: Duration) -> IdempotencyCompletion {
    let ticket = match store
        .begin_request(key, "hash", now_ms(), Duration::seconds(10), ttl)
        .await
        .unwrap()
    {
        Begin::Started(t) => t,
        other => panic!("{other:?}"),
    };
    IdempotencyCompletion {
        ticket,
        response: StoredResponse {
            status: 200,
            body: "{}".into(),
        },
    }
}

/// One create and its cancel, each with its key and answer.
async fn create_and_cancel(store: &dyn Store, i: usize, ttl: Duration) {
    let r = reservation(format!("rsv_{i:08}"));
    let c = begin(store, &format!("idem_c{i}"), ttl).await;
    let created = OutboxEvent::for_reservation(EventType::HoldCreated, &r, None, "t", now_ms());
    store.create_hold(&r, &created, Some(&c)).await.unwrap();
    let c = begin(store, &format!("idem_x{i}"), ttl).await;
    let next = r
        .transitioned(ReservationStatus::Cancelled, now_ms())
        .unwrap();
    let cancelled = OutboxEvent::for_reservation(EventType::Cancelled, &next, None, "t", now_ms());
    store
        .transition(Transition {
            next: &next,
            expected_version: r.version,
            order: None,
            event: &cancelled,
            completion: Some(&c),
        })
        .await
        .unwrap();
}

/// What a relay does: claim what is due and settle it as `how`; answers how many.
async fn relay_round(store: &dyn Store, how: impl Fn() -> Settlement) -> usize {
    let now = Utc::now();
    let claimed = store
        .claim_events("relay", now, now + Duration::seconds(30), 1000)
        .await
        .unwrap();
    let batch: Vec<_> = claimed.into_iter().map(|e| (e, how())).collect();
    store.settle_events("relay", &batch).await.unwrap();
    batch.len()
}

async fn counts(store: &dyn Store) -> Vec<(&'static str, usize)> {
    store
        .item_counts()
        .await
        .expect("the embedded store counts")
}

#[tokio::test]
async fn twenty_thousand_create_cancel_pairs_then_the_sweep_leave_the_store_at_its_starting_level()
{
    let retention = Retention {
        outbox: Duration::seconds(60),
        reservations: Duration::seconds(60),
        failed: Duration::days(14),
    };
    let ttl = Duration::seconds(60);
    let memory = Arc::new(MemoryStore::with_retention(retention));
    let store: Arc<dyn Store> = memory;
    // What must stay: a live hold, and a FAILED event (kept for operators).
    let live = reservation("rsv_live".into());
    let created = OutboxEvent::for_reservation(EventType::HoldCreated, &live, None, "t", now_ms());
    store.create_hold(&live, &created, None).await.unwrap();
    relay_round(&*store, || Settlement::Failed {
        attempts: 8,
        error: "rejected".into(),
    })
    .await;
    let start = counts(&*store).await;
    assert_eq!(
        start,
        [
            ("reservations", 1),
            ("orders", 0),
            ("idempotency", 0),
            ("outbox", 1)
        ]
    );

    for i in 0..PAIRS {
        create_and_cancel(&*store, i, ttl).await;
        if i % 1000 == 999 {
            relay_round(&*store, || Settlement::Published { at: Utc::now() }).await;
        }
    }
    while relay_round(&*store, || Settlement::Published { at: Utc::now() }).await > 0 {}
    let full = counts(&*store).await;
    assert_eq!(full[0], ("reservations", PAIRS + 1));
    assert_eq!(full[2], ("idempotency", 2 * PAIRS));
    assert_eq!(full[3], ("outbox", 2 * PAIRS + 1));

    let sweeper = RetentionSweeper::new(store.clone(), std::time::Duration::from_secs(1), 500);
    // Nothing is due yet.
    assert_eq!(sweeper.sweep(Utc::now()).await, 0);
    assert_eq!(counts(&*store).await, full);
    // Past every retention: removed in batches of at most 500, back to where it started.
    let later = Utc::now() + Duration::hours(2);
    assert_eq!(store.purge_expired(later, 500).await.unwrap(), 500);
    sweeper.sweep(later).await;
    assert_eq!(counts(&*store).await, start);
    let audit = store.audit().await.unwrap();
    assert_eq!(audit.reservations[0].id, "rsv_live");
    assert_eq!(
        audit.events[0].status,
        reservation_api::domain::OutboxStatus::Failed
    );
    // A removed reservation is simply not found; its key is free again.
    assert_eq!(store.get_reservation("rsv_00000001").await.unwrap(), None);
    assert!(store.events_for("rsv_00000001").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_record_renewed_before_its_old_expiry_is_kept_until_its_new_one() {
    let store = MemoryStore::with_retention(Retention::default());
    // Taken with a 10 s lease, completed with a 300 s TTL: the lease's entry must not remove it.
    let c = begin(&store, "idem_1", Duration::seconds(300)).await;
    store.complete_request(&c).await.unwrap();
    let in_a_minute = Utc::now() + Duration::seconds(60);
    store.purge_expired(in_a_minute, 100).await.unwrap();
    assert_eq!(counts(&store).await[2], ("idempotency", 1));
    let later = Utc::now() + Duration::seconds(301);
    store.purge_expired(later, 100).await.unwrap();
    assert_eq!(counts(&store).await[2], ("idempotency", 0));
}

/// DynamoDB (moto): the tables expire items by `ttl`, and the store writes it on what is finished.
#[tokio::test]
#[ignore = "needs moto: run ./run_local.sh test"]
async fn on_dynamodb_finished_items_carry_a_ttl_the_tables_expire_by() {
    use reservation_api::store::dynamo::{self, DynamoStore, TableNames};
    let endpoint = std::env::var("DYNAMODB_ENDPOINT")
        .expect("DYNAMODB_ENDPOINT is unset: start moto (./run_local.sh test)");
    let client = dynamo::client(
        Some(&endpoint),
        "us-east-1",
        std::time::Duration::from_secs(30),
    )
    .await;
    let tables = TableNames::prefixed(&format!("r{}-", uuid::Uuid::now_v7().simple()));
    dynamo::tables::create_missing(&client, &tables)
        .await
        .unwrap();
    let retention = Retention {
        outbox: Duration::seconds(3600),
        reservations: Duration::seconds(86_400),
        failed: Duration::days(14),
    };
    let store = DynamoStore::new(client.clone(), tables.clone()).with_retention(retention);
    let before = Utc::now().timestamp();
    create_and_cancel(&store, 1, Duration::seconds(300)).await;
    while relay_round(&store, || Settlement::Published { at: Utc::now() }).await > 0 {}

    for t in [
        &tables.reservations,
        &tables.orders,
        &tables.idempotency,
        &tables.outbox,
    ] {
        let d = client
            .describe_time_to_live()
            .table_name(t)
            .send()
            .await
            .unwrap();
        let d = d.time_to_live_description().unwrap();
        assert_eq!(d.attribute_name(), Some("ttl"), "{t}");
        assert_eq!(
            d.time_to_live_status().map(|s| s.as_str()),
            Some("ENABLED"),
            "{t}"
        );
    }
    let ttl_of =
        |item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>| {
            item.get("ttl")
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<i64>().ok())
        };
    let scan = |t: String| {
        let client = client.clone();
        async move { client.scan().table_name(t).send().await.unwrap() }
    };
    let reservations = scan(tables.reservations.clone()).await;
    let r = &reservations.items()[0];
    let ttl = ttl_of(r).expect("a cancelled reservation has a ttl");
    assert!(
        (before + 86_400..=Utc::now().timestamp() + 86_401).contains(&ttl),
        "{ttl}"
    );
    let events = scan(tables.outbox.clone()).await;
    assert_eq!(events.items().len(), 2);
    for e in events.items() {
        let ttl = ttl_of(e).expect("a published event has a ttl");
        assert!(
            (before + 3600..=Utc::now().timestamp() + 3601).contains(&ttl),
            "{ttl}"
        );
    }
}
