//! Build the application from its configuration, bind, run the background tasks, shut down cleanly.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::auth::admission::Admission;
use crate::auth::jwks::{JwksKeys, JwksSettings};
use crate::auth::jwt::Hs256Verifier;
use crate::auth::oidc::OidcVerifier;
use crate::auth::{dev_key, Authenticator, TokenVerifier};
use crate::cache::{CachedStore, RedisCache};
use crate::config::{AdmissionMode, BundledPeers, Config, Profile, StoreKind};
use crate::grpc::health::PeerHealth;
use crate::grpc::inventory_client::GrpcInventory;
use crate::grpc::inventory_server::InventoryGrpc;
use crate::grpc::local::{self, LocalServer};
use crate::grpc::payment_client::GrpcPayments;
use crate::grpc::payment_server::PaymentGrpc;
use crate::grpc::proto::payment::v1::payment_service_server::SERVICE_NAME as PAYMENT_SERVICE;
use crate::grpc::proto::reservation::v1::inventory_service_server::SERVICE_NAME as INVENTORY_SERVICE;
use crate::http::rate_limit::RateLimits;
use crate::http::{self, AppState};
use crate::inventory::catalog::Catalog;
use crate::inventory::dynamo::{seed, DynamoSeats};
use crate::inventory::engine::SeatInventory;
use crate::inventory::seats::SeatEngine;
use crate::inventory::Inventory;
use crate::outbox::{EventBridgeSink, EventSink, LogSink, OutboxRelay};
use crate::payment::Payments;
use crate::service::expiry::HoldExpiry;
use crate::service::{ReservationService, ServiceSettings};
use crate::store::dynamo::{self, DynamoStore};
use crate::store::memory::MemoryStore;
use crate::store::retention::RetentionSweeper;
use crate::store::Store;
use crate::tasks::BackgroundTasks;

/// The parts the service is made of; tests swap single parts.
pub struct Dependencies {
    pub store: Arc<dyn Store>,
    pub store_kind: &'static str,
    pub inventory: Arc<dyn Inventory>,
    pub payments: Arc<dyn Payments>,
    pub verifier: Arc<dyn TokenVerifier>,
    /// The issuer's key cache, refreshed in the background (readiness reports it).
    pub jwks: Option<Arc<JwksKeys>>,
    /// The waiting room's admission check, when `ADMISSION_MODE=redis`.
    pub admission: Option<Arc<Admission>>,
    /// The read-through cache, when `CACHE_REDIS_URL` is set; the store is wrapped to write
    /// through to it when the application is built.
    pub cache: Option<Arc<RedisCache>>,
    pub sink: Arc<dyn EventSink>,
    /// Where the inventory and payment clients point (`http://host:port`, or `in-process`).
    pub inventory_endpoint: String,
    pub payment_endpoint: String,
    /// The bundled gRPC servers started on a loopback port (`BUNDLED_PEERS=loopback`; none when
    /// both addresses are configured or the peers are called in process); stopped after the HTTP
    /// server.
    pub local_servers: Vec<LocalServer>,
    /// The peers' `grpc.health.v1` checks, which readiness includes.
    pub peers: Vec<Arc<PeerHealth>>,
}

impl Dependencies {
    /// The parts for `config`. Inventory and payment are reached through the same client stack
    /// (deadline, retries, breaker, bulkhead, metrics, spans) wherever they are: over gRPC at
    /// `INVENTORY_GRPC_ADDRESS` / `PAYMENT_GRPC_ADDRESS`; when unset, the bundled inventory and
    /// payment simulator run here, called in process (`BUNDLED_PEERS=in-process`, the default:
    /// no socket, no protobuf encoding) or over gRPC on a `127.0.0.1` port (`loopback`). Must run
    /// inside a tokio runtime.
    pub async fn from_config(config: &Config) -> Result<Self, String> {
        let admission = match (config.admission.mode, &config.admission.redis_url) {
            (AdmissionMode::Redis, Some(url)) => Some(Arc::new(Admission::new(
                url.expose_secret(),
                config.admission.timeout,
            )?)),
            _ => None,
        };
        let cache = RedisCache::configured(&config.cache)?.map(Arc::new);
        let authenticator = build_authenticator(config)?;
        // The store first: a failure there leaves no bundled server running.
        let store = build_store(config).await?;
        let mut local_servers = Vec::new();
        let (inventory, payments, peers) = match Self::peers(config, &mut local_servers).await {
            Ok(c) => c,
            Err(e) => {
                for s in local_servers {
                    s.shutdown().await;
                }
                return Err(e);
            }
        };
        Ok(Self {
            store,
            store_kind: config.store.as_str(),
            inventory_endpoint: inventory.endpoint().to_owned(),
            payment_endpoint: payments.endpoint().to_owned(),
            inventory: Arc::new(inventory),
            payments: Arc::new(payments),
            jwks: authenticator.jwks(),
            verifier: Arc::new(authenticator),
            admission,
            cache,
            sink: build_sink(config).await,
            local_servers,
            peers,
        })
    }

