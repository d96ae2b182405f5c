//! The capacity model's request counts (docs/capacity.md), kept true: each operation's DynamoDB
//! requests are counted by an SDK interceptor on the reservation store's client and on the
//! bundled inventory's client, and an operation that makes more than [`LIMITS`] says fails.
//!
//! Background work is told apart by what a request touches: the relay's requests touch only the
//! outbox table, the sweeper's query `holds_by_expiry`; both are counted as their own operations.
//! The inventory's periodic re-reads (every 10 s) could land in a window, so each operation is
//! measured twice and the smaller count kept.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents, SharedInterceptor};
use aws_sdk_dynamodb::error::BoxError;
use reservation_api::config::{ClientTaps, StoreKind};
use reservation_api::domain::{EventType, OutboxEvent, OutboxStatus, ReservationStatus};
use reservation_api::service::expiry::HoldExpiry;
use reservation_api::store::dynamo::TableNames;
use reservation_api::store::dynamo::{self, DynamoStore};
use reservation_api::store::{Settlement, Store, Transition};
use serde_json::Value;

use crate::helpers::*;
use crate::moto;

/// The model's limits: (operation, reservation-store requests, inventory requests) at most.
/// The one table of docs/capacity.md.
pub const LIMITS: &[(&str, usize, usize)] = &[
    ("create", 3, 2),
    ("get", 1, 0),
    ("list", 2, 0),
    ("confirm", 4, 2),
    ("cancel", 4, 2),
    ("seat map", 0, 0),
    ("expiry", 1, 2),
    // 8 queries (one per shard of the window) + 1 predecessor read + 1 claim + 1 settle.
    ("relay round", 11, 0),
];

const HOLD_TTL: Duration = Duration::from_secs(20);

/// One request: its operation and the tables and indexes it names.
#[derive(Clone, Debug)]
struct Call {
    /// For a trace (`CAPACITY_TRACE=1`).
    #[allow(dead_code)]
    op: String,
    names: Vec<String>,
    /// The inventory's background work, not an operation's: the seat-map snapshot's refresh
    /// (`BatchGetItem` of its change notes and of rows others changed) and its change notes
    /// (`#CHG#` items), once a second per process and event, counted apart.
    background: bool,
}

#[derive(Clone, Debug, Default)]
struct Recorder(Arc<Mutex<Vec<Call>>>);

/// Every `TableName` and `IndexName` in a request body.
fn names(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("TableName" | "IndexName", Value::String(s)) => out.push(s.clone()),
                    // BatchGetItem names its tables as keys.
                    ("RequestItems", Value::Object(t)) => out.extend(t.keys().cloned()),
                    _ => {}
                }
                names(v, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| names(v, out)),
        _ => {}
    }
}

impl Intercept for Recorder {
    fn name(&self) -> &'static str {
        "CapacityRecorder"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let req = context.request();
        let op = req
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or("?")
            .to_owned();
        let body: Value = req
            .body()
            .bytes()
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or(Value::Null);
        let mut n = Vec::new();
        names(&body, &mut n);
        let background = op == "BatchGetItem" || body.to_string().contains("#CHG#");
        self.0.lock().unwrap().push(Call {
            op,
            names: n,
            background,
        });
        Ok(())
    }
}

impl Recorder {
    fn mark(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn since(&self, mark: usize) -> Vec<Call> {
        self.0.lock().unwrap()[mark..].to_vec()
    }

    /// The inventory requests since `mark` that are the operation's own, not the background's.
    fn own_since(&self, mark: usize) -> usize {
        self.0.lock().unwrap()[mark..]
            .iter()
            .filter(|c| !c.background)
            .count()
    }
}

/// What kind of work a store request is: the relay's, the sweeper's, or a request's.
fn kind(c: &Call, tables: &TableNames) -> &'static str {
    let named = |n: &str| c.names.iter().any(|x| x == n);
    if named("holds_by_expiry") {
        "sweep"
    } else if named("events_by_reservation") {
        // The test's own look at a reservation's events.
        "test"
    } else if !c.names.is_empty()
        && c.names
            .iter()
            .all(|n| *n == tables.outbox || n == "pending_by_due")
    {
        "relay"
    } else {
        "request"
    }
}

struct Counted {
    app: TestApp,
    store: Recorder,
    seats: Recorder,
    tables: TableNames,
}

