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
    let idle = settings.idle_timeout;
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
        .header_read_timeout(settings.header_read_timeout)
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

/// A TCP stream that notes the time of each read and write, and puts hyper's own bodiless error
/// answers into the envelope.
///
/// hyper answers a request it cannot parse (a control byte in a header, a URI over 64 KiB, a head
/// over its buffer) with 400, 414 or 431 and no body, before any application code runs, and has
/// no hook to change that answer. It is the only head-only 4xx written on a connection (every
/// answer of the application carries the envelope and its `Content-Type`), so it is recognised
/// here and replaced by the same status with the envelope.
struct Tracked {
    /// Taken on drop by the lingering close after a replaced answer.
    inner: Option<TcpStream>,
    activity: Arc<Activity>,
    /// The envelope written in place of hyper's bare answer: bytes, how many are out, and the
    /// length of hyper's buffer to report once they all are.
    replacing: Option<(Vec<u8>, usize, usize)>,
    replaced: bool,
}

impl Tracked {
    fn new(inner: TcpStream) -> Self {
        Self {
            inner: Some(inner),
            activity: Arc::new(Activity {
                start: Instant::now(),
                last_ms: AtomicU64::new(0),
            }),
            replacing: None,
            replaced: false,
        }
    }

    fn stream(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(
            self.inner
                .as_mut()
                .expect("the stream is taken only on drop"),
        )
    }

    /// Write `buf`, or the envelope in its place if it is hyper's bare error answer.
    fn write_one(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        if self.replacing.is_none() {
            if let Some(envelope) = bare_error_answer(buf) {
                self.replacing = Some((envelope, 0, buf.len()));
                self.replaced = true;
            }
        }
        let Some((bytes, mut done, reported)) = self.replacing.take() else {
            let r = self.stream().poll_write(cx, buf);
            if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
                self.activity.touch();
            }
            return r;
        };
        while done < bytes.len() {
            match self.stream().poll_write(cx, &bytes[done..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                }
                Poll::Ready(Ok(n)) => done += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    self.replacing = Some((bytes, done, reported));
                    return Poll::Pending;
                }
            }
        }
        Poll::Ready(Ok(reported))
    }
}

/// hyper's answer to a request it could not parse: a lone `HTTP/1.1 400|414|431` head without
/// `Content-Type` and with no body. Answered here as the same status with the envelope.
fn bare_error_answer(buf: &[u8]) -> Option<Vec<u8>> {
    // Cheap first: every other write (any 2xx, any body) fails here.
    if !buf.starts_with(b"HTTP/1.1 4") || !buf.ends_with(b"\r\n\r\n") {
        return None;
    }
    let head = std::str::from_utf8(buf).ok()?;
    let status: u16 = head.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
    let bare = matches!(status, 400 | 414 | 431)
        && head.ends_with("\r\n\r\n")
        && head.matches("\r\n\r\n").count() == 1
        && !head.to_ascii_lowercase().contains("\r\ncontent-type:")
        && !head
            .to_ascii_lowercase()
            .split("\r\n")
            .any(|l| l.starts_with("content-length:") && l.trim_end() != "content-length: 0");
    if !bare {
        return None;
    }
    let status = axum::http::StatusCode::from_u16(status).ok()?;
    let body = ApiError::for_status(status).body();
    Some(
        format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            body.len()
        )
        .into_bytes(),
    )
}

/// After a replaced answer the client may still be sending the rest of its oversized request;
/// closing with unread bytes would reset the connection and could destroy the answer before the
/// client reads it. So the stream is read and dropped for a moment first (a lingering close).
impl Drop for Tracked {
    fn drop(&mut self) {
        if !self.replaced {
            return;
        }
        let (Some(mut stream), Ok(rt)) = (self.inner.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        rt.spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0u8; 16 * 1024];
            let until = Instant::now() + Duration::from_secs(1);
            let mut left = 4 * 1024 * 1024usize;
            while left > 0 {
                match tokio::time::timeout_at(until, stream.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
                    _ => break,
                }
            }
        });
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = self.stream().poll_read(cx, buf);
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
        self.write_one(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        // An error head comes alone; anything else is written as it comes, one slice at a time
        // only while an envelope is being written.
        match bufs.iter().find(|b| !b.is_empty()) {
            Some(first) if self.replacing.is_some() || bare_error_answer(first).is_some() => {
                self.write_one(cx, first)
            }
            _ => {
                let r = self.stream().poll_write_vectored(cx, bufs);
                if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
                    self.activity.touch();
                }
                r
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.stream().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.stream().poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::bare_error_answer;

    #[test]
    fn only_a_bare_400_414_or_431_head_is_replaced() {
        let bare =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let out = String::from_utf8(bare_error_answer(bare).unwrap()).unwrap();
        assert!(out.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(out.contains("content-type: application/json") && out.contains("VALIDATION_ERROR"));
        for kept in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 9\r\n\r\n"[..],
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"{\"a\":1}",
        ] {
            assert!(bare_error_answer(kept).is_none(), "{}", String::from_utf8_lossy(kept));
        }
    }
}
