//! Faults at scale, on DynamoDB (moto) behind the fault proxy: a burst on a slow store, and a
//! seeded run of the whole flow with random drops, delays and resets on the store and the
//! inventory. Each ends with an audit of the store against the inventory.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::ambiguous::TRANSACT;
use crate::fault_proxy::{Chaos, Fault, FaultProxy};
use crate::helpers::*;
use crate::moto::{self, authority};
use crate::peers::{self, Peer};
use chrono::Utc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reservation_api::domain::{EventType, Reservation, ReservationStatus};
use reservation_api::grpc::inventory_server::InventoryGrpc;
use reservation_api::grpc::local;
use reservation_api::grpc::proto::reservation::v1::inventory_service_client::InventoryServiceClient;
use reservation_api::grpc::proto::reservation::v1::CheckAvailabilityRequest;
use reservation_api::inventory::catalog::Catalog;
use reservation_api::store::dynamo::{self, DynamoStore, TableNames};
use reservation_api::store::{Store, StoreAudit};
use serde_json::{json, Value};

/// The small hall: rows N, P, Q, R, S of 20 seats.
fn all_small_hall_seats() -> HashSet<String> {
    ["N", "P", "Q", "R", "S"]
        .iter()
        .flat_map(|r| (1..=20).map(move |n| format!("{r}-{n}")))
        .collect()
}

