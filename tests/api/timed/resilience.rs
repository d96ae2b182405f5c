//! Deadline, retry, circuit breaker and bulkhead, against real gRPC peers started by the tests.
//! Timing is the claim here, so it is asserted, with margins for a busy two-core machine.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use reservation_api::grpc::inventory_server::InventoryGrpc;
use reservation_api::grpc::local;
use reservation_api::inventory::catalog::Catalog;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::helpers::*;
use crate::peers::{dead_address, Mode, ScriptedInventory};

async fn timed_create(app: &TestApp, user: &str) -> (reqwest::Response, Duration) {
    let started = Instant::now();
    let r = app
        .create(
            user,
            &uuid::Uuid::new_v4().to_string(),
            &create_body(SMALL_EVENT, 1),
        )
        .await;
    (r, started.elapsed())
}

#[tokio::test]
async fn an_inventory_that_answers_after_the_deadline_gives_504_within_the_deadline() {
    let inventory = ScriptedInventory::new(Mode::Stalled(Duration::from_secs(2)));
    let peer = inventory.serve().await;
    let app = spawn_app_with(|o| o.config.inventory_grpc_address = Some(peer.endpoint())).await;
    // The default deadline, 250 ms.
    assert_eq!(
        reservation_api::config::Config::default()
            .inventory_client
            .timeout,
        Duration::from_millis(250)
    );
    for user in ["u1", "u2"] {
        let (r, took) = timed_create(&app, user).await;
        assert_error(r, 504, "UPSTREAM_TIMEOUT").await;
        assert!(took < Duration::from_millis(400), "answered in {took:?}");
        assert!(
            took >= Duration::from_millis(240),
            "not before the deadline: {took:?}"
        );
    }
    assert!(
        inventory.calls() >= 2,
        "the calls reached the slow inventory"
    );
}

#[tokio::test]
async fn a_dead_inventory_gives_503_with_retry_after() {
    let addr = dead_address().await;
    let app = spawn_app_with(|o| o.config.inventory_grpc_address = Some(addr.to_string())).await;
    let (r, took) = timed_create(&app, "u1").await;
    assert!(r.headers().get("retry-after").is_some());
    assert_error(r, 503, "UPSTREAM_UNAVAILABLE").await;
    assert!(
        took < Duration::from_millis(400),
        "within the deadline: {took:?}"
    );
}

#[tokio::test]
async fn a_transient_unavailable_is_retried_within_the_deadline() {
    let inventory = ScriptedInventory::new(Mode::FailFirst(2));
    let peer = inventory.serve().await;
    let app = spawn_app_with(|o| o.config.inventory_grpc_address = Some(peer.endpoint())).await;
    let (r, took) = timed_create(&app, "u1").await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    assert_eq!(
        inventory.calls(),
        3,
        "two failed attempts, then the one that held"
    );
    assert!(took < Duration::from_millis(250), "{took:?}");
}

#[tokio::test]
async fn without_retries_a_transient_unavailable_is_a_503() {
    let inventory = ScriptedInventory::new(Mode::FailFirst(1));
    let peer = inventory.serve().await;
    let app = spawn_app_with(|o| {
        o.config.inventory_grpc_address = Some(peer.endpoint());
        o.config.inventory_client.retry_max_attempts = 1;
    })
    .await;
    let (r, _) = timed_create(&app, "u1").await;
    assert_error(r, 503, "UPSTREAM_UNAVAILABLE").await;
    assert_eq!(inventory.reserves.load(Ordering::SeqCst), 1, "retried");
}

/// Serve the bundled inventory on `listener`, counting the connections it accepts.
fn serve_counting(listener: TcpListener, accepted: Arc<AtomicUsize>) -> CancellationToken {
    let stop = CancellationToken::new();
    let incoming = futures::stream::unfold((listener, accepted), |(l, n)| async move {
        let conn = l.accept().await.map(|(s, _)| {
            n.fetch_add(1, Ordering::SeqCst);
            s
        });
        Some((conn, (l, n)))
    })
    .boxed();
    let routes = local::inventory_routes(InventoryGrpc::from_catalog(Catalog::bundled()));
    let shutdown = stop.clone().cancelled_owned();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
    });
    stop
}