    /// The inventory and payment clients and their health checks. A peer without an address is
    /// the bundled one: called in process (`BUNDLED_PEERS=in-process`), or served here on a
    /// `127.0.0.1` port and called over gRPC (`loopback`), its server pushed to `started`.
    async fn peers(
        config: &Config,
        started: &mut Vec<LocalServer>,
    ) -> Result<(GrpcInventory, GrpcPayments, Vec<Arc<PeerHealth>>), String> {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let in_process = config.bundled_peers == BundledPeers::InProcess;
        let (inv_settings, pay_settings) = (&config.inventory_client, &config.payment_client);
        let over_grpc = |name, service, address: &str, settings| -> Result<_, String> {
            Ok(Arc::new(PeerHealth::new(name, service, address, settings)?))
        };
        let (inventory, inventory_health) = match &config.inventory_grpc_address {
            Some(a) => (
                GrpcInventory::connect(a, inv_settings)?,
                over_grpc("inventory", INVENTORY_SERVICE, a, inv_settings)?,
            ),
            None => {
                let catalog = Catalog::load(config.catalog_file.as_deref())?;
                let engine = build_seat_engine(config, &catalog).await?;
                sample_available(&engine, &catalog);
                // In process, the engine is freed with the service, off the shutdown path.
                let server = InventoryGrpc::new(engine.clone());
                if in_process {
                    (
                        GrpcInventory::in_process(server, inv_settings)?,
                        Arc::new(PeerHealth::in_process("inventory", INVENTORY_SERVICE)),
                    )
                } else {
                    let routes = local::inventory_routes(server);
                    let s = LocalServer::spawn("inventory", loopback, routes)
                        .await?
                        .retaining(engine);
                    let endpoint = s.endpoint();
                    started.push(s);
                    (
                        GrpcInventory::connect(&endpoint, inv_settings)?,
                        over_grpc("inventory", INVENTORY_SERVICE, &endpoint, inv_settings)?,
                    )
                }
            }
        };
        let (payments, payment_health) = match &config.payment_grpc_address {
            Some(a) => (
                GrpcPayments::connect(a, pay_settings)?,
                over_grpc("payment", PAYMENT_SERVICE, a, pay_settings)?,
            ),
            None if in_process => (
                GrpcPayments::in_process(PaymentGrpc, pay_settings)?,
                Arc::new(PeerHealth::in_process("payment", PAYMENT_SERVICE)),
            ),
            None => {
                let routes = local::payment_routes(PaymentGrpc);
                let s = LocalServer::spawn("payment", loopback, routes).await?;
                let endpoint = s.endpoint();
                started.push(s);
                (
                    GrpcPayments::connect(&endpoint, pay_settings)?,
                    over_grpc("payment", PAYMENT_SERVICE, &endpoint, pay_settings)?,
                )
            }
        };
        Ok((inventory, payments, vec![inventory_health, payment_health]))
    }
}

/// The development key in local and dev; the issuer's tokens when `JWT_ISSUER_URI` is set (the
/// only ones in prod). The key cache starts loading in the background: the service starts even
/// while the issuer is unreachable.
pub fn build_authenticator(config: &Config) -> Result<Authenticator, String> {
    let leeway = config.issuer.leeway.as_secs();
    let dev = if config.profile == Profile::Prod {
        None
    } else {
        let secret = dev_key::load_or_create(
            config.jwt_dev_secret.as_ref().map(|s| s.expose_secret()),
            &config.data_dir,
        )?;
        Some(Hs256Verifier::with_leeway(&secret, leeway))
    };
    let oidc = match &config.jwt_issuer_uri {
        None => None,
        Some(issuer) => {
            let keys = JwksKeys::new(JwksSettings::new(issuer, config.issuer.jwks_uri.as_deref()))?;
            keys.spawn_refresh();
            Some(OidcVerifier::new(
                keys,
                issuer,
                config.issuer.audience.as_deref(),
                &config.issuer.algorithms,
                leeway,
            ))
        }
    };
    Ok(Authenticator::new(dev, oidc))
}

