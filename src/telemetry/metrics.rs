//! Metrics: recorded through the `metrics` crate everywhere, exported in the Prometheus text format
//! at `/actuator/prometheus` and as names and samples at `/actuator/metrics`.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Instant;

use metrics::{Key, KeyName, Label, Metadata, Recorder, SharedString};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::domain::{EventType, ReservationStatus};

/// Latency buckets in seconds, around the 120 ms P95 goal.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.12, 0.15, 0.2, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    /// The word of the Prometheus `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// Every metric the service records, with its `# HELP` text. The README's metrics table lists the
/// same names (a test scrapes a fresh app for each name the README lists).
pub const CATALOGUE: &[(&str, Kind, &str)] = &[
    (
        "http_server_requests_seconds",
        Kind::Histogram,
        "HTTP request latency by method, route template and status",
    ),
    (
        "grpc_client_duration_seconds",
        Kind::Histogram,
        "gRPC client attempt latency by method and status code",
    ),
    (
        "grpc_client_rejected_total",
        Kind::Counter,
        "gRPC calls refused without reaching the network, by target and reason",
    ),
    (
        "grpc_client_circuit_state",
        Kind::Gauge,
        "gRPC client circuit breaker state by target: 0 closed, 1 open, 2 half-open",
    ),
    (
        "reservation_status_total",
        Kind::Counter,
        "Reservation state changes written, by the new status",
    ),
    (
        "service_method_duration_seconds",
        Kind::Histogram,
        "Use case latency by method",
    ),
    (
        "idempotency_requests_total",
        Kind::Counter,
        "Idempotency-Key checks by result",
    ),
    (
        "outbox_events_published_total",
        Kind::Counter,
        "Outbox publish outcomes by event type and result",
    ),
    (
        "outbox_pending_events",
        Kind::Gauge,
        "Outbox events not yet settled, as last seen by the relay",
    ),
    (
        "outbox_round_size",
        Kind::Gauge,
        "Events the outbox relay's next round claims (halved when the store times out)",
    ),
    (
        "outbox_publish_lag_seconds",
        Kind::Histogram,
        "Time from writing an event to publishing it",
    ),
    (
        "outbox_store_requests_total",
        Kind::Counter,
        "Store requests made by the outbox relay, by operation",
    ),
    (
        "cache_requests_total",
        Kind::Counter,
        "Read-through cache calls (CACHE_REDIS_URL), by operation and result",
    ),
    (
        "store_items",
        Kind::Gauge,
        "Items held by the embedded store, by kind (after each retention sweep)",
    ),
    (
        "auth_failures_total",
        Kind::Counter,
        "Bearer tokens refused, by reason",
    ),
    (
        "jwks_refresh_total",
        Kind::Counter,
        "Fetches of the issuer's signing keys, by result",
    ),
    (
        "admission_decisions_total",
        Kind::Counter,
        "Waiting-room admission checks of creates, by result",
    ),
    (
        "rate_limited_total",
        Kind::Counter,
        "Requests refused with 429 RATE_LIMITED, by limit",
    ),
    (
        "reservation_api_ready",
        Kind::Gauge,
        "1 when the readiness check last answered UP, 0 when DOWN",
    ),
    (
        "expiry_abandoned_total",
        Kind::Counter,
        "Holds the expiry sweeper gave up on a day past their end (they stay HOLD)",
    ),
    (
        "log_lines_dropped_total",
        Kind::Counter,
        "Log lines dropped because the queue to stdout was full",
    ),
    (
        "reservation_api_build_info",
        Kind::Gauge,
        "Always 1; the running build's version as a label",
    ),
    (
        "process_cpu_seconds_total",
        Kind::Counter,
        "Total user and system CPU time spent, in whole seconds",
    ),
    (
        "process_resident_memory_bytes",
        Kind::Gauge,
        "Resident memory size in bytes",
    ),
    (
        "process_virtual_memory_bytes",
        Kind::Gauge,
        "Virtual memory size in bytes",
    ),
    (
        "process_open_fds",
        Kind::Gauge,
        "Number of open file descriptors",
    ),
    (
        "process_max_fds",
        Kind::Gauge,
        "Maximum number of open file descriptors",
    ),
    (
        "process_start_time_seconds",
        Kind::Gauge,
        "Start time of the process since the Unix epoch, in seconds",
    ),
    (
        "process_threads",
        Kind::Gauge,
        "Number of OS threads in the process",
    ),
];

