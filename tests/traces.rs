//! Traces end to end: the binary (`serve`, and `inventory --listen` on its own) exporting OTLP to
//! a receiver the test runs (the collector's `TraceService` as a tonic server). Processes, not
//! `spawn_app()`: what is under test is the binary's own global tracer provider, its batch
//! export, its shutdown, and its stdout.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const BIN: &str = env!("CARGO_BIN_EXE_reservation-api");

// ---------------------------------------------------------------------------------------------
// The OTLP receiver

/// One received span and the `service.name` of the process that sent it.
#[derive(Clone, Debug)]
struct Got {
    service: String,
    span: Span,
}

impl Got {
    fn trace_id(&self) -> String {
        hex::encode(&self.span.trace_id)
    }
    fn span_id(&self) -> String {
        hex::encode(&self.span.span_id)
    }
    fn parent_id(&self) -> String {
        hex::encode(&self.span.parent_span_id)
    }
    fn attr(&self, key: &str) -> Option<String> {
        value(&self.span.attributes, key)
    }
    fn kind(&self) -> SpanKind {
        SpanKind::try_from(self.span.kind).unwrap_or(SpanKind::Unspecified)
    }
    fn is_error(&self) -> bool {
        self.span
            .status
            .as_ref()
            .is_some_and(|s| s.code == StatusCode::Error as i32)
    }
}

fn value(attrs: &[KeyValue], key: &str) -> Option<String> {
    let v = attrs.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    match v.value.as_ref()? {
        Any::StringValue(s) => Some(s.clone()),
        Any::IntValue(i) => Some(i.to_string()),
        Any::BoolValue(b) => Some(b.to_string()),
        Any::DoubleValue(d) => Some(d.to_string()),
        other => Some(format!("{other:?}")),
    }
}

#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Got>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut got = self.0.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| value(&r.attributes, "service.name"))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    got.push(Got {
                        service: service.clone(),
                        span,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// The receiver, on a loopback port, until dropped.
struct Receiver {
    addr: SocketAddr,
    spans: Collector,
    stop: CancellationToken,
}

impl Receiver {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let spans = Collector::default();
        let stop = CancellationToken::new();
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(spans.clone()))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                stop.clone().cancelled_owned(),
            );
        tokio::spawn(server);
        Self { addr, spans, stop }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn of_trace(&self, trace: &str) -> Vec<Got> {
        let got = self.spans.0.lock().unwrap();
        got.iter()
            .filter(|g| g.trace_id() == trace)
            .cloned()
            .collect()
    }

    /// Wait up to 15 s for the spans of `trace` to satisfy `done`; they are returned either way.
    async fn wait(&self, trace: &str, done: impl Fn(&[Got]) -> bool) -> Vec<Got> {
        let until = Instant::now() + Duration::from_secs(15);
        loop {
            let spans = self.of_trace(trace);
            if done(&spans) || Instant::now() > until {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn find<'a>(spans: &'a [Got], what: &str, f: impl Fn(&Got) -> bool) -> &'a Got {
    spans.iter().find(|g| f(g)).unwrap_or_else(|| {
        panic!(
            "no {what} among the trace's spans: {:#?}",
            spans
                .iter()
                .map(|g| (&g.service, &g.span.name, g.kind()))
                .collect::<Vec<_>>()
        )
    })
}

fn http_server(g: &Got) -> bool {
    g.kind() == SpanKind::Server && g.attr("http.route").as_deref() == Some("/v1/reservations")
}

fn rpc(g: &Got, kind: SpanKind, method: &str) -> bool {
    g.kind() == kind
        && g.attr("rpc.system").as_deref() == Some("grpc")
        && g.attr("rpc.service").as_deref() == Some("reservation.v1.InventoryService")
        && g.attr("rpc.method").as_deref() == Some(method)
}

// ---------------------------------------------------------------------------------------------
// The processes

/// A child process that is killed and reaped if a test fails before it stops it.
struct Running {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    /// Wait for a JSON line with `message`; return it.
    fn line(&self, message: &str, seen: &mut Vec<String>) -> Value {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let line = self
                .lines
                .recv_timeout(until.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("no {message:?} line; saw:\n{}", seen.join("\n")));
            seen.push(line.clone());
            let v: Value =
                serde_json::from_str(&line).unwrap_or_else(|_| panic!("not a JSON line: {line}"));
            if v["message"] == message {
                return v;
            }
        }
    }

    /// SIGTERM; the process must exit successfully within `within`. Returns the remaining lines.
    fn stop(mut self, within: Duration) -> Vec<String> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let until = Instant::now() + within;
        loop {
            if let Some(code) = self.child.try_wait().unwrap() {
                assert!(code.success(), "exit status {code:?}");
                break;
            }
            assert!(
                Instant::now() < until,
                "still running {within:?} after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.lines.try_iter().collect()
    }
}

fn command(data_dir: &std::path::Path, envs: &[(&str, String)]) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_DIR", data_dir)
        .env("RUST_LOG", "info")
        // Export finished spans within 100 ms rather than the default 5 s.
        .env("OTEL_BSP_SCHEDULE_DELAY", "100");
    for (k, v) in envs {
        c.env(k, v);
    }
    c
}

