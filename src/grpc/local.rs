//! Run a gRPC server on a listener: the `inventory` and `payment` subcommands, and the bundled
//! servers that `serve` starts on a loopback port when no address is configured.

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;

use super::health;
use super::inventory_server::InventoryGrpc;
use super::payment_server::PaymentGrpc;
use super::proto::payment::v1::payment_service_server::PaymentServiceServer;
use super::proto::reservation::v1::inventory_service_server::InventoryServiceServer;

/// The inventory service and its `grpc.health.v1` status.
pub fn inventory_routes(svc: InventoryGrpc) -> Routes {
    health::with_health::<InventoryServiceServer<InventoryGrpc>>(Routes::new(svc.into_server()))
}

/// The payment simulator and its `grpc.health.v1` status.
pub fn payment_routes(svc: PaymentGrpc) -> Routes {
    health::with_health::<PaymentServiceServer<PaymentGrpc>>(Routes::new(svc.into_server()))
}

/// Serve `routes` on `listener` until `shutdown` resolves; then finish the calls in flight.
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    Server::builder()
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// A server running in this process.
pub struct LocalServer {
    pub name: &'static str,
    pub addr: SocketAddr,
    stop: CancellationToken,
    handle: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl LocalServer {
    /// Bind `addr` (port 0: any free port) and serve `routes` in a background task.
    pub async fn spawn(
        name: &'static str,
        addr: SocketAddr,
        routes: Routes,
    ) -> Result<Self, String> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("{name} gRPC server: bind {addr}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let stop = CancellationToken::new();
        let handle = tokio::spawn(serve(listener, routes, stop.clone().cancelled_owned()));
        tracing::info!(target: "grpc", server = name, %addr, "bundled gRPC server listening");
        Ok(Self {
            name,
            addr,
            stop,
            handle,
        })
    }

    /// `http://127.0.0.1:port`, for a client.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop accepting, let the calls in flight finish, and wait for the server to end.
    pub async fn shutdown(self) {
        self.stop.cancel();
        match self.handle.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(target: "grpc", server = self.name, error = %e, "gRPC server failed")
            }
            Err(e) => {
                tracing::warn!(target: "grpc", server = self.name, error = %e, "gRPC server task failed")
            }
        }
    }
}
