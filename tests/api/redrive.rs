//! `outbox redrive` on moto: an event EventBridge rejected until it went FAILED is put back by
//! the redrive command's function and reaches the EventBridge → SQS target once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::moto::{self, EventTarget};
use async_trait::async_trait;
use reservation_api::domain::{OutboxEvent, OutboxStatus};
use reservation_api::outbox::{EntryResults, EventBridgeSink, EventSink, PublishError};
use reservation_api::store::redrive::{redrive, Redrive};

/// EventBridge itself, except that while `rejecting` every entry carries a Detail it rejects.
struct Rejecting {
    inner: EventBridgeSink,
    rejecting: Arc<AtomicBool>,
}

#[async_trait]
impl EventSink for Rejecting {
    async fn publish(&self, events: &[OutboxEvent]) -> Result<EntryResults, PublishError> {
        let reject = self.rejecting.load(Ordering::Relaxed);
        let entries = events
            .iter()
            .map(|e| {
                let entry = self.inner.entry(e);
                if !reject {
                    return entry;
                }
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .set_source(entry.source().map(str::to_owned))
                    .set_detail_type(entry.detail_type().map(str::to_owned))
                    .set_event_bus_name(entry.event_bus_name().map(str::to_owned))
                    .detail("{ this is not JSON")
                    .build()
            })
            .collect();
        self.inner.put(entries).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto: run ./run_local.sh test"]
async fn outbox_redrive_republishes_a_failed_event_to_eventbridge() {
    let ep = moto::endpoint();
    let target = EventTarget::create(&ep).await;
    let sdk =
        reservation_api::aws::sdk_config(Some(&ep), "us-east-1", Duration::from_secs(5)).await;
    let rejecting = Arc::new(AtomicBool::new(true));
    let sink = Rejecting {
        inner: EventBridgeSink::new(
            aws_sdk_eventbridge::Client::new(&sdk),
            &target.bus,
            "reservation-api",
        ),
        rejecting: rejecting.clone(),
    };
    let app = spawn_app_with(|o| {
        o.config.outbox.max_attempts = 2;
        o.config.outbox.backoff_base = Duration::from_millis(100);
        o.customize = Some(Box::new(move |d| d.sink = Arc::new(sink)));
    })
    .await;
    let held = app.hold("fan", BIG_EVENT, 1).await;
    let id = held["reservation_id"].as_str().unwrap().to_owned();

    let started = Instant::now();
    let failed = loop {
        let e = app.events(&id).await.remove(0);
        if e.status == OutboxStatus::Failed {
            break e;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{e:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(failed.attempts, 2);
    assert!(target.for_reservation(&id).is_empty());

    rejecting.store(false, Ordering::Relaxed);
    let which = Redrive::Event(failed.id.clone());
    let done = redrive(&*app.store, &which, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(done.iter().map(|e| &e.id).collect::<Vec<_>>(), [&failed.id]);
    let back = app.events(&id).await.remove(0);
    assert!(
        matches!(
            back.status,
            OutboxStatus::Pending | OutboxStatus::Claimed | OutboxStatus::Published
        ),
        "{back:?}"
    );

    assert!(
        target
            .wait_for(Duration::from_secs(20), |got| got
                .iter()
                .any(|(_, v)| v["detail"]["reservation_id"] == id.as_str()))
            .await,
        "the redriven event never reached the target"
    );
    let delivered = target.for_reservation(&id);
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert_eq!(delivered[0]["detail"]["id"], failed.id.as_str());
    let published = app.events(&id).await.remove(0);
    assert_eq!(published.status, OutboxStatus::Published);
    // Nothing is left to redrive.
    assert!(redrive(&*app.store, &which, chrono::Utc::now())
        .await
        .unwrap()
        .is_empty());
}
