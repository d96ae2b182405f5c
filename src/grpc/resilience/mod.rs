//! The client side of every gRPC dependency: one tower stack per dependency, outermost first,
//!
//! 1. **bulkhead** (`tower-resilience`, fail-fast): at most `max_concurrent` calls in flight; one
//!    more is refused at once (503 `UPSTREAM_UNAVAILABLE`), it never queues;
//! 2. **circuit breaker** ([`breaker`]): judges each whole call (retries included), refuses calls
//!    without touching the network while open;
//! 3. **time limiter** (`tower-resilience`): the call's deadline, retries and backoff included; on
//!    expiry the call is dropped (its HTTP/2 stream is reset) and answers `Timeout`;
//! 4. **retry** (`tower-resilience`): transient failures (`UNAVAILABLE`, which is also what a
//!    refused or broken connection gives) are tried again after an exponential, ±50 % jittered
//!    backoff (the service's one [`Backoff`]) — only for calls marked idempotent, and only while
//!    the deadline leaves room for the backoff and one more attempt;
//! 5. **attempt**: one RPC on the shared channel (or, for a bundled peer called in process, one
//!    call of its handler, with the same request and metadata), with `grpc-timeout` set to what
//!    is left of the deadline, in a gRPC client span (a child of the caller's span, passed on as
//!    `traceparent`), and `grpc_client_duration_seconds{method,code}`.

pub mod breaker;

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::{Code, Status};
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_resilience::bulkhead::{BulkheadLayer, BulkheadServiceError};
use tower_resilience::retry::RetryLayer;
use tower_resilience::timelimiter::{TimeLimiterError, TimeLimiterLayer};

use crate::config::GrpcClientSettings;
use crate::schedule::Backoff;
use breaker::{BreakerSettings, CircuitBreaker};

/// No retry is started with less than this left for the attempt itself after the backoff.
const MIN_ATTEMPT: Duration = Duration::from_millis(20);

/// One logical call through the stack.
#[derive(Clone, Debug)]
pub struct Call<R> {
    /// `package.Service/Method`, the metric label.
    pub method: &'static str,
    pub rpc: R,
    pub deadline: Instant,
    /// The caller's span: each attempt's client span is its child.
    pub parent: tracing::Span,
    /// The current attempt's client span, passed on as the `traceparent` metadata.
    pub attempt: tracing::Span,
    /// Safe to send again after a transient failure that may have reached the peer.
    pub idempotent: bool,
}

impl<R> Call<R> {
    /// A call due within `timeout`, in the current request's trace (if any).
    pub fn new(method: &'static str, rpc: R, timeout: Duration, idempotent: bool) -> Self {
        Self {
            method,
            rpc,
            deadline: Instant::now() + timeout,
            parent: tracing::Span::current(),
            attempt: tracing::Span::none(),
            idempotent,
        }
    }

    /// A tonic request with the deadline left as `grpc-timeout` and the trace context as metadata.
    pub fn request<T>(&self, message: T, timeout: Duration) -> tonic::Request<T> {
        let mut r = tonic::Request::new(message);
        r.set_timeout(timeout);
        let mut headers = std::mem::take(r.metadata_mut()).into_headers();
        crate::telemetry::otel::inject(&self.attempt, &mut headers);
        *r.metadata_mut() = MetadataMap::from_headers(headers);
        r
    }
}

/// The client span of one attempt of `method` (`package.Service/Method`), in gRPC's semantic
/// conventions; its status is recorded when the attempt ends.
fn client_span(parent: &tracing::Span, method: &'static str) -> tracing::Span {
    let (service, name) = method.split_once('/').unwrap_or(("", method));
    tracing::info_span!(
        target: "grpc",
        parent: parent,
        "gRPC call",
        otel.name = method,
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        "rpc.system" = "grpc",
        "rpc.service" = service,
        "rpc.method" = name,
        "rpc.grpc.status_code" = tracing::field::Empty,
        "error.type" = tracing::field::Empty,
    )
}

/// Add `name: value` to `m` if the value is valid metadata.
pub fn insert_metadata(m: &mut MetadataMap, name: &'static str, value: &str) {
    if let Ok(v) = value.parse::<AsciiMetadataValue>() {
        m.insert(name, v);
    }
}

/// A failed attempt, and whether the retry layer may try again.
#[derive(Debug)]
pub struct AttemptError {
    pub status: Status,
    pub retryable: bool,
}

