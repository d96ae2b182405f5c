//! The Redis read-through cache (`CACHE_REDIS_URL`) across two API processes that share one
//! DynamoDB table set (moto) and one redis-server of the test's own, which a test can stop for
//! real. Store requests are counted by an SDK interceptor on the shared store's client.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use reservation_api::cache::RedisCache;
use reservation_api::grpc::inventory_client::GrpcInventory;
use reservation_api::grpc::payment_client::GrpcPayments;
use reservation_api::idempotency::IdempotencyKey;
use reservation_api::store::dynamo::{tables, DynamoStore, TableNames};
use reservation_api::store::memory::MemoryStore;
use reservation_api::store::Store;
use serde_json::Value;

use crate::helpers::*;
use crate::moto;

/// The cache tests read process-wide metrics: one at a time.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A redis-server of the test's own on a free loopback port, nothing persisted; killed on drop.
pub struct RedisProcess {
    child: Option<Child>,
    pub url: String,
}

impl RedisProcess {
    pub async fn start() -> Self {
        // `./run_local.sh test` exports the binary it found (PATH, or a Python package's).
        let bin = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&bin)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{bin}: {e} (install redis-server or set REDIS_SERVER)"));
        // Owned at once, so that a panic below still kills it.
        let server = Self {
            child: Some(child),
            url: format!("redis://127.0.0.1:{port}"),
        };
        let client = redis::Client::open(server.url.as_str()).unwrap();
        for _ in 0..100 {
            if let Ok(mut c) = client.get_multiplexed_async_connection().await {
                let pong = redis::cmd("PING").query_async::<String>(&mut c).await;
                if pong.is_ok() {
                    return server;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not answer on {}", server.url);
    }

    /// Kill the server (SIGKILL) and wait until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Counts the DynamoDB requests that serve the API's reservations, answers and orders: those
/// naming one of these tables. The outbox relay's and the sweeper's background requests (the
/// outbox table; a `Query` on an index) are left out, so a count is what a request caused.
#[derive(Clone, Debug)]
pub struct RequestCounter {
    count: Arc<AtomicUsize>,
    tables: Arc<[String; 3]>,
}

impl RequestCounter {
    pub fn get(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let req = context.request();
        let target = req.headers().get("x-amz-target").unwrap_or_default();
        let body = req
            .body()
            .bytes()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        let ours = self
            .tables
            .iter()
            .any(|t| body.contains(&format!("\"{t}\"")));
        let background = body.contains("\"IndexName\"") || target.ends_with(".Scan");
        if ours && !background {
            self.count.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// A DynamoDB store on moto, tables of its own, on a client whose requests are counted.
pub async fn counted_store() -> (Arc<dyn Store>, RequestCounter) {
    let ep = moto::endpoint();
    let sdk =
        reservation_api::aws::sdk_config(Some(&ep), "us-east-1", Duration::from_secs(60)).await;
    let names = TableNames::prefixed(&format!("t{}-", uuid::Uuid::new_v4().simple()));
    let plain = aws_sdk_dynamodb::Client::new(&sdk);
    tables::create_missing(&plain, &names)
        .await
        .expect("tables");
    let counter = RequestCounter {
        count: Arc::default(),
        tables: Arc::new([
            names.reservations.clone(),
            names.idempotency.clone(),
            names.orders.clone(),
        ]),
    };
    let conf = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .interceptor(counter.clone())
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(conf);
    (Arc::new(DynamoStore::new(client, names)), counter)
}

/// An API process on `store`, caching in `redis` (`None`: no cache). A second process passes
/// the first's inventory and payment endpoints, so both sell the same seats.
pub async fn api(redis: Option<&str>, store: Arc<dyn Store>, peers: Option<&TestApp>) -> TestApp {
    let url = redis.map(str::to_owned);
    let peers = peers.map(|a| (a.inventory_endpoint.clone(), a.payment_endpoint.clone()));
    spawn_app_with(move |o| {
        under_load(o);
        // The second process reaches the first's peers over gRPC.
        over_grpc(o);
        o.config.cache.redis_url = url.map(Into::into);
        // A debug build on a shared machine: the cache's deadline must not turn hits into misses.
        o.config.cache.timeout = Duration::from_millis(2000);
        let (inv, pay) = (
            o.config.inventory_client.clone(),
            o.config.payment_client.clone(),
        );
        o.customize = Some(Box::new(move |d| {
            d.store = store;
            if let Some((i, p)) = peers {
                d.inventory = Arc::new(GrpcInventory::connect(&i, &inv).unwrap());
                d.payments = Arc::new(GrpcPayments::connect(&p, &pay).unwrap());
            }
        }));
    })
    .await
}

/// The sum of `cache_requests_total` over the series whose labels contain every one of `labels`.
pub async fn cache_count(app: &TestApp, labels: &[&str]) -> f64 {
    let text = app.prometheus().await;
    text.lines()
        .filter(|l| l.starts_with("cache_requests_total{"))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Wait until the background write-through of a write answered with `key` reached Redis: the
/// reservation at `status`, and the key's answer.
pub async fn written_through(redis: &str, user: &str, key: &str, id: &str, status: &str) {
    let cache = RedisCache::new(redis, Duration::from_secs(1), Duration::from_secs(30)).unwrap();
    let scoped = IdempotencyKey::parse(key).unwrap().scoped(user);
    for _ in 0..200 {
        let r = cache.reservation(id).await;
        if r.is_some_and(|r| r.status.as_str() == status) && cache.answer(&scoped).await.is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{id} at {status} and its answer never reached the cache");
}

async fn status_of(app: &TestApp, user: &str, id: &str) -> String {
    let r = app.get(user, id).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["status"].as_str().unwrap().to_owned()
}

#[tokio::test]
#[ignore = "needs moto (DYNAMODB_ENDPOINT) and redis-server: ./run_local.sh test"]
async fn a_write_in_one_process_is_served_from_the_cache_in_the_other_and_never_goes_back() {
    let _one = SERIAL.lock().await;
    let redis = RedisProcess::start().await;
    let (store, requests) = counted_store().await;
    let a = api(Some(&redis.url), store.clone(), None).await;
    let b = api(Some(&redis.url), store.clone(), Some(&a)).await;
    let hits = cache_count(&a, &["op=\"get_reservation\"", "result=\"hit\""]).await;

    let create_key = uuid::Uuid::new_v4().to_string();
    let created = a
        .create("fan", &create_key, &create_body(SMALL_EVENT, 2))
        .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let id = created["reservation_id"].as_str().unwrap().to_owned();
    let held = store.get_reservation(&id).await.unwrap().unwrap();
    written_through(&redis.url, "fan", &create_key, &id, "HOLD").await;

    // Written through by A, read by B without a store request.
    let before = requests.get();
    assert_eq!(status_of(&b, "fan", &id).await, "HOLD");
    assert_eq!(requests.get(), before, "B's GET read the store");
    // So is A's answer: B replays the create from Redis.
    let replay = b
        .create("fan", &create_key, &create_body(SMALL_EVENT, 2))
        .await;
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.json::<Value>().await.unwrap(), created);
    assert_eq!(requests.get(), before, "B's replay read the store");

    // B confirms; from then on no process reads HOLD, however late an old read fills the cache.
    let confirm_key = uuid::Uuid::new_v4().to_string();
    let confirmed = b.confirm("fan", &id, &confirm_key, "pay_ok_1").await;
    assert_eq!(confirmed.status(), 200);
    let confirmed: Value = confirmed.json().await.unwrap();
    written_through(&redis.url, "fan", &confirm_key, &id, "CONFIRMED").await;
    let late_fill =
        RedisCache::new(&redis.url, Duration::from_secs(1), Duration::from_secs(30)).unwrap();
    late_fill.put_reservation(&held).await;
    let before = requests.get();
    for app in [&a, &b, &a, &b] {
        assert_eq!(status_of(app, "fan", &id).await, "CONFIRMED");
    }
    let replay = a.confirm("fan", &id, &confirm_key, "pay_ok_1").await;
    assert_eq!(replay.status(), 200);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.json::<Value>().await.unwrap(), confirmed);
    assert_eq!(
        requests.get(),
        before,
        "reads after the confirm went to the store"
    );
    let counted = cache_count(&a, &["op=\"get_reservation\"", "result=\"hit\""]).await;
    assert!(counted >= hits + 5.0, "hits {hits} → {counted}");
}

#[tokio::test]
#[ignore = "needs moto (DYNAMODB_ENDPOINT) and redis-server: ./run_local.sh test"]
async fn a_cancel_in_one_process_is_written_through_for_the_other() {
    let _one = SERIAL.lock().await;
    let redis = RedisProcess::start().await;
    let (store, _) = counted_store().await;
    let a = api(Some(&redis.url), store.clone(), None).await;
    let b = api(Some(&redis.url), store.clone(), Some(&a)).await;
    let id = a.hold("fan", SMALL_EVENT, 1).await["reservation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(status_of(&b, "fan", &id).await, "HOLD");
    let key = uuid::Uuid::new_v4().to_string();
    let cancelled = b.cancel("fan", &id, &key).await;
    assert_eq!(cancelled.status(), 200);
    written_through(&redis.url, "fan", &key, &id, "CANCELLED").await;
    assert_eq!(status_of(&a, "fan", &id).await, "CANCELLED");
    let cached =
        RedisCache::new(&redis.url, Duration::from_secs(1), Duration::from_secs(30)).unwrap();
    let entry = cached
        .reservation(&id)
        .await
        .expect("the cancel was written through");
    assert_eq!(entry.status.as_str(), "CANCELLED");
    assert_eq!(entry, store.get_reservation(&id).await.unwrap().unwrap());
}

#[tokio::test]
async fn with_redis_stopped_requests_still_succeed_from_the_store_and_the_failures_are_counted() {
    let _one = SERIAL.lock().await;
    let mut redis = RedisProcess::start().await;
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let a = api(Some(&redis.url), store.clone(), None).await;
    let b = api(Some(&redis.url), store.clone(), Some(&a)).await;
    let id = a.hold("fan", SMALL_EVENT, 1).await["reservation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(status_of(&b, "fan", &id).await, "HOLD");

    redis.stop();
    let failed = |app| cache_count(app, &["result=\"error\""]);
    let timed_out = |app| cache_count(app, &["result=\"timeout\""]);
    let down_before = failed(&a).await + timed_out(&a).await;
    let key = uuid::Uuid::new_v4().to_string();
    let confirmed = b.confirm("fan", &id, &key, "pay_ok_2").await;
    assert_eq!(confirmed.status(), 200);
    for app in [&a, &b] {
        assert_eq!(status_of(app, "fan", &id).await, "CONFIRMED");
    }
    let replay = a.confirm("fan", &id, &key, "pay_ok_2").await;
    assert_eq!(replay.status(), 200);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let other = b.hold("fan2", SMALL_EVENT, 1).await;
    assert_eq!(other["status"], "HOLD");
    let down_after = failed(&a).await + timed_out(&a).await;
    // Each of these asked Redis at least once: the marker and write-through of the confirm, its
    // replay's lookup, the four GETs, the new hold's lookup and write-through.
    assert!(
        down_after >= down_before + 8.0,
        "cache failures counted {down_before} → {down_after}"
    );
    let misses = cache_count(&a, &["op=\"get_reservation\"", "result=\"miss\""]).await;
    assert!(misses >= 1.0);
}

#[tokio::test]
async fn a_cache_entry_never_goes_back_to_an_older_version_and_a_marker_is_a_miss() {
    let redis = RedisProcess::start().await;
    let cache =
        RedisCache::new(&redis.url, Duration::from_secs(1), Duration::from_secs(30)).unwrap();
    let app = spawn_app().await;
    let id = app.hold("fan", SMALL_EVENT, 1).await["reservation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let v1 = app.store.get_reservation(&id).await.unwrap().unwrap();
    let mut v2 = v1.clone();
    v2.version = 2;
    cache.put_reservation(&v2).await;
    cache.put_reservation(&v1).await;
    assert_eq!(cache.reservation(&id).await, Some(v2.clone()));
    cache.mark_pending(&id, 3).await;
    assert_eq!(
        cache.reservation(&id).await,
        None,
        "a pending marker is a miss"
    );
    cache.put_reservation(&v2).await;
    assert_eq!(
        cache.reservation(&id).await,
        None,
        "an older version replaced the marker"
    );
    let mut v3 = v1.clone();
    v3.version = 3;
    cache.put_reservation(&v3).await;
    assert_eq!(cache.reservation(&id).await, Some(v3));
}

#[tokio::test]
async fn the_sweepers_expiry_is_written_through() {
    let redis = RedisProcess::start().await;
    let url = redis.url.clone();
    let app = spawn_app_with(move |o| {
        under_load(o);
        o.config.hold_ttl = Duration::from_secs(1);
        o.config.cache.redis_url = Some(url.into());
        o.config.cache.timeout = Duration::from_millis(2000);
    })
    .await;
    let id = app.hold("fan", SMALL_EVENT, 1).await["reservation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cache =
        RedisCache::new(&redis.url, Duration::from_secs(1), Duration::from_secs(30)).unwrap();
    for _ in 0..200 {
        if let Some(r) = cache.reservation(&id).await {
            if r.status.as_str() == "EXPIRED" {
                assert_eq!(Some(r), app.store.get_reservation(&id).await.unwrap());
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the expiry of {id} never reached the cache");
}
