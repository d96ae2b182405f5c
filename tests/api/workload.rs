//! A randomized mixed workload, then an audit of the whole store: every state change has exactly
//! one event, and no idempotency record is left in flight.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::helpers::*;
use futures::future::join_all;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reservation_api::domain::{EventType, ReservationStatus};
use reservation_api::idempotency::RecordStatus;
use serde_json::{json, Value};
use tokio::sync::Mutex;

#[derive(Clone, Debug)]
enum Op {
    Create {
        user: String,
        key: String,
        body: Value,
    },
    Confirm {
        user: String,
        id: String,
        key: String,
        intent: String,
    },
    Cancel {
        user: String,
        id: String,
        key: String,
    },
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_mixed_operations_leave_one_event_per_state_change() {
    let app = Arc::new(
        spawn_app_with(|o| {
            under_load(o);
            o.config.hold_ttl = std::time::Duration::from_secs(2);
        })
        .await,
    );
    let seed: u64 = std::env::var("WORKLOAD_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("WORKLOAD_SEED={seed}");
    let rng = Arc::new(Mutex::new(StdRng::seed_from_u64(seed)));
    let held: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let done: Arc<Mutex<Vec<Op>>> = Arc::default();
    let statuses: Arc<Mutex<HashMap<u16, usize>>> = Arc::default();

    for wave in 0..50 {
        let tasks = (0..20).map(|i| {
            let (app, rng, held, done, statuses) = (
                app.clone(),
                rng.clone(),
                held.clone(),
                done.clone(),
                statuses.clone(),
            );
            tokio::spawn(async move {
                let op = {
                    let mut rng = rng.lock().await;
                    let held = held.lock().await;
                    let done = done.lock().await;
                    let user = format!("user-{}", rng.random_range(0..8));
                    let key = format!("k-{wave}-{i}");
                    match rng.random_range(0..10) {
                        // Replay an earlier request exactly.
                        0 if !done.is_empty() => done[rng.random_range(0..done.len())].clone(),
                        // Reuse an earlier key with another body: a conflict.
                        1 if !done.is_empty() => {
                            match done[rng.random_range(0..done.len())].clone() {
                                Op::Create { user, key, .. } => Op::Create {
                                    user,
                                    key,
                                    body: json!({"event_id": BIG_EVENT, "qty": 4}),
                                },
                                other => other,
                            }
                        }
                        2..=4 if !held.is_empty() => {
                            let (owner, id) = held[rng.random_range(0..held.len())].clone();
                            let intent = if rng.random_bool(0.2) {
                                "pay_declined".into()
                            } else {
                                format!("pay_{}", rng.random_range(0..3))
                            };
                            Op::Confirm {
                                user: owner,
                                id,
                                key,
                                intent,
                            }
                        }
                        5..=6 if !held.is_empty() => {
                            let (owner, id) = held[rng.random_range(0..held.len())].clone();
                            // Now and then someone else's reservation: 403.
                            let user = if rng.random_bool(0.1) { user } else { owner };
                            Op::Cancel { user, id, key }
                        }
                        _ => Op::Create {
                            user,
                            key,
                            body: json!({"event_id": BIG_EVENT, "qty": rng.random_range(1..=3)}),
                        },
                    }
                };
                let r = match &op {
                    Op::Create { user, key, body } => app.create(user, key, body).await,
                    Op::Confirm {
                        user,
                        id,
                        key,
                        intent,
                    } => app.confirm(user, id, key, intent).await,
                    Op::Cancel { user, id, key } => app.cancel(user, id, key).await,
                };
                let status = r.status().as_u16();
                assert!(
                    status < 500,
                    "{op:?} answered {status}: {}",
                    r.text().await.unwrap_or_default()
                );
                *statuses.lock().await.entry(status).or_default() += 1;
                if let (Op::Create { user, .. }, 201) = (&op, status) {
                    let body: Value = r.json().await.unwrap();
                    held.lock().await.push((
                        user.clone(),
                        body["reservation_id"].as_str().unwrap().to_owned(),
                    ));
                }
                done.lock().await.push(op);
            })
        });
        for t in join_all(tasks).await {
            t.unwrap();
        }
    }
    eprintln!("answers by status: {:?}", statuses.lock().await);

    // Let every hold run out and the sweeper and relay catch up.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let audit = app.store.audit().await.unwrap();
    let mut by_reservation: HashMap<&str, Vec<EventType>> = HashMap::new();
    let mut events = audit.events.clone();
    events.sort_by(|a, b| a.id.cmp(&b.id));
    for e in &events {
        by_reservation
            .entry(e.reservation_id.as_str())
            .or_default()
            .push(e.event_type);
    }
    assert!(!audit.reservations.is_empty());
    for r in &audit.reservations {
        let expected = match r.status {
            ReservationStatus::Hold => panic!("{} still HOLD after its expiry", r.id),
            ReservationStatus::Confirmed => EventType::Confirmed,
            ReservationStatus::Cancelled => EventType::Cancelled,
            ReservationStatus::Expired => EventType::HoldExpired,
        };
        assert_eq!(
            by_reservation.get(r.id.as_str()).map(Vec::as_slice),
            Some(&[EventType::HoldCreated, expected][..]),
            "{} ({:?}) has the wrong events",
            r.id,
            r.status
        );
        assert_eq!(r.version, 2, "{} took {} transitions", r.id, r.version - 1);
    }
    assert_eq!(
        events.len(),
        audit.reservations.len() * 2,
        "an event belongs to no reservation"
    );
    let in_flight: Vec<_> = audit
        .records
        .iter()
        .filter(|r| r.status == RecordStatus::InProgress)
        .collect();
    assert!(
        in_flight.is_empty(),
        "records left IN_PROGRESS: {in_flight:?}"
    );
}
