//! `spawn_app()`: the real application on port 0, with helpers to call it.

use std::sync::Arc;

use reqwest::Response;
use reservation_api::auth::jwt;
use reservation_api::config::{BundledPeers, Config, StoreKind};
use reservation_api::domain::OutboxEvent;
use reservation_api::startup::{Application, Dependencies};
use reservation_api::store::dynamo::TableNames;
use reservation_api::store::Store;
use serde_json::{json, Value};
use tokio::sync::oneshot;

pub const SECRET: &str = "test-only-secret";
/// The bundled catalogue's 100-seat event.
pub const SMALL_EVENT: &str = "evt_2025_1002";
pub const BIG_EVENT: &str = "evt_2025_1001";

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub store: Arc<dyn Store>,
    /// The app's use cases (to drive a background task's step by hand).
    pub service: Arc<reservation_api::service::ReservationService>,
    /// Where the app's inventory and payment clients point: `in-process` by default, the bundled
    /// servers' `http://127.0.0.1:port` with [`over_grpc`].
    pub inventory_endpoint: String,
    pub payment_endpoint: String,
    stop: Option<oneshot::Sender<()>>,
    pub handle: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _data_dir: tempfile::TempDir,
}

/// Changes a test makes to the dependencies built from the config.
pub type Customize = Box<dyn FnOnce(&mut Dependencies) + Send>;

/// What a test may change before the app starts.
pub struct TestOptions {
    pub config: Config,
    /// Applied to the dependencies built from `config`.
    pub customize: Option<Customize>,
}

pub fn test_config(data_dir: &std::path::Path) -> Config {
    let mut c = Config {
        host: [127, 0, 0, 1].into(),
        port: 0,
        jwt_dev_secret: Some(SECRET.into()),
        data_dir: data_dir.to_path_buf(),
        expiry_interval: std::time::Duration::from_millis(100),
        ..Config::default()
    };
    c.outbox.poll_interval = std::time::Duration::from_millis(100);
    c.outbox.drain_timeout = std::time::Duration::from_millis(1000);
    // The shared client's pooled connections must not race the server's idle close (tests of the
    // connection limits set short values of their own).
    c.http.header_read_timeout = std::time::Duration::from_millis(300_000);
    c.http.idle_timeout = std::time::Duration::from_millis(300_000);
    c.http.request_timeout = std::time::Duration::from_millis(300_000);
    // TEST_PEERS=grpc runs the suite with the bundled peers served on a loopback port and called
    // over gRPC, as remote peers are: both paths must give the same answers.
    if std::env::var("TEST_PEERS").as_deref() == Ok("grpc") {
        c.bundled_peers = BundledPeers::Loopback;
    }
    // TEST_STORE=dynamodb runs the suite against DynamoDB (moto, at DYNAMODB_ENDPOINT), with
    // tables of its own per app.
    if std::env::var("TEST_STORE").as_deref() == Ok("dynamodb") {
        c.store = StoreKind::Dynamodb;
        // Never AWS itself: without moto this suite fails rather than leaving the machine.
        c.dynamodb.endpoint = Some(
            std::env::var("DYNAMODB_ENDPOINT")
                .expect("TEST_STORE=dynamodb needs DYNAMODB_ENDPOINT: run ./run_local.sh test"),
        );
        c.aws_region = "us-east-1".into();
        c.dynamodb.tables = TableNames::prefixed(&format!("t{}-", uuid::Uuid::new_v4().simple()));
        c.dynamodb.auto_create = true;
        // moto answers in milliseconds alone but queues under a 1,000-request race: allow for it.
        c.dynamodb.timeout = std::time::Duration::from_millis(60_000);
        c.idempotency_lease = std::time::Duration::from_secs(120);
        // moto is one serial process shared by every app of the suite: 16 shards (two rounds of
        // the window) keep its idle load (polls, sweeps, the pending gauge's one count per shard)
        // near what it was with 8. The production layout's own tests are in store_conformance.
        c.dynamodb.index_shards.current = 16;
    }
    c
}

/// For the burst tests: a debug build serving a 1,000-request burst, its own gRPC peers and the
/// test client on two cores answers slower than the 250 ms production deadline. These tests are
/// about correctness under a real race; deadlines have tests of their own (`resilience.rs`).
pub fn under_load(o: &mut TestOptions) {
    o.config.inventory_client.timeout = std::time::Duration::from_millis(5000);
    o.config.payment_client.timeout = std::time::Duration::from_millis(5000);
}

