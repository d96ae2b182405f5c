//! `GET /v1/events/{event_id}/seats`: the seat map from the bundled inventory over gRPC, in both
//! its engines, with `ETag` and conditional GETs.

use crate::helpers::*;
use reservation_api::config::StoreKind;
use reservation_api::store::dynamo::TableNames;
use serde_json::{json, Value};

impl TestApp {
    pub async fn seat_map(&self, event: &str, etag: Option<&str>) -> reqwest::Response {
        let mut req = self
            .client
            .get(self.url(&format!("/v1/events/{event}/seats")))
            .bearer_auth(token("fan"));
        if let Some(tag) = etag {
            req = req.header("If-None-Match", tag);
        }
        req.send().await.expect("request")
    }

    /// The map (asserting 200, `Cache-Control` and an `ETag`) and its `ETag`.
    pub async fn seat_map_ok(&self, event: &str) -> (Value, String) {
        let r = self.seat_map(event, None).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["cache-control"], "max-age=1");
        let etag = r.headers()["etag"].to_str().unwrap().to_owned();
        (r.json().await.unwrap(), etag)
    }

    /// 304 for a current `ETag`, 200 with another one once the map changed.
    pub async fn assert_unchanged(&self, event: &str, etag: &str) {
        let r = self.seat_map(event, Some(etag)).await;
        assert_eq!(r.status(), 304, "the map has not changed");
        assert_eq!(r.headers()["etag"], etag);
        assert!(r.bytes().await.unwrap().is_empty());
    }
}