static PROCESS: OnceLock<metrics_process::Collector> = OnceLock::new();

/// Refresh the `process_*` metrics (reads `/proc`: call it off the async runtime, or at start).
pub fn collect_process() {
    PROCESS
        .get_or_init(metrics_process::Collector::default)
        .collect();
    // The log writer counts what it dropped itself (its queue is lossy); the scrape reads it.
    metrics::counter!("log_lines_dropped_total").absolute(super::logging::dropped_lines() as u64);
}

/// [`render`] with the `process_*` metrics refreshed first, on a blocking thread.
pub async fn render_fresh() -> String {
    let _ = tokio::task::spawn_blocking(collect_process).await;
    render()
}

/// The label sets known in advance, at zero, so that a scrape shows them before the first one
/// happens (and `rate()` has a starting point): all gRPC targets and refusal reasons, statuses,
/// idempotency results, event types and publish results. A circuit starts closed.
fn known_series() -> Vec<(Kind, &'static str, Vec<Label>)> {
    let mut out = Vec::new();
    for target in ["inventory", "payment"] {
        for reason in ["circuit_open", "bulkhead_full"] {
            out.push((
                Kind::Counter,
                "grpc_client_rejected_total",
                vec![Label::new("target", target), Label::new("reason", reason)],
            ));
        }
        out.push((
            Kind::Gauge,
            "grpc_client_circuit_state",
            vec![Label::new("target", target)],
        ));
    }
    use ReservationStatus as R;
    for status in [R::Hold, R::Confirmed, R::Cancelled, R::Expired] {
        out.push((
            Kind::Counter,
            "reservation_status_total",
            vec![Label::new("status", status.as_str())],
        ));
    }
    out.push((Kind::Counter, "expiry_abandoned_total", vec![]));
    for result in ["started", "replayed", "in_flight", "conflict"] {
        out.push((
            Kind::Counter,
            "idempotency_requests_total",
            vec![Label::new("result", result)],
        ));
    }
    let labelled: [(&'static str, &'static str, &[&'static str]); 4] = [
        (
            "auth_failures_total",
            "reason",
            &[
                "missing",
                "expired",
                "invalid",
                "not_yet_valid",
                "issuer",
                "audience",
                "claims",
                "algorithm",
                "unknown_kid",
                "keys_unavailable",
            ],
        ),
        ("jwks_refresh_total", "result", &["ok", "error"]),
        (
            "admission_decisions_total",
            "result",
            &[
                "admitted",
                "missing",
                "unknown_or_expired",
                "other_event",
                "other_user",
                "already_used",
                "unavailable",
                "given_back",
            ],
        ),
        ("rate_limited_total", "scope", &["user", "global"]),
    ];
    for (name, label, values) in labelled {
        for &value in values {
            out.push((Kind::Counter, name, vec![Label::new(label, value)]));
        }
    }
    for op in ["query", "read", "claim", "settle", "count"] {
        out.push((
            Kind::Counter,
            "outbox_store_requests_total",
            vec![Label::new("op", op)],
        ));
    }
    use EventType as E;
    for ty in [E::HoldCreated, E::Confirmed, E::Cancelled, E::HoldExpired] {
        for result in ["published", "retried", "failed", "deferred"] {
            out.push((
                Kind::Counter,
                "outbox_events_published_total",
                vec![
                    Label::new("type", ty.as_str()),
                    Label::new("result", result),
                ],
            ));
        }
    }
    out.push((Kind::Gauge, "outbox_pending_events", vec![]));
    out.push((Kind::Gauge, "outbox_round_size", vec![]));
    for (op, result) in crate::cache::series() {
        out.push((
            Kind::Counter,
            "cache_requests_total",
            vec![Label::new("op", op), Label::new("result", result)],
        ));
    }
    for kind in ["reservations", "orders", "idempotency", "outbox"] {
        out.push((Kind::Gauge, "store_items", vec![Label::new("kind", kind)]));
    }
    out
}

/// Describe every metric of the catalogue and register its known series on `recorder`.
fn register_all(recorder: &PrometheusRecorder) {
    for &(name, kind, help) in CATALOGUE {
        let (name, help) = (KeyName::from_const_str(name), SharedString::const_str(help));
        match kind {
            Kind::Counter => recorder.describe_counter(name, None, help),
            Kind::Gauge => recorder.describe_gauge(name, None, help),
            Kind::Histogram => recorder.describe_histogram(name, None, help),
        }
    }
    let meta = Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));
    for (kind, name, labels) in known_series() {
        let key = Key::from_parts(name, labels);
        match kind {
            Kind::Counter => recorder.register_counter(&key, &meta).increment(0),
            Kind::Gauge => recorder.register_gauge(&key, &meta).set(0.0),
            Kind::Histogram => {}
        }
    }
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide recorder, installed on first use (a process has one; tests start many apps).
/// Call it before anything records (the gRPC clients set their circuit gauge when built).
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .expect("non-empty buckets")
            .build_recorder();
        register_all(&recorder);
        let handle = recorder.handle();
        // Another recorder may already be installed (a test harness); then ours only renders.
        let _ = metrics::set_global_recorder(recorder);
        metrics::gauge!("reservation_api_build_info", "version" => env!("CARGO_PKG_VERSION"))
            .set(1.0);
        collect_process();
        handle
    })
}

