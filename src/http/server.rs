//! The HTTP server: hyper-util's connection builder with the limits `axum::serve` leaves unset —
//! a header-read timeout, an idle timeout and a cap on open connections.
//!
//! Past the cap, a few spare connections are served health checks only (everything else is 503
//! `UPSTREAM_UNAVAILABLE` and the connection closes), so that a probe can still tell the process
//! is alive; past those too, the next connection waits to be served (the kernel's backlog holds
//! the rest), as mini-redis does with its semaphore.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::error::ApiError;
use crate::config::HttpSettings;

/// Connections served health checks only once `HTTP_MAX_CONNECTIONS` are open.
pub const SPARE_CONNECTIONS: usize = 32;

/// Serve `app` on `listener` until `shutdown` resolves; then stop accepting, let every connection
/// finish its request in flight, and return.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: &HttpSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let regular = Arc::new(Semaphore::new(settings.max_connections));
    let spare = Arc::new(Semaphore::new(SPARE_CONNECTIONS));
    let full = Arc::new(builder(settings, true));
    let limited = Arc::new(builder(settings, false));
    let health_only = app.clone().layer(middleware::from_fn(health_only));
    let idle = Duration::from_millis(settings.idle_timeout_ms);
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            // Shutdown first: its first poll installs the signal handlers, before any connection.
            biased;
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // back off briefly rather than spin.
                    tracing::warn!(target: "http", error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (permit, served) = if let Ok(p) = regular.clone().try_acquire_owned() {
            (p, true)
        } else if let Ok(p) = spare.clone().try_acquire_owned() {
            (p, false)
        } else {
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                p = regular.clone().acquire_owned() => match p {
                    Ok(p) => (p, true),
                    Err(_) => break,
                },
                p = spare.clone().acquire_owned() => match p {
                    Ok(p) => (p, false),
                    Err(_) => break,
                },
            }
        };
        let _ = tcp.set_nodelay(true);
        let (builder, service) = match served {
            true => (full.clone(), app.clone()),
            false => (limited.clone(), health_only.clone()),
        };
        tracker.spawn(connection(
            builder,
            tcp,
            service,
            idle,
            stop.clone(),
            permit,
        ));
    }
    drop(listener);
    stop.cancel();
    tracker.close();
    tracker.wait().await;
    Ok(())
}

fn builder(settings: &HttpSettings, keep_alive: bool) -> Builder<TokioExecutor> {
    let mut b = Builder::new(TokioExecutor::new());
    // hyper starts this clock whenever a connection waits for a request head — the first one
    // and each next one on a kept-alive connection — so it bounds slowloris and idle HTTP/1.1.
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(settings.header_read_timeout_ms))
        .keep_alive(keep_alive);
    b.http2().timer(TokioTimer::new());
    b
}

/// One connection: served until it ends, closed gracefully once idle (no byte either way) for
/// `idle`, or at shutdown.
async fn connection(
    builder: Arc<Builder<TokioExecutor>>,
    tcp: TcpStream,
    app: Router,
    idle: Duration,
    stop: CancellationToken,
    _permit: OwnedSemaphorePermit,
) {
    let io = Tracked::new(tcp);
    let activity = io.activity.clone();
    let conn =
        builder.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(app));
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        let idle_until = activity.last() + idle;
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(target: "http", error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stop.cancelled(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = tokio::time::sleep_until(idle_until), if !closing => {
                if activity.last() + idle <= Instant::now() {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

/// Over the connection cap: health checks are served, anything else is told to come back.
async fn health_only(req: Request, next: Next) -> Response {
    if req.uri().path().starts_with("/actuator/health") {
        return next.run(req).await;
    }
    let mut r = ApiError::unavailable("the server is at its connection limit; retry shortly", 1)
        .into_response();
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// When a connection last moved a byte.
struct Activity {
    start: Instant,
    /// Milliseconds after `start`.
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// A TCP stream that notes the time of each read and write.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl Tracked {
    fn new(inner: TcpStream) -> Self {
        Self {
            inner,
            activity: Arc::new(Activity {
                start: Instant::now(),
                last_ms: AtomicU64::new(0),
            }),
        }
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
