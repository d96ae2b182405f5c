//! The scrape shows every metric the README lists, from the start, with `# HELP` and `# TYPE`.

use crate::helpers::*;

/// `(name, type)` of each row of the README's metrics table (`| metric | type | labels | what |`).
fn readme_metrics() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let rows = readme
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("| metric | type |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'));
    rows.map(|row| {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        (cells[1].trim_matches('`').to_owned(), cells[2].to_owned())
    })
    .collect()
}

#[tokio::test]
async fn a_scrape_after_start_has_every_metric_the_readme_lists_with_help_and_type() {
    let listed = readme_metrics();
    assert!(
        listed.len() >= 10,
        "the README's metrics table was not found or is short: {listed:?}"
    );
    let app = spawn_app().await;
    let resp = app
        .client
        .get(format!("{}/actuator/prometheus", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for (name, kind) in &listed {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("# HELP {name} ")) && l.len() > name.len() + 8),
            "no # HELP for {name}:\n{text}"
        );
        assert!(
            lines.contains(&format!("# TYPE {name} {kind}").as_str()),
            "no `# TYPE {name} {kind}`:\n{text}"
        );
    }
    // The two the issue found missing, with their known label sets, before any call was refused.
    for target in ["inventory", "payment"] {
        assert!(
            text.contains(&format!(
                "grpc_client_rejected_total{{target=\"{target}\",reason=\"circuit_open\"}}"
            )) || text.contains(&format!(
                "grpc_client_rejected_total{{reason=\"circuit_open\",target=\"{target}\"}}"
            )),
            "no grpc_client_rejected_total series for {target}:\n{text}"
        );
        assert!(
            text.contains(&format!("grpc_client_circuit_state{{target=\"{target}\"}}")),
            "no grpc_client_circuit_state series for {target}:\n{text}"
        );
    }
}

#[test]
fn every_metric_of_the_catalogue_is_in_the_readme() {
    let listed: Vec<String> = readme_metrics().into_iter().map(|(n, _)| n).collect();
    for (name, _, _) in reservation_api::telemetry::metrics::CATALOGUE {
        assert!(
            listed.iter().any(|l| l == name),
            "{name} is recorded but not in the README's metrics table"
        );
    }
}
