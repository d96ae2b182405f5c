//! The load generator of `./run_local.sh bench-rush` (scripts/bench_rush.py starts the service
//! and runs this): an on-sale rush for one event, open-loop. Fans arrive as a Poisson process at
//! `--rate` a second for `--seconds`; each fan, with a token of its own, holds `--qty` seats
//! (best available), thinks for a uniform `--think-ms` time, then confirms (60 %), cancels (20 %)
//! or lets the hold run out (20 %). Latency is measured from the moment the fan was due to send,
//! not from when a connection was free, so that queueing (in this client or in the service)
//! shows in it instead of slowing the arrivals down (no coordinated omission).
//!
//! A step whose answer is not final (no answer, 5xx, 429, in flight) is sent again with the same
//! `Idempotency-Key` after `Retry-After`, as a careful client does. At the end a hold that never
//! answered is asked again with its key; once every hold has run out, every held reservation is
//! read back (`GET`) and must agree with what its fan was told (an end the fan never heard takes
//! the store's word), none may still be `HOLD`. Then the seats: the seat map (the inventory's own
//! view, seat by seat) and, with `--inventory`, each inventory process's `GetInventoryStatus`
//! counts must agree with the ledger — every sold seat belongs to exactly one confirmed
//! reservation, no seat is sold twice, none is still held, and sold + free is the hall. It prints
//! P50/P95/P99 per step, the error rate and the seat counts, writes them as JSON to `--json`, and
//! exits 1 when anything disagrees.
//!
//! Why a Rust binary rather than locust or goose: on this 2-core machine the generator shares the
//! cores with the service; 3,000 fans a second is about 5,000 requests a second, which a Python
//! generator cannot produce open-loop without taking most of a core (and its own latency into the
//! figures), and goose's users are closed loops (a fixed number of users, each waiting for its
//! answer), which hides queueing. This is reqwest on tokio, a few hundred lines, the service's own
//! JWT minting for per-user tokens.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio::time::Instant;

#[derive(Debug, Parser)]
struct Args {
    /// The service's base URLs (comma-separated); fan i uses the (i mod n)-th.
    #[arg(long, value_delimiter = ',', required = true)]
    api: Vec<String>,
    /// Inventory gRPC addresses (`http://host:port`, comma-separated) whose GetInventoryStatus
    /// counts are checked too.
    #[arg(long, value_delimiter = ',')]
    inventory: Vec<String>,
    #[arg(long)]
    event: String,
    /// The hall's size: the seat map must add up to it.
    #[arg(long)]
    seats: u32,
    /// Fans arriving per second (open loop).
    #[arg(long, default_value_t = 3000.0)]
    rate: f64,
    /// How long fans keep arriving.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Seats per hold.
    #[arg(long, default_value_t = 1)]
    qty: u32,
    /// Think time between the hold and the fan's next step: MIN-MAX milliseconds, uniform.
    #[arg(long, default_value = "1000-5000")]
    think_ms: String,
    /// Requests in flight at most (connections are opened up to this); a fan waiting for a slot
    /// is still timed from when it was due.
    #[arg(long, default_value_t = 512)]
    max_in_flight: usize,
    /// Per-request client timeout, milliseconds: past it a step is "unknown" and read back.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// The service's HOLD_TTL_SECONDS: the audit waits this long after the last hold was made.
    #[arg(long, default_value_t = 60)]
    hold_ttl_s: u64,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<String>,
}

/// The steps whose latency is reported.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Step {
    Hold,
    Confirm,
    Cancel,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Hold => "hold",
            Step::Confirm => "confirm",
            Step::Cancel => "cancel",
        }
    }
}

