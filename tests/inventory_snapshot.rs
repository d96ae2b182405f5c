//! The DynamoDB seat engine's snapshot and archive on moto: seat-map pages read nothing, the
//! background refresh reads a few small items, a hold by another process shows within a refresh,
//! and `inventory archive` refuses live holds and removes a finished event.
//!
//! Requests are counted by an SDK interceptor on the engine's own client. Needs
//! `DYNAMODB_ENDPOINT` (`./run_local.sh test` starts moto): `#[ignore]`d otherwise.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use chrono::Utc;
use reservation_api::inventory::catalog::Catalog;
use reservation_api::inventory::dynamo::{archive, seed, DynamoSeats};
use reservation_api::inventory::seats::SeatEngine;
use reservation_api::inventory::{
    CommitRequest, HoldOutcome, HoldRequest, ReleaseReason, ReleaseRequest, SeatMapStatus,
};
use reservation_api::store::dynamo::{self, TableNames};

const EVENT: &str = "evt_snap";

/// Counts every request attempt the client sends.
#[derive(Clone, Debug, Default)]
struct RequestCounter(Arc<AtomicUsize>);

impl RequestCounter {
    fn take(&self) -> usize {
        self.0.swap(0, Ordering::SeqCst)
    }

    /// The requests of a refresh: `n`, or `n + 1` when the event item (read again every 10 s)
    /// came due on a slow machine.
    fn assert_refresh(&self, n: usize, what: &str) {
        let got = self.take();
        assert!(got == n || got == n + 1, "{what}: {got} requests");
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

struct Table {
    sdk: aws_config::SdkConfig,
    plain: aws_sdk_dynamodb::Client,
    seats: String,
}

impl Table {
    /// A fresh seats table seeded with one event of `seats` seats in rows of ten.
    async fn new(seats: u32) -> Self {
        let ep = std::env::var("DYNAMODB_ENDPOINT")
            .expect("DYNAMODB_ENDPOINT is unset: these tests need moto (run ./run_local.sh test)");
        let sdk =
            reservation_api::aws::sdk_config(Some(&ep), "us-east-1", Duration::from_secs(30)).await;
        let plain = aws_sdk_dynamodb::Client::new(&sdk);
        let names = TableNames::prefixed(&format!("s{}-", uuid::Uuid::new_v4().simple()));
        dynamo::tables::create_missing(&plain, &names)
            .await
            .expect("tables");
        seed::seed(&plain, &names.seats, &Catalog::single(EVENT, seats, 1000))
            .await
            .expect("seed");
        Self {
            sdk,
            plain,
            seats: names.seats,
        }
    }

    /// An inventory process's engine whose client counts its requests.
    fn engine(&self) -> (Arc<DynamoSeats>, RequestCounter) {
        let counter = RequestCounter::default();
        let conf = aws_sdk_dynamodb::config::Builder::from(&self.sdk)
            .interceptor(counter.clone())
            .build();
        let client = aws_sdk_dynamodb::Client::from_conf(conf);
        (
            Arc::new(DynamoSeats::new(client, self.seats.clone())),
            counter,
        )
    }

    /// Every item of the event, by a scan.
    async fn items_of_event(&self) -> usize {
        let out = self
            .plain
            .scan()
            .table_name(&self.seats)
            .consistent_read(true)
            .send()
            .await
            .unwrap();
        out.items
            .unwrap_or_default()
            .iter()
            .filter(|i| i["pk"].as_s().unwrap().starts_with(&format!("EVT#{EVENT}")))
            .count()
    }
}

fn hold(rsv: &str, seats: &[&str]) -> HoldRequest {
    HoldRequest {
        reservation_id: rsv.into(),
        event_id: EVENT.into(),
        seat_ids: seats.iter().map(|s| s.to_string()).collect(),
        qty: seats.len() as u32,
        user_id: format!("user-{rsv}"),
        hold_expires_at: Utc::now() + chrono::Duration::seconds(60),
        idempotency_key: format!("k-{rsv}"),
    }
}

async fn status(e: &DynamoSeats, seat: &str) -> SeatMapStatus {
    let page = e
        .seat_page(EVENT, 0, 10_000, Utc::now())
        .await
        .unwrap()
        .unwrap();
    page.seats.iter().find(|(s, _)| s.id == seat).unwrap().1
}

#[tokio::test]
#[ignore = "needs moto: run ./run_local.sh test"]
async fn seat_map_pages_and_their_etag_read_nothing_and_the_refresh_reads_a_few_items() {
    let t = Table::new(1000).await;
    let (e, reads) = t.engine();
    // The first call loads the event: its item and every row.
    e.seat_page(EVENT, 0, 500, Utc::now())
        .await
        .unwrap()
        .unwrap();
    assert!(reads.take() >= 2);
    // 100 seat maps of the whole hall (two pages each), status and availability: no request.
    let started = Instant::now();
    let mut last = None;
    for _ in 0..100 {
        let mut map = vec![];
        let mut row = Some(0);
        while let Some(r) = row {
            let page = e
                .seat_page(EVENT, r, 500, Utc::now())
                .await
                .unwrap()
                .unwrap();
            map.extend(page.seats);
            row = page.next_row;
        }
        assert_eq!(map.len(), 1000);
        last = Some(map);
    }
    e.counts(EVENT, Utc::now()).await.unwrap().unwrap();
    e.available(EVENT, &[], Utc::now()).await.unwrap().unwrap();
    assert_eq!(
        reads.take(),
        0,
        "seat maps, status and availability read nothing"
    );
    eprintln!("100 seat maps of 1,000 seats in {:?}", started.elapsed());
    assert!(last
        .unwrap()
        .iter()
        .all(|(_, s)| *s == SeatMapStatus::Available));

    // The refresh with nobody writing: one BatchGetItem of the change notes.
    e.refresh_watched().await;
    reads.assert_refresh(1, "a quiet refresh is one small read");
    // Its own hold: the map shows it at once; the refresh announces it with one write.
    let r = e.reserve(&hold("r1", &["R3-4"]), Utc::now()).await.unwrap();
    assert!(matches!(r.outcome, HoldOutcome::Held { .. }));
    reads.take();
    assert_eq!(status(&e, "R3-4").await, SeatMapStatus::Held);
    assert_eq!(reads.take(), 0);
    e.refresh_watched().await;
    reads.assert_refresh(2, "the notes read, and this process's note written");
    e.refresh_watched().await;
    reads.assert_refresh(1, "its own note is not read back as rows");
}

#[tokio::test]
#[ignore = "needs moto: run ./run_local.sh test"]
async fn a_hold_by_another_process_shows_after_one_refresh_of_each() {
    let t = Table::new(100).await;
    let (a, a_reads) = t.engine();
    let (b, _) = t.engine();
    assert_eq!(status(&a, "R2-5").await, SeatMapStatus::Available);
    a.refresh_watched().await;
    // B holds; A's map does not know yet.
    let r = b
        .reserve(&hold("rb", &["R2-5", "R2-6"]), Utc::now())
        .await
        .unwrap();
    assert!(matches!(r.outcome, HoldOutcome::Held { .. }));
    assert_eq!(status(&a, "R2-5").await, SeatMapStatus::Available);
    // B's refresh announces it; A's next refresh reads the notes and that one row.
    b.refresh_watched().await;
    a_reads.take();
    a.refresh_watched().await;
    a_reads.assert_refresh(2, "the notes and one BatchGetItem of the changed row");
    assert_eq!(status(&a, "R2-5").await, SeatMapStatus::Held);
    assert_eq!(status(&a, "R2-6").await, SeatMapStatus::Held);
    assert_eq!(status(&a, "R2-7").await, SeatMapStatus::Available);

    // A sale and a release by B show the same way.
    let commit = CommitRequest {
        reservation_id: "rb".into(),
        event_id: EVENT.into(),
        seat_ids: vec![],
        qty: 0,
        payment_intent_id: "pay".into(),
        user_id: "user-rb".into(),
        idempotency_key: "k-rb".into(),
    };
    b.commit(&commit, Utc::now()).await.unwrap();
    b.reserve(&hold("rc", &["R7-1"]), Utc::now()).await.unwrap();
    b.refresh_watched().await;
    a.refresh_watched().await;
    assert_eq!(status(&a, "R2-5").await, SeatMapStatus::Sold);
    assert_eq!(status(&a, "R7-1").await, SeatMapStatus::Held);
    b.release(&release("rc"), Utc::now()).await.unwrap();
    b.refresh_watched().await;
    a.refresh_watched().await;
    assert_eq!(status(&a, "R7-1").await, SeatMapStatus::Available);
}

#[tokio::test]
#[ignore = "needs moto: run ./run_local.sh test"]
async fn with_the_background_refresh_a_hold_elsewhere_shows_within_seconds() {
    let t = Table::new(100).await;
    let (a, _) = t.engine();
    let (b, _) = t.engine();
    a.spawn_refresh();
    b.spawn_refresh();
    assert_eq!(status(&a, "R4-2").await, SeatMapStatus::Available);
    b.reserve(&hold("rb", &["R4-2"]), Utc::now()).await.unwrap();
    let held = Instant::now();
    // A generous window for a loaded machine: the refresh runs every second in each process.
    while status(&a, "R4-2").await != SeatMapStatus::Held {
        assert!(held.elapsed() < Duration::from_secs(20), "never shown");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("another process's hold shown after {:?}", held.elapsed());
}

fn release(rsv: &str) -> ReleaseRequest {
    ReleaseRequest {
        reservation_id: rsv.into(),
        event_id: EVENT.into(),
        seat_ids: vec![],
        qty: 0,
        reason: ReleaseReason::Cancelled,
        idempotency_key: format!("k-{rsv}"),
    }
}

#[tokio::test]
#[ignore = "needs moto: run ./run_local.sh test"]
async fn archive_refuses_live_holds_and_removes_a_finished_event() {
    let t = Table::new(100).await;
    let (e, _) = t.engine();
    e.reserve(&hold("sold1", &["R0-1", "R0-2"]), Utc::now())
        .await
        .unwrap();
    let commit = CommitRequest {
        reservation_id: "sold1".into(),
        event_id: EVENT.into(),
        seat_ids: vec![],
        qty: 0,
        payment_intent_id: "pay_1".into(),
        user_id: "user-sold1".into(),
        idempotency_key: "k-sold1".into(),
    };
    e.commit(&commit, Utc::now()).await.unwrap();
    e.reserve(&hold("gone", &["R5-5"]), Utc::now())
        .await
        .unwrap();
    e.release(&release("gone"), Utc::now()).await.unwrap();
    e.reserve(&hold("live", &["R9-9"]), Utc::now())
        .await
        .unwrap();
    e.refresh_watched().await; // a change note exists too
    let before = t.items_of_event().await;
    assert_eq!(
        before,
        1 + 10 + 3 + 1,
        "event, rows, holds, one change note"
    );

    let err = archive::summarise(&t.plain, &t.seats, EVENT, Utc::now())
        .await
        .unwrap_err();
    assert!(
        matches!(err, archive::ArchiveError::LiveHolds { live: 1, .. }),
        "{err}"
    );
    assert_eq!(t.items_of_event().await, before, "nothing changed");

    // Once the live hold has run out, the event is finished.
    let later = Utc::now() + chrono::Duration::seconds(120);
    let summary = archive::summarise(&t.plain, &t.seats, EVENT, later)
        .await
        .unwrap();
    assert_eq!((summary.seats, summary.sold), (100, 2));
    assert_eq!(summary.rows[0].sold, vec![1, 2]);
    assert!(summary.rows[1..].iter().all(|r| r.sold.is_empty()));
    assert_eq!(summary.sales.len(), 1);
    assert_eq!(summary.sales[0].reservation_id, "sold1");
    assert_eq!(summary.sales[0].user_id, "user-sold1");
    assert_eq!(summary.sales[0].payment_intent_id.as_deref(), Some("pay_1"));
    assert_eq!(summary.unsold_holds, 2);
    let json = serde_json::to_value(&summary).unwrap();
    assert_eq!(json["rows"][0]["sold"], serde_json::json!([1, 2]));
    let deleted = archive::delete(&t.plain, &t.seats, &summary).await.unwrap();
    assert!(deleted >= before);
    assert_eq!(t.items_of_event().await, 0, "rows, holds and notes gone");
    // The engine now has no such event.
    let (fresh, _) = t.engine();
    assert!(fresh
        .seat_page(EVENT, 0, 10, Utc::now())
        .await
        .unwrap()
        .is_none());
}
