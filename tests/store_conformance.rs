//! The store conformance suite: the same cases against every storage backend.
//!
//! Backends: `memory::<case>` always; `dynamodb::<case>` against the server at `DYNAMODB_ENDPOINT`
//! (moto, which `./run_local.sh test` starts), ignored unless `--include-ignored`. Each DynamoDB
//! case gets fresh tables of its own.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use futures::future::join_all;
use reservation_api::domain::{
    EventType, OutboxEvent, OutboxStatus, Reservation, ReservationStatus,
};
use reservation_api::idempotency::{
    Begin, IdempotencyCompletion, IdempotencyTicket, StoredResponse,
};
use reservation_api::service::now_ms;
use reservation_api::store::dynamo::{self, DynamoStore, ShardLayout, TableNames};
use reservation_api::store::memory::MemoryStore;
use reservation_api::store::redrive::{redrive, Redrive};
use reservation_api::store::{
    ConflictKind, Settlement, Store, StoreError, Transition, UserListPosition,
};

fn memory() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}

/// DynamoDB on the moto server that `./run_local.sh test` starts. These cases are `#[ignore]`d so
/// that a plain `cargo test` reports them as not run instead of passing them without a server; run
/// with `--include-ignored` and no `DYNAMODB_ENDPOINT`, they fail.
async fn dynamodb() -> Arc<dyn Store> {
    let endpoint = std::env::var("DYNAMODB_ENDPOINT")
        .expect("DYNAMODB_ENDPOINT is unset: start moto (./run_local.sh test)");
    let client = dynamo::client(
        Some(&endpoint),
        "us-east-1",
        std::time::Duration::from_secs(30),
    )
    .await;
    let tables = TableNames::prefixed(&format!("c{}-", uid()));
    dynamo::tables::create_missing(&client, &tables)
        .await
        .expect("tables");
    // Every shard each round: the cases state what a caller finds; the production layout's
    // window (found over several rounds) is `shard_change`'s.
    Arc::new(DynamoStore::new(client, tables).with_shards(ShardLayout::all(8)))
}

fn uid() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

fn reservation(expires_in: Duration) -> Reservation {
    let now = now_ms();
    Reservation {
        id: format!("rsv_{}", uid()),
        event_id: "evt_1".into(),
        user_id: "u1".into(),
        status: ReservationStatus::Hold,
        seat_ids: vec!["A-1".into(), "A-2".into()],
        qty: 2,
        total_price: 200,
        currency: "KRW".into(),
        hold_expires_at: now + expires_in,
        idempotency_key: "k".into(),
        version: 1,
        order_id: None,
        payment_intent_id: None,
        created_at: now,
        updated_at: now,
    }
}

fn event(t: EventType, r: &Reservation) -> OutboxEvent {
    OutboxEvent::for_reservation(t, r, None, "trace", now_ms())
}

async fn started(store: &dyn Store, key: &str) -> IdempotencyTicket {
    match store
        .begin_request(
            key,
            "hash",
            now_ms(),
            Duration::seconds(10),
            Duration::seconds(300),
        )
        .await
        .unwrap()
    {
        Begin::Started(t) => t,
        other => panic!("expected Started, got {other:?}"),
    }
}

fn completion(ticket: &IdempotencyTicket, status: u16) -> IdempotencyCompletion {
    IdempotencyCompletion {
        ticket: ticket.clone(),
        response: StoredResponse {
            status,
            body: format!("{{\"s\":{status}}}"),
        },
    }
}

/// Claim up to `limit` due events for `owner`, with a 30 s lease.
async fn claim(store: &dyn Store, owner: &str, limit: usize) -> Vec<OutboxEvent> {
    let now = Utc::now();
    store
        .claim_events(owner, now, now + Duration::seconds(30), limit)
        .await
        .unwrap()
}

async fn create(store: &dyn Store, r: &Reservation) {
    store
        .create_hold(r, &event(EventType::HoldCreated, r), None)
        .await
        .unwrap();
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::cases::$case(super::memory()).await;
                }
            )*
        }

        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                #[ignore = "needs moto: run ./run_local.sh test"]
                async fn $case() {
                    super::cases::$case(super::dynamodb().await).await;
                }
            )*
        }
    };
}

