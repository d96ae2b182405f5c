//! One JSON object a line: `timestamp, level, message, target, trace_id, span_id`, the request's
//! `reservation_id` where there is one, and the event's own fields.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use super::trace;

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
        _ctx: &FmtContext<'_, S, N>,
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
        if let Some(ctx) = trace::current() {
            line.insert("trace_id".into(), ctx.trace_id.clone().into());
            line.insert("span_id".into(), ctx.span_id.clone().into());
            if let Some(r) = ctx.reservation_id.get() {
                line.insert("reservation_id".into(), r.clone().into());
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

/// Install the global subscriber: JSON lines on stdout, filtered by `RUST_LOG` (default `info`).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .event_format(JsonLines)
        .with_writer(std::io::stdout)
        .try_init();
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
