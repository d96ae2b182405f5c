//! What the cache saves: one scripted workload, run with the cache off and on, across two API
//! processes on one DynamoDB table set (moto), counting the store requests each step causes.
//! `--nocapture` prints the table the README's *Cache* section quotes.

use std::collections::BTreeMap;

use crate::cache::{api, counted_store, written_through, RedisProcess, RequestCounter, SERIAL};
use crate::helpers::*;
use serde_json::Value;

/// Fans in the script: each holds, retries its create, polls, pays (one in four cancels),
/// retries that too, and looks again.
const FANS: usize = 12;

/// Store requests per step, by step name: (steps, requests).
type Tally = BTreeMap<&'static str, (usize, usize)>;

async fn step<F: std::future::Future<Output = reqwest::Response>>(
    tally: &mut Tally,
    requests: &RequestCounter,
    name: &'static str,
    want: u16,
    call: F,
) -> Value {
    let before = requests.get();
    let r = call.await;
    let status = r.status();
    let body = r.json().await.unwrap_or(Value::Null);
    assert_eq!(status, want, "{name}: {body}");
    let t = tally.entry(name).or_default();
    t.0 += 1;
    t.1 += requests.get() - before;
    body
}

async fn workload(redis: Option<&str>) -> Tally {
    let (store, requests) = counted_store().await;
    let a = api(redis, store.clone(), None).await;
    let b = api(redis, store.clone(), Some(&a)).await;
    // Connect both processes to Redis (lazily, on first use) before anything is counted.
    let unknown = reservation_api::domain::ids::new_reservation_id();
    for app in [&a, &b] {
        assert_eq!(app.get("nobody", &unknown).await.status(), 404);
    }
    let mut tally = Tally::new();
    let t = &mut tally;
    for fan in 0..FANS {
        let user = format!("fan{fan}");
        // The write-through runs after the answer: the script measures what follows it.
        let settle = |key: String, id: String, status: &'static str| {
            let user = user.clone();
            async move {
                if let Some(url) = redis {
                    written_through(url, &user, &key, &id, status).await;
                }
            }
        };
        let key = uuid::Uuid::new_v4().to_string();
        let body = create_body(SMALL_EVENT, 1);
        let held = step(t, &requests, "create", 201, a.create(&user, &key, &body)).await;
        let id = held["reservation_id"].as_str().unwrap().to_owned();
        settle(key.clone(), id.clone(), "HOLD").await;
        let retry = b.create(&user, &key, &body);
        step(t, &requests, "create retry", 201, retry).await;
        for _ in 0..3 {
            step(t, &requests, "get", 200, b.get(&user, &id)).await;
        }
        let key = uuid::Uuid::new_v4().to_string();
        let (name, status) = if fan % 4 == 3 {
            step(t, &requests, "cancel", 200, b.cancel(&user, &id, &key)).await;
            ("cancel retry", "CANCELLED")
        } else {
            let pay = format!("pay_wl_{fan}");
            let confirm = b.confirm(&user, &id, &key, &pay);
            step(t, &requests, "confirm", 200, confirm).await;
            ("confirm retry", "CONFIRMED")
        };
        settle(key.clone(), id.clone(), status).await;
        if status == "CANCELLED" {
            step(t, &requests, name, 200, a.cancel(&user, &id, &key)).await;
        } else {
            let pay = format!("pay_wl_{fan}");
            step(t, &requests, name, 200, a.confirm(&user, &id, &key, &pay)).await;
        }
        for _ in 0..2 {
            step(t, &requests, "get", 200, a.get(&user, &id)).await;
        }
    }
    drop(store);
    tally
}

#[tokio::test]
#[ignore = "needs moto (DYNAMODB_ENDPOINT) and redis-server: ./run_local.sh test"]
async fn a_scripted_workload_reads_the_store_less_with_the_cache_on() {
    let _one = SERIAL.lock().await;
    let redis = RedisProcess::start().await;
    let off = workload(None).await;
    let on = workload(Some(&redis.url)).await;
    println!("| step | steps | store requests/step, cache off | cache on | saved/step |");
    println!("|---|---|---|---|---|");
    let (mut total_off, mut total_on) = (0, 0);
    for (name, &(n, r_off)) in &off {
        let (n_on, r_on) = on[name];
        assert_eq!(n, n_on);
        total_off += r_off;
        total_on += r_on;
        let per = |r: usize| r as f64 / n as f64;
        println!(
            "| {name} | {n} | {:.2} | {:.2} | {:.2} |",
            per(r_off),
            per(r_on),
            per(r_off) - per(r_on)
        );
        match *name {
            // Every GET is served from the write-through; every retry from the cached answer.
            "get" | "create retry" | "confirm retry" | "cancel retry" => {
                assert!(r_off >= n, "{name} read nothing without the cache");
                assert_eq!(r_on, 0, "{name} read the store with the cache on");
            }
            // The cache neither saves nor adds a store request to a write.
            _ => assert_eq!(r_on, r_off, "{name}"),
        }
    }
    println!(
        "| all {FANS} fans | | {total_off} | {total_on} | {} ({:.0} %) |",
        total_off - total_on,
        100.0 * (total_off - total_on) as f64 / total_off as f64
    );
    assert!(total_on < total_off);
}