fn spawn(mut c: Command, args: &[&str]) -> Running {
    let mut child = c
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the binary starts");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    Running { child, lines: rx }
}

/// `serve` on a free port: the process, its port, and the lines it printed until listening.
fn serve(data_dir: &std::path::Path, envs: &[(&str, String)]) -> (Running, u16, Vec<String>) {
    let mut envs = envs.to_vec();
    envs.push(("SERVER_HOST", "127.0.0.1".into()));
    envs.push(("SERVER_PORT", "0".into()));
    let running = spawn(command(data_dir, &envs), &["serve"]);
    let mut seen = Vec::new();
    let v = running.line("reservation-api listening", &mut seen);
    let port = v["addr"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    (running, port, seen)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn token(data_dir: &std::path::Path) -> String {
    let out = command(data_dir, &[])
        .args(["token", "--sub", "u123"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// One create sent with `traceparent` `00-<trace>-<parent>-01`: status and body.
async fn create(port: u16, token: &str, trace: &str, parent: &str, key: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/reservations"))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .header("traceparent", format!("00-{trace}-{parent}-01"))
        .json(&json!({"event_id": "evt_2025_1001", "qty": 2}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

fn new_trace() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

const PARENT: &str = "00f067aa0ba902b7";

/// Must show 1 and 3: the HTTP server span (a child of the caller's), the use case, the
/// `ReserveSeat` client span and the bundled inventory's server span under it, and the outbox
/// publish of the hold's event, all in the trace of the incoming `traceparent`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_is_one_trace_from_the_http_request_to_the_inventory_and_the_event() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token = token(dir.path());
    let (app, port, _) = serve(
        dir.path(),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())],
    );
    let trace = new_trace();
    let (status, body) = create(port, &token, &trace, PARENT, "k-1").await;
    assert_eq!(status, 201, "{body}");

    let spans = receiver
        .wait(&trace, |s| {
            s.iter().any(http_server)
                && s.iter().any(|g| g.kind() == SpanKind::Producer)
                && s.iter().any(|g| rpc(g, SpanKind::Server, "ReserveSeat"))
        })
        .await;
    let server = find(&spans, "HTTP server span", http_server);
    assert_eq!(server.service, "reservation-api");
    assert_eq!(server.parent_id(), PARENT, "continues the caller's span");
    assert_eq!(server.span.name, "POST /v1/reservations");
    assert_eq!(server.attr("http.request.method").as_deref(), Some("POST"));
    assert_eq!(
        server.attr("http.response.status_code").as_deref(),
        Some("201")
    );
    assert!(!server.is_error());
    let service = find(&spans, "use-case span", |g| {
        g.span.name == "ReservationService.create"
    });
    assert_eq!(service.parent_id(), server.span_id());
    let client = find(&spans, "ReserveSeat client span", |g| {
        rpc(g, SpanKind::Client, "ReserveSeat")
    });
    assert_eq!(client.attr("rpc.grpc.status_code").as_deref(), Some("0"));
    assert_eq!(client.parent_id(), service.span_id());
    let inventory = find(&spans, "ReserveSeat server span", |g| {
        rpc(g, SpanKind::Server, "ReserveSeat")
    });
    assert_eq!(
        inventory.parent_id(),
        client.span_id(),
        "the inventory's span is a child of the client span"
    );

    // Must show 3: the event's publish span is in the trace (under the use case that wrote it),
    // and the event carries the trace id.
    let publish = find(&spans, "outbox publish span", |g| {
        g.kind() == SpanKind::Producer
    });
    assert_eq!(publish.parent_id(), service.span_id());
    assert!(
        publish.attr("messaging.message.id").is_some(),
        "{publish:?}"
    );
    let mut seen = Vec::new();
    let event = app.line("event published", &mut seen);
    assert_eq!(event["detail"]["trace_id"], trace.as_str());
    assert_eq!(event["trace_id"], trace.as_str());
    assert_eq!(event["span_id"], publish.span_id().as_str());
    app.stop(Duration::from_secs(15));
}

/// Must show 1, with the inventory as a process of its own exporting to the same receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_inventory_continues_the_callers_trace() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token = token(dir.path());
    let otlp = ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint());
    let inv_port = free_port();
    let inventory = spawn(
        command(dir.path(), std::slice::from_ref(&otlp)),
        &["inventory", "--listen", &format!("127.0.0.1:{inv_port}")],
    );
    inventory.line("gRPC server listening", &mut Vec::new());
    let (app, port, _) = serve(
        dir.path(),
        &[
            otlp.clone(),
            ("INVENTORY_GRPC_ADDRESS", format!("127.0.0.1:{inv_port}")),
        ],
    );
    let trace = new_trace();
    let (status, body) = create(port, &token, &trace, PARENT, "k-1").await;
    assert_eq!(status, 201, "{body}");
    let spans = receiver
        .wait(&trace, |s| {
            s.iter().any(|g| rpc(g, SpanKind::Server, "ReserveSeat")) && s.iter().any(http_server)
        })
        .await;
    let server = find(&spans, "HTTP server span", http_server);
    assert_eq!(server.parent_id(), PARENT);
    let client = find(&spans, "ReserveSeat client span", |g| {
        rpc(g, SpanKind::Client, "ReserveSeat")
    });
    assert_eq!(client.service, "reservation-api");
    let remote = find(&spans, "ReserveSeat server span", |g| {
        rpc(g, SpanKind::Server, "ReserveSeat")
    });
    assert_eq!(remote.service, "reservation-inventory");
    assert_eq!(remote.parent_id(), client.span_id());
    app.stop(Duration::from_secs(15));
    inventory.stop(Duration::from_secs(15));
}

/// Must show 4: an inventory that never answers: the create is 504, and both its HTTP server span
/// and its gRPC client span are errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_504_from_a_slow_inventory_marks_the_http_and_grpc_spans_as_errors() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token = token(dir.path());
    // Accepts connections and never answers on them.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            held.push(conn);
        }
    });
    let (app, port, _) = serve(
        dir.path(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
            ("INVENTORY_GRPC_ADDRESS", silent_addr.to_string()),
        ],
    );
    let trace = new_trace();
    let (status, body) = create(port, &token, &trace, PARENT, "k-1").await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"]["trace_id"], trace.as_str());
    let spans = receiver
        .wait(&trace, |s| {
            s.iter().any(http_server) && s.iter().any(|g| rpc(g, SpanKind::Client, "ReserveSeat"))
        })
        .await;
    let server = find(&spans, "HTTP server span", http_server);
    assert_eq!(
        server.attr("http.response.status_code").as_deref(),
        Some("504")
    );
    assert!(server.is_error(), "{server:?}");
    let client = find(&spans, "ReserveSeat client span", |g| {
        rpc(g, SpanKind::Client, "ReserveSeat")
    });
    assert!(client.is_error(), "{client:?}");
    assert!(
        client
            .attr("rpc.grpc.status_code")
            .is_some_and(|c| c != "0"),
        "{client:?}"
    );
    app.stop(Duration::from_secs(15));
}