/// The DynamoDB client of the configuration (endpoint, region, deadline), built once per use.
pub async fn dynamodb_client(config: &Config) -> aws_sdk_dynamodb::Client {
    let d = &config.dynamodb;
    dynamo::client(d.endpoint.as_deref(), &config.aws_region, d.timeout).await
}

/// [`dynamodb_client`] with a test's interceptor (`ClientTaps`), if it set one.
async fn tapped_client(
    config: &Config,
    tap: &Option<aws_sdk_dynamodb::config::SharedInterceptor>,
) -> aws_sdk_dynamodb::Client {
    let d = &config.dynamodb;
    dynamo::client_with(
        d.endpoint.as_deref(),
        &config.aws_region,
        d.timeout,
        tap.clone(),
    )
    .await
}

/// The configured store; in local/dev with `DYNAMODB_AUTO_CREATE`, missing tables are created first.
pub async fn build_store(config: &Config) -> Result<Arc<dyn Store>, String> {
    match config.store {
        StoreKind::Memory => Ok(Arc::new(MemoryStore::with_retention(
            config.retention.retention(),
        ))),
        StoreKind::Dynamodb => {
            let d = &config.dynamodb;
            let client = tapped_client(config, &d.taps.store).await;
            // `Config::from_env` refuses auto-creation in prod.
            if d.auto_create {
                let created = dynamo::tables::create_missing(&client, &d.tables).await?;
                if !created.is_empty() {
                    tracing::info!(tables = ?created, "created DynamoDB tables");
                }
            }
            Ok(Arc::new(
                DynamoStore::new(client, d.tables.clone())
                    .with_retention(config.retention.retention())
                    .with_shards(d.index_shards.layout()),
            ))
        }
    }
}

/// The bundled inventory's seat engine (`INVENTORY_STORE`). On DynamoDB with
/// `DYNAMODB_AUTO_CREATE` (local and dev), the tables are created and `catalog` seeded first;
/// otherwise the table is seeded with `reservation-api inventory seed`.
pub async fn build_seat_engine(
    config: &Config,
    catalog: &Catalog,
) -> Result<Arc<dyn SeatEngine>, String> {
    match config.inventory_store {
        // A finished hold is remembered as long as the API keeps its reservation.
        StoreKind::Memory => Ok(Arc::new(
            SeatInventory::new(catalog).with_finished_retention(config.retention.reservation),
        )),
        StoreKind::Dynamodb => {
            let d = &config.dynamodb;
            let client = tapped_client(config, &d.taps.seats).await;
            if d.auto_create {
                dynamo::tables::create_missing(&client, &d.tables).await?;
                let r = seed::seed(&client, &d.tables.seats, catalog).await?;
                tracing::info!(events = r.events, seats = r.seats, "seeded the seats table");
            }
            let seats = Arc::new(DynamoSeats::new(client, d.tables.seats.clone()));
            seats.spawn_refresh();
            Ok(seats)
        }
    }
}

/// Keep `inventory_available_seats` of the catalogue's events current while `engine` is in use.
pub fn sample_available(engine: &Arc<dyn SeatEngine>, catalog: &Catalog) {
    let events = catalog.events.iter().map(|e| e.id.clone()).collect();
    tokio::spawn(crate::inventory::metrics::sample_available(
        Arc::downgrade(engine),
        events,
        crate::inventory::metrics::SAMPLE_EVERY,
    ));
}

/// EventBridge when configured (dev, prod, or local with an endpoint or bus), else the log sink.
pub async fn build_sink(config: &Config) -> Arc<dyn EventSink> {
    let e = &config.events;
    if !e.enabled {
        return Arc::new(LogSink);
    }
    let sdk = crate::aws::sdk_config(
        e.endpoint.as_deref(),
        &config.aws_region,
        Duration::from_secs(5),
    )
    .await;
    Arc::new(EventBridgeSink::new(
        aws_sdk_eventbridge::Client::new(&sdk),
        &e.bus_name,
        &e.source,
    ))
}

pub struct Application {
    listener: TcpListener,
    state: AppState,
    relay: OutboxRelay,
    expiry: HoldExpiry,
    local_servers: Vec<LocalServer>,
    http: crate::config::HttpSettings,
    retention: RetentionSweeper,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, String> {
        // Before the gRPC clients exist: they set their circuit gauge when built.
        crate::telemetry::metrics::handle();
        let deps = Dependencies::from_config(&config).await?;
        Self::build_with(config, deps).await
    }