/// How a call through the stack failed.
#[derive(Debug)]
pub enum CallError {
    /// The deadline passed.
    Timeout,
    /// Circuit open, bulkhead full, or the peer unreachable or overloaded.
    Unavailable {
        message: String,
        retry_after_secs: u64,
    },
    /// Any other gRPC status: a bug on one side or the other.
    Failed(Status),
}

impl CallError {
    fn from_status(status: Status, deadline: Instant) -> Self {
        match status.code() {
            Code::DeadlineExceeded => Self::Timeout,
            // What a tonic server answers when the `grpc-timeout` it was sent runs out.
            Code::Cancelled if Instant::now() + MIN_ATTEMPT >= deadline => Self::Timeout,
            Code::Unavailable | Code::ResourceExhausted => Self::Unavailable {
                message: status.message().to_owned(),
                retry_after_secs: crate::schedule::retry_after_secs(),
            },
            _ => Self::Failed(status),
        }
    }

    /// Whether the call counts against the peer's health. A peer that rejects a bad request
    /// (`INVALID_ARGUMENT`, `NOT_FOUND`, …) is healthy.
    fn is_failure(&self) -> bool {
        match self {
            Self::Timeout | Self::Unavailable { .. } => true,
            Self::Failed(s) => matches!(
                s.code(),
                Code::Unknown
                    | Code::Internal
                    | Code::Unimplemented
                    | Code::DataLoss
                    | Code::Aborted
                    | Code::Cancelled
                    | Code::ResourceExhausted
            ),
        }
    }
}

/// The stack as one cloneable service; clone it per call (cheap: `Arc`s).
pub type Stack<R, S> = BoxCloneSyncService<Call<R>, S, CallError>;

/// A status the transport or a failing peer produces (a reset stream, a crash mid-call): the call
/// may or may not have happened, and the caller answers 503 rather than blaming itself.
pub fn is_peer_failure(c: Code) -> bool {
    matches!(
        c,
        Code::Unknown | Code::Internal | Code::Aborted | Code::DataLoss | Code::Cancelled
    )
}

