//! One JSON object a line: `timestamp, level, message, target, trace_id, span_id`, the request's
//! `reservation_id` where there is one, and the event's own fields.
//!
//! `trace_id`/`span_id` are those of the span the line was written in: its OpenTelemetry span's
//! when exporting (read with `tracing_opentelemetry::get_otel_context`), so a line and its
//! exported span always agree; else the ids the `TraceIds` layer gave it.
//!
//! Hand-written, as a `tracing-subscriber` event format, because the contract's line shape is not
//! one the ready-made JSON formatters produce: `tracing-subscriber`'s `Json` puts span data under
//! `span`/`spans`, and `json-subscriber` puts the OpenTelemetry ids under `openTelemetry.traceId`;
//! neither writes an event field holding a JSON document (an outbox event's `detail`) as an
//! object.

use std::fmt;
use std::sync::{Mutex, OnceLock};

use opentelemetry::trace::TraceContextExt;
use serde_json::{Map, Value};
use tracing::dispatcher::WeakDispatch;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Dispatch, Event, Subscriber};
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use super::ids::SpanIds;
use super::otel::Tracing;

pub struct JsonLines;

/// Fields whose value is a JSON document (an outbox event's `detail`): logged as the object itself,
/// not as a string of escaped JSON.
const JSON_FIELDS: &[&str] = &["detail"];

/// The longest attacker-controlled value (a path, an id, a header) a log line carries.
pub const LOG_VALUE_MAX_CHARS: usize = 256;

/// The hard cap on any text field of a log line, whatever its source (a safety net: call sites
/// that log request data cut it with [`bounded`] first).
const FIELD_MAX_CHARS: usize = 1024;

/// `value` cut to [`LOG_VALUE_MAX_CHARS`] characters, with a marker saying how much was left out:
/// log each attacker-controlled value once, through this.
pub fn bounded(value: &str) -> std::borrow::Cow<'_, str> {
    bounded_to(value, LOG_VALUE_MAX_CHARS)
}

fn bounded_to(value: &str, max_chars: usize) -> std::borrow::Cow<'_, str> {
    match value.char_indices().nth(max_chars) {
        None => value.into(),
        Some((cut, _)) => {
            format!("{}…[cut: {} more bytes]", &value[..cut], value.len() - cut).into()
        }
    }
}

struct Fields(Map<String, Value>);

impl Fields {
    fn text(&mut self, field: &Field, value: String) {
        let parsed = JSON_FIELDS
            .contains(&field.name())
            .then(|| serde_json::from_str::<Value>(&value).ok())
            .flatten()
            .filter(Value::is_object);
        let value = parsed.unwrap_or_else(|| {
            let cut = match bounded_to(&value, FIELD_MAX_CHARS) {
                std::borrow::Cow::Owned(cut) => Some(cut),
                std::borrow::Cow::Borrowed(_) => None,
            };
            Value::String(cut.unwrap_or(value))
        });
        self.0.insert(field.name().into(), value);
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.text(field, format!("{value:?}"));
    }
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Fields(Map::new());
        event.record(&mut fields);
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            crate::domain::event::rfc3339(chrono::Utc::now()).into(),
        );
        line.insert("level".into(), meta.level().as_str().into());
        line.insert(
            "message".into(),
            fields
                .0
                .remove("message")
                .unwrap_or(Value::String(String::new())),
        );
        line.insert("target".into(), meta.target().into());
        if let Some(scope) = ctx.event_scope() {
            let mut spans = scope.peekable();
            let ids = spans.peek().and_then(|span| {
                let own = span.extensions().get::<SpanIds>().map(|i| i.span_context());
                own.or_else(|| {
                    let d = DISPATCH.get()?.upgrade()?;
                    let cx = tracing_opentelemetry::get_otel_context(&span.id(), &d)?;
                    Some(cx.span().span_context().clone()).filter(|sc| sc.is_valid())
                })
            });
            if let Some(sc) = ids {
                line.insert("trace_id".into(), sc.trace_id().to_string().into());
                line.insert("span_id".into(), sc.span_id().to_string().into());
            }
            if let Some(r) = spans.find_map(|s| s.extensions().get::<ReservationId>().cloned()) {
                line.insert("reservation_id".into(), r.0.into());
            }
        }
        for (k, v) in fields.0 {
            // A line about work done outside the request (the relay publishing its event) names
            // that request's trace itself.
            if k == "trace_id" || k == "span_id" {
                line.insert(k, v);
            } else {
                line.entry(k).or_insert(v);
            }
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// The dispatcher the logs are formatted in, to read each span's OpenTelemetry context.
static DISPATCH: OnceLock<WeakDispatch> = OnceLock::new();

/// A span's `reservation_id` field, once recorded.
#[derive(Clone)]
struct ReservationId(String);

struct FindReservation(Option<String>);

impl Visit for FindReservation {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "reservation_id" {
            self.0 = Some(value.to_owned());
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "reservation_id" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

/// Keeps what the JSON lines need of spans: the dispatcher, and each span's `reservation_id`.
struct SpanFacts;

impl<S> Layer<S> for SpanFacts
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = DISPATCH.set(subscriber.downgrade());
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut v = FindReservation(None);
        attrs.record(&mut v);
        if let (Some(r), Some(span)) = (v.0, ctx.span(id)) {
            span.extensions_mut().insert(ReservationId(r));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let mut v = FindReservation(None);
        values.record(&mut v);
        if let (Some(r), Some(span)) = (v.0, ctx.span(id)) {
            span.extensions_mut().replace(ReservationId(r));
        }
    }
}

/// Span fields are not part of a line (only the ids and `reservation_id` are, from the span's
/// context and [`SpanFacts`]), so the fmt layer's per-span field text is not made at all.
struct NoSpanFields;

impl<'writer> FormatFields<'writer> for NoSpanFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        _writer: Writer<'writer>,
        _fields: R,
    ) -> fmt::Result {
        Ok(())
    }
}