async fn counted_app() -> Counted {
    let (store, seats) = (Recorder::default(), Recorder::default());
    let taps = ClientTaps {
        store: Some(SharedInterceptor::new(store.clone())),
        seats: Some(SharedInterceptor::new(seats.clone())),
    };
    let tables = TableNames::prefixed(&format!("k{}-", uuid::Uuid::new_v4().simple()));
    let t = tables.clone();
    let app = spawn_app_with(move |o| {
        under_load(o);
        let config = &mut o.config;
        config.store = StoreKind::Dynamodb;
        config.inventory_store = StoreKind::Dynamodb;
        config.dynamodb.endpoint = Some(moto::endpoint());
        config.aws_region = "us-east-1".into();
        config.dynamodb.tables = t;
        config.dynamodb.auto_create = true;
        config.dynamodb.timeout = Duration::from_secs(60);
        // Quiet background work: the relay runs when a write wakes it, the sweeper when told to.
        config.outbox.poll_interval = Duration::from_secs(3600);
        config.expiry_interval = Duration::from_secs(3600);
        // Long enough that the first holds are still held when confirm and cancel come, on a
        // loaded machine too (a cancel of a lapsed hold is a 409); the expiry step waits it out.
        config.hold_ttl = HOLD_TTL;
        config.dynamodb.taps = taps;
    })
    .await;
    Counted {
        app,
        store,
        seats,
        tables,
    }
}

impl Counted {
    /// The requests `f` made: (reservation store's, without the relay's and sweeper's;
    /// inventory's).
    async fn count<F: std::future::Future<Output = ()>>(&self, f: F) -> (usize, usize) {
        let (s, i) = (self.store.mark(), self.seats.mark());
        f.await;
        let calls = self.store.since(s);
        let store = calls
            .iter()
            .filter(|c| kind(c, &self.tables) == "request")
            .count();
        if std::env::var_os("CAPACITY_TRACE").is_some() {
            println!("store {calls:?}\nseats {:?}", self.seats.since(i));
        }
        (store, self.seats.own_since(i))
    }

    async fn hold(&self, user: &str) -> String {
        let h = self.app.hold(user, SMALL_EVENT, 1).await;
        h["reservation_id"].as_str().unwrap().to_owned()
    }