/// What a fan ended with, as far as its own answers say.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Fate {
    /// No hold: the inventory said no (409) or the request failed for sure (4xx).
    NoHold(String),
    /// The hold's answer never came (timeout, reset, 5xx): read back at the end.
    HoldUnknown { key: String },
    Held {
        id: String,
        seats: Vec<String>,
        then: End,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum End {
    Confirmed,
    Cancelled,
    LeftToExpire,
    /// The confirm's or cancel's answer never came: read back at the end.
    Unknown(Step),
    /// A definite refusal of the confirm or cancel (the hold stays until it runs out).
    Refused(Step, String),
}

#[derive(Default)]
struct Ledger {
    /// Per step: latencies in microseconds, and the outcome counts by label.
    latency: HashMap<Step, Vec<u64>>,
    outcomes: HashMap<Step, HashMap<String, u64>>,
    fates: Vec<(String, Fate)>,
    /// When the last hold was made: every hold has run out a hold TTL later.
    last_hold: Option<Instant>,
}

struct Ctx {
    args: Args,
    http: reqwest::Client,
    secret: Vec<u8>,
    slots: Semaphore,
    ledger: Mutex<Ledger>,
    run: String,
    think: (u64, u64),
}

/// One request's answer: the status (None: no answer), the body and its `Retry-After`.
struct Answer {
    status: Option<StatusCode>,
    body: Value,
    retry_after: Option<u64>,
}

impl Answer {
    fn code(&self) -> String {
        self.body["error"]["code"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_default()
    }
    /// The outcome's label in the report: `2xx`, `409 INVENTORY_CONFLICT`, `timeout` …
    fn label(&self) -> String {
        match self.status {
            None => "no answer".into(),
            Some(s) if s.is_success() => s.as_u16().to_string(),
            Some(s) => format!("{} {}", s.as_u16(), self.code()),
        }
    }
    /// The request may have happened: no answer, or a 5xx.
    fn unknown(&self) -> bool {
        self.status.is_none_or(|s| s.is_server_error())
    }
    /// Not an answer to act on: the request may have happened, was refused for the rate, or its
    /// first attempt is still in flight. A careful client sends it again, same key.
    fn retry(&self) -> bool {
        self.unknown()
            || self.status == Some(StatusCode::TOO_MANY_REQUESTS)
            || (self.status == Some(StatusCode::CONFLICT) && self.code() == "IDEMPOTENCY_CONFLICT")
    }
}

/// Attempts per step: the first and this many retries.
const RETRIES: u32 = 4;

impl Ctx {
    fn api(&self, fan: u64) -> &str {
        &self.args.api[(fan as usize) % self.args.api.len()]
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Answer {
        let _slot = self.slots.acquire().await.expect("never closed");
        match req.send().await {
            Ok(r) => {
                let status = r.status();
                let retry_after = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()?.parse().ok());
                let body = r.json::<Value>().await.unwrap_or(Value::Null);
                Answer {
                    status: Some(status),
                    body,
                    retry_after,
                }
            }
            Err(_) => Answer {
                status: None,
                body: Value::Null,
                retry_after: None,
            },
        }
    }

    /// A step as a fan's client makes it: sent again with the same `Idempotency-Key` while the
    /// answer is not final, after `Retry-After` (1 s without one, at most 2 s) with jitter so
    /// the retries do not come back in step. Every attempt counts as a request (an error unless
    /// 2xx); the step's latency runs from `due` to its final answer.
    async fn attempt(
        &self,
        step: Step,
        due: Instant,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Answer {
        let mut tries = 0;
        loop {
            let a = self.send(request()).await;
            self.count(step, &a);
            tries += 1;
            if !a.retry() || tries > RETRIES {
                self.record(step, due);
                return a;
            }
            let wait = a.retry_after.unwrap_or(1).clamp(1, 2) as f64;
            let jitter: f64 = rand::random_range(0.5..1.5);
            tokio::time::sleep(Duration::from_secs_f64(wait * jitter)).await;
        }
    }

    fn post(
        &self,
        fan: u64,
        token: &str,
        path: &str,
        key: &str,
        body: Value,
    ) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.api(fan)))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(&body)
    }

    fn record(&self, step: Step, due: Instant) {
        let us = due.elapsed().as_micros() as u64;
        self.ledger
            .lock()
            .unwrap()
            .latency
            .entry(step)
            .or_default()
            .push(us);
    }

    fn count(&self, step: Step, a: &Answer) {
        let mut l = self.ledger.lock().unwrap();
        *l.outcomes
            .entry(step)
            .or_default()
            .entry(a.label())
            .or_default() += 1;
    }

    async fn fan(self: Arc<Self>, fan: u64, due: Instant, action: f64, think: Duration) {
        let user = format!("fan-{}-{fan}", self.run);
        let token = reservation_api::auth::jwt::mint(&self.secret, &user, 3600);
        let key = format!("rush-{}-{fan}-hold", self.run);
        let body = json!({"event_id": self.args.event, "qty": self.args.qty});
        let hold = self
            .attempt(Step::Hold, due, || {
                self.post(fan, &token, "/v1/reservations", &key, body.clone())
            })
            .await;
        let fate = if hold.unknown() {
            Fate::HoldUnknown { key }
        } else if hold.status == Some(StatusCode::CREATED) {
            self.ledger.lock().unwrap().last_hold = Some(Instant::now());
            let id = hold.body["reservation_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let seats = seat_ids(&hold.body);
            tokio::time::sleep(think).await;
            let then = if action < 0.6 {
                self.step(fan, &token, &id, Step::Confirm).await
            } else if action < 0.8 {
                self.step(fan, &token, &id, Step::Cancel).await
            } else {
                End::LeftToExpire
            };
            Fate::Held { id, seats, then }
        } else {
            Fate::NoHold(hold.label())
        };
        self.ledger.lock().unwrap().fates.push((user, fate));
    }

    async fn step(&self, fan: u64, token: &str, id: &str, step: Step) -> End {
        let due = Instant::now();
        let (path, body, ok) = match step {
            Step::Confirm => (
                format!("/v1/reservations/{id}/confirm"),
                json!({"payment_intent_id": format!("pay_rush_{}_{fan}", self.run)}),
                End::Confirmed,
            ),
            _ => (
                format!("/v1/reservations/{id}/cancel"),
                json!({}),
                End::Cancelled,
            ),
        };
        let key = format!("rush-{}-{fan}-{}", self.run, step.name());
        let a = self
            .attempt(step, due, || {
                self.post(fan, token, &path, &key, body.clone())
            })
            .await;
        if a.unknown() {
            End::Unknown(step)
        } else if a.status.is_some_and(|s| s.is_success()) {
            ok
        } else {
            End::Refused(step, a.label())
        }
    }
}

fn seat_ids(v: &Value) -> Vec<String> {
    v["seat_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

/// The seat map's seats by status, and the sold seats' ids.
async fn seat_map(
    ctx: &Ctx,
    token: &str,
) -> Result<(HashMap<String, u32>, HashSet<String>), String> {
    let r = ctx
        .http
        .get(format!(
            "{}/v1/events/{}/seats",
            ctx.args.api[0], ctx.args.event
        ))
        .bearer_auth(token)
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .map_err(|e| format!("seat map: {e}"))?;
    if !r.status().is_success() {
        return Err(format!("seat map: {}", r.status()));
    }
    let v: Value = r.json().await.map_err(|e| format!("seat map: {e}"))?;
    let mut counts = HashMap::new();
    let mut sold = HashSet::new();
    for section in v["sections"].as_array().into_iter().flatten() {
        for seat in section["seats"].as_array().into_iter().flatten() {
            let status = seat["status"].as_str().unwrap_or("?").to_owned();
            if status == "SOLD" {
                sold.insert(seat["id"].as_str().unwrap_or_default().to_owned());
            }
            *counts.entry(status).or_insert(0) += 1;
        }
    }
    Ok((counts, sold))
}

/// (available, reserved, sold) summed over the sections, from an inventory process.
async fn inventory_counts(address: &str, event: &str) -> Result<(i64, i64, i64), String> {
    use reservation_api::grpc::proto::reservation::v1::inventory_service_client::InventoryServiceClient;
    use reservation_api::grpc::proto::reservation::v1::GetInventoryStatusRequest;
    let mut c = InventoryServiceClient::connect(address.to_owned())
        .await
        .map_err(|e| format!("{address}: {e}"))?;
    let r = c
        .get_inventory_status(GetInventoryStatusRequest {
            event_id: event.to_owned(),
            section: String::new(),
        })
        .await
        .map_err(|e| format!("{address}: {e}"))?
        .into_inner();
    Ok(r.sections.iter().fold((0, 0, 0), |(a, h, s), x| {
        (
            a + x.available_seats as i64,
            h + x.reserved_seats as i64,
            s + x.sold_seats as i64,
        )
    }))
}

/// Reads back a hold whose answer never came, by asking again with the same `Idempotency-Key`:
/// its stored answer, or a hold made now (which then runs out like the others).
async fn resolve_holds(ctx: &Ctx, fates: &mut [(String, Fate)]) -> u64 {
    let mut resolved = 0;
    for (user, fate) in fates.iter_mut() {
        let Fate::HoldUnknown { key } = fate else {
            continue;
        };
        let token = reservation_api::auth::jwt::mint(&ctx.secret, user, 3600);
        let body = json!({"event_id": ctx.args.event, "qty": ctx.args.qty});
        for _ in 0..10 {
            let a = ctx
                .send(ctx.post(0, &token, "/v1/reservations", key, body.clone()))
                .await;
            if a.retry() {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            *fate = if a.status == Some(StatusCode::CREATED) {
                ctx.ledger.lock().unwrap().last_hold = Some(Instant::now());
                Fate::Held {
                    id: a.body["reservation_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    seats: seat_ids(&a.body),
                    then: End::LeftToExpire,
                }
            } else {
                Fate::NoHold(a.label())
            };
            resolved += 1;
            break;
        }
    }
    resolved
}

/// Once every hold has run out: each held reservation's final status in the store, by `GET`.
/// An end the fan does not know (its confirm or cancel never answered) takes the store's word
/// (the service may have finished it forward, as the sweeper does for a committed seat); an end
/// it knows must agree with the store's. Answers how many were read back, and the disagreements.
async fn settle(ctx: &Arc<Ctx>, fates: &mut [(String, Fate)]) -> (u64, Vec<String>) {
    let mut gets = tokio::task::JoinSet::new();
    for (i, (user, fate)) in fates.iter().enumerate() {
        let Fate::Held { id, .. } = fate else {
            continue;
        };
        let (ctx, user, id) = (ctx.clone(), user.clone(), id.clone());
        gets.spawn(async move {
            let token = reservation_api::auth::jwt::mint(&ctx.secret, &user, 3600);
            let url = format!("{}/v1/reservations/{id}", ctx.args.api[0]);
            for _ in 0..10 {
                let a = ctx.send(ctx.http.get(&url).bearer_auth(&token)).await;
                if !a.retry() {
                    return (i, a.body["status"].as_str().map(str::to_owned));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            (i, None)
        });
    }
    let (mut read_back, mut problems) = (0, Vec::new());
    while let Some(r) = gets.join_next().await {
        let (i, status) = r.expect("no panic");
        let (user, fate) = &mut fates[i];
        let Fate::Held { id, then, .. } = fate else {
            continue;
        };
        let store = match status.as_deref() {
            Some("CONFIRMED") => End::Confirmed,
            Some("CANCELLED") => End::Cancelled,
            Some("EXPIRED") => End::LeftToExpire,
            other => {
                problems.push(format!(
                    "{user}'s {id} is {other:?} after every hold ran out"
                ));
                continue;
            }
        };
        match then {
            End::Unknown(_) => {
                *then = store;
                read_back += 1;
            }
            // A refused confirm or cancel leaves the hold to run out.
            End::Refused(..) if store == End::LeftToExpire => {}
            known if *known == store => {}
            known => problems.push(format!(
                "{user}'s {id}: the fan was told {known:?}, the store says {status:?}"
            )),
        }
    }
    (read_back, problems)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let secret = std::env::var("JWT_DEV_SECRET")
        .expect("JWT_DEV_SECRET: the development key the service verifies with")
        .into_bytes();
    let think = args
        .think_ms
        .split_once('-')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .filter(|(a, b): &(u64, u64)| a <= b)
        .expect("--think-ms MIN-MAX");
    let fans_expected = (args.rate * args.seconds) as u64;
    if fans_expected * args.qty as u64 > args.seats as u64 {
        eprintln!(
            "note: {fans_expected} fans x {} seats exceed the hall's {}: 409s are then true sell-outs, still counted apart",
            args.qty, args.seats
        );
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(args.timeout_ms))
        .pool_max_idle_per_host(args.max_in_flight)
        .tcp_nodelay(true)
        .build()
        .expect("client");
    let ctx = Arc::new(Ctx {
        slots: Semaphore::new(args.max_in_flight),
        http,
        secret,
        ledger: Mutex::new(Ledger::default()),
        run: uuid::Uuid::new_v4().simple().to_string()[..8].to_owned(),
        think,
        args,
    });

    // Arrivals: exponential gaps at `rate`; each fan is spawned when due and timed from then.
    let mut rng = rand::rngs::StdRng::seed_from_u64(ctx.args.seed);
    let start = Instant::now();
    let end = Duration::from_secs_f64(ctx.args.seconds);
    let mut at = Duration::ZERO;
    let mut tasks = tokio::task::JoinSet::new();
    let mut fan = 0u64;
    let mut late = Duration::ZERO;
    loop {
        let u: f64 = rng.random_range(f64::EPSILON..1.0);
        at += Duration::from_secs_f64(-u.ln() / ctx.args.rate);
        if at >= end {
            break;
        }
        let due = start + at;
        tokio::time::sleep_until(due).await;
        late = late.max(due.elapsed());
        let action: f64 = rng.random();
        let think = Duration::from_millis(rng.random_range(ctx.think.0..=ctx.think.1));
        tasks.spawn(ctx.clone().fan(fan, due, action, think));
        fan += 1;
    }
    let arrivals = start.elapsed();
    while tasks.join_next().await.is_some() {}
    let done = start.elapsed();

    let mut fates = std::mem::take(&mut ctx.ledger.lock().unwrap().fates);
    let mut resolved = resolve_holds(&ctx, &mut fates).await;

    // Every hold left (to expire, refused, or read back as still HOLD) runs out a hold TTL after
    // it was made: wait for the last one, plus a margin for the sweeper and the clocks.
    let last_hold = ctx.ledger.lock().unwrap().last_hold;
    if let Some(t) = last_hold {
        let until = t + Duration::from_secs(ctx.args.hold_ttl_s + 3);
        eprintln!(
            "waiting {:.0} s for the last holds to run out",
            until
                .saturating_duration_since(Instant::now())
                .as_secs_f64()
        );
        tokio::time::sleep_until(until).await;
    }
    let (read_back, mut problems) = settle(&ctx, &mut fates).await;
    resolved += read_back;

    // The ledger.
    let mut confirmed_seats: HashMap<String, u32> = HashMap::new();
    let (
        mut held,
        mut confirmed,
        mut cancelled,
        mut expired,
        mut refused,
        mut unknown,
        mut no_hold,
    ) = (0u64, 0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let mut no_hold_labels: HashMap<String, u64> = HashMap::new();
    for (_, f) in &fates {
        match f {
            Fate::NoHold(l) => {
                no_hold += 1;
                *no_hold_labels.entry(l.clone()).or_default() += 1;
            }
            Fate::HoldUnknown { .. } => unknown += 1,
            Fate::Held { seats, then, .. } => {
                held += 1;
                match then {
                    End::Confirmed => {
                        confirmed += 1;
                        for s in seats {
                            *confirmed_seats.entry(s.clone()).or_default() += 1;
                        }
                    }
                    End::Cancelled => cancelled += 1,
                    End::LeftToExpire => expired += 1,
                    End::Refused(..) => refused += 1,
                    End::Unknown(_) => unknown += 1,
                }
            }
        }
    }
    let sold_twice = confirmed_seats.values().filter(|n| **n > 1).count();
    let ledger_sold: HashSet<String> = confirmed_seats.keys().cloned().collect();

    let token = reservation_api::auth::jwt::mint(&ctx.secret, "rush-auditor", 3600);
    let (map_counts, map_sold) = match seat_map(&ctx, &token).await {
        Ok(x) => x,
        Err(e) => {
            problems.push(e);
            Default::default()
        }
    };
    let n = |s: &str| *map_counts.get(s).unwrap_or(&0) as i64;
    let (free, on_hold, sold) = (n("AVAILABLE"), n("HELD"), n("SOLD"));
    if sold_twice > 0 {
        problems.push(format!(
            "{sold_twice} seats are in two confirmed reservations"
        ));
    }
    if free + on_hold + sold != ctx.args.seats as i64 {
        problems.push(format!(
            "the seat map has {} seats, the hall {}",
            free + on_hold + sold,
            ctx.args.seats
        ));
    }
    if on_hold != 0 {
        problems.push(format!(
            "{on_hold} seats are still held after every hold ran out"
        ));
    }
    if map_sold != ledger_sold {
        problems.push(format!(
            "sold seats: {} on the seat map, {} confirmed by fans; {} sold without a confirmed fan, {} confirmed but not sold",
            map_sold.len(),
            ledger_sold.len(),
            map_sold.difference(&ledger_sold).count(),
            ledger_sold.difference(&map_sold).count()
        ));
    }
    if unknown > 0 {
        problems.push(format!("{unknown} outcomes could not be read back"));
    }
    // A few of the seats sold without a confirmed fan, with what the service says of the
    // reservation the fan was given them in: the start of an investigation, not a verdict.
    for seat in map_sold.difference(&ledger_sold).take(5) {
        let holders: Vec<String> = fates
            .iter()
            .filter_map(|(user, f)| match f {
                Fate::Held { id, seats, then } if seats.contains(seat) => {
                    Some(format!("{user} {id} {then:?}"))
                }
                _ => None,
            })
            .collect();
        problems.push(format!(
            "seat {seat}: sold without a confirmed fan; held by: {}",
            if holders.is_empty() {
                "nobody".to_owned()
            } else {
                holders.join(", ")
            }
        ));
    }
    let mut inventories = Vec::new();
    for address in &ctx.args.inventory {
        match inventory_counts(address, &ctx.args.event).await {
            Ok((a, h, s)) => {
                if (a, h, s) != (free, on_hold, sold) {
                    problems.push(format!(
                        "{address} counts {a} free / {h} held / {s} sold, the seat map {free} / {on_hold} / {sold}"
                    ));
                }
                inventories
                    .push(json!({"address": address, "available": a, "reserved": h, "sold": s}));
            }
            Err(e) => problems.push(e),
        }
    }

    // The report.
    let ledger = ctx.ledger.lock().unwrap();
    let mut steps = serde_json::Map::new();
    let mut total_requests = 0u64;
    let mut total_errors = 0u64;
    println!(
        "rush: {fan} fans in {:.1} s ({:.0}/s offered, arrivals at most {:.1} ms late, the last fan done at {:.1} s), {} seats each, think {}-{} ms",
        arrivals.as_secs_f64(),
        fan as f64 / arrivals.as_secs_f64(),
        late.as_secs_f64() * 1000.0,
        done.as_secs_f64(),
        ctx.args.qty,
        ctx.think.0,
        ctx.think.1
    );
    for step in [Step::Hold, Step::Confirm, Step::Cancel] {
        let mut l = ledger.latency.get(&step).cloned().unwrap_or_default();
        l.sort_unstable();
        let outcomes = ledger.outcomes.get(&step).cloned().unwrap_or_default();
        // An error is any answer but the step's success; for a hold a 409 is a sell-out, which
        // is an error too while the hall still has free seats (the run is sized so it does).
        let errors: u64 = outcomes
            .iter()
            .filter(|(k, _)| !(k.starts_with('2')))
            .map(|(_, v)| v)
            .sum();
        let requests: u64 = outcomes.values().sum();
        total_requests += requests;
        total_errors += errors;
        println!(
            "  {:<8} {:>7} steps {:>7} requests  p50 {:>8.2} ms  p95 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms  errors {} ({:.2} %)  {:?}",
            step.name(),
            l.len(),
            requests,
            percentile(&l, 0.50),
            percentile(&l, 0.95),
            percentile(&l, 0.99),
            percentile(&l, 1.0),
            errors,
            100.0 * errors as f64 / (requests.max(1)) as f64,
            outcomes
        );
        steps.insert(
            step.name().into(),
            json!({
                "steps": l.len(), "requests": requests, "errors": errors,
                "p50_ms": percentile(&l, 0.50), "p95_ms": percentile(&l, 0.95),
                "p99_ms": percentile(&l, 0.99), "max_ms": percentile(&l, 1.0),
                "outcomes": outcomes,
            }),
        );
    }
    let error_rate = total_errors as f64 / total_requests.max(1) as f64;
    println!(
        "  errors: {total_errors} of {total_requests} requests ({:.3} %)",
        100.0 * error_rate
    );
    println!(
        "  fans: {held} held ({confirmed} confirmed, {cancelled} cancelled, {expired} left to expire, {refused} refused), {no_hold} without a hold {:?}; {resolved} outcomes read back",
        no_hold_labels
    );
    println!(
        "  seats: {sold} sold / {on_hold} held / {free} free of {} on the seat map; {} sold to confirmed fans, {} sold twice{}",
        ctx.args.seats,
        ledger_sold.len(),
        sold_twice,
        if inventories.is_empty() { String::new() } else { format!("; inventories: {inventories:?}") }
    );
    if problems.is_empty() {
        println!("  accounting: every seat is accounted for, none sold twice");
    } else {
        for p in &problems {
            println!("  ACCOUNTING PROBLEM: {p}");
        }
    }
    if let Some(path) = &ctx.args.json {
        let report = json!({
            "fans": fan, "arrival_seconds": arrivals.as_secs_f64(), "rate": ctx.args.rate,
            "qty": ctx.args.qty, "think_ms": [ctx.think.0, ctx.think.1],
            "steps": steps, "requests": total_requests, "errors": total_errors,
            "error_rate": error_rate,
            "fates": {"held": held, "confirmed": confirmed, "cancelled": cancelled,
                      "expired": expired, "refused": refused, "no_hold": no_hold,
                      "unknown": unknown, "read_back": resolved},
            "seats": {"hall": ctx.args.seats, "sold": sold, "held": on_hold, "free": free,
                      "sold_to_confirmed_fans": ledger_sold.len(), "sold_twice": sold_twice},
            "inventories": inventories,
            "problems": problems,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&report).unwrap()).expect("--json");
    }
    if !problems.is_empty() {
        std::process::exit(1);
    }
}
