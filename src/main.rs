use clap::Parser;
use reservation_api::auth::{dev_key, jwt};
use reservation_api::cli::{Cli, Command, ConfigAction, InventoryAction, TablesAction};
use reservation_api::config::{Config, Profile};
use reservation_api::grpc::inventory_server::InventoryGrpc;
use reservation_api::grpc::local;
use reservation_api::grpc::payment_server::PaymentGrpc;
use reservation_api::inventory::catalog::Catalog;
use reservation_api::inventory::dynamo::seed;
use reservation_api::startup::{self, shutdown_signal, Application};
use reservation_api::store::dynamo;
use reservation_api::telemetry::logging;
use reservation_api::telemetry::otel::Tracing;

/// mimalloc rather than glibc's malloc: allocation was 15-18 % of a create's CPU with glibc
/// (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve().await,
        Command::Config {
            action: ConfigAction::Check,
        } => config_check(),
        Command::Token { sub, ttl } => token(&sub, ttl),
        Command::Tables {
            action: TablesAction::Create,
        } => create_tables().await,
        Command::Inventory {
            action: Some(InventoryAction::Seed { catalog }),
            ..
        } => seed(&catalog).await,
        Command::Inventory {
            action: None,
            listen,
            catalog,
            metrics_listen,
        } => inventory(listen, catalog, metrics_listen).await,
        Command::Payment { listen } => payment(listen).await,
        Command::Probe { url, service } => probe(&url, &service).await,
    };
    // The log lines still queued for stdout (logging's writer thread).
    logging::flush();
    if let Err(e) = result {
        eprintln!("reservation-api: {e}");
        std::process::exit(1);
    }
}

/// The configuration `serve` reads, or each problem on its own stderr line and exit code 2.
fn config_or_exit() -> Config {
    Config::check_env().unwrap_or_else(|problems| {
        for p in problems {
            eprintln!("reservation-api: {p}");
        }
        std::process::exit(2)
    })
}

/// `config check`: the same reading and validation as `serve`, without building anything.
fn config_check() -> Result<(), String> {
    let config = config_or_exit();
    for line in config.describe() {
        println!("{line}");
    }
    Ok(())
}

async fn serve() -> Result<(), String> {
    // A configuration the service refuses is one line per problem on stderr and exit code 2,
    // before anything listens (a crash-looping pod shows why at once).
    let config = config_or_exit();
    let traces = Tracing::new("reservation-api");
    logging::init(&traces);
    traces.announce();
    let result = match Application::build(config).await {
        Ok(app) => app
            .run_until_stopped(shutdown_signal())
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    traces.shutdown().await;
    result
}

async fn inventory(
    listen: std::net::SocketAddr,
    catalog: Option<std::path::PathBuf>,
    metrics_listen: Option<std::net::SocketAddr>,
) -> Result<(), String> {
    let traces = Tracing::new("reservation-inventory");
    logging::init(&traces);
    traces.announce();
    let result = run_inventory(listen, catalog, metrics_listen).await;
    traces.shutdown().await;
    result
}

async fn run_inventory(
    listen: std::net::SocketAddr,
    catalog: Option<std::path::PathBuf>,
    metrics_listen: Option<std::net::SocketAddr>,
) -> Result<(), String> {
    let config = Config::from_env()?;
    let catalog = Catalog::load(catalog.as_deref())?;
    let events = catalog.events.len();
    let engine = startup::build_seat_engine(&config, &catalog).await?;
    tracing::info!(store = engine.kind(), "seat inventory");
    startup::sample_available(&engine, &catalog);
    if let Some(addr) = metrics_listen {
        serve_metrics(addr).await?;
    }
    let routes = local::inventory_routes(InventoryGrpc::new(engine));
    grpc_server("reservation.v1.InventoryService", listen, routes, events).await
}

/// `GET /metrics` (Prometheus text) of a standalone inventory, in the background.
async fn serve_metrics(addr: std::net::SocketAddr) -> Result<(), String> {
    let handle = reservation_api::telemetry::metrics::handle();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || async move {
            let _ =
                tokio::task::spawn_blocking(reservation_api::telemetry::metrics::collect_process)
                    .await;
            handle.render()
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("bind {addr}: {e}"))?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(())
}

async fn seed(catalog: &std::path::Path) -> Result<(), String> {
    let config = Config::from_env()?;
    let catalog = Catalog::load(Some(catalog))?;
    let d = &config.dynamodb;
    let client = reservation_api::startup::dynamodb_client(&config).await;
    let r = seed::seed(&client, &d.tables.seats, &catalog).await?;
    println!(
        "seeded\t{}\tevents={} rows={} seats={}",
        d.tables.seats, r.events, r.rows, r.seats
    );
    Ok(())
}

async fn probe(url: &str, service: &str) -> Result<(), String> {
    if let Some(addr) = url.strip_prefix("grpc://") {
        let settings = reservation_api::config::GrpcClientSettings {
            timeout_ms: 1000,
            ..Default::default()
        };
        return reservation_api::grpc::health::PeerHealth::new("probe", service, addr, &settings)?
            .check()
            .await
            .map_err(|e| format!("{url}: {e}"));
    }
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build()
        .map_err(|e| e.to_string())?;
    let r = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if r.status().is_success() {
        Ok(())
    } else {
        Err(format!("{url}: {}", r.status()))
    }
}

async fn payment(listen: std::net::SocketAddr) -> Result<(), String> {
    let traces = Tracing::new("reservation-payment");
    logging::init(&traces);
    traces.announce();
    let result = grpc_server(
        "payment.v1.PaymentService",
        listen,
        local::payment_routes(PaymentGrpc),
        0,
    )
    .await;
    traces.shutdown().await;
    result
}

async fn grpc_server(
    service: &str,
    listen: std::net::SocketAddr,
    routes: tonic::service::Routes,
    events: usize,
) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("bind {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%addr, service, events, "gRPC server listening");
    local::serve(listener, routes, shutdown_signal())
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(service, "stopped");
    Ok(())
}

fn token(sub: &str, ttl: i64) -> Result<(), String> {
    let config = Config::from_env()?;
    if config.profile == Profile::Prod {
        return Err("development tokens are not for the prod profile".into());
    }
    if sub.is_empty() || ttl <= 0 {
        return Err("--sub must be non-empty and --ttl positive".into());
    }
    let secret = dev_key::load_or_create(config.jwt_dev_secret.as_deref(), &config.data_dir)?;
    println!("{}", jwt::mint(&secret, sub, ttl));
    Ok(())
}

async fn create_tables() -> Result<(), String> {
    let config = Config::from_env()?;
    let d = &config.dynamodb;
    let client = reservation_api::startup::dynamodb_client(&config).await;
    let created = dynamo::tables::create_missing(&client, &d.tables).await?;
    for t in [
        &d.tables.reservations,
        &d.tables.orders,
        &d.tables.idempotency,
        &d.tables.outbox,
        &d.tables.seats,
    ] {
        let what = if created.contains(t) {
            "created"
        } else {
            "exists"
        };
        println!("{what}\t{t}");
    }
    Ok(())
}
