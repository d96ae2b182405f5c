//! The operations assets: the Prometheus alert rules and the Grafana dashboard name only metrics
//! the service exports (must show 6; `promtool check rules` runs in `./run_local.sh test`), the
//! dashboard is a well-formed Grafana dashboard, and the chart ships the same rules.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::helpers::*;
use reservation_api::telemetry::metrics::{family, samples};
use serde_json::Value;

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The `expr` of every rule in the alert rules (each on one line, as the file says).
fn alert_exprs() -> Vec<String> {
    let text = read("deploy/prometheus/alerts.yml");
    let alerts = text
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert:"))
        .count();
    let exprs: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("expr:"))
        .map(|e| e.trim().to_owned())
        .collect();
    assert!(alerts >= 6, "the rules for the SLOs: {alerts}");
    assert_eq!(exprs.len(), alerts, "one single-line expr per alert");
    assert!(exprs.iter().all(|e| !e.is_empty() && e != "|" && e != ">"));
    exprs
}

/// Every panel's target `expr` of the dashboard, checking its shape on the way.
fn dashboard_exprs() -> Vec<String> {
    let d: Value = serde_json::from_str(&read("deploy/grafana/reservation-api.json"))
        .expect("the dashboard is JSON");
    assert_eq!(d["uid"], "reservation-api");
    assert!(d["title"].is_string() && d["schemaVersion"].is_u64(), "{d}");
    let panels = d["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut exprs = Vec::new();
    for p in panels {
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate id"
        );
        let g = &p["gridPos"];
        for k in ["h", "w", "x", "y"] {
            assert!(g[k].is_u64(), "gridPos.{k} of {p}");
        }
        assert!(
            g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24,
            "{p}"
        );
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{p}");
        for t in targets {
            exprs.push(t["expr"].as_str().expect("expr").to_owned());
        }
    }
    exprs
}

/// The metric names a PromQL expression uses: identifiers outside label matchers, grouping
/// clauses, functions, keywords and template variables. (A small scanner rather than a PromQL
/// parser: the expressions are ours and simple.)
fn metric_names(expr: &str) -> BTreeSet<String> {
    const NOT_METRICS: &[&str] = &[
        "sum",
        "max",
        "min",
        "avg",
        "count",
        "rate",
        "increase",
        "changes",
        "histogram_quantile",
        "time",
        "by",
        "without",
        "on",
        "ignoring",
        "and",
        "or",
        "unless",
        "bool",
    ];
    // Drop label matchers `{...}` and range selectors `[...]`.
    let mut plain = String::new();
    let mut depth = 0;
    for c in expr.chars() {
        match c {
            '{' | '[' => depth += 1,
            '}' | ']' => depth -= 1,
            _ if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    // Drop the label lists of `by (...)`, `on(...)`, and the like.
    for kw in ["by", "without", "on", "ignoring"] {
        while let Some(i) = plain.match_indices(kw).map(|(i, _)| i).find(|&i| {
            let before = plain[..i].chars().last();
            let after = plain[i + kw.len()..].trim_start();
            !before.is_some_and(|c| c.is_alphanumeric() || c == '_') && after.starts_with('(')
        }) {
            let open = i + plain[i..].find('(').unwrap();
            let close = open + plain[open..].find(')').unwrap();
            plain.replace_range(i..=close, " ");
        }
    }
    plain
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':' || c == '$'))
        .filter(|w| !w.is_empty())
        .filter(|w| {
            w.chars()
                .next()
                .is_some_and(|c| c.is_alphabetic() || c == '_')
        })
        .filter(|w| !NOT_METRICS.contains(w))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_scanner_finds_metric_names_only() {
    let names = metric_names(
        r#"sum by (uri) (rate(http_server_requests_seconds_count{uri=~"/v1/.*", status=~"5.."}[5m])) / max(outbox_pending_events) > 0 and on() changes(x_ready[15m]) > 4"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        [
            "http_server_requests_seconds_count",
            "outbox_pending_events",
            "x_ready"
        ]
    );
}

#[test]
fn the_chart_ships_the_same_alert_rules() {
    assert_eq!(
        read("helm/reservation-api/files/prometheus-alerts.yml"),
        read("deploy/prometheus/alerts.yml"),
        "copy deploy/prometheus/alerts.yml to helm/reservation-api/files/prometheus-alerts.yml"
    );
    let template = read("helm/reservation-api/templates/prometheusrule.yaml");
    assert!(template.contains("files/prometheus-alerts.yml"));
    assert!(template.contains(".Values.prometheusRule.enabled"));
    let values = read("helm/reservation-api/values.yaml");
    assert!(
        values.contains("prometheusRule:\n  enabled: false"),
        "off by default"
    );
}

/// Must show 6: after a short workload (holds, a read, a confirm, a cancel, a replay, a refused
/// token, a readiness probe, an event published), every metric the alert rules and the dashboard
/// name has series in `/actuator/prometheus`.
#[tokio::test]
async fn every_metric_in_the_alerts_and_the_dashboard_is_exported_after_a_workload() {
    let app = spawn_app().await;
    let held = app.hold("u1", BIG_EVENT, 1).await;
    let id = held["reservation_id"].as_str().unwrap();
    assert_eq!(app.get("u1", id).await.status(), 200);
    assert_eq!(app.confirm("u1", id, "c1", "pay_1").await.status(), 200);
    assert_eq!(app.confirm("u1", id, "c1", "pay_1").await.status(), 200);
    let other = app.hold("u1", BIG_EVENT, 1).await;
    let other = other["reservation_id"].as_str().unwrap();
    assert_eq!(app.cancel("u1", other, "x1").await.status(), 200);
    let r = app
        .client
        .get(app.url("/v1/reservations/rsv_x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .client
        .get(app.url("/actuator/health/readiness"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let wanted: BTreeSet<String> = alert_exprs()
        .iter()
        .chain(dashboard_exprs().iter())
        .flat_map(|e| metric_names(e))
        .map(|n| family(&n).to_owned())
        .collect();
    for must in [
        "http_server_requests_seconds",
        "grpc_client_circuit_state",
        "outbox_publish_lag_seconds",
        "outbox_events_published_total",
        "reservation_api_ready",
        "process_resident_memory_bytes",
    ] {
        assert!(wanted.contains(must), "{must} not used: {wanted:?}");
    }
    // The relay publishes the events within its poll interval.
    let until = Instant::now() + Duration::from_secs(10);
    let missing = loop {
        let text = app.prometheus().await;
        let exported: BTreeSet<String> = samples(&text)
            .iter()
            .map(|s| family(&s.name).to_owned())
            .collect();
        let missing: Vec<&String> = wanted.iter().filter(|w| !exported.contains(*w)).collect();
        if missing.is_empty() || Instant::now() > until {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        missing.is_empty(),
        "named in the alerts or the dashboard but not exported: {missing:?}"
    );
}
