//! What the relay costs on DynamoDB (moto): every request the relay's store sends is counted by an
//! SDK interceptor on its own client, while the test writes through another client.
//!
//! `./run_local.sh bench-outbox` runs these with `--nocapture` and a bigger backlog
//! (`OUTBOX_BENCH_EVENTS`) to print the drain rate and the requests per event.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use futures::StreamExt;
use reservation_api::config::Config;
use reservation_api::domain::{
    EventType, OutboxEvent, OutboxStatus, Reservation, ReservationStatus,
};
use reservation_api::outbox::{
    EntryResults, EventBridgeSink, EventSink, OutboxRelay, PublishError,
};
use reservation_api::store::dynamo::{tables, DynamoStore, TableNames};
use reservation_api::store::{Store, Transition};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::moto;

/// Counts every attempt of every request its client sends.
#[derive(Debug, Clone, Default)]
struct RequestCounter(Arc<AtomicUsize>);

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// EventBridge itself, recording when each event's `PutEvents` call started and ended.
struct Recording {
    inner: EventBridgeSink,
    calls: Mutex<HashMap<String, (Instant, Instant)>>,
}

#[async_trait]
impl EventSink for Recording {
    async fn publish(&self, events: &[OutboxEvent]) -> Result<EntryResults, PublishError> {
        let started = Instant::now();
        let out = self.inner.publish(events).await;
        let ended = Instant::now();
        let mut calls = self.calls.lock().unwrap();
        for e in events {
            calls.insert(e.id.clone(), (started, ended));
        }
        out
    }
}

struct Bench {
    /// The relay's store: its client counts requests.
    counted: Arc<dyn Store>,
    requests: RequestCounter,
    /// The writers' store, on an uncounted client.
    writer: Arc<dyn Store>,
    sink: Arc<Recording>,
}