/// The P99 of `n` sequential creates.
async fn p99_of_creates(port: u16, token: &str, n: usize) -> Duration {
    let mut took = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        let (status, body) = create(port, token, &new_trace(), PARENT, &format!("p-{i}")).await;
        took.push(started.elapsed());
        assert_eq!(status, 201, "{body}");
    }
    took.sort();
    took[(n * 99).div_ceil(100) - 1]
}

/// Must show 4: with the collector down, requests succeed as fast as with no exporter at all, and
/// SIGTERM still ends the process promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_adds_no_latency_and_does_not_hold_up_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let token = token(dir.path());
    // 120 holds of 2 seats fit the 290 seats of the event.
    const N: usize = 120;

    let (app, port, _) = serve(dir.path(), &[]);
    let baseline = p99_of_creates(port, &token, N).await;
    app.stop(Duration::from_secs(15));

    // A port nothing listens on: the receiver is stopped.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let (app, port, _) = serve(dir.path(), &[("OTEL_EXPORTER_OTLP_ENDPOINT", dead)]);
    let with_dead_collector = p99_of_creates(port, &token, N).await;
    let started = Instant::now();
    app.stop(Duration::from_secs(10));
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "shutdown took {:?}",
        started.elapsed()
    );
    // Generous: two cores shared with other work; a request that waited on the collector would
    // take its connect timeout or more.
    assert!(
        with_dead_collector <= baseline * 3 + Duration::from_millis(50),
        "P99 {with_dead_collector:?} with the collector down vs {baseline:?} without export"
    );
}