conformance!(
    create_writes_reservation_event_and_answer_together,
    create_is_all_or_nothing,
    transitions_race_to_exactly_one_winner,
    transition_writes_order_event_and_answer_together,
    idempotency_record_life,
    idempotency_lease_can_be_lost,
    concurrent_claimers_never_share_an_event,
    claims_keep_per_reservation_order_and_leases_expire,
    settling_records_attempts_and_errors,
    due_holds_are_the_expired_holds_oldest_first,
    a_users_reservations_page_newest_first_without_gaps_or_repeats,
    reservations_of_one_millisecond_page_by_id,
    redrive_puts_failed_events_back_in_order,
    a_hold_whose_expiry_failed_is_due_later_then_given_up,
);

mod cases {
    use super::*;

    pub async fn create_writes_reservation_event_and_answer_together(store: Arc<dyn Store>) {
        let key = format!("idem_{}", uid());
        let ticket = started(&*store, &key).await;
        let r = reservation(Duration::seconds(60));
        let e = event(EventType::HoldCreated, &r);
        store
            .create_hold(&r, &e, Some(&completion(&ticket, 201)))
            .await
            .unwrap();
        assert_eq!(store.get_reservation(&r.id).await.unwrap(), Some(r.clone()));
        let events = store.events_for(&r.id).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].id, e.id);
        assert_eq!(events[0].status, OutboxStatus::Pending);
        assert_eq!(events[0].detail, e.detail);
        let replay = store
            .begin_request(
                &key,
                "hash",
                now_ms(),
                Duration::seconds(10),
                Duration::seconds(300),
            )
            .await
            .unwrap();
        assert_eq!(replay, Begin::Replay(completion(&ticket, 201).response));
    }

    pub async fn create_is_all_or_nothing(store: Arc<dyn Store>) {
        let r = reservation(Duration::seconds(60));
        create(&*store, &r).await;
        // The same id again: refused, and its event is not written.
        let mut again = r.clone();
        again.user_id = "u2".into();
        let err = store
            .create_hold(&again, &event(EventType::HoldCreated, &again), None)
            .await
            .unwrap_err();
        assert_eq!(err, StoreError::Conflict(ConflictKind::ReservationExists));
        assert_eq!(store.events_for(&r.id).await.unwrap().len(), 1);
        assert_eq!(
            store.get_reservation(&r.id).await.unwrap().unwrap().user_id,
            "u1"
        );

        // A completion whose key is not ours: nothing at all is written.
        let fresh = reservation(Duration::seconds(60));
        let stranger = IdempotencyTicket {
            scoped_key: format!("idem_{}", uid()),
            token: "nope".into(),
            expires_at: now_ms(),
        };
        let err = store
            .create_hold(
                &fresh,
                &event(EventType::HoldCreated, &fresh),
                Some(&completion(&stranger, 201)),
            )
            .await
            .unwrap_err();
        assert_eq!(err, StoreError::Conflict(ConflictKind::IdempotencyLost));
        assert_eq!(store.get_reservation(&fresh.id).await.unwrap(), None);
        assert!(store.events_for(&fresh.id).await.unwrap().is_empty());
    }

    pub async fn transitions_race_to_exactly_one_winner(store: Arc<dyn Store>) {
        let r = reservation(Duration::seconds(60));
        create(&*store, &r).await;
        let attempts = (0..16).map(|i| {
            let store = store.clone();
            let r = r.clone();
            tokio::spawn(async move {
                let to = if i % 2 == 0 {
                    ReservationStatus::Cancelled
                } else {
                    ReservationStatus::Expired
                };
                let next = r.transitioned(to, now_ms()).unwrap();
                let e = event(
                    if i % 2 == 0 {
                        EventType::Cancelled
                    } else {
                        EventType::HoldExpired
                    },
                    &next,
                );
                store
                    .transition(Transition {
                        next: &next,
                        expected_version: r.version,
                        order: None,
                        event: &e,
                        completion: None,
                    })
                    .await
            })
        });
        let results: Vec<_> = join_all(attempts)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "{results:?}"
        );
        for e in results.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(*e, StoreError::Conflict(ConflictKind::StaleReservation));
        }
        let stored = store.get_reservation(&r.id).await.unwrap().unwrap();
        assert_eq!(stored.version, 2);
        assert_eq!(store.events_for(&r.id).await.unwrap().len(), 2);
    }

    pub async fn transition_writes_order_event_and_answer_together(store: Arc<dyn Store>) {
        let r = reservation(Duration::seconds(60));
        create(&*store, &r).await;
        let key = format!("idem_{}", uid());
        let ticket = started(&*store, &key).await;
        let now = now_ms();
        let order = reservation_api::domain::Order {
            id: format!("ord_{}", uid()),
            reservation_id: r.id.clone(),
            user_id: r.user_id.clone(),
            event_id: r.event_id.clone(),
            seat_ids: r.seat_ids.clone(),
            total_amount: r.total_price,
            currency: r.currency.clone(),
            status: "CONFIRMED".into(),
            payment_intent_id: "pay_1".into(),
            created_at: now,
        };
        let next = r.confirmed(&order.id, "pay_1", now).unwrap();
        let e = OutboxEvent::for_reservation(EventType::Confirmed, &next, Some(&order), "t", now);
        let c = completion(&ticket, 200);
        // A stale version writes nothing.
        let stale = Transition {
            next: &next,
            expected_version: 7,
            order: Some(&order),
            event: &e,
            completion: Some(&c),
        };
        assert_eq!(
            store.transition(stale).await.unwrap_err(),
            StoreError::Conflict(ConflictKind::StaleReservation)
        );
        assert_eq!(store.get_order(&order.id).await.unwrap(), None);
        assert_eq!(store.events_for(&r.id).await.unwrap().len(), 1);

        let t = Transition {
            next: &next,
            expected_version: 1,
            order: Some(&order),
            event: &e,
            completion: Some(&c),
        };
        store.transition(t).await.unwrap();
        assert_eq!(
            store.get_reservation(&r.id).await.unwrap(),
            Some(next.clone())
        );
        assert_eq!(
            store.get_order(&order.id).await.unwrap(),
            Some(order.clone())
        );
        assert_eq!(
            store.events_for(&r.id).await.unwrap()[1].detail["order_id"],
            order.id
        );
        let replay = store
            .begin_request(
                &key,
                "hash",
                now_ms(),
                Duration::seconds(10),
                Duration::seconds(300),
            )
            .await
            .unwrap();
        assert_eq!(replay, Begin::Replay(c.response));
        // Nothing leaves CONFIRMED, even with the right version.
        let mut again = next.clone();
        again.status = ReservationStatus::Cancelled;
        again.version = 3;
        let e2 = event(EventType::Cancelled, &again);
        let t = Transition {
            next: &again,
            expected_version: 2,
            order: None,
            event: &e2,
            completion: None,
        };
        assert!(store.transition(t).await.is_err());
    }

    pub async fn idempotency_record_life(store: Arc<dyn Store>) {
        let key = format!("idem_{}", uid());
        let begin = |hash: &'static str, ttl: i64| {
            let store = store.clone();
            let key = key.clone();
            async move {
                store
                    .begin_request(
                        &key,
                        hash,
                        now_ms(),
                        Duration::seconds(10),
                        Duration::seconds(ttl),
                    )
                    .await
                    .unwrap()
            }
        };
        let Begin::Started(ticket) = begin("h1", 1).await else {
            panic!("not started")
        };
        assert_eq!(begin("h1", 1).await, Begin::InFlight);
        assert_eq!(begin("h2", 1).await, Begin::Conflict);
        store
            .complete_request(&completion(&ticket, 409))
            .await
            .unwrap();
        assert_eq!(
            begin("h1", 1).await,
            Begin::Replay(completion(&ticket, 409).response)
        );
        assert_eq!(begin("h2", 1).await, Begin::Conflict);
        // Completed records die after their TTL, checked on read.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let Begin::Started(second) = begin("h2", 300).await else {
            panic!("expired record was not replaced")
        };
        // An abandoned (5xx) request frees the key.
        store.abandon_request(&second).await.unwrap();
        assert!(matches!(begin("h1", 300).await, Begin::Started(_)));
    }

    pub async fn idempotency_lease_can_be_lost(store: Arc<dyn Store>) {
        let key = format!("idem_{}", uid());
        let short = |store: Arc<dyn Store>, key: String| async move {
            store
                .begin_request(
                    &key,
                    "h",
                    now_ms(),
                    Duration::milliseconds(200),
                    Duration::seconds(300),
                )
                .await
                .unwrap()
        };
        let Begin::Started(first) = short(store.clone(), key.clone()).await else {
            panic!()
        };
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let Begin::Started(second) = short(store.clone(), key.clone()).await else {
            panic!("the lease did not run out")
        };
        assert_ne!(first.token, second.token);
        // The first request may no longer complete, nor free the key.
        assert_eq!(
            store
                .complete_request(&completion(&first, 201))
                .await
                .unwrap_err(),
            StoreError::Conflict(ConflictKind::IdempotencyLost)
        );
        store.abandon_request(&first).await.unwrap();
        assert_eq!(short(store.clone(), key.clone()).await, Begin::InFlight);
        store
            .complete_request(&completion(&second, 201))
            .await
            .unwrap();
    }

    pub async fn concurrent_claimers_never_share_an_event(store: Arc<dyn Store>) {
        let mut ids = HashSet::new();
        for _ in 0..40 {
            let r = reservation(Duration::seconds(60));
            let e = event(EventType::HoldCreated, &r);
            ids.insert(e.id.clone());
            store.create_hold(&r, &e, None).await.unwrap();
        }
        let claimers = (0..4).map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = claim(&*store, &format!("c{i}"), 5).await;
                    if got.is_empty() {
                        return mine;
                    }
                    mine.extend(got.into_iter().map(|e| e.id));
                }
            })
        });
        let claimed: Vec<Vec<String>> = join_all(claimers)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        let all: Vec<&String> = claimed
            .iter()
            .flatten()
            .filter(|id| ids.contains(*id))
            .collect();
        let distinct: HashSet<&String> = all.iter().copied().collect();
        assert_eq!(
            all.len(),
            distinct.len(),
            "an event was handed to two claimers"
        );
        assert_eq!(distinct.len(), ids.len(), "an event was never claimed");
    }

    pub async fn claims_keep_per_reservation_order_and_leases_expire(store: Arc<dyn Store>) {
        // Drain whatever earlier cases left, so this case sees only its own events.
        drain(&*store).await;
        let r = reservation(Duration::seconds(60));
        let created = event(EventType::HoldCreated, &r);
        store.create_hold(&r, &created, None).await.unwrap();
        let next = r
            .transitioned(ReservationStatus::Cancelled, now_ms())
            .unwrap();
        let cancelled = event(EventType::Cancelled, &next);
        store
            .transition(Transition {
                next: &next,
                expected_version: 1,
                order: None,
                event: &cancelled,
                completion: None,
            })
            .await
            .unwrap();

        let now = Utc::now();
        let first = store
            .claim_events("a", now, now + Duration::milliseconds(300), 10)
            .await
            .unwrap();
        assert_eq!(
            first.iter().map(|e| &e.id).collect::<Vec<_>>(),
            [&created.id],
            "the later event must wait"
        );
        assert!(claim(&*store, "b", 10).await.is_empty());

        // a's replica "dies": after the lease, b takes the event over; a can no longer settle it.
        tokio::time::sleep(std::time::Duration::from_millis(350)).await;
        let now = Utc::now();
        let retaken = claim(&*store, "b", 10).await;
        assert_eq!(
            retaken.iter().map(|e| &e.id).collect::<Vec<_>>(),
            [&created.id]
        );
        assert!(store
            .settle_event(&created, "a", Settlement::Published { at: now })
            .await
            .is_err());
        store
            .settle_event(&created, "b", Settlement::Published { at: now })
            .await
            .unwrap();

        let now = Utc::now();
        let second = claim(&*store, "b", 10).await;
        assert_eq!(
            second.iter().map(|e| &e.id).collect::<Vec<_>>(),
            [&cancelled.id]
        );
        store
            .settle_event(&cancelled, "b", Settlement::Published { at: now })
            .await
            .unwrap();
        let events = store.events_for(&r.id).await.unwrap();
        assert!(events.iter().all(|e| e.status == OutboxStatus::Published));
        assert_eq!(
            events.iter().map(|e| e.event_type).collect::<Vec<_>>(),
            [EventType::HoldCreated, EventType::Cancelled]
        );
    }

    pub async fn a_hold_whose_expiry_failed_is_due_later_then_given_up(store: Arc<dyn Store>) {
        let r = reservation(Duration::seconds(-5));
        create(&*store, &r).await;
        let due_at = |at: DateTime<Utc>| {
            let store = store.clone();
            let id = r.id.clone();
            async move {
                let due = store.due_holds(at, 1000).await.unwrap();
                due.iter().any(|x| x.id == id)
            }
        };
        let now = now_ms();
        assert!(due_at(now).await);
        assert!(store
            .defer_expiry(&r, Some(now + Duration::hours(1)))
            .await
            .unwrap());
        assert!(
            !due_at(now).await,
            "a deferred hold is not due before its retry"
        );
        assert!(due_at(now + Duration::hours(2)).await);
        // Given up on: never due again, still HOLD (nothing released), until its retention.
        assert!(store.defer_expiry(&r, None).await.unwrap());
        assert!(!due_at(now + Duration::hours(2)).await);
        let kept = store.get_reservation(&r.id).await.unwrap().unwrap();
        assert_eq!(kept.status, ReservationStatus::Hold);
        let mut stale = r.clone();
        stale.version = 7;
        assert!(!store.defer_expiry(&stale, Some(now)).await.unwrap());
        // The memory store removes it after FAILED_RETENTION_SECONDS (DynamoDB by its `ttl`).
        if store
            .purge_expired(now + Duration::days(15), 1000)
            .await
            .unwrap()
            > 0
        {
            assert!(store.get_reservation(&r.id).await.unwrap().is_none());
        }
    }

    /// Claim `owner`'s next event and settle it FAILED.
    async fn fail_next(store: &dyn Store, owner: &str) -> OutboxEvent {
        let got = claim(store, owner, 10).await;
        assert_eq!(got.len(), 1, "{got:?}");
        let how = Settlement::Failed {
            attempts: 8,
            error: "rejected".into(),
        };
        store.settle_event(&got[0], owner, how).await.unwrap();
        got[0].clone()
    }

    pub async fn redrive_puts_failed_events_back_in_order(store: Arc<dyn Store>) {
        drain(&*store).await;
        let r = reservation(Duration::seconds(60));
        create(&*store, &r).await;
        let next = r
            .transitioned(ReservationStatus::Cancelled, now_ms())
            .unwrap();
        let cancelled = event(EventType::Cancelled, &next);
        let t = Transition {
            next: &next,
            expected_version: 1,
            order: None,
            event: &cancelled,
            completion: None,
        };
        store.transition(t).await.unwrap();
        // Both fail: a FAILED event holds back nothing, so the second is claimed after the first.
        let created = fail_next(&*store, "a").await;
        assert_eq!(fail_next(&*store, "a").await.id, cancelled.id);
        let failed: Vec<String> = store
            .failed_events(1000)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert!(failed.contains(&created.id) && failed.contains(&cancelled.id));

        // Redriving the second redrives the first before it, so the relay's order holds.
        let which = Redrive::Event(cancelled.id.clone());
        let done = redrive(&*store, &which, Utc::now()).await.unwrap();
        let done: Vec<&String> = done.iter().map(|e| &e.id).collect();
        assert_eq!(done, [&created.id, &cancelled.id]);
        let first = claim(&*store, "b", 10).await;
        assert_eq!(
            first.iter().map(|e| &e.id).collect::<Vec<_>>(),
            [&created.id]
        );
        assert_eq!(
            (first[0].attempts, first[0].status),
            (0, OutboxStatus::Claimed)
        );
        let now = Utc::now();
        let published = Settlement::Published { at: now };
        store
            .settle_event(&first[0], "b", published.clone())
            .await
            .unwrap();
        let second = claim(&*store, "b", 10).await;
        assert_eq!(
            second.iter().map(|e| &e.id).collect::<Vec<_>>(),
            [&cancelled.id]
        );
        store
            .settle_event(&second[0], "b", published)
            .await
            .unwrap();
        let events = store.events_for(&r.id).await.unwrap();
        assert!(events.iter().all(|e| e.status == OutboxStatus::Published));
        // Nothing is FAILED any more: a second run redrives nothing, and an unknown id nothing.
        assert!(redrive(&*store, &Redrive::All, now)
            .await
            .unwrap()
            .iter()
            .all(|e| e.reservation_id != r.id));
        let unknown = Redrive::Event("evt_unknown".into());
        assert!(redrive(&*store, &unknown, now).await.unwrap().is_empty());
    }

    pub async fn settling_records_attempts_and_errors(store: Arc<dyn Store>) {
        drain(&*store).await;
        let r = reservation(Duration::seconds(60));
        let e = event(EventType::HoldCreated, &r);
        store.create_hold(&r, &e, None).await.unwrap();
        let now = Utc::now();
        claim(&*store, "a", 10).await;
        let later = now + Duration::milliseconds(300);
        store
            .settle_event(
                &e,
                "a",
                Settlement::Retry {
                    attempts: 1,
                    next_retry_at: later,
                    error: "throttled".into(),
                },
            )
            .await
            .unwrap();
        let stored = &store.events_for(&r.id).await.unwrap()[0];
        assert_eq!(
            (stored.status, stored.attempts, stored.last_error.as_deref()),
            (OutboxStatus::Pending, 1, Some("throttled"))
        );
        // Not due before next_retry_at.
        assert!(claim(&*store, "a", 10).await.is_empty());
        tokio::time::sleep(std::time::Duration::from_millis(350)).await;
        assert_eq!(claim(&*store, "a", 10).await.len(), 1);
        store
            .settle_event(
                &e,
                "a",
                Settlement::Failed {
                    attempts: 8,
                    error: "rejected".into(),
                },
            )
            .await
            .unwrap();
        let stored = &store.events_for(&r.id).await.unwrap()[0];
        assert_eq!(
            (stored.status, stored.attempts, stored.last_error.as_deref()),
            (OutboxStatus::Failed, 8, Some("rejected"))
        );
        assert!(claim(&*store, "a", 10).await.is_empty());
    }

    pub async fn due_holds_are_the_expired_holds_oldest_first(store: Arc<dyn Store>) {
        let older = reservation(Duration::seconds(-20));
        let old = reservation(Duration::seconds(-10));
        let live = reservation(Duration::seconds(60));
        let gone = reservation(Duration::seconds(-30));
        for r in [&live, &old, &older, &gone] {
            create(&*store, r).await;
        }
        let next = gone
            .transitioned(ReservationStatus::Expired, now_ms())
            .unwrap();
        let e = event(EventType::HoldExpired, &next);
        store
            .transition(Transition {
                next: &next,
                expected_version: 1,
                order: None,
                event: &e,
                completion: None,
            })
            .await
            .unwrap();

        let due: Vec<String> = store
            .due_holds(now_ms(), 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        let mine: Vec<&String> = due
            .iter()
            .filter(|id| [&older.id, &old.id, &live.id, &gone.id].contains(id))
            .collect();
        assert_eq!(mine, [&older.id, &old.id]);
        let at: DateTime<Utc> = now_ms() - Duration::seconds(15);
        let early: Vec<String> = store
            .due_holds(at, 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert!(early.contains(&older.id) && !early.contains(&old.id));
    }

    /// Publish everything claimable so that a case starts from an empty queue.
    async fn drain(store: &dyn Store) {
        loop {
            let now = Utc::now();
            let got = claim(store, "drain", 10).await;
            if got.is_empty() {
                return;
            }
            for e in got {
                store
                    .settle_event(&e, "drain", Settlement::Published { at: now })
                    .await
                    .unwrap();
            }
        }
    }

    /// Every page of `user`'s reservations, `size` at a time, by the last position of each page.
    async fn all_pages(store: &dyn Store, user: &str, size: usize) -> Vec<Vec<String>> {
        let mut pages = Vec::new();
        let mut after: Option<UserListPosition> = None;
        loop {
            let page = store
                .reservations_of_user(user, after.as_ref(), size)
                .await
                .unwrap();
            assert!(page.iter().all(|r| r.user_id == user));
            after = page.last().map(UserListPosition::of);
            pages.push(page.iter().map(|r| r.id.clone()).collect::<Vec<_>>());
            if page.len() < size {
                return pages;
            }
        }
    }

    pub async fn a_users_reservations_page_newest_first_without_gaps_or_repeats(
        store: Arc<dyn Store>,
    ) {
        let user = format!("u_{}", uid());
        let mut made = Vec::new();
        for i in 0..12 {
            let mut r = reservation(Duration::seconds(60));
            r.user_id = user.clone();
            r.created_at += Duration::milliseconds(i);
            create(&*store, &r).await;
            made.push(r);
            let mut other = reservation(Duration::seconds(60));
            other.user_id = format!("other_{}", uid());
            create(&*store, &other).await;
        }
        let newest_first: Vec<String> = made.iter().rev().map(|r| r.id.clone()).collect();
        let pages = all_pages(&*store, &user, 5).await;
        assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [5, 5, 2]);
        assert_eq!(pages.concat(), newest_first);
        // A page holds the whole reservation, whatever its status.
        let first = &store.reservations_of_user(&user, None, 1).await.unwrap()[0];
        assert_eq!(first, made.last().unwrap());
        // Made after a position was handed out: never after it.
        let after = UserListPosition::of(&made[6]);
        let mut newer = reservation(Duration::seconds(60));
        newer.user_id = user.clone();
        newer.created_at = made.last().unwrap().created_at + Duration::milliseconds(5);
        create(&*store, &newer).await;
        let rest = store
            .reservations_of_user(&user, Some(&after), 100)
            .await
            .unwrap();
        let rest: Vec<String> = rest.iter().map(|r| r.id.clone()).collect();
        assert_eq!(rest, newest_first[6..]);
        assert!(store
            .reservations_of_user("nobody", None, 10)
            .await
            .unwrap()
            .is_empty());
    }

    pub async fn reservations_of_one_millisecond_page_by_id(store: Arc<dyn Store>) {
        let user = format!("u_{}", uid());
        let at = now_ms();
        let mut made = Vec::new();
        for _ in 0..7 {
            let mut r = reservation(Duration::seconds(60));
            r.user_id = user.clone();
            r.created_at = at;
            create(&*store, &r).await;
            made.push(r.id);
        }
        made.sort();
        made.reverse();
        for size in [1, 2, 3, 7] {
            let pages = all_pages(&*store, &user, size).await;
            assert_eq!(pages.concat(), made, "pages of {size}");
        }
    }
}

