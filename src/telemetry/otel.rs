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
use opentelemetry_sdk::trace::{BatchSpanProcessor, Sampler, SdkTracerProvider, SpanProcessor};
use opentelemetry_sdk::Resource;
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use super::ids;

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
    /// The provider for this process, installed as the global one. Must run inside a tokio
    /// runtime when exporting: the OTLP channel's connection task runs on it.
    pub fn new(default_service: &'static str) -> Self {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let exporter = endpoint().and_then(|url| {
            let built = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(url)
                .build();
            built
                .map_err(|e| eprintln!("reservation-api: OTLP exporter not started: {e}"))
                .ok()
        });
        let tracing = Self::with_processor(
            default_service,
            exporter.map(|e| BatchSpanProcessor::builder(e).build()),
        );
        opentelemetry::global::set_tracer_provider(tracing.provider.clone());
        tracing
    }

    /// A provider whose finished spans go to `processor` (`None`: nothing is exported, and no
    /// OpenTelemetry span is built at all, see [`Tracing::layer`]); not installed globally.
    pub fn with_processor(
        default_service: &'static str,
        processor: Option<impl SpanProcessor + 'static>,
    ) -> Self {
        let mut builder = SdkTracerProvider::builder().with_resource(resource(default_service));
        let exporting = processor.is_some();
        match processor {
            Some(p) => builder = builder.with_span_processor(p),
            // Never used to build a span (the layer is not installed); always-off in case.
            None => builder = builder.with_sampler(Sampler::AlwaysOff),
        }
        Self {
            provider: builder.build(),
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

    /// The `tracing` layer for spans (events stay logs). Exporting: `tracing-opentelemetry`, which
    /// turns spans into OpenTelemetry spans. Not exporting: [`ids::TraceIds`], which only gives
    /// each span its ids, so no OpenTelemetry span data is built for a sampler to drop.
    pub fn layer<S>(&self) -> Box<dyn Layer<S> + Send + Sync + 'static>
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        // One or the other, boxed: as `Option`s (one `None`) beside each other's per-layer
        // filter, the spans came out disabled (the test below).
        if self.exporting {
            Box::new(self.otel_layer())
        } else {
            Box::new(ids::TraceIds.with_filter(our_spans()))
        }
    }

    fn otel_layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
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
            .with_filter(our_spans())
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

/// The spans that make a trace: ours, at `info` (dependencies' spans are at `debug` and below,
/// and are not even created unless a log filter asks for them).
fn our_spans() -> tracing_subscriber::filter::FilterFn<impl Fn(&tracing::Metadata<'_>) -> bool> {
    tracing_subscriber::filter::filter_fn(|m| m.is_span() && *m.level() <= tracing::Level::INFO)
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

/// Make `span` (a root just created) a child of the caller's span in `parent`: its OpenTelemetry
/// parent when exporting, its trace id in any case.
pub fn set_parent(span: &tracing::Span, parent: Context) {
    ids::adopt_remote(span, parent.span().span_context());
    let _ = span.set_parent(parent);
}

/// Write `span`'s context as `traceparent` into `headers`.
pub fn inject(span: &tracing::Span, headers: &mut http::HeaderMap) {
    let cx = Context::new().with_remote_span_context(span_context(span));
    TraceContextPropagator::new().inject_context(&cx, &mut HeadersMut(headers));
}

/// The span context of a `tracing` span: its [`ids::SpanIds`] when nothing is exported, else its
/// OpenTelemetry span's (invalid outside both layers).
pub fn span_context(span: &tracing::Span) -> SpanContext {
    match ids::of(span) {
        Some(ids) => ids.span_context(),
        None => span.context().span().span_context().clone(),
    }
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
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tracing_subscriber::layer::SubscriberExt;

    /// Counts the spans the SDK started and ended: a stand-in for an exporter.
    #[derive(Debug, Default, Clone)]
    struct Counting(Arc<(AtomicUsize, AtomicUsize)>);

    impl SpanProcessor for Counting {
        fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &Context) {
            self.0 .0.fetch_add(1, Ordering::SeqCst);
        }
        fn on_end(&self, _: opentelemetry_sdk::trace::SpanData) {
            self.0 .1.fetch_add(1, Ordering::SeqCst);
        }
        fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
            Ok(())
        }
        fn shutdown_with_timeout(&self, _: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
            Ok(())
        }
    }

    /// A request's span tree as the service makes it (HTTP server span with the caller's
    /// `traceparent`, a use-case span, a client span and the peer's server span), under
    /// `tracing`; answers how many of its spans had OpenTelemetry span data, the trace id
    /// its innermost span reports, and the `traceparent` injected from there.
    fn request(tracing: &Tracing, traceparent: Option<&str>) -> (usize, String, String) {
        let subscriber = tracing_subscriber::registry().with(tracing.layer());
        tracing::subscriber::with_default(subscriber, || {
            let mut headers = http::HeaderMap::new();
            if let Some(tp) = traceparent {
                headers.insert("traceparent", tp.parse().unwrap());
            }
            let http_span = tracing::info_span!("HTTP request");
            set_parent(&http_span, extract(&headers));
            let spans = http_span.in_scope(|| {
                let case = tracing::info_span!("create");
                let client = case.in_scope(|| tracing::info_span!("grpc client"));
                let server = client.in_scope(|| tracing::info_span!("grpc server"));
                vec![http_span.clone(), case, client, server]
            });
            let built = tracing::dispatcher::get_default(|d| {
                spans
                    .iter()
                    .filter(|s| {
                        tracing_opentelemetry::get_otel_context(&s.id().unwrap(), d).is_some()
                    })
                    .count()
            });
            let innermost = spans.last().unwrap();
            let trace = span_context(innermost).trace_id().to_string();
            let mut out = http::HeaderMap::new();
            inject(innermost, &mut out);
            let injected = out["traceparent"].to_str().unwrap().to_owned();
            (built, trace, injected)
        })
    }

    #[test]
    fn with_no_exporter_no_opentelemetry_span_is_built_yet_every_span_has_the_requests_trace_id() {
        let sampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

        // An exporter (a counting processor) with a sampled caller: four spans built, four
        // exported, all in the caller's trace. This is what the assertions below would see if
        // the unexported path still built span data.
        let counting = Counting::default();
        let exporting = Tracing::with_processor("test", Some(counting.clone()));
        let (built, trace, injected) = request(&exporting, Some(sampled));
        assert_eq!(built, 4);
        assert_eq!(counting.0 .0.load(Ordering::SeqCst), 4, "spans started");
        assert_eq!(counting.0 .1.load(Ordering::SeqCst), 4, "spans exported");
        assert_eq!(trace, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(injected.ends_with("-01"), "{injected}");

        // No exporter: nothing built, with or without a caller's trace; ids all the same.
        let quiet = Tracing::with_processor("test", None::<Counting>);
        let (built, trace, injected) = request(&quiet, Some(sampled));
        assert_eq!(built, 0, "no OpenTelemetry span data without an exporter");
        assert_eq!(trace, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(injected.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(injected.ends_with("-00"), "nothing is recorded: {injected}");
        let (built, trace, injected) = request(&quiet, None);
        assert_eq!(built, 0);
        assert_eq!(trace.len(), 32);
        assert_ne!(trace, "00000000000000000000000000000000");
        assert_eq!(injected, format!("00-{trace}-{}-00", &injected[36..52]));
    }

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