async fn rebind(addr: SocketAddr) -> TcpListener {
    for _ in 0..50 {
        if let Ok(l) = TcpListener::bind(addr).await {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("could not bind {addr} again");
}

#[tokio::test]
async fn the_breaker_opens_fails_fast_without_connecting_and_closes_after_probes() {
    let addr = dead_address().await;
    let app = spawn_app_with(|o| {
        o.config.inventory_grpc_address = Some(addr.to_string());
        let c = &mut o.config.inventory_client;
        c.cb_minimum_calls = 4;
        c.cb_failure_rate_percent = 50;
        c.cb_open = std::time::Duration::from_millis(1500);
        c.cb_half_open_calls = 2;
    })
    .await;

    // The inventory is down: the first calls try (and retry), fail, and trip the breaker.
    for i in 0..4 {
        let (r, _) = timed_create(&app, &format!("down{i}")).await;
        assert_error(r, 503, "UPSTREAM_UNAVAILABLE").await;
    }
    let opened = Instant::now();

    // The inventory comes back, but the circuit is open: calls fail fast and nothing connects.
    let accepted = Arc::new(AtomicUsize::new(0));
    let _server = StopOnDrop(serve_counting(rebind(addr).await, accepted.clone()));
    let mut fastest = Duration::MAX;
    for i in 0..10 {
        let (r, took) = timed_create(&app, &format!("open{i}")).await;
        let retry_after: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (1..=2).contains(&retry_after),
            "about the rest of the open period: {retry_after}"
        );
        assert_error(r, 503, "UPSTREAM_UNAVAILABLE").await;
        assert!(
            took < Duration::from_millis(100),
            "no retries, no backoff: {took:?}"
        );
        fastest = fastest.min(took);
    }
    assert!(
        opened.elapsed() < Duration::from_millis(1500),
        "still in the open period"
    );
    assert!(
        fastest < Duration::from_millis(5),
        "an open circuit answers at once: {fastest:?}"
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "no connection was attempted while open"
    );

    // After the open period, probes go through, succeed, and close the breaker.
    tokio::time::sleep(Duration::from_millis(1600).saturating_sub(opened.elapsed())).await;
    for i in 0..2 {
        let (r, _) = timed_create(&app, &format!("probe{i}")).await;
        assert_eq!(r.status(), 201, "probe {i}");
    }
    assert!(accepted.load(Ordering::SeqCst) >= 1);
    // Closed: more calls at once than half-open would let through all succeed.
    let creates = (0..6).map(|i| {
        let app = &app;
        async move {
            timed_create(app, &format!("closed{i}"))
                .await
                .0
                .status()
                .as_u16()
        }
    });
    assert_eq!(futures::future::join_all(creates).await, vec![201; 6]);
}

#[tokio::test]
async fn a_failing_inventory_trips_the_breaker_and_no_call_reaches_it_while_open() {
    let inventory = ScriptedInventory::new(Mode::Failing);
    let peer = inventory.serve().await;
    let app = spawn_app_with(|o| {
        o.config.inventory_grpc_address = Some(peer.endpoint());
        let c = &mut o.config.inventory_client;
        c.cb_minimum_calls = 4;
        c.cb_open = std::time::Duration::from_millis(700);
        c.cb_half_open_calls = 1;
    })
    .await;
    for i in 0..4 {
        let (r, _) = timed_create(&app, &format!("f{i}")).await;
        assert_error(r, 503, "UPSTREAM_UNAVAILABLE").await;
    }
    let opened = Instant::now();
    let reached = inventory.calls();
    assert_eq!(reached, 4 * 3, "each call was tried three times");
    for i in 0..5 {
        let (r, took) = timed_create(&app, &format!("o{i}")).await;
        assert_error(r, 503, "UPSTREAM_UNAVAILABLE").await;
        assert!(took < Duration::from_millis(100), "{took:?}");
    }
    assert!(opened.elapsed() < Duration::from_millis(700));
    assert_eq!(
        inventory.calls(),
        reached,
        "no call reached the inventory while open"
    );

    inventory.set_mode(Mode::Healthy);
    tokio::time::sleep(Duration::from_millis(800).saturating_sub(opened.elapsed())).await;
    let (r, _) = timed_create(&app, "probe").await;
    assert_eq!(r.status(), 201);
    let (r, _) = timed_create(&app, "after").await;
    assert_eq!(r.status(), 201);
}

/// Stops the server when dropped.
struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

#[tokio::test]
async fn a_full_bulkhead_refuses_one_more_call_at_once_while_the_others_wait() {
    const CAP: usize = 4;
    let inventory = ScriptedInventory::new(Mode::Stalled(Duration::from_secs(3)));
    let peer = inventory.serve().await;
    let app = Arc::new(
        spawn_app_with(|o| {
            o.config.inventory_grpc_address = Some(peer.endpoint());
            o.config.inventory_client.max_concurrent = CAP;
            o.config.inventory_client.timeout = std::time::Duration::from_millis(1500);
        })
        .await,
    );

    let waiting: Vec<_> = (0..CAP)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move { timed_create(&app, &format!("w{i}")).await })
        })
        .collect();
    let started = Instant::now();
    while inventory.in_flight() < CAP {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the {CAP} calls reach the stalled inventory"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let (r, took) = timed_create(&app, "one-more").await;
    assert!(r.headers().get("retry-after").is_some());
    assert_error(r, 503, "UPSTREAM_UNAVAILABLE").await;
    assert!(
        took < Duration::from_millis(100),
        "refused at once: {took:?}"
    );
    assert!(
        waiting.iter().all(|h| !h.is_finished()),
        "the {CAP} calls are still waiting"
    );
    assert_eq!(
        inventory.calls(),
        CAP,
        "the refused call never reached the inventory"
    );

    for h in waiting {
        let (r, took) = h.await.unwrap();
        assert_error(r, 504, "UPSTREAM_TIMEOUT").await;
        assert!(
            took >= Duration::from_millis(1400),
            "they waited for their deadline: {took:?}"
        );
    }
}