/// A change of `DYNAMODB_INDEX_SHARDS` on live tables: items written under the old count are still
/// found by the relay's claim and the sweeper's due holds while `DYNAMODB_INDEX_SHARDS_PREVIOUS`
/// names it, through the production layout's rotating window (several rounds).
mod shard_change {
    use super::*;
    use reservation_api::store::dynamo::shards::shard_of;

    async fn tables() -> (aws_sdk_dynamodb::Client, TableNames) {
        let endpoint = std::env::var("DYNAMODB_ENDPOINT").expect("DYNAMODB_ENDPOINT (moto)");
        let timeout = std::time::Duration::from_secs(30);
        let client = dynamo::client(Some(&endpoint), "us-east-1", timeout).await;
        let tables = TableNames::prefixed(&format!("s{}-", uid()));
        dynamo::tables::create_missing(&client, &tables)
            .await
            .expect("tables");
        (client, tables)
    }

    fn layout(current: u32, previous: Option<u32>) -> ShardLayout {
        ShardLayout {
            current,
            previous,
            per_round: 8,
        }
    }

    /// A due hold and its event, both in a shard of `0..wide` that `0..narrow` lacks.
    fn outside(narrow: u32, wide: u32) -> (Reservation, OutboxEvent) {
        loop {
            let r = reservation(Duration::seconds(-5));
            let e = event(EventType::HoldCreated, &r);
            if shard_of(&r.id, wide) >= narrow && shard_of(&e.id, wide) >= narrow {
                return (r, e);
            }
        }
    }