/// For the tests that call the bundled peers' gRPC servers themselves: serve them on a loopback
/// port, whatever `TEST_PEERS` says.
pub fn over_grpc(o: &mut TestOptions) {
    o.config.bundled_peers = BundledPeers::Loopback;
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// The trace context works as in the binary (nothing is exported); TEST_LOG=1 shows the app's
/// JSON log lines (RUST_LOG filters them). Tests that build parts of the app without
/// `spawn_app` call it for the same logs.
pub fn init_tracing() {
    static TRACING: std::sync::OnceLock<reservation_api::telemetry::otel::Tracing> =
        std::sync::OnceLock::new();
    TRACING.get_or_init(|| {
        use reservation_api::telemetry::logging;
        let t = reservation_api::telemetry::otel::Tracing::new("reservation-api");
        let filter = match std::env::var_os("TEST_LOG") {
            Some(_) => tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
            None => tracing_subscriber::EnvFilter::new("off"),
        };
        logging::init_with_extra(&t, filter, Some(Box::new(InternalErrors)));
        t
    });
}

pub async fn spawn_app_with(f: impl FnOnce(&mut TestOptions)) -> TestApp {
    init_tracing();
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut opts = TestOptions {
        config: test_config(data_dir.path()),
        customize: None,
    };
    f(&mut opts);
    // As Application::build does: the recorder exists before the clients record anything.
    reservation_api::telemetry::metrics::handle();
    let mut deps = Dependencies::from_config(&opts.config)
        .await
        .expect("dependencies");
    let (inventory_endpoint, payment_endpoint) = (
        deps.inventory_endpoint.clone(),
        deps.payment_endpoint.clone(),
    );
    if let Some(c) = opts.customize.take() {
        c(&mut deps);
    }
    let store = deps.store.clone();
    let app = Application::build_with(opts.config, deps)
        .await
        .expect("app builds");
    let port = app.port();
    let service = app.service();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .unwrap(),
        store,
        service,
        inventory_endpoint,
        payment_endpoint,
        stop: Some(tx),
        handle: Some(handle),
        _data_dir: data_dir,
    }
}

pub fn token(user: &str) -> String {
    jwt::mint(SECRET.as_bytes(), user, 3600)
}

pub fn create_body(event: &str, qty: u32) -> Value {
    json!({ "event_id": event, "qty": qty })
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// The metrics exposition text (`GET /actuator/prometheus`).
    pub async fn prometheus(&self) -> String {
        self.client
            .get(self.url("/actuator/prometheus"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn create(&self, user: &str, key: &str, body: &Value) -> Response {
        self.client
            .post(self.url("/v1/reservations"))
            .bearer_auth(token(user))
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// Create and return the reservation id, asserting 201.
    pub async fn hold(&self, user: &str, event: &str, qty: u32) -> Value {
        let r = self
            .create(
                user,
                &uuid::Uuid::new_v4().to_string(),
                &create_body(event, qty),
            )
            .await;
        assert_eq!(r.status(), 201);
        r.json().await.unwrap()
    }

    pub async fn get(&self, user: &str, id: &str) -> Response {
        self.client
            .get(self.url(&format!("/v1/reservations/{id}")))
            .bearer_auth(token(user))
            .send()
            .await
            .expect("request")
    }

    pub async fn confirm(&self, user: &str, id: &str, key: &str, intent: &str) -> Response {
        self.client
            .post(self.url(&format!("/v1/reservations/{id}/confirm")))
            .bearer_auth(token(user))
            .header("Idempotency-Key", key)
            .json(&json!({ "payment_intent_id": intent }))
            .send()
            .await
            .expect("request")
    }

    pub async fn cancel(&self, user: &str, id: &str, key: &str) -> Response {
        self.client
            .post(self.url(&format!("/v1/reservations/{id}/cancel")))
            .bearer_auth(token(user))
            .header("Idempotency-Key", key)
            .send()
            .await
            .expect("request")
    }

    /// GET an unauthenticated JSON endpoint (actuator, OpenAPI).
    pub async fn get_json(&self, path: &str) -> Value {
        let r = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request");
        r.json().await.expect("JSON body")
    }

    pub async fn events(&self, reservation_id: &str) -> Vec<OutboxEvent> {
        self.store.events_for(reservation_id).await.expect("events")
    }

    pub async fn event_types(&self, reservation_id: &str) -> Vec<&'static str> {
        self.events(reservation_id)
            .await
            .iter()
            .map(|e| e.event_type.as_str())
            .collect()
    }

    /// Signal shutdown (as SIGTERM does) without waiting for the app to finish.
    pub fn signal_shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Stop the app and wait for it to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Assert the contract's error envelope and return the body.
pub async fn assert_error(r: Response, status: u16, code: &str) -> Value {
    assert_eq!(r.status().as_u16(), status, "status");
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(ct.starts_with("application/json"), "content-type {ct:?}");
    let body: Value = r.json().await.expect("JSON body");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(
        body["error"]["trace_id"].as_str().map(str::len),
        Some(32),
        "{body}"
    );
    body
}

/// ERROR lines saying "internal error", from every app of this test binary (the fault tests
/// assert that none appeared while they ran). Recorded by the harness's one global subscriber.
pub fn internal_errors() -> &'static std::sync::Mutex<Vec<String>> {
    static ERRORS: std::sync::OnceLock<std::sync::Mutex<Vec<String>>> = std::sync::OnceLock::new();
    ERRORS.get_or_init(Default::default)
}

struct InternalErrors;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for InternalErrors {
    fn on_event(&self, e: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                self.0.push_str(&format!(" {}={v:?}", f.name()));
            }
        }
        if *e.metadata().level() == tracing::Level::ERROR {
            let mut m = Message(String::new());
            e.record(&mut m);
            if m.0.contains("internal error") {
                internal_errors().lock().unwrap().push(m.0);
            }
        }
    }
}
