//! The tracing pipeline: `tracing` spans become OpenTelemetry spans (`tracing-opentelemetry`),
//! exported over OTLP/gRPC (`opentelemetry-otlp`, on the tree's own tonic) in batches from the
//! SDK's background thread, and W3C `traceparent` is read and written by the SDK's
//! `TraceContextPropagator`.
//!
//! Configured by the standard variables: `OTEL_EXPORTER_OTLP_ENDPOINT` (or the contract's
//! `OTLP_ENDPOINT`; unset: nothing is exported and nothing is sampled, but every request still has
//! a trace id for its logs and error envelope), `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` (read by the SDK; default
//! `parentbased_always_on`), `OTEL_EXPORTER_OTLP_TIMEOUT` and the `OTEL_BSP_*` batch settings.
//!
//! A request never waits for the collector: a finished span goes into the batch processor's
//! bounded queue (dropped when full) and is sent from its own thread.

use std::time::Duration;

use axum::http;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// How long shutdown waits for the last spans to reach the collector.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// The tracer provider of the process; flush it with [`Tracing::shutdown`] before exiting.
pub struct Tracing {
    provider: SdkTracerProvider,
    exporting: bool,
}

/// The collector endpoint, if one is configured.
pub fn endpoint() -> Option<String> {
    let set = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
    {
        return None;
    }
    set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"))
        .or_else(|| set("OTLP_ENDPOINT"))
}

/// The resource: `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME` (read by the SDK), else
/// `default_service` as `service.name`, and the version.
fn resource(default_service: &'static str) -> Resource {
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
    let mut b = Resource::builder()
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if !named {
        b = b.with_service_name(default_service);
    }
    b.build()
}

impl Tracing {
    /// The provider for this process. Must run inside a tokio runtime when exporting: the OTLP
    /// channel's connection task runs on it.
    pub fn new(default_service: &'static str) -> Self {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let mut builder = SdkTracerProvider::builder().with_resource(resource(default_service));
        let mut exporting = false;
        match endpoint() {
            Some(url) => {
                let exporter = opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(url)
                    .build();
                match exporter {
                    Ok(e) => {
                        builder = builder.with_batch_exporter(e);
                        exporting = true;
                    }
                    Err(e) => eprintln!("reservation-api: OTLP exporter not started: {e}"),
                }
            }
            // Nothing leaves the process: spans only carry ids (for logs and the error envelope),
            // no attributes are kept for them.
            None => builder = builder.with_sampler(Sampler::AlwaysOff),
        }
        let provider = builder.build();
        opentelemetry::global::set_tracer_provider(provider.clone());
        Self {
            provider,
            exporting,
        }
    }

    pub fn is_exporting(&self) -> bool {
        self.exporting
    }

    /// One log line saying where traces go (after the logs are set up).
    pub fn announce(&self) {
        if self.exporting {
            tracing::info!(
                endpoint = endpoint().unwrap_or_default(),
                "exporting traces over OTLP"
            );
        }
    }

    /// The `tracing` layer that turns spans into OpenTelemetry spans (events stay logs).
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("reservation-api"))
            .with_location(false)
            .with_threads(false)
            .with_level(false)
            .with_target(false)
            // Both cost every poll of every instrumented future, the largest share of a create's
            // CPU (docs/performance.md): busy/idle times are two clock reads per enter and exit,
            // and activating the OpenTelemetry context pushes and pops a thread-local on each.
            // Nothing reads `opentelemetry::Context::current()`: the ids come from the `tracing`
            // span (`OpenTelemetrySpanExt::context`), whose parent is the `tracing` span tree.
            .with_tracked_inactivity(false)
            .with_context_activation(false)
            .with_filter(tracing_subscriber::filter::filter_fn(|m| {
                m.is_span() && *m.level() <= tracing::Level::INFO
            }))
    }

    /// Export what is left, within [`FLUSH_TIMEOUT`]: an unreachable collector never holds up the
    /// exit. The SDK's shutdown blocks, so it runs on a thread of its own.
    pub async fn shutdown(self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let provider = self.provider;
        std::thread::spawn(move || {
            let _ = tx.send(provider.shutdown_with_timeout(FLUSH_TIMEOUT));
        });
        let _ = tokio::time::timeout(FLUSH_TIMEOUT + Duration::from_millis(500), rx).await;
    }
}

/// Headers as the propagator's carrier (HTTP headers and gRPC metadata both are `http` headers).
pub struct Headers<'a>(pub &'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

pub struct HeadersMut<'a>(pub &'a mut http::HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(k, v);
        }
    }
}

/// The remote parent named by `traceparent` in `headers` (an empty context if none is valid).
pub fn extract(headers: &http::HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&Headers(headers))
}

/// Write `span`'s context as `traceparent` into `headers`.
pub fn inject(span: &tracing::Span, headers: &mut http::HeaderMap) {
    TraceContextPropagator::new().inject_context(&span.context(), &mut HeadersMut(headers));
}

/// The OpenTelemetry span context of a `tracing` span (invalid without the layer).
pub fn span_context(span: &tracing::Span) -> SpanContext {
    span.context().span().span_context().clone()
}

/// `00-<trace>-<span>-<flags>` of a span context, if valid.
pub fn traceparent(sc: &SpanContext) -> Option<String> {
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}

/// The span context a `traceparent` value names, marked remote.
pub fn parse_traceparent(value: &str) -> Option<SpanContext> {
    let mut h = http::HeaderMap::new();
    h.insert("traceparent", http::HeaderValue::from_str(value).ok()?);
    let cx = extract(&h);
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_invalid_ones_are_ignored() {
        let t = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let sc = parse_traceparent(t).unwrap();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(sc.is_remote());
        assert_eq!(traceparent(&sc).as_deref(), Some(t));
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }
}