    /// Whether `store` (a fresh process: nothing marked) claims `id` and finds hold `rid` due
    /// within `rounds` rounds of its window.
    async fn found(store: &DynamoStore, id: &str, rid: &str, rounds: usize) -> (bool, bool) {
        let (mut claimed, mut due) = (false, false);
        for _ in 0..rounds {
            let now = Utc::now();
            let got = store
                .claim_events("relay", now, now + Duration::seconds(30), 100)
                .await
                .unwrap();
            claimed |= got.iter().any(|e| e.id == id);
            due |= store
                .due_holds(now_ms(), 100)
                .await
                .unwrap()
                .iter()
                .any(|r| r.id == rid);
        }
        (claimed, due)
    }

    /// Shrinking 64 → 8: the old shards 8..63 stay read while PREVIOUS=64; without it they are
    /// stranded (what the migration steps prevent).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    #[ignore = "needs moto: run ./run_local.sh test"]
    async fn an_item_written_under_the_old_count_is_found_while_the_change_is_in_progress() {
        let (client, tables) = tables().await;
        let old = DynamoStore::new(client.clone(), tables.clone()).with_shards(layout(64, None));
        let (r, e) = outside(8, 64);
        old.create_hold(&r, &e, None).await.unwrap();

        let stranded =
            DynamoStore::new(client.clone(), tables.clone()).with_shards(layout(8, None));
        assert_eq!(found(&stranded, &e.id, &r.id, 3).await, (false, false));

        let changing =
            DynamoStore::new(client.clone(), tables.clone()).with_shards(layout(8, Some(64)));
        // 64 shards, 8 a round: every shard within 8 rounds.
        assert_eq!(found(&changing, &e.id, &r.id, 8).await, (true, true));
    }