/// Must show 5: every log line of a request names its trace and one of its spans as exported;
/// neither the bearer token nor the Idempotency-Key value appears in any line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_carry_the_ids_of_their_spans_and_no_secrets() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token = token(dir.path());
    let (app, port, mut lines) = serve(
        dir.path(),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())],
    );
    let trace = new_trace();
    let key = format!("secret-key-{}", uuid::Uuid::new_v4().simple());
    let (status, body) = create(port, &token, &trace, PARENT, &key).await;
    assert_eq!(status, 201, "{body}");
    // A replay and a rejected request log too.
    let (status, _) = create(port, &token, &trace, PARENT, &key).await;
    assert_eq!(status, 201);
    app.line("event published", &mut lines);
    let spans = receiver
        .wait(&trace, |s| {
            s.iter().filter(|g| http_server(g)).count() == 2
                && s.iter().any(|g| g.kind() == SpanKind::Producer)
        })
        .await;
    lines.extend(app.stop(Duration::from_secs(15)));

    let ids: HashSet<String> = spans.iter().map(Got::span_id).collect();
    let servers: HashSet<String> = spans
        .iter()
        .filter(|g| http_server(g))
        .map(Got::span_id)
        .collect();
    assert_eq!(servers.len(), 2, "{spans:#?}");
    let mut of_trace = 0;
    for line in &lines {
        assert!(!line.contains(&token), "the bearer token is logged: {line}");
        assert!(
            !line.contains(&key),
            "the Idempotency-Key is logged: {line}"
        );
        let v: Value = serde_json::from_str(line).unwrap();
        if v["trace_id"] != trace.as_str() {
            continue;
        }
        of_trace += 1;
        let span = v["span_id"].as_str().unwrap_or_default();
        assert!(
            ids.contains(span),
            "line's span {span} not exported: {line}"
        );
        if v["target"] == "http" {
            assert!(
                servers.contains(span),
                "access log not in its server span: {line}"
            );
        }
    }
    // Two access lines and the event line at least.
    assert!(
        of_trace >= 3,
        "{of_trace} lines of the trace:\n{}",
        lines.join("\n")
    );
}

/// moto's endpoint (`./run_local.sh test` starts it and passes `--include-ignored`).
fn moto() -> String {
    std::env::var("DYNAMODB_ENDPOINT")
        .or_else(|_| std::env::var("EVENTBRIDGE_ENDPOINT"))
        .expect("no moto endpoint (DYNAMODB_ENDPOINT): run ./run_local.sh test")
}