    /// Wait until every event of `id` is PUBLISHED.
    async fn published(&self, id: &str) {
        for _ in 0..400 {
            let events = self.app.events(id).await;
            if !events.is_empty() && events.iter().all(|e| e.status == OutboxStatus::Published) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("events of {id} not published");
    }
}

/// One relay round (claim, then settle) over an event whose predecessor is published, on a
/// counted client of tables of its own (the app's relay would race for the app's).
async fn relay_round() -> (usize, usize) {
    let tables = TableNames::prefixed(&format!("q{}-", uuid::Uuid::new_v4().simple()));
    let counter = Recorder::default();
    let timeout = Duration::from_secs(60);
    let ep = moto::endpoint();
    let client = dynamo::client_with(
        Some(&ep),
        "us-east-1",
        timeout,
        Some(SharedInterceptor::new(counter.clone())),
    )
    .await;
    dynamo::tables::create_missing(&client, &tables)
        .await
        .expect("tables");
    let store = DynamoStore::new(client, tables);
    let now = reservation_api::service::now_ms();
    let r = reservation_api::domain::Reservation {
        id: format!("rsv_{}", uuid::Uuid::now_v7().simple()),
        event_id: SMALL_EVENT.into(),
        user_id: "u".into(),
        status: ReservationStatus::Hold,
        seat_ids: vec!["A-1".into()],
        qty: 1,
        total_price: 100,
        currency: "KRW".into(),
        hold_expires_at: now + chrono::Duration::seconds(60),
        idempotency_key: "k".into(),
        version: 1,
        order_id: None,
        payment_intent_id: None,
        created_at: now,
        updated_at: now,
    };
    let created = OutboxEvent::for_reservation(EventType::HoldCreated, &r, None, "t", now);
    store.create_hold(&r, &created, None).await.unwrap();
    let round = || async {
        let now = chrono::Utc::now();
        let got = store
            .claim_events("relay", now, now + chrono::Duration::seconds(30), 100)
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
        let batch: Vec<_> = got
            .into_iter()
            .map(|e| (e, Settlement::Published { at: now }))
            .collect();
        assert!(store
            .settle_events("relay", &batch)
            .await
            .unwrap()
            .is_empty());
    };
    round().await;
    let next = r.transitioned(ReservationStatus::Cancelled, now).unwrap();
    let cancelled = OutboxEvent::for_reservation(EventType::Cancelled, &next, None, "t", now);
    let t = Transition {
        next: &next,
        expected_version: 1,
        order: None,
        event: &cancelled,
        completion: None,
    };
    store.transition(t).await.unwrap();
    let mark = counter.mark();
    round().await;
    (counter.since(mark).len(), 0)
}

fn min2(a: (usize, usize), b: (usize, usize)) -> (usize, usize) {
    (a.0.min(b.0), a.1.min(b.1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto: run ./run_local.sh test"]
async fn each_operation_makes_no_more_dynamodb_requests_than_the_capacity_model_says() {
    let c = counted_app().await;
    let mut measured: Vec<(&str, (usize, usize))> = Vec::new();
    // Warm: the inventory's first look at the event, the clients' connections.
    let warm = c.hold("warm").await;
    c.published(&warm).await;

    let mut ids = Vec::new();
    let mut create = (usize::MAX, usize::MAX);
    for i in 0..4 {
        let mut id = String::new();
        let n = c
            .count(async {
                let body = create_body(SMALL_EVENT, 1);
                let r = c
                    .app
                    .create(&format!("fan{i}"), &format!("k{i}"), &body)
                    .await;
                assert_eq!(r.status(), 201);
                let v: Value = r.json().await.unwrap();
                id = v["reservation_id"].as_str().unwrap().to_owned();
            })
            .await;
        create = min2(create, n);
        ids.push(id);
    }
    measured.push(("create", create));

    let get = min2(
        c.count(async { assert_eq!(c.app.get("fan0", &ids[0]).await.status(), 200) })
            .await,
        c.count(async { assert_eq!(c.app.get("fan1", &ids[1]).await.status(), 200) })
            .await,
    );
    measured.push(("get", get));

    let list_once = || async {
        let r = c
            .app
            .client
            .get(c.app.url("/v1/reservations?limit=20"))
            .bearer_auth(token("fan0"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    };
    let list = min2(c.count(list_once()).await, c.count(list_once()).await);
    measured.push(("list", list));

    let seat_map_once = || async {
        let r = c.app.seat_map(SMALL_EVENT, None).await;
        assert_eq!(r.status(), 200);
    };
    let seat_map = min2(
        c.count(seat_map_once()).await,
        c.count(seat_map_once()).await,
    );
    measured.push(("seat map", seat_map));

    let confirm = min2(
        c.count(async {
            let r = c.app.confirm("fan0", &ids[0], "c0", "pay_c0").await;
            assert_eq!(r.status(), 200);
        })
        .await,
        c.count(async {
            let r = c.app.confirm("fan1", &ids[1], "c1", "pay_c1").await;
            assert_eq!(r.status(), 200);
        })
        .await,
    );
    measured.push(("confirm", confirm));

    let cancel = min2(
        c.count(async {
            let r = c.app.cancel("fan2", &ids[2], "x2").await;
            let st = r.status();
            assert_eq!(st, 200, "{}", r.text().await.unwrap())
        })
        .await,
        c.count(async {
            let r = c.app.cancel("fan3", &ids[3], "x3").await;
            let st = r.status();
            assert_eq!(st, 200, "{}", r.text().await.unwrap())
        })
        .await,
    );
    measured.push(("cancel", cancel));

    // Expiry: two due holds, one sweep of one hold each (the sweeper's window of queries is
    // the sweep's, counted apart).
    let due = [c.hold("late0").await, c.hold("late1").await];
    for id in ids.iter().chain(&due) {
        c.published(id).await;
    }
    tokio::time::sleep(HOLD_TTL + Duration::from_secs(1)).await;
    let expiry = HoldExpiry::new(c.app.service.clone(), Duration::from_secs(3600), 1);
    let mut sweep = (usize::MAX, usize::MAX);
    for _ in 0..2 {
        let (s, i) = (c.store.mark(), c.seats.mark());
        let mut expired = 0;
        while expired == 0 {
            expired = expiry.sweep_once().await;
        }
        let calls = c.store.since(s);
        if std::env::var_os("CAPACITY_TRACE").is_some() {
            println!("expiry {calls:?}\nseats {:?}", c.seats.since(i));
        }
        let store = calls
            .iter()
            .filter(|x| kind(x, &c.tables) == "request")
            .count();
        // Background work counted apart, as for every operation: a fresh-clone run saw a
        // change note land in the sweep's window.
        sweep = min2(sweep, (store, c.seats.own_since(i)));
    }
    measured.push(("expiry", sweep));

    measured.push(("relay round", relay_round().await));

    println!("capacity model, requests per operation on moto (store, inventory):");
    for (op, (s, i)) in &measured {
        println!("  {op:<12} {s:>3} {i:>3}");
    }
    let mut over = Vec::new();
    for (op, (s, i)) in &measured {
        let (_, ms, mi) = LIMITS.iter().find(|(o, _, _)| o == op).expect("a limit");
        if s > ms || i > mi {
            over.push(format!(
                "{op}: {s} store / {i} inventory requests, model {ms} / {mi}"
            ));
        }
    }
    assert!(
        over.is_empty(),
        "more requests than docs/capacity.md: {over:?}"
    );
}