    /// Growing 8 → 64 (the default's own migration): readers cover the old ids anyway.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    #[ignore = "needs moto: run ./run_local.sh test"]
    async fn an_item_written_under_eight_shards_is_found_under_sixty_four() {
        let (client, tables) = tables().await;
        let old = DynamoStore::new(client.clone(), tables.clone()).with_shards(ShardLayout::all(8));
        let r = reservation(Duration::seconds(-5));
        let e = event(EventType::HoldCreated, &r);
        old.create_hold(&r, &e, None).await.unwrap();
        let new = DynamoStore::new(client, tables).with_shards(layout(64, Some(8)));
        assert_eq!(found(&new, &e.id, &r.id, 8).await, (true, true));
    }
}

/// The production layout (64 shards, 8 a round): what this process wrote is found by the very
/// next round, not after the rotating window comes around.
mod local_first {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    #[ignore = "needs moto: run ./run_local.sh test"]
    async fn a_local_event_and_a_local_due_hold_are_found_by_the_next_round() {
        let endpoint = std::env::var("DYNAMODB_ENDPOINT").expect("DYNAMODB_ENDPOINT (moto)");
        let timeout = std::time::Duration::from_secs(30);
        let client = dynamo::client(Some(&endpoint), "us-east-1", timeout).await;
        let tables = TableNames::prefixed(&format!("l{}-", uid()));
        dynamo::tables::create_missing(&client, &tables)
            .await
            .expect("tables");
        let store = DynamoStore::new(client, tables).with_shards(ShardLayout::default());
        for _ in 0..5 {
            let r = reservation(Duration::seconds(-5));
            let e = event(EventType::HoldCreated, &r);
            store.create_hold(&r, &e, None).await.unwrap();
            let due = store.due_holds(now_ms(), 100).await.unwrap();
            assert!(due.iter().any(|x| x.id == r.id), "the hold was not found");
            let got = claim(&store, "relay", 100).await;
            assert!(got.iter().any(|x| x.id == e.id), "the event was not found");
        }
    }
}
