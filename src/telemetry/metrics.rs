//! Metrics: recorded through the `metrics` crate everywhere, exported in the Prometheus text format
//! at `/actuator/prometheus` and as names and samples at `/actuator/metrics`.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Instant;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets in seconds, around the 120 ms P95 goal.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.12, 0.15, 0.2, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide recorder, installed on first use (a process has one; tests start many apps).
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .expect("non-empty buckets")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (a test harness); then ours only renders.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
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