/// Install the global subscriber: JSON lines on stdout, filtered by `RUST_LOG` (default `info`),
/// and the spans of `tracing` (see [`Tracing`]). Spans at `info` (ours; dependencies' are at
/// `debug` and below) are never filtered out of the logs' view, so that a line keeps its trace
/// whatever `RUST_LOG` says.
pub fn init(tracing: &Tracing) {
    init_with(
        tracing,
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    );
}

/// A layer added beside the log and trace layers, unfiltered (tests watch the log with one).
pub type ExtraLayer = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;

/// [`init`] with the log lines filtered by `filter` (`off`: no lines, traces only).
pub fn init_with(tracing: &Tracing, filter: EnvFilter) {
    init_with_extra(tracing, filter, None);
}

/// The most lines waiting for stdout. A request never waits for its line to be written: the lines
/// go through this queue to a writer thread, and when stdout cannot keep up (a stalled pipe, a slow
/// collector) the lines past it are dropped and counted ([`dropped_lines`]), rather than slowing
/// every request down.
pub const LOG_QUEUE_LINES: usize = 65_536;

/// The writer thread's guard (dropping it writes out the queue) and its dropped-lines counter.
static WRITER: Mutex<Option<WorkerGuard>> = Mutex::new(None);
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// [`init_with`], plus `extra`.
pub fn init_with_extra(tracing: &Tracing, filter: EnvFilter, extra: Option<ExtraLayer>) {
    let filter = filter.or(tracing_subscriber::filter::filter_fn(|m| {
        m.is_span() && *m.level() <= tracing::Level::INFO
    }));
    let (stdout, guard) = NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .lossy(true)
        .thread_name("log-writer")
        // Buffered: the writer thread flushes when the queue is empty, one write for many lines.
        .finish(std::io::BufWriter::new(std::io::stdout()));
    let dropped = stdout.error_counter();
    let logs = tracing_subscriber::fmt::layer()
        .fmt_fields(NoSpanFields)
        .event_format(JsonLines)
        .with_writer(stdout)
        .with_filter(filter);
    let installed = tracing_subscriber::registry()
        .with(extra)
        .with(tracing.layer())
        .with(SpanFacts)
        .with(logs)
        .try_init();
    if installed.is_ok() {
        *WRITER.lock().unwrap_or_else(|e| e.into_inner()) = Some(guard);
        let _ = DROPPED.set(dropped);
    }
}

/// Log lines dropped so far because the queue to stdout was full.
pub fn dropped_lines() -> usize {
    DROPPED.get().map_or(0, ErrorCounter::dropped_lines)
}

/// Write out the queued lines and stop the writer thread; call before the process ends (a line
/// still queued at exit is lost otherwise). Says on stderr how many lines were dropped, if any.
pub fn flush() {
    let guard = WRITER.lock().unwrap_or_else(|e| e.into_inner()).take();
    drop(guard);
    let dropped = dropped_lines();
    if dropped > 0 {
        eprintln!("reservation-api: {dropped} log lines were dropped: stdout did not keep up");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_keeps_short_values_and_cuts_long_ones_with_a_marker() {
        assert_eq!(bounded("rsv_1"), "rsv_1");
        let long = "é".repeat(60_000);
        let cut = bounded(&long);
        assert!(cut.starts_with(&"é".repeat(LOG_VALUE_MAX_CHARS)));
        assert!(cut.ends_with("…[cut: 119488 more bytes]"), "{cut}");
        assert!(cut.len() < 600);
        assert_eq!(
            bounded(&"x".repeat(LOG_VALUE_MAX_CHARS)).len(),
            LOG_VALUE_MAX_CHARS
        );
    }
}