/// A bus of this test's own with a rule delivering to an SQS queue: the queue's URL.
async fn bus_with_queue(endpoint: &str, bus: &str) -> (aws_sdk_sqs::Client, String) {
    let conf =
        reservation_api::aws::sdk_config(Some(endpoint), "us-east-1", Duration::from_secs(10))
            .await;
    let eb = aws_sdk_eventbridge::Client::new(&conf);
    let sqs = aws_sdk_sqs::Client::new(&conf);
    eb.create_event_bus().name(bus).send().await.expect("bus");
    let queue_url = sqs
        .create_queue()
        .queue_name(bus)
        .send()
        .await
        .expect("queue")
        .queue_url()
        .unwrap()
        .to_owned();
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue arn");
    let arn =
        attrs.attributes().unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn].clone();
    eb.put_rule()
        .name(bus)
        .event_bus_name(bus)
        .event_pattern(r#"{"source":["reservation-api"]}"#)
        .send()
        .await
        .expect("rule");
    eb.put_targets()
        .rule(bus)
        .event_bus_name(bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("target");
    (sqs, queue_url)
}

/// Must show 2 and 3 on DynamoDB and EventBridge: the create's trace has the store's
/// `TransactWriteItems` on the reservations table, and the `PutEvents` publish of its event; the
/// event delivered from the bus carries the trace id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs moto: run ./run_local.sh test"]
async fn on_dynamodb_and_eventbridge_the_trace_has_the_store_writes_and_the_publish() {
    let endpoint = moto();
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token = token(dir.path());
    let tag = format!("tr{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let (sqs, queue_url) = bus_with_queue(&endpoint, &tag).await;
    let table = |t: &str| format!("{tag}-{t}");
    let mut envs = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
        ("STORE", "dynamodb".into()),
        ("DYNAMODB_ENDPOINT", endpoint.clone()),
        ("DYNAMODB_AUTO_CREATE", "true".into()),
        ("DYNAMODB_TABLE_RESERVATIONS", table("reservations")),
        ("DYNAMODB_TABLE_ORDERS", table("orders")),
        ("DYNAMODB_TABLE_IDEMPOTENCY", table("idempotency")),
        ("DYNAMODB_TABLE_OUTBOX", table("outbox")),
        ("DYNAMODB_TABLE_SEATS", table("seats")),
        ("EVENTBRIDGE_ENDPOINT", endpoint.clone()),
        ("EVENTBRIDGE_BUS_NAME", tag.clone()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ];
    for k in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        envs.push((k, std::env::var(k).unwrap_or_else(|_| "testing".into())));
    }
    let (app, port, _) = serve(dir.path(), &envs);
    let trace = new_trace();
    let (status, body) = create(port, &token, &trace, PARENT, "k-1").await;
    assert_eq!(status, 201, "{body}");

    let is_write = |g: &Got| {
        g.kind() == SpanKind::Client
            && g.attr("db.system").as_deref() == Some("dynamodb")
            && g.attr("db.operation.name").as_deref() == Some("TransactWriteItems")
            && g.attr("aws.dynamodb.table_names")
                .is_some_and(|t| t.split(',').any(|t| t == table("reservations")))
    };
    let spans = receiver
        .wait(&trace, |s| {
            s.iter().any(is_write) && s.iter().any(|g| g.kind() == SpanKind::Producer)
        })
        .await;
    let service = find(&spans, "use-case span", |g| {
        g.span.name == "ReservationService.create"
    });
    let write = find(&spans, "TransactWriteItems span", is_write);
    assert_eq!(write.parent_id(), service.span_id());
    let publish = find(&spans, "publish span", |g| g.kind() == SpanKind::Producer);
    assert_eq!(publish.span.name, format!("publish {tag}"));
    assert_eq!(
        publish.attr("messaging.system").as_deref(),
        Some("aws_eventbridge")
    );
    assert!(!publish.is_error(), "{publish:?}");

    // The event as delivered from the bus.
    let until = Instant::now() + Duration::from_secs(15);
    let delivered = loop {
        let out = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("receive");
        let found = out.messages().iter().find_map(|m| {
            let v: Value = serde_json::from_str(m.body()?).ok()?;
            (v["detail"]["reservation_id"] == body["reservation_id"]).then_some(v)
        });
        if let Some(v) = found {
            break v;
        }
        assert!(Instant::now() < until, "the event was not delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(delivered["detail"]["trace_id"], trace.as_str());
    app.stop(Duration::from_secs(15));
}

/// `OTEL_TRACES_SAMPLER=parentbased_traceidratio` with a ratio of 0: a caller's sampled trace is
/// still exported (the parent decides), a trace the service starts itself is not. And
/// `OTEL_SERVICE_NAME` names the service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sampler_is_parent_based_with_a_ratio_for_new_traces_and_the_name_is_configurable() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token = token(dir.path());
    let (app, port, _) = serve(
        dir.path(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio".into()),
            ("OTEL_TRACES_SAMPLER_ARG", "0".into()),
            ("OTEL_SERVICE_NAME", "reservation-api-canary".into()),
        ],
    );
    // A new trace, started by the service: its id comes back in the response's traceparent.
    let resp = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/reservations"))
        .bearer_auth(&token)
        .header("Idempotency-Key", "own")
        .json(&json!({"event_id": "evt_2025_1001", "qty": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let own = resp.headers()["traceparent"].to_str().unwrap().to_owned();
    let own_trace = own.split('-').nth(1).unwrap().to_owned();
    assert!(own.ends_with("-00"), "not sampled: {own}");

    let trace = new_trace();
    let (status, body) = create(port, &token, &trace, PARENT, "callers").await;
    assert_eq!(status, 201, "{body}");
    let spans = receiver
        .wait(&trace, |s| s.iter().any(http_server) && s.len() >= 4)
        .await;
    let server = find(&spans, "HTTP server span", http_server);
    assert_eq!(server.service, "reservation-api-canary");
    // Spans are exported in order of ending, in batches every 100 ms: by now the unsampled
    // request's would have arrived.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        receiver.of_trace(&own_trace).is_empty(),
        "a trace the ratio 0 should not sample was exported"
    );
    app.stop(Duration::from_secs(15));
}
