//! The relay on a store that takes longer than its deadline for a full round: a proxy in front of
//! moto holds each `TransactWriteItems` back 40 ms per item (4 s for the relay's 100-item claim)
//! and forwards it even after the client gave up, as a slow DynamoDB-compatible store would apply
//! it. The relay's store has the production deadline (3 s, two attempts of 1.5 s), so a full
//! round can never answer in time: only rounds that shrink publish anything.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, Request, Response};
use futures::StreamExt;
use reservation_api::config::Config;
use reservation_api::domain::OutboxStatus;
use reservation_api::outbox::{EventBridgeSink, OutboxRelay};
use reservation_api::store::dynamo::{tables, DynamoStore, ShardLayout, TableNames};
use reservation_api::store::Store;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::outbox_drain::write;
use crate::moto;

const PER_ITEM: Duration = Duration::from_millis(40);

/// Start the slow proxy to `upstream` (`http://host:port`); answers its URL.
async fn slow_transactions(upstream: String) -> String {
    let client = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |req: Request<Body>| {
        let (client, upstream) = (client.clone(), upstream.clone());
        async move { forward(client, upstream, req).await }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    url
}

async fn forward(client: reqwest::Client, upstream: String, req: Request<Body>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20).await.unwrap();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let delay = if target.ends_with(".TransactWriteItems") {
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        PER_ITEM * v["TransactItems"].as_array().map_or(0, Vec::len) as u32
    } else {
        Duration::ZERO
    };
    let mut headers = HeaderMap::new();
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            headers.insert(name.clone(), value.clone());
        }
    }
    let url = format!("{upstream}{}", parts.uri.path());
    // In a task of its own: the store applies the write even if the client stopped waiting.
    let answer = tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let r = client.post(url).headers(headers).body(body).send().await?;
        let status = r.status();
        let headers = r.headers().clone();
        Ok::<_, reqwest::Error>((status, headers, r.bytes().await?))
    })
    .await
    .unwrap();
    match answer {
        Ok((status, headers, bytes)) => {
            let mut out = Response::new(Body::from(bytes));
            *out.status_mut() = status;
            for (name, value) in &headers {
                if name != "content-length" && name != "transfer-encoding" {
                    out.headers_mut().insert(name.clone(), value.clone());
                }
            }
            out
        }
        Err(_) => Response::builder().status(502).body(Body::empty()).unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto: run ./run_local.sh test"]
async fn a_backlog_drains_on_a_store_whose_full_rounds_outlast_its_deadline_by_shrinking_them() {
    crate::helpers::init_tracing();
    let ep = moto::endpoint();
    let sdk =
        reservation_api::aws::sdk_config(Some(&ep), "us-east-1", Duration::from_secs(60)).await;
    let names = TableNames::prefixed(&format!("t{}-", uuid::Uuid::new_v4().simple()));
    let plain = aws_sdk_dynamodb::Client::new(&sdk);
    tables::create_missing(&plain, &names)
        .await
        .expect("tables");
    // Every shard read each round, so that what this test measures is the round's size against
    // the store's deadline, not how the rounds walk the shards.
    let layout = ShardLayout::all(8);
    let writer: Arc<dyn Store> =
        Arc::new(DynamoStore::new(plain, names.clone()).with_shards(layout));
    // 300 holds, 200 of them cancelled: 500 events.
    let written: usize = futures::stream::iter(0..300usize)
        .map(|i| {
            let writer = writer.clone();
            async move { write(&*writer, i, i < 200).await }
        })
        .buffer_unordered(4)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .sum();
    assert_eq!(written, 500);

    let slow = slow_transactions(ep.clone()).await;
    let deadline = Config::default().dynamodb.timeout;
    let slow_sdk = reservation_api::aws::sdk_config(Some(&slow), "us-east-1", deadline).await;
    let relay_store = Arc::new(
        DynamoStore::new(aws_sdk_dynamodb::Client::new(&slow_sdk), names).with_shards(layout),
    );
    let eb = aws_sdk_eventbridge::Client::new(&sdk);
    let bus = format!("t{}", uuid::Uuid::new_v4().simple());
    eb.create_event_bus().name(&bus).send().await.expect("bus");
    let mut settings = Config::default().outbox;
    assert_eq!(settings.batch_size, 100);
    // A claim that timed out after landing strands its events for a lease; a shorter one than
    // the default 30 s keeps the test short without changing what it shows.
    settings.lease = Duration::from_secs(10);
    assert!(
        PER_ITEM * settings.batch_size as u32 > deadline,
        "a full round must outlast the store's deadline"
    );
    let relay = OutboxRelay::new(
        relay_store,
        Arc::new(EventBridgeSink::new(eb, bus, "reservation-api")),
        Arc::new(Notify::new()),
        settings,
    );
    let stop = CancellationToken::new();
    let started = Instant::now();
    let running = tokio::spawn(relay.run(stop.clone()));
    // The window covers the slow rounds (a few seconds for each 10-25 events on moto) and the
    // strands of claims that timed out after landing, with room for a loaded machine.
    let mut drained = false;
    while started.elapsed() < Duration::from_secs(240) {
        if writer.pending_events().await.unwrap() == 0 {
            drained = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.cancel();
    running.await.unwrap();
    let events = writer.audit().await.unwrap().events;
    let published = events
        .iter()
        .filter(|e| e.status == OutboxStatus::Published)
        .count();
    println!(
        "outbox on a store with 4 s full rounds: {published} of {} events published in {:.1} s",
        events.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        drained,
        "only {published} of 500 events published: the relay did not adapt its rounds"
    );
    assert_eq!(published, 500);
}
