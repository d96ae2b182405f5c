//! Connection hygiene: idle and slow connections are closed, the connection cap leaves health
//! answerable, no request outlives its deadline, and shutdown lets probes see it coming.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;
use crate::peers::{self, Mode, ScriptedInventory};

async fn connect(app: &TestApp) -> TcpStream {
    let addr = app.address.trim_start_matches("http://");
    TcpStream::connect(addr).await.unwrap()
}

/// Read until the server closes the connection (EOF or reset); how long it took, at most `limit`.
async fn closed_within(conn: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((started + limit).into(), conn.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let app = spawn_app_with(|o| {
        o.config.http.idle_timeout = std::time::Duration::from_millis(500);
        o.config.http.header_read_timeout = std::time::Duration::from_millis(30_000);
    })
    .await;
    // Never a byte.
    let mut silent = connect(&app).await;
    let took = closed_within(&mut silent, Duration::from_secs(5))
        .await
        .expect("a silent connection is closed");
    assert!(
        took >= Duration::from_millis(400),
        "closed too early: {took:?}"
    );
    // Kept alive after one request, then idle.
    let mut kept = connect(&app).await;
    kept.write_all(b"GET /actuator/health/liveness HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    kept.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let took = closed_within(&mut kept, Duration::from_secs(5))
        .await
        .expect("an idle kept-alive connection is closed");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[tokio::test]
async fn a_slowloris_connection_is_closed_after_the_header_timeout() {
    let app = spawn_app_with(|o| {
        o.config.http.header_read_timeout = std::time::Duration::from_millis(1000);
        o.config.http.idle_timeout = std::time::Duration::from_millis(30_000);
    })
    .await;
    let mut conn = connect(&app).await;
    conn.write_all(b"GET /actuator/health/liveness HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    // One header byte every 200 ms: never idle, never a whole head.
    let closed = loop {
        if started.elapsed() > Duration::from_secs(10) {
            break None;
        }
        if conn.write_all(b"X").await.is_err() {
            break Some(started.elapsed());
        }
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(Duration::from_millis(200), conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break Some(started.elapsed()),
            _ => {}
        }
    };
    let took = closed.expect("the slowloris connection was still open after 10 s");
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

#[tokio::test]
async fn with_the_connection_cap_reached_liveness_still_answers_within_a_second() {
    let app = spawn_app_with(|o| o.config.http.max_connections = 4).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect(&app).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fresh = || {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    };
    let started = Instant::now();
    let r = fresh()
        .get(app.url("/actuator/health/liveness"))
        .timeout(Duration::from_secs(1))
        .send()
        .await
        .expect("liveness answers with the cap reached");
    assert_eq!(r.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(1));
    // Past the cap, the API itself asks the client to come back, in the envelope.
    let r = fresh()
        .get(app.url("/v1/reservations/rsv_x"))
        .bearer_auth(token("u1"))
        .timeout(Duration::from_secs(1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers().get("connection").unwrap(), "close");
    assert!(r.headers().contains_key("retry-after"));
    assert_error(r, 503, "UPSTREAM_UNAVAILABLE").await;
    // Once a connection goes, the next one is served in full again.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = fresh()
        .get(app.url("/v1/reservations/rsv_x"))
        .bearer_auth(token("u1"))
        .send()
        .await
        .unwrap();
    assert_error(r, 404, "RESERVATION_NOT_FOUND").await;
}

#[tokio::test]
async fn a_request_that_outlives_its_deadline_is_504_in_the_envelope() {
    let app =
        spawn_app_with(|o| o.config.http.request_timeout = std::time::Duration::from_millis(500))
            .await;
    let mut conn = connect(&app).await;
    // A body announced at 100 bytes of which 10 arrive.
    let head = format!(
        "POST /v1/reservations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nIdempotency-Key: k-slow\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"qty\": 1,",
        token("u1")
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("}}") {
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        assert!(n > 0, "closed without an answer");
        answer.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    assert!(answer.contains(r#""code":"UPSTREAM_TIMEOUT""#), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn on_shutdown_readiness_is_down_for_the_grace_period_while_in_flight_requests_finish() {
    use reservation_api::grpc::health::with_health;
    use reservation_api::grpc::proto::reservation::v1::inventory_service_server::InventoryServiceServer;
    let inventory = ScriptedInventory::new(Mode::Healthy);
    let peer = peers::serve(with_health::<InventoryServiceServer<ScriptedInventory>>(
        tonic::service::Routes::new(InventoryServiceServer::new(inventory.clone())),
    ))
    .await;
    let grace = Duration::from_millis(3000);
    let mut app = spawn_app_with(|o| {
        o.config.inventory_grpc_address = Some(peer.addr.to_string());
        o.config.inventory_client.timeout = Duration::from_secs(10);
        o.config.http.shutdown_grace = grace;
    })
    .await;
    let readiness = |client: reqwest::Client, url: String| async move {
        let r = client.get(url).send().await.expect("readiness answers");
        (
            r.status().as_u16(),
            r.json::<serde_json::Value>().await.unwrap(),
        )
    };
    let url = app.url("/actuator/health/readiness");
    let (code, body) = readiness(app.client.clone(), url.clone()).await;
    assert_eq!(code, 200, "{body}");

    // A create in flight: the inventory takes longer to answer than the grace period lasts.
    inventory.set_mode(Mode::Stalled(grace + Duration::from_millis(1000)));
    let create = {
        let (client, url) = (app.client.clone(), app.url("/v1/reservations"));
        tokio::spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(token("u1"))
                .header("Idempotency-Key", "k-in-flight")
                .json(&create_body(SMALL_EVENT, 1))
                .send()
                .await
                .expect("the in-flight request is answered");
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap(),
            )
        })
    };
    let until = Instant::now() + Duration::from_secs(5);
    while inventory.in_flight() == 0 {
        assert!(
            Instant::now() < until,
            "the create never reached the inventory"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    app.signal_shutdown();
    let signalled = Instant::now();
    // During the grace period the listener still accepts (a new client, a new connection), and
    // readiness answers DOWN because the replica is shutting down.
    let (code, body) = readiness(reqwest::Client::new(), url.clone()).await;
    assert!(
        signalled.elapsed() < grace,
        "answered only after the grace period"
    );
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["status"], "DOWN", "{body}");
    assert_eq!(
        body["components"]["readinessState"]["status"], "DOWN",
        "{body}"
    );

    // The request in flight finishes with its answer, after the listener closed.
    let (code, body) = create.await.unwrap();
    assert_eq!(code, 201, "{body}");
    assert!(body["reservation_id"].is_string(), "{body}");
    assert!(signalled.elapsed() >= grace);
    let handle = app.handle.take().expect("the app's task");
    let served = tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("the app stops once its requests are done");
    assert!(served.unwrap().is_ok());
    assert!(
        TcpStream::connect(url.trim_start_matches("http://").split('/').next().unwrap())
            .await
            .is_err(),
        "the listener is closed"
    );
}

#[tokio::test]
async fn the_request_deadline_also_cuts_a_get_waiting_on_a_stalled_peer() {
    use reservation_api::grpc::health::with_health;
    use reservation_api::grpc::proto::reservation::v1::inventory_service_server::InventoryServiceServer;
    // The inventory answers after 3 s and its client would wait 10 s: only the request's own
    // deadline (the router-wide layer) can answer first.
    let inventory = ScriptedInventory::new(Mode::Stalled(Duration::from_secs(3)));
    let peer = peers::serve(with_health::<InventoryServiceServer<ScriptedInventory>>(
        tonic::service::Routes::new(InventoryServiceServer::new(inventory.clone())),
    ))
    .await;
    let app = spawn_app_with(|o| {
        o.config.inventory_grpc_address = Some(peer.addr.to_string());
        o.config.inventory_client.timeout = Duration::from_secs(10);
        o.config.http.request_timeout = Duration::from_millis(500);
    })
    .await;
    let started = Instant::now();
    let r = app
        .client
        .get(app.url(&format!("/v1/events/{SMALL_EVENT}/seats")))
        .bearer_auth(token("u1"))
        .send()
        .await
        .unwrap();
    assert_error(r, 504, "UPSTREAM_TIMEOUT").await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}
