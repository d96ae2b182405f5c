//! The binary itself: `token`, `serve` with JSON logs and a clean SIGTERM, `prod` refusing the
//! development key.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_reservation-api");

fn command(data_dir: &std::path::Path) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_DIR", data_dir)
        .env("RUST_LOG", "info");
    c
}

/// A child process that is killed and reaped if a test fails before it stops it.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `serve` on a free port and return it with the port it logged.
fn serve(data_dir: &std::path::Path) -> (Running, u16, std::sync::mpsc::Receiver<String>) {
    let child = command(data_dir)
        .args(["serve"])
        .env("SERVER_HOST", "127.0.0.1")
        .env("SERVER_PORT", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the binary starts");
    let mut child = Running(child);
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let line = rx
            .recv_timeout(until.saturating_duration_since(Instant::now()))
            .expect("a listening line");
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("not a JSON line: {line}"));
        if v["message"] == "reservation-api listening" {
            let port = v["addr"]
                .as_str()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            return (child, port, rx);
        }
    }
}

#[test]
fn token_prints_a_jwt_for_the_subject() {
    let dir = tempfile::tempdir().unwrap();
    let out = command(dir.path())
        .args(["token", "--sub", "u123", "--ttl", "120"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "{token}");
    // Signed with the key kept in the data folder, which `serve` uses too.
    let key = std::fs::read(dir.path().join("jwt-dev-secret")).unwrap();
    let v = reservation_api::auth::jwt::Hs256Verifier::new(&key);
    let sub = tokio::runtime::Runtime::new().unwrap().block_on(async {
        use reservation_api::auth::TokenVerifier;
        v.verify(&token).await
    });
    assert_eq!(sub.as_deref(), Ok("u123"));
}

#[test]
fn prod_refuses_the_development_key_and_a_missing_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let out = command(dir.path())
        .env("APP_PROFILE", "prod")
        .env("JWT_DEV_SECRET", "dev")
        .args(["serve"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("development JWT key"));
    let out = command(dir.path())
        .env("APP_PROFILE", "prod")
        .args(["serve"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("JWT_ISSUER_URI"));
    let out = command(dir.path())
        .env("APP_PROFILE", "prod")
        .args(["token", "--sub", "u"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// `serve` in prod with a configuration it must refuse: exit code 2 and one line on stderr.
fn refused(set: &[(&str, &str)], unset: &[&str], expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = command(dir.path());
    let valid = [
        ("APP_PROFILE", "prod"),
        ("JWT_ISSUER_URI", "https://issuer.example"),
        ("STORE", "dynamodb"),
        ("INVENTORY_GRPC_ADDRESS", "127.0.0.1:1"),
        ("PAYMENT_GRPC_ADDRESS", "127.0.0.1:1"),
        ("REDIS_URL", "redis://127.0.0.1:1"),
        ("SERVER_HOST", "127.0.0.1"),
        ("SERVER_PORT", "0"),
    ];
    for (k, v) in valid.iter().chain(set) {
        if !unset.contains(k) {
            c.env(k, v);
        }
    }
    let out = c.args(["serve"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{expected}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(expected), "{expected}: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "nothing started: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn prod_refuses_what_loses_data_or_oversells_with_one_line_and_exit_code_2() {
    refused(&[("JWT_DEV_SECRET", "dev")], &[], "development JWT key");
    refused(&[("STORE", "memory")], &[], "STORE=memory");
    refused(&[], &["INVENTORY_GRPC_ADDRESS"], "INVENTORY_GRPC_ADDRESS");
    refused(&[], &["PAYMENT_GRPC_ADDRESS"], "PAYMENT_GRPC_ADDRESS");
    refused(
        &[("JWT_ISSUER_URI", "http://issuer.example")],
        &[],
        "loopback",
    );
    refused(&[], &["JWT_ISSUER_URI"], "JWT_ISSUER_URI");
    refused(&[], &["REDIS_URL"], "REDIS_URL");
    refused(&[("JWT_ALGORITHMS", "RS256,HS256")], &[], "symmetric");
}

#[test]
fn serve_logs_json_lines_with_the_trace_id_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, port, lines) = serve(dir.path());
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        conn,
        "GET /v1/reservations/rsv_x HTTP/1.1\r\nHost: x\r\ntraceparent: 00-{trace}-00f067aa0ba902b7-01\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    assert!(
        response.contains(trace),
        "the error envelope carries the trace id: {response}"
    );
    let until = Instant::now() + Duration::from_secs(5);
    let logged = std::iter::from_fn(|| {
        lines
            .recv_timeout(until.saturating_duration_since(Instant::now()))
            .ok()
    })
    .map(|l| serde_json::from_str::<serde_json::Value>(&l).unwrap())
    .find(|v| v["message"] == "request")
    .expect("an access log line");
    assert_eq!(
        logged["trace_id"], trace,
        "the log line carries the same trace id"
    );
    for f in ["timestamp", "level", "span_id"] {
        assert!(logged.get(f).is_some(), "log line lacks {f}: {logged}");
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(code) = child.0.try_wait().unwrap() {
            assert!(code.success(), "exit status {code:?}");
            break;
        }
        assert!(Instant::now() < until, "still running 15 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The served binary, called with a token and a `traceparent` of a given trace per request.
struct Api {
    client: reqwest::Client,
    port: u16,
    token: String,
}

impl Api {
    /// `method path` (with the token if `authed`); the answer's status and JSON body.
    async fn send(
        &self,
        trace: &str,
        method: reqwest::Method,
        path: &str,
        authed: bool,
        key: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut req = self
            .client
            .request(method, format!("http://127.0.0.1:{}{path}", self.port))
            .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"));
        if authed {
            req = req.bearer_auth(&self.token);
        }
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or_default())
    }
}

#[test]
fn every_stdout_line_of_a_workload_is_json_with_the_readme_fields_and_its_request_trace() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    let out = command(dir.path())
        .args(["token", "--sub", "u123"])
        .output()
        .unwrap();
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let (mut child, port, rx) = serve(dir.path());
    let trace = |i: u32| format!("{i:032x}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let api = Api {
        client: reqwest::Client::new(),
        port,
        token,
    };
    // Each request has its own trace: 1 hold, 2 read, 3 confirm, 4 hold, 5 cancel, 6 a bad
    // request, 7 no token. 1, 3, 4 and 5 write an event.
    rt.block_on(async {
        let hold = serde_json::json!({"event_id": "evt_2025_1001", "qty": 2});
        let rsv = "/v1/reservations";
        let (s, held) = api
            .send(
                &trace(1),
                Method::POST,
                rsv,
                true,
                Some("h1"),
                Some(hold.clone()),
            )
            .await;
        assert_eq!(s, 201, "{held}");
        let id = held["reservation_id"].as_str().unwrap().to_owned();
        let (s, _) = api
            .send(
                &trace(2),
                Method::GET,
                &format!("{rsv}/{id}"),
                true,
                None,
                None,
            )
            .await;
        assert_eq!(s, 200);
        let confirm = serde_json::json!({"payment_intent_id": "pay_1"});
        let path = format!("{rsv}/{id}/confirm");
        let (s, _) = api
            .send(
                &trace(3),
                Method::POST,
                &path,
                true,
                Some("c1"),
                Some(confirm),
            )
            .await;
        assert_eq!(s, 200);
        let (s, held) = api
            .send(&trace(4), Method::POST, rsv, true, Some("h2"), Some(hold))
            .await;
        assert_eq!(s, 201);
        let id = held["reservation_id"].as_str().unwrap().to_owned();
        let path = format!("{rsv}/{id}/cancel");
        let (s, _) = api
            .send(&trace(5), Method::POST, &path, true, Some("x1"), None)
            .await;
        assert_eq!(s, 200);
        let bad = serde_json::json!({"qty": 0});
        let (s, _) = api
            .send(&trace(6), Method::POST, rsv, true, Some("h3"), Some(bad))
            .await;
        assert_eq!(s, 400);
        let (s, _) = api
            .send(
                &trace(7),
                Method::GET,
                &format!("{rsv}/rsv_x"),
                false,
                None,
                None,
            )
            .await;
        assert_eq!(s, 401);
    });

    // The relay logs the four events; then SIGTERM, and every line until the process exits.
    let mut lines = Vec::new();
    let until = Instant::now() + Duration::from_secs(10);
    while lines
        .iter()
        .filter(|l: &&String| l.contains("\"target\":\"outbox\""))
        .count()
        < 4
    {
        match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(l) => lines.push(l),
            Err(_) => panic!(
                "the four events were not logged within 10 s:\n{}",
                lines.join("\n")
            ),
        }
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    lines.extend(rx.iter());
    assert!(child.0.wait().unwrap().success());

    let parsed: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not a JSON line: {l}")))
        .collect();
    for v in &parsed {
        for f in ["timestamp", "level", "message", "target"] {
            assert!(v[f].is_string(), "line lacks {f}: {v}");
        }
        // A line about a request or its reservation names the request's trace.
        if v["target"] == "http" || v["target"] == "outbox" || v.get("reservation_id").is_some() {
            assert!(
                v["trace_id"].is_string() && v["span_id"].is_string(),
                "line lacks its trace: {v}"
            );
        }
    }
    for i in 1..=7 {
        assert!(
            parsed
                .iter()
                .any(|v| v["target"] == "http" && v["trace_id"] == trace(i).as_str()),
            "no access log line for request {i}"
        );
    }
    for (i, ty) in [
        (1, "reservation.hold.created"),
        (3, "reservation.confirmed"),
        (4, "reservation.hold.created"),
        (5, "reservation.cancelled"),
    ] {
        let line = parsed
            .iter()
            .find(|v| v["target"] == "outbox" && v["trace_id"] == trace(i).as_str())
            .unwrap_or_else(|| panic!("no event line with request {i}'s trace"));
        assert_eq!(line["event_type"], ty, "{line}");
        assert!(
            line["detail"].is_object(),
            "the detail is an object, not a string: {line}"
        );
        assert_eq!(line["detail"]["type"], ty, "{line}");
        assert_eq!(line["detail"]["trace_id"], trace(i).as_str(), "{line}");
    }
}

#[test]
fn a_request_with_a_60_kb_id_writes_no_log_line_over_2_kb() {
    let dir = tempfile::tempdir().unwrap();
    let out = command(dir.path())
        .args(["token", "--sub", "u123"])
        .output()
        .unwrap();
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let (_child, port, lines) = serve(dir.path());
    let id = format!("rsv_{}", "a".repeat(60 * 1024));
    let trace = "0000000000000000000000000000060a";
    for (method, path) in [
        ("GET", format!("/v1/reservations/{id}")),
        ("POST", format!("/v1/reservations/{id}/cancel")),
    ] {
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            conn,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nIdempotency-Key: k-{method}\r\ntraceparent: 00-{trace}-00f067aa0ba902b7-01\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        conn.read_to_string(&mut response).unwrap();
        assert!(
            response.starts_with("HTTP/1.1 404"),
            "{method}: {response:.200}"
        );
    }
    // Every line until both access log lines are in: none over 2 KB, the path cut with a marker.
    let until = Instant::now() + Duration::from_secs(10);
    let mut access = 0;
    while access < 2 {
        let line = lines
            .recv_timeout(until.saturating_duration_since(Instant::now()))
            .expect("both access log lines within 10 s");
        assert!(
            line.len() <= 2048,
            "a {} byte log line: {line:.300}…",
            line.len()
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["message"] == "request" && v["trace_id"] == trace {
            access += 1;
            let path = v["path"].as_str().unwrap();
            assert!(path.contains("…[cut: "), "{path:.300}");
            assert!(
                v.get("reservation_id").is_none(),
                "logged once: {line:.300}"
            );
        }
    }
}

/// The rows of the README's configuration table: the variable names of the first column, and
/// the backticked values of the second (the defaults). A name starting with `_` shares the
/// prefix of the name before it (`DYNAMODB_TABLE_RESERVATIONS` / `_ORDERS`).
fn readme_configuration_rows() -> Vec<(Vec<String>, Vec<String>)> {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let rows: Vec<&str> = readme
        .lines()
        .skip_while(|l| !l.starts_with("| variable | default |"))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .collect();
    assert!(rows.len() > 20, "the configuration table was not found");
    // The backticked parts of a cell: every second piece between backticks.
    let ticked = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    };
    rows.iter()
        .map(|row| {
            let cells: Vec<&str> = row.split('|').collect();
            let mut prefix = String::new();
            let names = ticked(cells[1])
                .into_iter()
                .map(|name| match name.strip_prefix('_') {
                    Some(suffix) => format!("{prefix}_{suffix}"),
                    None => {
                        prefix = name.rsplit_once('_').map_or("", |(p, _)| p).to_owned();
                        name
                    }
                })
                .collect();
            (names, ticked(cells[2]))
        })
        .collect()
}

#[test]
fn the_readme_configuration_table_lists_exactly_the_variables_the_configuration_reads() {
    use std::collections::{BTreeMap, BTreeSet};
    // What the code reads: the `env` names of the configuration's clap arguments.
    let read: BTreeMap<String, Option<String>> = reservation_api::config::Config::variables()
        .into_iter()
        .map(|v| (v.name, v.default))
        .collect();
    assert!(read.len() > 60, "{read:?}");
    assert!(read.contains_key("HOLD_TTL_SECONDS") && read.contains_key("PAYMENT_CB_OPEN_MS"));
    let rows = readme_configuration_rows();
    let listed: BTreeSet<String> = rows.iter().flat_map(|(names, _)| names.clone()).collect();
    let missing: Vec<_> = read.keys().filter(|n| !listed.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "read by the configuration but not in the README's configuration table: {missing:?}"
    );
    // The table's other rows are the telemetry's (read by the tracing and OpenTelemetry setup,
    // not by the configuration): `RUST_LOG` and `OTEL_*`. Anything else is a stale row.
    let stale: Vec<_> = listed
        .iter()
        .filter(|n| !read.contains_key(*n) && *n != "RUST_LOG" && !n.starts_with("OTEL_"))
        .collect();
    assert!(
        stale.is_empty(),
        "in the README's configuration table but read by nothing: {stale:?}"
    );
    // And the defaults agree, where clap has one (the others depend on the profile): one per
    // name in a row, or one for all of them (`INVENTORY_…` / `PAYMENT_…`).
    let mut compared = 0;
    for (names, defaults) in &rows {
        for (i, name) in names.iter().enumerate() {
            let Some(Some(default)) = read.get(name) else {
                continue;
            };
            let documented = match defaults.len() {
                1 => &defaults[0],
                n if n == names.len() => &defaults[i],
                _ => panic!("{name}: the README's default cell {defaults:?} does not pair up"),
            };
            assert_eq!(
                documented, default,
                "{name}: README default vs code default"
            );
            compared += 1;
        }
    }
    assert!(compared > 40, "only {compared} defaults compared");
}

#[test]
fn config_check_prints_the_effective_configuration_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let out = command(dir.path())
        .args(["config", "check"])
        .env("APP_PROFILE", "dev")
        .env("JWT_DEV_SECRET", "s3cret-dev-key")
        .env("ADMISSION_MODE", "redis")
        .env("REDIS_URL", "redis://admin:hunter2@redis:6379/0")
        .env("INVENTORY_GRPC_ADDRESS", "reservation-inventory:9090")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    for line in [
        "APP_PROFILE=dev",
        "STORE=dynamodb",
        "DYNAMODB_TABLE_RESERVATIONS=ticket-reservations",
        "DYNAMODB_TABLE_SEATS=ticket-seats",
        "INVENTORY_GRPC_ADDRESS=reservation-inventory:9090",
        "JWT_DEV_SECRET=(set, redacted)",
    ] {
        assert!(stdout.lines().any(|l| l == line), "{line} in {stdout}");
    }
    assert!(
        !stdout.contains("s3cret") && !stdout.contains("hunter2"),
        "{stdout}"
    );
    // Nothing was created: the check does not make the development key `serve` would.
    assert!(!dir.path().join("jwt-dev-secret").exists());
}

#[test]
fn config_check_exits_2_with_one_line_per_problem() {
    let dir = tempfile::tempdir().unwrap();
    let out = command(dir.path())
        .args(["config", "check"])
        .env("APP_PROFILE", "prod")
        .env("JWT_DEV_SECRET", "dev")
        .env("OUTBOX_BATCH_SIZE", "many")
        .env("PAYMENT_TIMEOUT_MS", "0")
        .env("REDIS_URL", "http://redis:6379")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    for needle in [
        "OUTBOX_BATCH_SIZE=\"many\"",
        "development JWT key",
        "needs JWT_ISSUER_URI",
        "INVENTORY_GRPC_ADDRESS and PAYMENT_GRPC_ADDRESS",
        "PAYMENT_TIMEOUT_MS must be 1-60000",
        "REDIS_URL=",
    ] {
        assert_eq!(
            lines.iter().filter(|l| l.contains(needle)).count(),
            1,
            "{needle} on exactly one line of {stderr}"
        );
    }
    assert_eq!(lines.len(), 6, "{stderr}");
    // `serve` refuses the same environment the same way, before it listens.
    let serve = command(dir.path())
        .args(["serve"])
        .env("APP_PROFILE", "prod")
        .env("JWT_DEV_SECRET", "dev")
        .env("OUTBOX_BATCH_SIZE", "many")
        .env("PAYMENT_TIMEOUT_MS", "0")
        .env("REDIS_URL", "http://redis:6379")
        .output()
        .unwrap();
    assert_eq!(serve.status.code(), Some(2));
    assert_eq!(String::from_utf8(serve.stderr).unwrap(), stderr);
}

#[test]
fn config_check_reports_every_bad_value_at_once_and_reads_a_blank_variable_as_unset() {
    let dir = tempfile::tempdir().unwrap();
    // Three values clap cannot parse: each is its own line, not only the first.
    let out = command(dir.path())
        .args(["config", "check"])
        .env("HOLD_TTL_SECONDS", "a minute")
        .env("DYNAMODB_AUTO_CREATE", "yes")
        .env("INVENTORY_CB_WINDOW_SECONDS", "-1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    for needle in [
        "HOLD_TTL_SECONDS=\"a minute\"",
        "DYNAMODB_AUTO_CREATE=\"yes\"",
        "INVENTORY_CB_WINDOW_SECONDS=\"-1\"",
    ] {
        assert_eq!(
            stderr.lines().filter(|l| l.contains(needle)).count(),
            1,
            "{needle} on one line of {stderr}"
        );
    }
    assert_eq!(stderr.lines().count(), 3, "{stderr}");
    // A blank variable (a compose file's `${X:-}`) is unset; blanks around a value are ignored.
    let out = command(dir.path())
        .args(["config", "check"])
        .env("HOLD_TTL_SECONDS", "")
        .env("JWT_ISSUER_URI", " ")
        .env("SERVER_PORT", " 8081 ")
        .env("STORE", " DynamoDB")
        .env("INVENTORY_TIMEOUT_MS", "400")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "HOLD_TTL_SECONDS=60",
        "JWT_ISSUER_URI=(unset)",
        "SERVER_PORT=8081",
        "STORE=dynamodb",
        "INVENTORY_TIMEOUT_MS=400",
        "INVENTORY_CB_SLOW_CALL_MS=320",
        "PAYMENT_TIMEOUT_MS=250",
    ] {
        assert!(stdout.lines().any(|l| l == line), "{line} in {stdout}");
    }
}

#[test]
fn probe_checks_http_and_grpc_health() {
    let dir = tempfile::tempdir().unwrap();
    let (_app, port, _lines) = serve(dir.path());
    let probe = |url: String| {
        command(dir.path())
            .args(["probe", &url])
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(
        probe(format!("http://127.0.0.1:{port}/actuator/health/liveness")),
        Some(0)
    );
    assert_eq!(probe(format!("http://127.0.0.1:{port}/nope")), Some(1));
    // A standalone payment simulator answers grpc.health.v1.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    assert_eq!(
        probe(format!("grpc://{addr}")),
        Some(1),
        "nothing listens yet"
    );
    let _payment = Running(
        command(dir.path())
            .args(["payment", "--listen", &addr.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let until = Instant::now() + Duration::from_secs(10);
    while probe(format!("grpc://{addr}")) != Some(0) {
        assert!(
            Instant::now() < until,
            "the payment simulator never became healthy"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = command(dir.path())
        .args([
            "probe",
            &format!("grpc://{addr}"),
            "--service",
            "payment.v1.PaymentService",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
}
