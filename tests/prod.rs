//! The `prod` profile boots for real: the binary with an OIDC issuer on loopback, DynamoDB (moto,
//! tables made by `reservation-api tables create`), and remote inventory and payment processes
//! (`reservation-api inventory|payment --listen`), and serves the whole flow with RS256 and ES256
//! tokens. Needs moto (`./run_local.sh test`); uses Redis admission when REDIS_TEST_URL is set.

#[allow(dead_code)]
#[path = "api/issuer.rs"]
mod issuer;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use reservation_api::store::dynamo::TableNames;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_reservation-api");

/// A child process that is killed and reaped when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn command(env: &[(String, String)]) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// Start `args` and wait for the JSON log line `message`; its `addr` field's port.
fn start(
    env: &[(String, String)],
    args: &[&str],
    message: &str,
) -> (Running, u16, Receiver<String>) {
    let child = command(env)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the binary starts");
    let mut child = Running(child);
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.0.stdout.take().unwrap();
    // Drained for the child's whole life, so that it never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let line = rx
            .recv_timeout(until.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("{args:?} never logged {message:?}"));
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if v["message"] == message {
            let port = v["addr"].as_str().unwrap().rsplit(':').next().unwrap();
            return (child, port.parse().unwrap(), rx);
        }
    }
}

fn kv(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_owned(), v.into())
}

async fn admit(redis: Option<&str>, event: &str, user: &str) -> Option<String> {
    let url = redis?;
    let token = format!("rt_{}", uuid::Uuid::new_v4().simple());
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let value =
        json!({"event_id": event, "user_id": user, "waiting_token": "w", "granted_at": "t"});
    redis::cmd("SET")
        .arg(format!("queue:reservation:{token}"))
        .arg(value.to_string())
        .arg("EX")
        .arg(30)
        .exec_async(&mut conn)
        .await
        .unwrap();
    Some(token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs moto: run ./run_local.sh test"]
async fn prod_boots_with_an_issuer_dynamodb_and_remote_peers_and_serves_the_flow() {
    let dynamo = std::env::var("DYNAMODB_ENDPOINT")
        .expect("DYNAMODB_ENDPOINT is unset: this test needs moto (run ./run_local.sh test)");
    let redis = std::env::var("REDIS_TEST_URL").ok();
    let issuer = issuer::Issuer::start().await;
    let data = tempfile::tempdir().unwrap();
    let tables = TableNames::prefixed(&format!("p{}-", uuid::Uuid::new_v4().simple()));
    let mut env = vec![
        kv("DYNAMODB_ENDPOINT", &dynamo),
        kv("EVENTBRIDGE_ENDPOINT", &dynamo),
        kv("AWS_ACCESS_KEY_ID", "testing"),
        kv("AWS_SECRET_ACCESS_KEY", "testing"),
        kv("AWS_REGION", "us-east-1"),
        kv("AWS_EC2_METADATA_DISABLED", "true"),
        kv("DYNAMODB_TABLE_RESERVATIONS", &tables.reservations),
        kv("DYNAMODB_TABLE_ORDERS", &tables.orders),
        kv("DYNAMODB_TABLE_IDEMPOTENCY", &tables.idempotency),
        kv("DYNAMODB_TABLE_OUTBOX", &tables.outbox),
        kv("DATA_DIR", data.path().to_str().unwrap()),
    ];
    if let Ok(bus) = std::env::var("EVENTS_TEST_BUS") {
        env.push(kv("EVENTBRIDGE_BUS_NAME", bus));
    }
    let out = command(&env).args(["tables", "create"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let listen = ["--listen", "127.0.0.1:0"];
    let (_inventory, inv_port, _) = start(
        &env,
        &["inventory", listen[0], listen[1]],
        "gRPC server listening",
    );
    let (_payment, pay_port, _) = start(
        &env,
        &["payment", listen[0], listen[1]],
        "gRPC server listening",
    );
    env.extend([
        kv("APP_PROFILE", "prod"),
        kv("SERVER_HOST", "127.0.0.1"),
        kv("SERVER_PORT", "0"),
        kv("STORE", "dynamodb"),
        kv("JWT_ISSUER_URI", &issuer.url),
        kv("JWT_AUDIENCE", issuer::AUDIENCE),
        kv("INVENTORY_GRPC_ADDRESS", format!("127.0.0.1:{inv_port}")),
        kv("PAYMENT_GRPC_ADDRESS", format!("127.0.0.1:{pay_port}")),
        // About booting prod, not deadlines: a debug build on a loaded machine needs longer.
        kv("INVENTORY_TIMEOUT_MS", "5000"),
        kv("PAYMENT_TIMEOUT_MS", "5000"),
    ]);
    match &redis {
        Some(url) => env.push(kv("REDIS_URL", url)),
        None => env.push(kv("ADMISSION_MODE", "off")),
    }
    let (_app, port, _logs) = start(&env, &["serve"], "reservation-api listening");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();

    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let r = http
            .get(format!("{base}/actuator/health/readiness"))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["components"]["jwks"]["status"], "UP");
            break;
        }
        assert!(Instant::now() < until, "prod never became ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let info: Value = http
        .get(format!("{base}/actuator/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (info["profile"].as_str(), info["store"].as_str()),
        (Some("prod"), Some("dynamodb"))
    );

    for (key, user, finish) in [
        (&issuer.rsa, "fan-rs256", "confirm"),
        (&issuer.ec, "fan-es256", "cancel"),
    ] {
        let token = issuer.token(key, user);
        let mut body = json!({"event_id": "evt_2025_1001", "qty": 2});
        if let Some(t) = admit(redis.as_deref(), "evt_2025_1001", user).await {
            body["reservation_token"] = json!(t);
        }
        let r = http
            .post(format!("{base}/v1/reservations"))
            .bearer_auth(&token)
            .header("Idempotency-Key", format!("{user}-hold"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{user}: {}", r.text().await.unwrap());
        let held: Value = r.json().await.unwrap();
        let id = held["reservation_id"].as_str().unwrap();
        let r = http
            .get(format!("{base}/v1/reservations/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{user}");
        let mut req = http
            .post(format!("{base}/v1/reservations/{id}/{finish}"))
            .bearer_auth(&token)
            .header("Idempotency-Key", format!("{user}-{finish}"));
        if finish == "confirm" {
            req = req.json(&json!({"payment_intent_id": "pay_ok"}));
        }
        let r = req.send().await.unwrap();
        assert_eq!(
            r.status(),
            200,
            "{user} {finish}: {}",
            r.text().await.unwrap()
        );
        let after: Value = http
            .get(format!("{base}/v1/reservations/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let expected = if finish == "confirm" {
            "CONFIRMED"
        } else {
            "CANCELLED"
        };
        assert_eq!(after["status"], expected, "{after}");
    }
    // prod accepts only the issuer's tokens: an HS256 development-key token is refused.
    let dev = reservation_api::auth::jwt::mint(b"any-dev-key", "fan", 3600);
    let r = http
        .get(format!("{base}/v1/reservations/rsv_x"))
        .bearer_auth(dev)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
