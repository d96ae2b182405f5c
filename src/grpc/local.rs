//! Run a gRPC server on a listener: the `inventory` and `payment` subcommands, and the bundled
//! servers that `serve` starts on a loopback port when no address is configured.

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::codegen::http;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tracing::Instrument;

use crate::telemetry::otel;

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
        .layer(ServerSpanLayer)
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// A gRPC server span per call, in gRPC's semantic conventions, continuing the caller's trace
/// from its `traceparent` metadata.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServerSpanLayer;

impl<S> tower::Layer<S> for ServerSpanLayer {
    type Service = ServerSpan<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ServerSpan { inner }
    }
}

#[derive(Clone, Debug)]
pub struct ServerSpan<S> {
    inner: S,
}

/// Server-side codes that mean the server failed (the others are the caller's doing).
fn server_error(code: tonic::Code) -> bool {
    use tonic::Code;
    matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
}

/// The server span of one call of `method` (`package.Service/Method`), in gRPC's semantic
/// conventions: a child of the current span (an in-process call) unless a parent is set from the
/// caller's `traceparent` (a call over the network).
fn server_span(method: &str) -> tracing::Span {
    let (service, name) = method.split_once('/').unwrap_or(("", method));
    tracing::info_span!(
        target: "grpc",
        "gRPC server call",
        otel.name = %method,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        "rpc.system" = "grpc",
        "rpc.service" = service,
        "rpc.method" = name,
        "rpc.grpc.status_code" = tracing::field::Empty,
    )
}

/// `handler` (a bundled server's handler called in process) in the server span of `method`, as
/// the [`ServerSpan`] layer puts it when the call comes over the network.
pub async fn serve_in_process<T>(
    method: &str,
    handler: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<T, tonic::Status> {
    let span = server_span(method);
    let reply = handler.instrument(span.clone()).await;
    let code = reply
        .as_ref()
        .map_or_else(tonic::Status::code, |_| tonic::Code::Ok);
    record_server_code(&span, code);
    reply
}

/// A server span's answer: its gRPC status code, and ERROR when the code means the server failed.
fn record_server_code(span: &tracing::Span, code: tonic::Code) {
    span.record("rpc.grpc.status_code", code as i64);
    if server_error(code) {
        span.record("otel.status_code", "ERROR");
    }
}

impl<S, B, RB> tower::Service<http::Request<B>> for ServerSpan<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    RB: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = req.uri().path().trim_start_matches('/').to_owned();
        let span = server_span(&method);
        otel::set_parent(&span, otel::extract(req.headers()));
        let future = span.in_scope(|| self.inner.call(req));
        Box::pin(async move {
            let result = future.instrument(span.clone()).await;
            if let Ok(response) = &result {
                // A failure is answered trailers-only: `grpc-status` in the headers; a success
                // puts it in the trailers, after the body.
                let code = response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .unwrap_or(0);
                record_server_code(&span, tonic::Code::from(code));
            }
            result
        })
    }
}

/// A server running in this process.
pub struct LocalServer {
    pub name: &'static str,
    pub addr: SocketAddr,
    stop: CancellationToken,
    handle: JoinHandle<Result<(), tonic::transport::Error>>,
    /// What the server serves from (the seat engine), freed off the shutdown path.
    retained: Option<Box<dyn std::any::Any + Send>>,
}

/// Free `big` (a store or engine of millions of entries) on a thread of its own, so that a stopping
/// process does not spend seconds walking it: the process may end before the thread is done.
pub fn free_in_background<T: Send + 'static>(big: T) {
    let _ = std::thread::Builder::new()
        .name("free-at-exit".into())
        .spawn(move || drop(big));
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
            retained: None,
        })
    }

    /// Keep a reference to `big` until the server has stopped, then free it in the background
    /// ([`free_in_background`]) rather than on the shutdown path.
    pub fn retaining<T: Send + 'static>(mut self, big: T) -> Self {
        self.retained = Some(Box::new(big));
        self
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
        if let Some(big) = self.retained {
            free_in_background(big);
        }
    }
}
