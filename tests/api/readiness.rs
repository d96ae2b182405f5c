//! Readiness includes the peers: a replica that cannot reach its inventory takes no traffic; nor
//! does one whose background tasks died.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reservation_api::domain::OutboxEvent;
use reservation_api::outbox::{EntryResults, EventSink, PublishError};

use reservation_api::grpc::inventory_server::InventoryGrpc;
use reservation_api::grpc::local;
use reservation_api::inventory::catalog::Catalog;
use serde_json::Value;
use tokio::net::TcpListener;

use crate::helpers::{over_grpc, spawn_app_with, SMALL_EVENT};
use crate::peers::serve_on;

async fn readiness(app: &crate::helpers::TestApp) -> (u16, Value) {
    let r = app
        .client
        .get(app.url("/actuator/health/readiness"))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Poll readiness until `want` (the status code), for at most 10 s.
async fn until_readiness(app: &crate::helpers::TestApp, want: u16) -> Value {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, body) = readiness(app).await;
        if code == want {
            return body;
        }
        assert!(Instant::now() < until, "readiness stayed {code}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn inventory_routes() -> tonic::service::Routes {
    local::inventory_routes(InventoryGrpc::from_catalog(Catalog::bundled()))
}

#[tokio::test]
async fn readiness_turns_down_while_the_inventory_is_unreachable_and_up_when_it_returns() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let inventory = serve_on(listener, inventory_routes());
    let app = spawn_app_with(|o| o.config.inventory_grpc_address = Some(addr.to_string())).await;

    let (code, body) = readiness(&app).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "UP");
    assert_eq!(body["components"]["inventory"]["status"], "UP", "{body}");
    assert_eq!(body["components"]["payment"]["status"], "UP", "{body}");

    // The inventory goes away: readiness turns DOWN, naming it (the payment stays UP).
    drop(inventory);
    let body = until_readiness(&app, 503).await;
    assert_eq!(body["status"], "DOWN");
    assert_eq!(body["components"]["inventory"]["status"], "DOWN", "{body}");
    assert!(body["components"]["inventory"]["details"]["error"].is_string());
    assert_eq!(body["components"]["payment"]["status"], "UP", "{body}");
    // Liveness does not depend on peers: the pod is not restarted for a peer's outage.
    let live = app
        .client
        .get(app.url("/actuator/health/liveness"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);

    // It comes back on the same address: readiness turns UP again.
    let listener = {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            match TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(_) if Instant::now() < until => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("rebind {addr}: {e}"),
            }
        }
    };
    let _inventory = serve_on(listener, inventory_routes());
    let body = until_readiness(&app, 200).await;
    assert_eq!(body["components"]["inventory"]["status"], "UP", "{body}");
    app.stop().await;
}

#[tokio::test]
async fn the_bundled_servers_answer_grpc_health_for_their_service() {
    use reservation_api::grpc::health::PeerHealth;
    let app = spawn_app_with(over_grpc).await;
    let settings = reservation_api::config::GrpcClientSettings::default();
    for (endpoint, service) in [
        (&app.inventory_endpoint, "reservation.v1.InventoryService"),
        (&app.payment_endpoint, "payment.v1.PaymentService"),
        (&app.inventory_endpoint, ""),
    ] {
        let h = PeerHealth::new("peer", service, endpoint, &settings).unwrap();
        assert_eq!(h.check().await, Ok(()), "{endpoint} {service:?}");
    }
    // A service the server does not have is not SERVING.
    let h = PeerHealth::new(
        "peer",
        "payment.v1.PaymentService",
        &app.inventory_endpoint,
        &settings,
    )
    .unwrap();
    assert!(h.check().await.is_err());
    app.stop().await;
}

/// An event sink with a bug: the relay task panics on the first event it publishes.
struct PanickingSink;

#[async_trait]
impl EventSink for PanickingSink {
    async fn publish(&self, _: &[OutboxEvent]) -> Result<EntryResults, PublishError> {
        panic!("the sink fell over")
    }
}

#[tokio::test]
async fn a_background_task_that_panics_turns_readiness_down_naming_it_while_liveness_stays_up() {
    let app = spawn_app_with(|o| {
        o.customize = Some(Box::new(|d| d.sink = Arc::new(PanickingSink)));
    })
    .await;
    let (code, body) = readiness(&app).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body["components"]["backgroundTasks"]["status"], "UP",
        "{body}"
    );

    // A hold writes its event: the relay publishes it, and panics.
    app.hold("u1", SMALL_EVENT, 1).await;
    let body = until_readiness(&app, 503).await;
    let tasks = &body["components"]["backgroundTasks"];
    assert_eq!(tasks["status"], "DOWN", "{body}");
    let reason = tasks["details"]["outbox_relay"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(reason, "panicked: the sink fell over", "{body}");
    // Only the relay died; the replica is not shutting down.
    assert_eq!(
        tasks["details"].as_object().map(|d| d.len()),
        Some(1),
        "{body}"
    );
    assert_eq!(
        body["components"]["readinessState"]["status"], "UP",
        "{body}"
    );
    // The overall health says so too; liveness does not: the process itself is fine.
    let health = app
        .client
        .get(app.url("/actuator/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 503);
    let live = app
        .client
        .get(app.url("/actuator/health/liveness"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    app.stop().await;
}