impl Bench {
    async fn new(ep: &str) -> Self {
        crate::helpers::init_tracing();
        let sdk =
            reservation_api::aws::sdk_config(Some(ep), "us-east-1", Duration::from_secs(60)).await;
        let names = TableNames::prefixed(&format!("t{}-", uuid::Uuid::new_v4().simple()));
        let plain = aws_sdk_dynamodb::Client::new(&sdk);
        tables::create_missing(&plain, &names)
            .await
            .expect("tables");
        let requests = RequestCounter::default();
        let conf = aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(requests.clone())
            .build();
        let counting = aws_sdk_dynamodb::Client::from_conf(conf);
        // A bus with no rule: PutEvents is real, and nothing downstream slows moto.
        let eb = aws_sdk_eventbridge::Client::new(&sdk);
        let bus = format!("t{}", uuid::Uuid::new_v4().simple());
        eb.create_event_bus().name(&bus).send().await.expect("bus");
        Self {
            counted: Arc::new(DynamoStore::new(counting, names.clone())),
            requests,
            writer: Arc::new(DynamoStore::new(plain, names)),
            sink: Arc::new(Recording {
                inner: EventBridgeSink::new(eb, bus, "reservation-api"),
                calls: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn relay(&self, wake: Arc<Notify>) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        let relay = OutboxRelay::new(
            self.counted.clone(),
            self.sink.clone(),
            wake,
            Config::default().outbox,
        );
        let stop = CancellationToken::new();
        (stop.clone(), tokio::spawn(relay.run(stop)))
    }

    fn requests(&self) -> usize {
        self.requests.0.load(Ordering::Relaxed)
    }

    /// Whether all `events` were handed to the sink within `timeout`, and none is left pending.
    /// It watches the sink rather than the store while it waits: a pending count is a query per
    /// index shard (64), and on the one serial moto twice a second of those starves the relay
    /// under test. One count at the end checks the store.
    async fn drained(&self, events: usize, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        while self.sink.calls.lock().unwrap().len() < events {
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The last round's settlement follows its publish.
        while self.writer.pending_events().await.unwrap() > 0 {
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        true
    }

    /// Every event published once, each after the one before it of its reservation.
    async fn assert_published_in_order(&self, expected: usize) {
        let events = self.writer.audit().await.unwrap().events;
        assert_eq!(events.len(), expected);
        assert!(events.iter().all(|e| e.status == OutboxStatus::Published));
        assert!(events.iter().all(|e| e.attempts == 1), "published twice");
        let calls = self.sink.calls.lock().unwrap();
        let by_key: HashMap<(&str, u64), &OutboxEvent> = events
            .iter()
            .map(|e| ((e.reservation_id.as_str(), e.seq), e))
            .collect();
        for e in &events {
            let Some(p) = e.predecessor_seq() else {
                continue;
            };
            let before = by_key[&(e.reservation_id.as_str(), p)];
            assert!(
                calls[&before.id].1 <= calls[&e.id].0,
                "{} went out before {}",
                e.id,
                before.id
            );
        }
    }
}

fn hold(i: usize) -> Reservation {
    let now = reservation_api::service::now_ms();
    Reservation {
        id: format!("rsv_{}", uuid::Uuid::now_v7().simple()),
        event_id: "evt_1".into(),
        user_id: format!("u{i}"),
        status: ReservationStatus::Hold,
        seat_ids: vec![format!("A-{i}")],
        qty: 1,
        total_price: 100,
        currency: "KRW".into(),
        hold_expires_at: now + chrono::Duration::seconds(600),
        idempotency_key: "k".into(),
        version: 1,
        order_id: None,
        payment_intent_id: None,
        created_at: now,
        updated_at: now,
    }
}

/// Write hold `i` and, for some, its cancellation: one or two events. moto can stall for seconds
/// on a loaded machine, and the SDK then retries a write that had landed; such a write is checked
/// by reading it back (resolving these is the service's business, not this test's).
pub(super) async fn write(store: &dyn Store, i: usize, cancel: bool) -> usize {
    let r = hold(i);
    let now = reservation_api::service::now_ms();
    let created = OutboxEvent::for_reservation(EventType::HoldCreated, &r, None, "t", now);
    if let Err(e) = store.create_hold(&r, &created, None).await {
        let stored = store.get_reservation(&r.id).await.unwrap();
        assert!(stored.is_some(), "create failed: {e}");
    }
    if !cancel {
        return 1;
    }
    let next = r.transitioned(ReservationStatus::Cancelled, now).unwrap();
    let cancelled = OutboxEvent::for_reservation(EventType::Cancelled, &next, None, "t", now);
    let moved = store
        .transition(Transition {
            next: &next,
            expected_version: 1,
            order: None,
            event: &cancelled,
            completion: None,
        })
        .await;
    if let Err(e) = moved {
        let stored = store.get_reservation(&r.id).await.unwrap().unwrap();
        assert_eq!(
            stored.status,
            ReservationStatus::Cancelled,
            "cancel failed: {e}"
        );
    }
    2
}

fn backlog_size() -> usize {
    std::env::var("OUTBOX_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto: run ./run_local.sh test"]
async fn a_backlog_of_a_thousand_events_drains_within_thirty_seconds_at_under_one_and_a_half_requests_each(
) {
    let ep = moto::endpoint();
    let bench = Bench::new(&ep).await;
    // 600 holds, 400 of them cancelled: 1,000 events, 400 of which wait for their hold's.
    let events = backlog_size();
    let holds = events * 3 / 5;
    let cancels = events - holds;
    let writer = bench.writer.clone();
    let written: usize = futures::stream::iter(0..holds)
        .map(|i| {
            let writer = writer.clone();
            async move { write(&*writer, i, i < cancels).await }
        })
        .buffer_unordered(4)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .sum();
    assert_eq!(written, events);

    let before = bench.requests();
    let started = Instant::now();
    let (stop, relay) = bench.relay(Arc::new(Notify::new()));
    let drained = bench.drained(events, Duration::from_secs(30)).await;
    let took = started.elapsed();
    let requests = bench.requests() - before;
    stop.cancel();
    relay.await.unwrap();
    let per_event = requests as f64 / events as f64;
    println!(
        "outbox backlog drain on moto: {events} events in {:.1} s ({:.0} events/s), {requests} store requests ({per_event:.3} per event)",
        took.as_secs_f64(),
        events as f64 / took.as_secs_f64()
    );
    assert!(drained, "the backlog was not drained within 30 s");
    assert!(per_event <= 1.5, "{per_event:.3} store requests per event");
    bench.assert_published_in_order(events).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto: run ./run_local.sh test"]
async fn a_steady_stream_of_events_costs_under_one_and_a_half_store_requests_each() {
    let ep = moto::endpoint();
    let bench = Bench::new(&ep).await;
    let wake = Arc::new(Notify::new());
    let (stop, relay) = bench.relay(wake.clone());
    // Let the relay go idle, then write 300 events over 3 s, waking it as the service does after
    // each write.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = bench.requests();
    let started = Instant::now();
    // Writes start on a fixed schedule, whatever moto's latency, as independent clients' would.
    let mut writes = Vec::new();
    for i in 0..200usize {
        let next = Duration::from_millis(15 * i as u64);
        if let Some(wait) = next.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        let (writer, wake) = (bench.writer.clone(), wake.clone());
        writes.push(tokio::spawn(async move {
            let n = write(&*writer, i, i % 2 == 0).await;
            wake.notify_one();
            n
        }));
    }
    let mut events = 0;
    for w in writes {
        events += w.await.unwrap();
    }
    let drained = bench.drained(events, Duration::from_secs(20)).await;
    let requests = bench.requests() - before;
    stop.cancel();
    relay.await.unwrap();
    let per_event = requests as f64 / events as f64;
    println!(
        "outbox steady stream on moto: {events} events in {:.1} s, {requests} store requests ({per_event:.3} per event)",
        started.elapsed().as_secs_f64()
    );
    assert!(drained, "the stream was not drained");
    assert!(per_event <= 1.5, "{per_event:.3} store requests per event");
    bench.assert_published_in_order(events).await;
}
