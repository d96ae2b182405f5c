//! `inventory` and `payment`: the bundled gRPC servers, run on their own.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::CliError;
use crate::config::Config;
use crate::grpc::inventory_server::InventoryGrpc;
use crate::grpc::local;
use crate::grpc::payment_server::PaymentGrpc;
use crate::inventory::catalog::Catalog;
use crate::startup::{self, shutdown_signal};
use crate::telemetry::logging;
use crate::telemetry::otel::Tracing;

/// `inventory`: the seat inventory as a `reservation.v1.InventoryService` server.
pub async fn inventory(
    listen: SocketAddr,
    catalog: Option<PathBuf>,
    metrics_listen: Option<SocketAddr>,
) -> Result<(), CliError> {
    let traces = Tracing::new("reservation-inventory");
    logging::init(&traces);
    traces.announce();
    let result = run_inventory(listen, catalog, metrics_listen).await;
    traces.shutdown().await;
    result
}

async fn run_inventory(
    listen: SocketAddr,
    catalog: Option<PathBuf>,
    metrics_listen: Option<SocketAddr>,
) -> Result<(), CliError> {
    let config = Config::from_env()?;
    let catalog = Catalog::load(catalog.as_deref()).map_err(CliError::Startup)?;
    let events = catalog.events.len();
    let engine = startup::build_seat_engine(&config, &catalog)
        .await
        .map_err(CliError::Startup)?;
    tracing::info!(store = engine.kind(), "seat inventory");
    startup::sample_available(&engine, &catalog);
    if let Some(addr) = metrics_listen {
        serve_metrics(addr).await?;
    }
    let routes = local::inventory_routes(InventoryGrpc::new(engine));
    grpc_server("reservation.v1.InventoryService", listen, routes, events).await
}

/// `payment`: the payment simulator as a `payment.v1.PaymentService` server.
pub async fn payment(listen: SocketAddr) -> Result<(), CliError> {
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

/// `GET /metrics` (Prometheus text) of a standalone inventory, in the background.
async fn serve_metrics(addr: SocketAddr) -> Result<(), CliError> {
    let handle = crate::telemetry::metrics::handle();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || async move {
            let _ = tokio::task::spawn_blocking(crate::telemetry::metrics::collect_process).await;
            handle.render()
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| CliError::Bind { addr, source })?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(())
}

/// Serve `routes` on `listen` until SIGTERM or Ctrl-C.
async fn grpc_server(
    service: &str,
    listen: SocketAddr,
    routes: tonic::service::Routes,
    events: usize,
) -> Result<(), CliError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| CliError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, service, events, "gRPC server listening");
    local::serve(listener, routes, shutdown_signal()).await?;
    tracing::info!(service, "stopped");
    Ok(())
}
