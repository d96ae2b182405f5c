//! Test peers on moto: an EventBridge bus with a rule whose target is an SQS queue (so a test can
//! read what was delivered), and a TCP proxy that can make a peer unreachable.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reservation_api::config::Config;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// moto's endpoint, from `./run_local.sh test`. The tests that need it are `#[ignore]`d (a plain
/// `cargo test` reports them as not run); run with `--include-ignored` and no moto, they fail.
pub fn endpoint() -> String {
    std::env::var("EVENTBRIDGE_ENDPOINT")
        .or_else(|_| std::env::var("DYNAMODB_ENDPOINT"))
        .expect(
            "no moto endpoint (EVENTBRIDGE_ENDPOINT/DYNAMODB_ENDPOINT): run ./run_local.sh test",
        )
}

async fn sdk(endpoint: &str) -> aws_config::SdkConfig {
    reservation_api::aws::sdk_config(Some(endpoint), "us-east-1", Duration::from_secs(10)).await
}

/// A bus of its own, a rule matching `source = reservation-api`, and an SQS queue behind it.
pub struct EventTarget {
    pub bus: String,
    queue_url: String,
    sqs: aws_sdk_sqs::Client,
    /// Every message received so far, in arrival order, with when it arrived.
    pub received: Mutex<Vec<(Instant, Value)>>,
}

impl EventTarget {
    /// The bus and queue that `./run_local.sh test` set up, if it did; else a new pair.
    pub async fn shared(endpoint: &str) -> Self {
        match (
            std::env::var("EVENTS_TEST_BUS"),
            std::env::var("EVENTS_TEST_QUEUE_URL"),
        ) {
            (Ok(bus), Ok(queue_url)) => Self {
                bus,
                queue_url,
                sqs: aws_sdk_sqs::Client::new(&sdk(endpoint).await),
                received: Mutex::new(Vec::new()),
            },
            _ => Self::create(endpoint).await,
        }
    }

    /// A bus, rule and queue of this test's own.
    pub async fn create(endpoint: &str) -> Self {
        let conf = sdk(endpoint).await;
        let eb = aws_sdk_eventbridge::Client::new(&conf);
        let sqs = aws_sdk_sqs::Client::new(&conf);
        let name = format!("t{}", uuid::Uuid::new_v4().simple());
        eb.create_event_bus().name(&name).send().await.expect("bus");
        let queue_url = sqs
            .create_queue()
            .queue_name(&name)
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
            .name(&name)
            .event_bus_name(&name)
            .event_pattern(r#"{"source":["reservation-api"]}"#)
            .send()
            .await
            .expect("rule");
        eb.put_targets()
            .rule(&name)
            .event_bus_name(&name)
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
        Self {
            bus: name,
            queue_url,
            sqs,
            received: Mutex::new(Vec::new()),
        }
    }

    /// Point the app's relay at this bus.
    pub fn configure(&self, config: &mut Config, endpoint: &str) {
        config.events.enabled = true;
        config.events.endpoint = Some(endpoint.to_owned());
        config.events.bus_name = self.bus.clone();
        config.aws_region = "us-east-1".into();
    }

    /// Read what has arrived (each SQS body is the EventBridge envelope).
    pub async fn poll(&self) -> usize {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("receive");
        let now = Instant::now();
        let msgs = out.messages();
        let mut done = Vec::with_capacity(msgs.len());
        for (i, m) in msgs.iter().enumerate() {
            let body: Value = serde_json::from_str(m.body().unwrap()).expect("JSON message");
            self.received.lock().unwrap().push((now, body));
            done.push(
                aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap())
                    .build()
                    .unwrap(),
            );
        }
        // One request for the whole receive, not one per message: moto answers one request at a
        // time, and this consumer must not be what slows the relay it is watching.
        if !done.is_empty() {
            self.sqs
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(done))
                .send()
                .await
                .ok();
        }
        msgs.len()
    }

    /// Poll until `done(received)` holds or `timeout` passes; returns whether it held.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&[(Instant, Value)]) -> bool,
    ) -> bool {
        let until = Instant::now() + timeout;
        loop {
            if done(&self.received.lock().unwrap()) {
                return true;
            }
            if Instant::now() > until {
                return false;
            }
            if self.poll().await == 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// The delivered envelopes about one reservation, in arrival order.
    pub fn for_reservation(&self, id: &str) -> Vec<Value> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, v)| v["detail"]["reservation_id"] == id)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// A TCP proxy to `upstream` that can be switched off: then it refuses new connections and cuts
/// open ones, as an unreachable peer would.
pub struct Proxy {
    pub port: u16,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (u, c) = (up.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !u.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let upstream = upstream.clone();
                c.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        Self {
            port,
            up,
            conns,
            accept,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
            for c in self.conns.lock().unwrap().drain(..) {
                c.abort();
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// `host:port` of an `http://host:port` endpoint.
pub fn authority(endpoint: &str) -> String {
    endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}
