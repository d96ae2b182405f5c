//! A fault-injecting HTTP proxy for tests, between the service and a peer: moto (HTTP/1.1, requests
//! told apart by `X-Amz-Target`, e.g. `DynamoDB_20120810.TransactWriteItems`) or a gRPC server
//! (HTTP/2, told apart by path, e.g. `/reservation.v1.InventoryService/ReserveSeat`).
//!
//! Faults apply per request, so that "the write landed but its answer was lost" can be staged
//! exactly: the request is forwarded and answered upstream, then the client's connection (HTTP/1.1)
//! or stream (HTTP/2) is cut instead of answering.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// Forward the request, let the peer answer, then cut the client off: it landed, the client
    /// cannot know.
    DropResponse,
    /// Forward after this long, whether or not the client is still waiting (a write that lands
    /// late), then answer.
    Delay(Duration),
    /// Cut the client off before forwarding: the request never reached the peer.
    Reset,
    /// Never forward, never answer.
    Blackhole,
}

struct Rule {
    pattern: String,
    /// Matching requests to let through before the fault applies.
    skip: usize,
    /// How many matching requests the fault applies to after that; `None`: every one.
    times: Option<usize>,
    fault: Fault,
}

/// Random faults on matching requests, from a seed: the same seed gives the same sequence of
/// decisions, so a run that found something can be replayed.
pub struct Chaos {
    pub pattern: String,
    pub drop: f64,
    pub delay: f64,
    pub reset: f64,
    pub delay_by: Duration,
}

#[derive(Default)]
struct Faults {
    rules: Vec<Rule>,
    chaos: Option<(Chaos, StdRng)>,
}

impl Faults {
    fn decide(&mut self, key: &str) -> Option<Fault> {
        // Every matching rule counts the request, so that rules for the 1st and the 3rd request
        // both hold; the first rule due applies.
        let mut chosen = None;
        for rule in &mut self.rules {
            if !key.contains(&rule.pattern) || rule.times == Some(0) {
                continue;
            }
            if rule.skip > 0 {
                rule.skip -= 1;
                continue;
            }
            if chosen.is_none() {
                if let Some(t) = &mut rule.times {
                    *t -= 1;
                }
                chosen = Some(rule.fault);
            }
        }
        if chosen.is_some() {
            return chosen;
        }
        let (c, rng) = self.chaos.as_mut()?;
        if !key.contains(&c.pattern) {
            return None;
        }
        let roll: f64 = rng.random();
        if roll < c.drop {
            Some(Fault::DropResponse)
        } else if roll < c.drop + c.delay {
            Some(Fault::Delay(c.delay_by))
        } else if roll < c.drop + c.delay + c.reset {
            Some(Fault::Reset)
        } else {
            None
        }
    }
}

#[derive(Debug)]
struct Cut;

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection cut by the fault proxy")
    }
}

impl std::error::Error for Cut {}

pub struct FaultProxy {
    pub port: u16,
    faults: Arc<Mutex<Faults>>,
    /// How many faults were applied, so a test can check that its fault fired.
    fired: Arc<AtomicUsize>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// A proxy to moto (or any HTTP/1.1 peer) at `upstream` (`host:port`).
    pub async fn http1(upstream: &str) -> Self {
        Self::start(upstream, false).await
    }

    /// A proxy to a gRPC peer at `upstream` (`host:port`): HTTP/2 without TLS.
    pub async fn grpc(upstream: &str) -> Self {
        Self::start(upstream, true).await
    }

    async fn start(upstream: &str, http2: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut builder = Client::builder(TokioExecutor::new());
        builder.http2_only(http2).pool_max_idle_per_host(64);
        let client: Client<HttpConnector, Incoming> = builder.build_http();
        let faults: Arc<Mutex<Faults>> = Arc::default();
        let fired = Arc::new(AtomicUsize::new(0));
        let upstream = upstream.to_owned();
        let (f, n) = (faults.clone(), fired.clone());
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (client, upstream, faults, fired) =
                    (client.clone(), upstream.clone(), f.clone(), n.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let (client, upstream) = (client.clone(), upstream.clone());
                        let fault = faults.lock().unwrap().decide(&request_key(&req));
                        if fault.is_some() {
                            fired.fetch_add(1, Ordering::SeqCst);
                        }
                        handle(client, upstream, req, fault)
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            port,
            faults,
            fired,
            accept,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Apply `fault` to the `nth` (1-based) request matching `pattern` from now on, once.
    pub fn on_nth(&self, pattern: &str, nth: usize, fault: Fault) {
        self.add(pattern, nth.saturating_sub(1), Some(1), fault);
    }

    /// Apply `fault` to the next `n` requests matching `pattern`.
    pub fn on_next(&self, pattern: &str, n: usize, fault: Fault) {
        self.add(pattern, 0, Some(n), fault);
    }

    /// Apply `fault` to every request matching `pattern` until cleared.
    pub fn always(&self, pattern: &str, fault: Fault) {
        self.add(pattern, 0, None, fault);
    }

    fn add(&self, pattern: &str, skip: usize, times: Option<usize>, fault: Fault) {
        self.faults.lock().unwrap().rules.push(Rule {
            pattern: pattern.to_owned(),
            skip,
            times,
            fault,
        });
    }

    /// Random faults from `seed` on the requests matching `chaos.pattern`.
    pub fn chaos(&self, chaos: Chaos, seed: u64) {
        self.faults.lock().unwrap().chaos = Some((chaos, StdRng::seed_from_u64(seed)));
    }

    /// Remove every rule and the chaos: all requests go through.
    pub fn clear(&self) {
        let mut f = self.faults.lock().unwrap();
        f.rules.clear();
        f.chaos = None;
    }

    pub fn fired(&self) -> usize {
        self.fired.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// What rules match on: the DynamoDB operation, else the path (a gRPC method).
fn request_key<B>(req: &Request<B>) -> String {
    match req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
    {
        Some(target) => target.to_owned(),
        None => req.uri().path().to_owned(),
    }
}

async fn handle(
    client: Client<HttpConnector, Incoming>,
    upstream: String,
    mut req: Request<Incoming>,
    fault: Option<Fault>,
) -> Result<Response<Incoming>, Cut> {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    *req.uri_mut() = format!("http://{upstream}{path}").parse().unwrap();
    let delay = match fault {
        Some(Fault::Reset) => return Err(Cut),
        Some(Fault::Blackhole) => return futures::future::pending().await,
        Some(Fault::Delay(d)) => d,
        _ => Duration::ZERO,
    };
    // In a task of its own, so that the request is forwarded even if the client gives up waiting.
    let forward = tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        client.request(req).await
    });
    let answer = match forward.await {
        Ok(Ok(answer)) => answer,
        _ => return Err(Cut),
    };
    if fault == Some(Fault::DropResponse) {
        return Err(Cut);
    }
    Ok(answer)
}