pub fn code_name(c: Code) -> &'static str {
    match c {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Records `grpc_client_duration_seconds` for one attempt, also when the attempt is dropped at
/// the deadline (code `DEADLINE_EXCEEDED`) or abandoned by its caller (`CANCELLED`).
struct AttemptTimer {
    method: &'static str,
    deadline: Instant,
    started: Instant,
    code: Option<Code>,
    span: tracing::Span,
}

impl Drop for AttemptTimer {
    fn drop(&mut self) {
        let code = self.code.unwrap_or(if Instant::now() >= self.deadline {
            Code::DeadlineExceeded
        } else {
            Code::Cancelled
        });
        metrics::histogram!("grpc_client_duration_seconds", "method" => self.method, "code" => code_name(code))
            .record(self.started.elapsed().as_secs_f64());
        self.span.record("rpc.grpc.status_code", code as i64);
        if code != Code::Ok {
            self.span.record("otel.status_code", "ERROR");
            self.span.record("error.type", code_name(code));
        }
    }
}

/// Build the stack of one dependency (`target`: `inventory` or `payment`) around `attempt`,
/// which makes one RPC given the call and the time left of its deadline.
pub fn stack<R, S, F, Fut>(
    target: &'static str,
    settings: &GrpcClientSettings,
    attempt: F,
) -> Result<Stack<R, S>, String>
where
    R: Clone + Send + Sync + 'static,
    S: Send + 'static,
    F: Fn(Call<R>, Duration) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<S, Status>> + Send + 'static,
{
    let max_backoff = settings.retry_max_backoff;
    // The longest backoff the jitter can draw, plus room for the attempt after it.
    let retry_room = max_backoff.mul_f64(1.5) + MIN_ATTEMPT;

    let attempt = tower::service_fn(move |mut call: Call<R>| {
        let attempt = attempt.clone();
        async move {
            let deadline = call.deadline;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(AttemptError {
                    status: Status::deadline_exceeded("deadline passed"),
                    retryable: false,
                });
            }
            let span = client_span(&call.parent, call.method);
            call.attempt = span.clone();
            let mut timer = AttemptTimer {
                method: call.method,
                deadline,
                started: Instant::now(),
                code: None,
                span: span.clone(),
            };
            let result = tracing::Instrument::instrument(attempt(call, left), span).await;
            timer.code = Some(result.as_ref().map_or_else(|s| s.code(), |_| Code::Ok));
            result.map_err(|status| {
                let room = deadline.saturating_duration_since(Instant::now()) >= retry_room;
                AttemptError {
                    retryable: status.code() == Code::Unavailable && room,
                    status,
                }
            })
        }
    });

    let max_attempts = settings.retry_max_attempts;
    let backoff = Backoff::new(settings.retry_backoff, 0.5, max_backoff);
    let retry = RetryLayer::<Call<R>, S, AttemptError>::builder()
        .name(target)
        // Retried calls may already have reached the peer (a connection can break after the
        // request was sent). That is safe only for idempotent calls; see the clients for why
        // theirs are.
        .max_attempts_fn(move |c: &Call<R>| if c.idempotent { max_attempts } else { 1 })
        .backoff(backoff)
        .retry_on(|e: &AttemptError| e.retryable)
        .build();
    let time_limit = TimeLimiterLayer::builder()
        .name(target)
        .timeout_fn(|c: &Call<R>| c.deadline.saturating_duration_since(Instant::now()))
        .build();
    let breaker = CircuitBreaker::new(
        target,
        BreakerSettings {
            failure_rate: f64::from(settings.cb_failure_rate_percent) / 100.0,
            slow_call_duration: settings.slow_call(),
            slow_call_rate: f64::from(settings.cb_slow_call_rate_percent) / 100.0,
            minimum_calls: settings.cb_minimum_calls,
            window: settings.cb_window,
            open_for: settings.cb_open,
            half_open_calls: settings.cb_half_open_calls,
        },
    );
    let bulkhead = BulkheadLayer::builder()
        .name(target)
        .max_concurrent_calls(settings.max_concurrent)
        .reject_when_full()
        .build()
        .map_err(|e| e.to_string())?;
    let max_concurrent = settings.max_concurrent;

    let svc = ServiceBuilder::new()
        .layer(bulkhead)
        .layer(BreakerLayer { breaker, target })
        .layer(time_limit)
        .layer(retry)
        .service(attempt)
        .map_err(move |e: BulkheadServiceError<CallError>| match e {
            BulkheadServiceError::Inner(e) => e,
            BulkheadServiceError::Bulkhead(_) => {
                metrics::counter!("grpc_client_rejected_total", "target" => target, "reason" => "bulkhead_full")
                    .increment(1);
                CallError::Unavailable {
                    message: format!("{target}: {max_concurrent} calls already in flight"),
                    retry_after_secs: crate::schedule::retry_after_secs(),
                }
            }
        });
    Ok(BoxCloneSyncService::new(svc))
}

/// The circuit breaker as a tower layer; also turns the inner errors into [`CallError`].
#[derive(Clone)]
struct BreakerLayer {
    breaker: Arc<CircuitBreaker>,
    target: &'static str,
}

impl<S> Layer<S> for BreakerLayer {
    type Service = BreakerService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        BreakerService {
            inner,
            breaker: self.breaker.clone(),
            target: self.target,
        }
    }
}

#[derive(Clone)]
struct BreakerService<S> {
    inner: S,
    breaker: Arc<CircuitBreaker>,
    target: &'static str,
}

impl<S, R, T> Service<Call<R>> for BreakerService<S>
where
    S: Service<Call<R>, Response = T, Error = TimeLimiterError<AttemptError>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    R: Send + 'static,
    T: Send + 'static,
{
    type Response = T;
    type Error = CallError;
    type Future = BoxFuture<'static, Result<T, CallError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), CallError>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| limited(e, Instant::now()))
    }

    fn call(&mut self, call: Call<R>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (breaker, target) = (self.breaker.clone(), self.target);
        Box::pin(async move {
            let permit = match breaker.try_acquire() {
                Ok(p) => p,
                Err(wait) => {
                    metrics::counter!("grpc_client_rejected_total", "target" => target, "reason" => "circuit_open")
                        .increment(1);
                    return Err(CallError::Unavailable {
                        message: format!("{target}: circuit open"),
                        retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
                    });
                }
            };
            let deadline = call.deadline;
            let result = inner.call(call).await.map_err(|e| limited(e, deadline));
            permit.record(result.as_ref().err().is_some_and(CallError::is_failure));
            result
        })
    }
}

fn limited(e: TimeLimiterError<AttemptError>, deadline: Instant) -> CallError {
    match e {
        TimeLimiterError::Timeout => CallError::Timeout,
        TimeLimiterError::Inner(a) => CallError::from_status(a.status, deadline),
    }
}

#[cfg(test)]
mod tests;