/// Seats the inventory has taken (held or sold) at the small hall now.
async fn taken_in_inventory(inventory: &Peer) -> HashSet<String> {
    let mut client = InventoryServiceClient::connect(inventory.endpoint())
        .await
        .unwrap();
    let free: HashSet<String> = client
        .check_availability(CheckAvailabilityRequest {
            event_id: SMALL_EVENT.into(),
            quantity: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .available_seats
        .into_iter()
        .map(|s| s.id)
        .collect();
    all_small_hall_seats().difference(&free).cloned().collect()
}

/// HOLD (not yet due) or CONFIRMED. A due hold is the inventory's to free, and the sweeper's.
fn is_live(r: &Reservation) -> bool {
    matches!(
        r.effective_status(Utc::now()),
        ReservationStatus::Hold | ReservationStatus::Confirmed
    )
}

/// No seat is named by two live reservations; returns the seats of the live ones.
fn live_seats(audit: &StoreAudit) -> HashMap<String, String> {
    let mut owner = HashMap::new();
    for r in audit.reservations.iter().filter(|r| is_live(r)) {
        for s in &r.seat_ids {
            if let Some(other) = owner.insert(s.clone(), r.id.clone()) {
                panic!("seat {s} is named by {other} and {}", r.id);
            }
        }
    }
    owner
}

/// Every reservation has the event of each state it went through, once.
fn events_match(audit: &StoreAudit) {
    let mut by_reservation: HashMap<&str, Vec<EventType>> = HashMap::new();
    for e in &audit.events {
        by_reservation
            .entry(e.reservation_id.as_str())
            .or_default()
            .push(e.event_type);
    }
    for r in &audit.reservations {
        let mut got = by_reservation.remove(r.id.as_str()).unwrap_or_default();
        got.sort_by_key(|t| t.as_str());
        let mut want = vec![EventType::HoldCreated];
        match r.status {
            ReservationStatus::Hold => {}
            ReservationStatus::Confirmed => want.push(EventType::Confirmed),
            ReservationStatus::Cancelled => want.push(EventType::Cancelled),
            ReservationStatus::Expired => want.push(EventType::HoldExpired),
        }
        want.sort_by_key(|t| t.as_str());
        assert_eq!(got, want, "{} ({:?})", r.id, r.status);
    }
    assert!(
        by_reservation.is_empty(),
        "events without a reservation: {by_reservation:?}"
    );
}

/// The inventory peer of a test, and a fault proxy in front of it.
async fn inventory_behind_proxy() -> (Peer, FaultProxy) {
    let catalog = Catalog::load(None).unwrap();
    let inventory = peers::serve(local::inventory_routes(InventoryGrpc::from_catalog(
        catalog,
    )))
    .await;
    let proxy = FaultProxy::grpc(&inventory.addr.to_string()).await;
    (inventory, proxy)
}

/// The app's tables read straight from moto, with a deadline for scans rather than requests.
async fn auditor(tables: &TableNames) -> DynamoStore {
    let ep = moto::endpoint();
    let client = dynamo::client(Some(&ep), "us-east-1", Duration::from_secs(30)).await;
    DynamoStore::new(client, tables.clone())
}

/// Wait until the store has no HOLD left (the sweeper expired or reconciled each).
async fn until_no_holds(store: &DynamoStore, within: Duration) -> StoreAudit {
    let until = std::time::Instant::now() + within;
    loop {
        let audit = store.audit().await.unwrap();
        let holds = audit
            .reservations
            .iter()
            .filter(|r| r.status == ReservationStatus::Hold)
            .count();
        if holds == 0 {
            return audit;
        }
        assert!(
            std::time::Instant::now() < until,
            "{holds} holds are still HOLD"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto: run ./run_local.sh test"]
async fn a_burst_of_creates_on_a_slow_store_double_books_nothing() {
    let ep = moto::endpoint();
    let store_proxy = FaultProxy::http1(&authority(&ep)).await;
    let (inventory, inventory_proxy) = inventory_behind_proxy().await;
    let tables = TableNames::prefixed(&format!("t{}-", uuid::Uuid::new_v4().simple()));
    let app = {
        let t = tables.clone();
        let url = store_proxy.url();
        let inv = inventory_proxy.url();
        spawn_app_with(move |o| {
            under_load(o);
            o.config.store = reservation_api::config::StoreKind::Dynamodb;
            o.config.dynamodb.endpoint = Some(url);
            o.config.aws_region = "us-east-1".into();
            o.config.dynamodb.tables = t;
            o.config.dynamodb.auto_create = true;
            // moto serves one request at a time (~9 ms each): the burst queues for seconds, so the
            // SDK's attempt timeout (half of this) fires for the late ones and their writes are
            // retried or time out, as on a slow DynamoDB.
            o.config.dynamodb.timeout = std::time::Duration::from_millis(8000);
            o.config.inventory_grpc_address = Some(inv);
            // Long enough that some holds are still live when the burst is over.
            o.config.hold_ttl = std::time::Duration::from_secs(25);
        })
        .await
    };
    let app = Arc::new(app);
    for write in [
        TRANSACT,
        "DynamoDB_20120810.PutItem",
        "DynamoDB_20120810.UpdateItem",
        "DynamoDB_20120810.DeleteItem",
    ] {
        store_proxy.always(write, Fault::Delay(Duration::from_millis(50)));
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(300));
    let tasks = (0..300).map(|i| {
        let (app, barrier) = (app.clone(), barrier.clone());
        tokio::spawn(async move {
            barrier.wait().await;
            let r = app
                .create(&format!("u{i}"), "k", &create_body(SMALL_EVENT, 1))
                .await;
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        })
    });
    let answers: Vec<(u16, String)> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    store_proxy.clear();
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for (s, _) in &answers {
        *statuses.entry(*s).or_default() += 1;
    }
    eprintln!("burst answers: {statuses:?}");
    if let Some((_, b)) = answers.iter().find(|(s, _)| *s >= 500) {
        eprintln!("a 5xx answer: {b}");
    }
    for (s, body) in &answers {
        assert!(
            [201, 409, 503, 504].contains(s),
            "unexpected answer {s}: {body}"
        );
    }
    assert!(statuses.get(&201).copied().unwrap_or(0) > 0, "{statuses:?}");

    // Right after the burst: no seat is named twice, and every live reservation's seats are
    // taken in the inventory (none was released under it).
    let audit = auditor(&tables).await.audit().await.unwrap();
    let live = live_seats(&audit);
    let taken = taken_in_inventory(&inventory).await;
    for (seat, r) in &live {
        assert!(
            taken.contains(seat),
            "{r} holds {seat}, free in the inventory"
        );
    }

    // Confirm some, then let every hold run out: what the inventory has sold is exactly what the
    // store has CONFIRMED, and no hold is left anywhere.
    let mut confirmed = 0;
    for r in audit.reservations.iter().filter(|r| is_live(r)).take(20) {
        let c = app.confirm(&r.user_id, &r.id, "c", "pay_ok").await;
        // The hold may have run out meanwhile: the burst is slow.
        let status = c.status().as_u16();
        assert!(status == 200 || status == 409, "{status}");
        confirmed += usize::from(status == 200);
    }
    eprintln!("{confirmed} confirmed after the burst");
    let audit = until_no_holds(&auditor(&tables).await, Duration::from_secs(45)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let live = live_seats(&audit);
    let taken = taken_in_inventory(&inventory).await;
    let live: HashSet<String> = live.into_keys().collect();
    assert_eq!(taken, live, "the inventory and the store disagree");
    events_match(&audit);
}

/// One client's view: its holds, to confirm or cancel later.
struct Held {
    user: String,
    id: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto: run ./run_local.sh test"]
async fn a_seeded_fault_injection_run_leaves_a_consistent_store_and_inventory() {
    let ep = moto::endpoint();
    // The timed tests run one at a time, so the lines added from here on are this test's.
    let errors_before = internal_errors().lock().unwrap().len();
    let seed: u64 = std::env::var("FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261126);
    eprintln!("fault-injection seed {seed} (replay with FAULT_SEED={seed})");
    let store_proxy = FaultProxy::http1(&authority(&ep)).await;
    let (inventory, inventory_proxy) = inventory_behind_proxy().await;
    let tables = TableNames::prefixed(&format!("t{}-", uuid::Uuid::new_v4().simple()));
    // The tables come first, straight from moto with a patient client: the app's 800 ms deadline
    // is for the faults below, and a moto slowed by the rest of the machine must not fail setup.
    let sdk =
        reservation_api::aws::sdk_config(Some(&ep), "us-east-1", Duration::from_secs(60)).await;
    dynamo::tables::create_missing(&aws_sdk_dynamodb::Client::new(&sdk), &tables)
        .await
        .expect("tables");
    let app = {
        let t = tables.clone();
        let url = store_proxy.url();
        let inv = inventory_proxy.url();
        spawn_app_with(move |o| {
            o.config.store = reservation_api::config::StoreKind::Dynamodb;
            o.config.dynamodb.endpoint = Some(url);
            o.config.aws_region = "us-east-1".into();
            o.config.dynamodb.tables = t;
            o.config.dynamodb.auto_create = false;
            o.config.dynamodb.timeout = std::time::Duration::from_millis(800);
            o.config.inventory_grpc_address = Some(inv);
            o.config.inventory_client.timeout = std::time::Duration::from_millis(600);
            // Faults are the point here, not the breaker: keep the circuit closed.
            o.config.inventory_client.cb_minimum_calls = 100_000;
            o.config.hold_ttl = std::time::Duration::from_secs(6);
            // The background loops' own reads would crowd moto (one request at a time) and use
            // up the faults; writes wake the relay anyway.
            o.config.expiry_interval = std::time::Duration::from_millis(500);
            o.config.outbox.poll_interval = std::time::Duration::from_millis(1000);
        })
        .await
    };
    store_proxy.chaos(
        Chaos {
            pattern: "DynamoDB_20120810.".into(),
            drop: 0.03,
            delay: 0.01,
            reset: 0.02,
            delay_by: Duration::from_millis(900),
        },
        seed,
    );
    inventory_proxy.chaos(
        Chaos {
            pattern: "/reservation.v1.InventoryService/".into(),
            drop: 0.04,
            delay: 0.01,
            reset: 0.03,
            delay_by: Duration::from_millis(700),
        },
        seed.wrapping_add(1),
    );

    let mut rng = StdRng::seed_from_u64(seed);
    let mut holds: Vec<Held> = Vec::new();
    let mut answers: Vec<(String, u16, String)> = Vec::new();
    for op in 0..500 {
        // Every random choice is drawn before any request, so a seed replays the same operations.
        let roll: f64 = rng.random();
        let retries = rng.random_range(0..3);
        let user = format!("u{}", rng.random_range(0..20));
        let qty = rng.random_range(1..=2);
        let pick = rng.random_range(0..holds.len().max(1));
        let key = format!("op{op}");
        let name = match roll {
            _ if roll < 0.5 || holds.is_empty() => "create",
            _ if roll < 0.8 => "confirm",
            _ => "cancel",
        };
        let mut attempt = 0;
        let (status, body) = loop {
            let r = match name {
                "create" => {
                    let body = json!({"event_id": SMALL_EVENT, "qty": qty});
                    app.create(&user, &key, &body).await
                }
                "confirm" => {
                    let h = &holds[pick];
                    app.confirm(&h.user, &h.id, &key, "pay_ok").await
                }
                _ => {
                    let h = &holds[pick];
                    app.cancel(&h.user, &h.id, &key).await
                }
            };
            let (s, b) = (r.status().as_u16(), r.text().await.unwrap());
            // A client that retries 503/504 with the same key, a few times at most.
            if !matches!(s, 503 | 504) || attempt >= retries {
                break (s, b);
            }
            attempt += 1;
        };
        if name == "create" && status == 201 {
            let v: Value = serde_json::from_str(&body).unwrap();
            holds.push(Held {
                user,
                id: v["reservation_id"].as_str().unwrap().to_owned(),
            });
        }
        answers.push((name.to_owned(), status, body));
    }
    store_proxy.clear();
    inventory_proxy.clear();
    let faults = store_proxy.fired() + inventory_proxy.fired();
    let mut tally: HashMap<(String, u16), usize> = HashMap::new();
    for (n, s, _) in &answers {
        *tally.entry((n.clone(), *s)).or_default() += 1;
    }
    eprintln!("{faults} faults injected; answers: {tally:?}");
    assert!(faults > 20, "too few faults to show anything: {faults}");
    for (n, s, b) in &answers {
        assert!(*s < 500 || *s == 503 || *s == 504, "{n} answered {s}: {b}");
    }

    // Everything due settles: holds expire (or are reconciled into sales) on their own.
    let audit = until_no_holds(&auditor(&tables).await, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let live: HashSet<String> = live_seats(&audit).into_keys().collect();
    let taken = taken_in_inventory(&inventory).await;
    assert_eq!(
        taken, live,
        "orphan holds or seats sold under no reservation"
    );
    events_match(&audit);
    let errors = internal_errors().lock().unwrap()[errors_before..].to_vec();
    assert!(errors.is_empty(), "ERROR internal error lines: {errors:?}");
}
