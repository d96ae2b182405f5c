//! Trace ids without OpenTelemetry spans, for a process that exports no traces.
//!
//! Every log line and error envelope of a request carries its `trace_id`, and a `traceparent`
//! goes to the peers and comes back in the answer; none of that needs span data. When no OTLP
//! exporter is configured the OpenTelemetry layer is not installed at all (building a span's
//! attributes, start time and links for a sampler that drops it was about a quarter of a create's
//! CPU, docs/performance.md): this layer keeps only [`SpanIds`] in each span's extensions instead,
//! 24 random bytes a span. A root span starts a trace (or adopts the caller's, [`adopt_remote`]);
//! a child inherits its parent's trace id.
//!
//! Hand-written because it is the small piece `tracing-opentelemetry` does not offer: its ids
//! exist only as part of the span data it builds for the SDK.

use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use rand::RngCore;
use tracing::span::{Attributes, Id};
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{Layer, Registry};

/// The ids of one span when nothing is exported: never sampled (`traceparent` flags `00`, as the
/// SDK's always-off sampler gave them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanIds {
    pub trace: TraceId,
    pub span: SpanId,
}

impl SpanIds {
    pub fn span_context(self) -> SpanContext {
        SpanContext::new(
            self.trace,
            self.span,
            TraceFlags::default(),
            false,
            TraceState::default(),
        )
    }
}

fn random_trace() -> TraceId {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    // All zeros is the invalid id; 2^-128 is not worth a loop, but a valid id is a promise.
    b[15] |= u8::from(b == [0u8; 16]);
    TraceId::from_bytes(b)
}

fn random_span() -> SpanId {
    let mut b = [0u8; 8];
    rand::rng().fill_bytes(&mut b);
    b[7] |= u8::from(b == [0u8; 8]);
    SpanId::from_bytes(b)
}

/// The layer that gives each span its [`SpanIds`].
pub struct TraceIds;

impl<S> Layer<S> for TraceIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, _attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        // `parent()` resolves an explicit parent and the contextual one alike.
        let trace = span
            .parent()
            .and_then(|p| p.extensions().get::<SpanIds>().map(|ids| ids.trace))
            .unwrap_or_else(random_trace);
        span.extensions_mut().insert(SpanIds {
            trace,
            span: random_span(),
        });
    }
}

/// The [`SpanIds`] of `span`, if this layer gave it some.
pub fn of(span: &tracing::Span) -> Option<SpanIds> {
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<Registry>()?;
        let span = registry.span(id)?;
        let ids = span.extensions().get::<SpanIds>().copied();
        ids
    })
    .flatten()
}

/// Put `span` (a root just made, before any child) in the caller's trace `remote`.
pub fn adopt_remote(span: &tracing::Span, remote: &SpanContext) {
    if !remote.is_valid() {
        return;
    }
    span.with_subscriber(|(id, dispatch)| {
        let Some(span) = dispatch.downcast_ref::<Registry>().and_then(|r| r.span(id)) else {
            return;
        };
        let mut ext = span.extensions_mut();
        if let Some(ids) = ext.get_mut::<SpanIds>() {
            ids.trace = remote.trace_id();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn a_root_starts_a_trace_its_children_inherit_and_a_remote_parent_is_adopted() {
        let subscriber = tracing_subscriber::registry().with(TraceIds);
        tracing::subscriber::with_default(subscriber, || {
            let a = tracing::info_span!("a");
            let b = tracing::info_span!("b");
            let (ia, ib) = (of(&a).unwrap(), of(&b).unwrap());
            assert_ne!(ia.trace, ib.trace, "two roots, two traces");
            assert!(ia.span_context().is_valid());
            let child = a.in_scope(|| tracing::info_span!("child"));
            let explicit = tracing::info_span!(parent: &b, "explicit");
            assert_eq!(of(&child).unwrap().trace, ia.trace);
            assert_ne!(of(&child).unwrap().span, ia.span);
            assert_eq!(of(&explicit).unwrap().trace, ib.trace);

            let remote = crate::telemetry::otel::parse_traceparent(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .unwrap();
            let root = tracing::info_span!("root");
            adopt_remote(&root, &remote);
            let under = root.in_scope(|| tracing::info_span!("under"));
            assert_eq!(of(&under).unwrap().trace, remote.trace_id());
            assert_eq!(of(&root).unwrap().trace, remote.trace_id());
            assert!(!of(&root).unwrap().span_context().is_sampled());
        });
    }
}