fn status_of(map: &Value, seat: &str) -> String {
    map["sections"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["seats"].as_array().unwrap())
        .find(|s| s["id"] == seat)
        .unwrap_or_else(|| panic!("no seat {seat}"))["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn hold_seat(app: &TestApp, seat: &str) -> String {
    let r = app
        .create(
            "fan",
            &uuid::Uuid::new_v4().to_string(),
            &json!({"event_id": SMALL_EVENT, "qty": 1, "seat_ids": [seat]}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    body["reservation_id"].as_str().unwrap().to_owned()
}

async fn the_map_follows_holds_sales_releases_and_expiry(app: TestApp) {
    let (map, etag) = app.seat_map_ok(SMALL_EVENT).await;
    assert_eq!(map["event_id"], SMALL_EVENT);
    assert_eq!(map["currency"], "KRW");
    let sections = map["sections"].as_array().unwrap();
    assert!(sections
        .iter()
        .all(|s| s["id"].is_string() && s["name"].is_string() && s["price"].is_i64()));
    let seats: usize = sections
        .iter()
        .map(|s| s["seats"].as_array().unwrap().len())
        .sum();
    assert_eq!(seats, 100);
    let first = &sections[0]["seats"][0];
    let seat = first["id"].as_str().unwrap().to_owned();
    assert!(first["row"].is_string() && first["number"].is_string());
    assert_eq!(status_of(&map, &seat), "AVAILABLE");
    app.assert_unchanged(SMALL_EVENT, &etag).await;

    // Held: the map changes, and never says by whom.
    let rsv = hold_seat(&app, &seat).await;
    let r = app.seat_map(SMALL_EVENT, Some(&etag)).await;
    assert_eq!(r.status(), 200, "a hold changes the map");
    let (map, held_tag) = app.seat_map_ok(SMALL_EVENT).await;
    assert_ne!(held_tag, etag);
    assert_eq!(status_of(&map, &seat), "HELD");
    assert!(!map.to_string().contains("fan") && !map.to_string().contains(&rsv));
    app.assert_unchanged(SMALL_EVENT, &held_tag).await;

    // Sold.
    let r = app
        .confirm("fan", &rsv, &uuid::Uuid::new_v4().to_string(), "pay_ok")
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        app.seat_map(SMALL_EVENT, Some(&held_tag)).await.status(),
        200
    );
    let (map, sold_tag) = app.seat_map_ok(SMALL_EVENT).await;
    assert_eq!(status_of(&map, &seat), "SOLD");
    app.assert_unchanged(SMALL_EVENT, &sold_tag).await;

    // Cancelled: free again.
    let other = sections[0]["seats"][1]["id"].as_str().unwrap().to_owned();
    let rsv = hold_seat(&app, &other).await;
    assert_eq!(
        status_of(&app.seat_map_ok(SMALL_EVENT).await.0, &other),
        "HELD"
    );
    let r = app
        .cancel("fan", &rsv, &uuid::Uuid::new_v4().to_string())
        .await;
    assert_eq!(r.status(), 200);
    let (map, tag) = app.seat_map_ok(SMALL_EVENT).await;
    assert_eq!(status_of(&map, &other), "AVAILABLE");
    assert_eq!(tag, sold_tag, "the same map as before the hold");

    // Expired (hold_ttl_secs = 3, the sweeper off): free once the hold ran out.
    hold_seat(&app, &other).await;
    let (map, held_tag) = app.seat_map_ok(SMALL_EVENT).await;
    assert_eq!(status_of(&map, &other), "HELD");
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    assert_eq!(
        app.seat_map(SMALL_EVENT, Some(&held_tag)).await.status(),
        200
    );
    let (map, _) = app.seat_map_ok(SMALL_EVENT).await;
    assert_eq!(status_of(&map, &other), "AVAILABLE");

    // Unknown events, and no token.
    for event in ["evt_none", "bad%20id"] {
        let body = assert_error(app.seat_map(event, None).await, 404, "EVENT_NOT_FOUND").await;
        assert!(body["error"].get("details").is_none(), "{body}");
    }
    let r = app
        .client
        .get(app.url(&format!("/v1/events/{SMALL_EVENT}/seats")))
        .send()
        .await
        .unwrap();
    assert_error(r, 401, "UNAUTHENTICATED").await;
}

/// Three-second holds, no sweeper; deadlines for a loaded machine (this test is about the map).
fn short_holds(o: &mut TestOptions) {
    under_load(o);
    o.config.hold_ttl = std::time::Duration::from_secs(3);
    o.config.expiry_interval = std::time::Duration::from_millis(3_600_000);
}

#[tokio::test]
async fn the_seat_map_follows_the_bundled_inventory_in_memory() {
    let app = spawn_app_with(short_holds).await;
    the_map_follows_holds_sales_releases_and_expiry(app).await;
}

#[tokio::test]
#[ignore = "needs moto: run ./run_local.sh test"]
async fn the_seat_map_follows_the_bundled_inventory_on_dynamodb() {
    let app = spawn_app_with(|o| {
        short_holds(o);
        let endpoint = std::env::var("DYNAMODB_ENDPOINT")
            .expect("DYNAMODB_ENDPOINT is unset: start moto (./run_local.sh test)");
        o.config.inventory_store = StoreKind::Dynamodb;
        o.config.dynamodb.endpoint = Some(endpoint);
        o.config.aws_region = "us-east-1".into();
        o.config.dynamodb.auto_create = true;
        o.config.dynamodb.tables =
            TableNames::prefixed(&format!("m{}-", uuid::Uuid::new_v4().simple()));
    })
    .await;
    the_map_follows_holds_sales_releases_and_expiry(app).await;
}

/// Counts every request attempt of the DynamoDB client it is installed on.
#[derive(Clone, Debug, Default)]
struct RequestCounter(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl RequestCounter {
    fn take(&self) -> usize {
        self.0.swap(0, std::sync::atomic::Ordering::SeqCst)
    }
}

impl aws_sdk_dynamodb::config::Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_attempt(
        &self,
        _: &aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_sdk_dynamodb::config::RuntimeComponents,
        _: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

/// The inventory on DynamoDB behind the API, its client counting requests: a seat map answered
/// from the inventory's snapshot reads nothing, whether the `ETag` matches (304) or not (200); the
/// snapshot's refresh is one small read.
#[tokio::test]
#[ignore = "needs moto: run ./run_local.sh test"]
async fn seat_maps_and_etag_matches_cost_no_dynamodb_read() {
    use reservation_api::grpc::inventory_server::InventoryGrpc;
    use reservation_api::grpc::local::{inventory_routes, LocalServer};
    use reservation_api::inventory::catalog::Catalog;
    use reservation_api::inventory::dynamo::{seed, DynamoSeats};

    let endpoint = std::env::var("DYNAMODB_ENDPOINT")
        .expect("DYNAMODB_ENDPOINT is unset: start moto (./run_local.sh test)");
    let sdk = reservation_api::aws::sdk_config(
        Some(&endpoint),
        "us-east-1",
        std::time::Duration::from_secs(30),
    )
    .await;
    let plain = aws_sdk_dynamodb::Client::new(&sdk);
    let tables = TableNames::prefixed(&format!("e{}-", uuid::Uuid::new_v4().simple()));
    reservation_api::store::dynamo::tables::create_missing(&plain, &tables)
        .await
        .expect("tables");
    seed::seed(&plain, &tables.seats, &Catalog::bundled())
        .await
        .expect("seed");
    let reads = RequestCounter::default();
    let counted = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(reads.clone())
            .build(),
    );
    let engine = std::sync::Arc::new(DynamoSeats::new(counted, tables.seats.clone()));
    let server = LocalServer::spawn(
        "inventory",
        ([127, 0, 0, 1], 0).into(),
        inventory_routes(InventoryGrpc::new(engine.clone())),
    )
    .await
    .unwrap();
    let app = spawn_app_with(|o| {
        under_load(o);
        o.config.inventory_grpc_address = Some(server.endpoint());
    })
    .await;

    let (_, etag) = app.seat_map_ok(SMALL_EVENT).await;
    assert!(
        reads.take() >= 2,
        "the first map loads the event and its rows"
    );
    for _ in 0..100 {
        let r = app.seat_map(SMALL_EVENT, Some(&etag)).await;
        assert_eq!(r.status(), 304);
    }
    assert_eq!(reads.take(), 0, "100 ETag matches read nothing");
    for _ in 0..100 {
        assert_eq!(app.seat_map_ok(SMALL_EVENT).await.1, etag);
    }
    assert_eq!(reads.take(), 0, "100 seat maps read nothing");
    // What keeps them fresh: one refresh a second, one BatchGetItem of the change notes (and the
    // event item's GetItem once it is 10 s old: a loaded machine may get there).
    engine.refresh_watched().await;
    let refresh = reads.take();
    assert!((1..=2).contains(&refresh), "{refresh}");
    // A hold through the API shows at once, and its ETag changes.
    let seat = app.seat_map_ok(SMALL_EVENT).await.0["sections"][0]["seats"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    hold_seat(&app, &seat).await;
    assert_eq!(app.seat_map(SMALL_EVENT, Some(&etag)).await.status(), 200);
    server.shutdown().await;
}