    pub async fn build_with(config: Config, deps: Dependencies) -> Result<Self, String> {
        crate::telemetry::metrics::handle();
        let addr = SocketAddr::new(config.host, config.port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("bind {addr}: {e}"))?;
        let wake = Arc::new(Notify::new());
        let settings = ServiceSettings {
            hold_ttl: chrono_duration(config.hold_ttl),
            idempotency_ttl: chrono_duration(config.idempotency_ttl),
            idempotency_lease: chrono_duration(config.idempotency_lease),
        };
        // Every writer (the service, the sweeper) goes through the one cached store.
        let store: Arc<dyn Store> = match &deps.cache {
            Some(cache) => Arc::new(CachedStore::new(deps.store.clone(), cache.clone())),
            None => deps.store.clone(),
        };
        let service = Arc::new(
            ReservationService::new(store, deps.inventory, deps.payments, settings, wake.clone())
                .with_cache(deps.cache),
        );
        let retention = RetentionSweeper::new(
            deps.store.clone(),
            config.retention.sweep_interval,
            config.retention.sweep_batch,
        );
        let relay = OutboxRelay::new(deps.store, deps.sink, wake, config.outbox.clone());
        let expiry = HoldExpiry::new(service.clone(), config.expiry_interval, config.expiry_batch);
        let state = AppState {
            service,
            verifier: deps.verifier,
            ready: Arc::new(AtomicBool::new(true)),
            profile: config.profile.as_str(),
            store_kind: deps.store_kind,
            hold_ttl_secs: config.hold_ttl.as_secs() as i64,
            request_timeout: config.http.request_timeout,
            jwks: deps.jwks,
            admission: deps.admission,
            peers: deps.peers.into(),
            limits: Arc::new(RateLimits::new(&config.rate_limits)),
            tasks: BackgroundTasks::new(),
        };
        Ok(Self {
            listener,
            state,
            relay,
            expiry,
            local_servers: deps.local_servers,
            http: config.http.clone(),
            retention,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_default()
    }

    pub fn service(&self) -> Arc<ReservationService> {
        self.state.service.clone()
    }

    /// Serve until `shutdown` resolves: then turn readiness DOWN and keep accepting for
    /// `HTTP_SHUTDOWN_GRACE_MS`, stop accepting, finish in-flight requests, stop the sweepers,
    /// let the relay publish what is due, and stop the bundled gRPC servers.
    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let tasks = self.state.tasks.clone();
        let stop = tasks.stop_token();
        tasks.spawn("outbox_relay", self.relay.run(stop.clone()));
        tasks.spawn("hold_expiry", self.expiry.run(stop.clone()));
        tasks.spawn("retention_sweeper", self.retention.run(stop.clone()));
        if let Some(cleanup) = self.state.limits.cleanup(stop) {
            tasks.spawn("rate_limit_cleanup", cleanup);
        }
        if let Some(refresh) = self.state.jwks.as_ref().and_then(|k| k.take_refresh()) {
            tasks.watch("jwks_refresh", refresh);
        }
        let ready = self.state.ready.clone();
        let jwks = self.state.jwks.clone();
        let grace = self.http.shutdown_grace;
        // The store, freed off the shutdown path once everything has stopped.
        let service = self.state.service.clone();
        let router = http::router(self.state);
        tracing::info!(addr = %self.listener.local_addr()?, "reservation-api listening");
        let served = http::server::serve(self.listener, router, &self.http, async move {
            shutdown.await;
            // DOWN first, while the listener still accepts: a probe can see it before
            // connections are refused.
            ready.store(false, Ordering::Relaxed);
            if !grace.is_zero() {
                tracing::info!(
                    grace_ms = grace.as_millis() as u64,
                    "shutting down: readiness DOWN, still serving"
                );
                tokio::time::sleep(grace).await;
            }
            tracing::info!("shutting down: listener closed, finishing in-flight requests");
        })
        .await;
        // The tasks' token first, so that the key refresh's end is not taken for a failure.
        tasks.stop_token().cancel();
        if let Some(k) = jwks {
            k.stop();
        }
        tasks.shutdown().await;
        for s in self.local_servers {
            s.shutdown().await;
        }
        local::free_in_background(service);
        tracing::info!("stopped");
        served
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// A configured duration as the service's `chrono` one (saturating: the configuration bounds it).
fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}