/// The exposition text. A histogram has no series until its first observation (its labels are
/// not known before), so a catalogue metric without any still gets its `# HELP` and `# TYPE`.
pub fn render() -> String {
    let mut text = handle().render();
    for &(name, kind, help) in CATALOGUE {
        if !text.contains(&format!("# TYPE {name} ")) {
            text.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {}\n\n",
                kind.as_str()
            ));
        }
    }
    text
}

/// `service_method_duration_seconds{method}`: recorded when dropped.
pub struct MethodTimer {
    method: &'static str,
    started: Instant,
}

impl MethodTimer {
    pub fn start(method: &'static str) -> Self {
        Self {
            method,
            started: Instant::now(),
        }
    }
}

impl Drop for MethodTimer {
    fn drop(&mut self) {
        metrics::histogram!("service_method_duration_seconds", "method" => self.method)
            .record(self.started.elapsed().as_secs_f64());
    }
}

/// One sample of the Prometheus text format.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parse the exposition text into samples (comments skipped).
pub fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, parse_labels(rest.trim_end_matches('}'))),
                None => (series, BTreeMap::new()),
            };
            Some(Sample {
                name: name.to_owned(),
                labels,
                value,
            })
        })
        .collect()
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    while let Some((k, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(n);
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(k.trim_start_matches(',').trim().to_owned(), value);
        rest = &after[end..];
    }
    out
}

/// A metric's family name: a histogram's `_bucket`, `_sum` and `_count` series belong to it.
pub fn family(name: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_text_parses() {
        let text = "# TYPE x counter\nx_total{type=\"a.b\",result=\"ok\"} 3\nh_seconds_bucket{le=\"0.1\"} 2\nh_seconds_sum 0.5\ng 1.5\n";
        let s = samples(text);
        assert_eq!(s.len(), 4);
        assert_eq!(s[0].name, "x_total");
        assert_eq!(s[0].labels["type"], "a.b");
        assert_eq!(s[0].labels["result"], "ok");
        assert_eq!(s[0].value, 3.0);
        assert_eq!(family(&s[1].name), "h_seconds");
        assert_eq!(s[3].value, 1.5);
    }
}
