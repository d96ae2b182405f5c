//! Concurrency claims, raced for real: no oversell, one winner per reservation.

use std::collections::HashSet;
use std::sync::Arc;

use crate::helpers::*;
use futures::future::join_all;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_creates_for_a_hundred_seats_hold_exactly_a_hundred() {
    let app = Arc::new(spawn_app_with(under_load).await);
    let barrier = Arc::new(tokio::sync::Barrier::new(1000));
    let tasks = (0..1000).map(|i| {
        let app = app.clone();
        let barrier = barrier.clone();
        tokio::spawn(async move {
            barrier.wait().await;
            // A 503/504 tells the client to retry with the same key, as a frontend does: a store
            // on moto may shed some of a 1,000-request burst. What must hold is the outcome.
            let mut tries = 0;
            loop {
                let r = app
                    .create(
                        &format!("user-{i}"),
                        &format!("key-{i}"),
                        &create_body(SMALL_EVENT, 1),
                    )
                    .await;
                let status = r.status().as_u16();
                tries += 1;
                if matches!(status, 503 | 504) && tries < 5 {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    continue;
                }
                break (status, r.json::<Value>().await.unwrap());
            }
        })
    });
    let results: Vec<(u16, Value)> = join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();

    let held: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(held.len(), 100, "exactly the 100 seats are held");
    let seats: HashSet<&str> = held
        .iter()
        .map(|b| b["seat_ids"][0].as_str().unwrap())
        .collect();
    assert_eq!(seats.len(), 100, "no seat is held twice");
    for (status, body) in results.iter().filter(|(s, _)| *s != 201) {
        assert_eq!(*status, 409, "{body}");
        assert_eq!(body["error"]["code"], "INVENTORY_CONFLICT");
    }
    // Nothing is left to sell.
    assert_error(
        app.create("late", "k", &create_body(SMALL_EVENT, 1)).await,
        409,
        "INVENTORY_CONFLICT",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn confirm_and_cancel_racing_on_one_hold_have_exactly_one_winner() {
    let app = Arc::new(spawn_app_with(under_load).await);
    let (mut confirms, mut cancels) = (0, 0);
    for round in 0..25 {
        let seat = format!("D-{}", round + 1);
        let held: Value = app
            .create(
                "u1",
                &format!("h{round}"),
                &json!({"event_id": BIG_EVENT, "qty": 1, "seat_ids": [seat]}),
            )
            .await
            .json()
            .await
            .unwrap();
        let id = held["reservation_id"].as_str().unwrap().to_owned();
        let (a, b) = (app.clone(), app.clone());
        let (i1, i2) = (id.clone(), id.clone());
        let confirm =
            tokio::spawn(async move { a.confirm("u1", &i1, &format!("c{round}"), "pay_ok").await });
        let cancel = tokio::spawn(async move { b.cancel("u1", &i2, &format!("x{round}")).await });
        let (c, x) = (confirm.await.unwrap(), cancel.await.unwrap());
        let (cs, xs) = (c.status().as_u16(), x.status().as_u16());
        assert!(
            (cs, xs) == (200, 409) || (cs, xs) == (409, 200),
            "round {round}: confirm {cs}, cancel {xs}"
        );
        let loser = if cs == 409 { c } else { x };
        let body: Value = loser.json().await.unwrap();
        assert!(
            ["INVALID_STATE", "RESERVATION_EXPIRED"]
                .contains(&body["error"]["code"].as_str().unwrap()),
            "{body}"
        );

        let got: Value = app.get("u1", &id).await.json().await.unwrap();
        let types = app.event_types(&id).await;
        // Can someone else hold the seat now? Only if the cancel won.
        let probe = app
            .create(
                "probe",
                &format!("p{round}"),
                &json!({"event_id": BIG_EVENT, "qty": 1, "seat_ids": [seat]}),
            )
            .await;
        if cs == 200 {
            confirms += 1;
            assert_eq!(got["status"], "CONFIRMED");
            assert_eq!(types, ["reservation.hold.created", "reservation.confirmed"]);
            assert_eq!(probe.status(), 409, "a sold seat was sold again");
        } else {
            cancels += 1;
            assert_eq!(got["status"], "CANCELLED");
            assert_eq!(types, ["reservation.hold.created", "reservation.cancelled"]);
            assert_eq!(probe.status(), 201, "a cancelled hold kept its seat");
        }
    }
    eprintln!("confirm won {confirms}, cancel won {cancels}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_confirms_with_the_same_intent_give_one_order() {
    let app = Arc::new(spawn_app_with(under_load).await);
    let held = app.hold("u1", BIG_EVENT, 1).await;
    let id = held["reservation_id"].as_str().unwrap().to_owned();
    let tasks = (0..10).map(|i| {
        let app = app.clone();
        let id = id.clone();
        tokio::spawn(async move {
            let r = app.confirm("u1", &id, &format!("k{i}"), "pay_same").await;
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        })
    });
    let results: Vec<_> = join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let orders: HashSet<String> = results
        .iter()
        .map(|(s, b)| {
            assert_eq!(*s, 200, "{b}");
            b["order_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(orders.len(), 1);
    assert_eq!(
        app.event_types(&id).await,
        ["reservation.hold.created", "reservation.confirmed"]
    );
}
