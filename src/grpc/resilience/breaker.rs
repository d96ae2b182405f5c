//! A circuit breaker with a time-sliding window, failure-rate and slow-call thresholds, an open
//! period, and half-open probes.
//!
//! Why not `tower-resilience`'s breaker (the rest of the stack is `tower-resilience`): its
//! count-based window is not sliding — the counters only reset on a state change — so after a
//! long healthy run (a million successes) a total outage needs about as many failures again
//! before the rate reaches the threshold; and its time-based window keeps one record per call and
//! rescans all of them on every call under a lock, O(calls in the window) per call, which at
//! thousands of calls a second is the bottleneck. This one keeps ten buckets per window: O(1) per
//! call, memory fixed, and old calls really do fall out of the window.
//!
//! Rules (Resilience4j's): closed until, with at least `minimum_calls` calls in the window, the
//! failure rate or the slow-call rate reaches its threshold; then open for `open_for`, refusing
//! every call without touching the peer; then half-open: `half_open_calls` probes go through, and
//! all of them must succeed (and not be slow) to close it; one failed probe opens it again. A probe
//! that is cancelled before it finishes gives its slot back.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

const BUCKETS: usize = 10;

#[derive(Clone, Debug, PartialEq)]
pub struct BreakerSettings {
    pub failure_rate: f64,
    pub slow_call_duration: Duration,
    pub slow_call_rate: f64,
    pub minimum_calls: u32,
    pub window: Duration,
    pub open_for: Duration,
    pub half_open_calls: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    fn gauge(self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::Open => 1.0,
            Self::HalfOpen => 2.0,
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    index: u64,
    calls: u32,
    failures: u32,
    slow: u32,
}

#[derive(Debug)]
struct Window {
    width: Duration,
    buckets: [Bucket; BUCKETS],
}

impl Window {
    fn new(window: Duration) -> Self {
        Self {
            width: (window / BUCKETS as u32).max(Duration::from_millis(1)),
            buckets: [Bucket::default(); BUCKETS],
        }
    }

    fn index(&self, since_epoch: Duration) -> u64 {
        (since_epoch.as_nanos() / self.width.as_nanos()) as u64
    }

    fn record(&mut self, since_epoch: Duration, failure: bool, slow: bool) {
        let index = self.index(since_epoch);
        let b = &mut self.buckets[(index % BUCKETS as u64) as usize];
        if b.index != index {
            *b = Bucket {
                index,
                ..Bucket::default()
            };
        }
        b.calls += 1;
        b.failures += u32::from(failure);
        b.slow += u32::from(slow);
    }

    /// (calls, failures, slow calls) in the window ending now.
    fn totals(&self, since_epoch: Duration) -> (u32, u32, u32) {
        let now = self.index(since_epoch);
        self.buckets
            .iter()
            .filter(|b| b.index <= now && now - b.index < BUCKETS as u64)
            .fold((0, 0, 0), |(c, f, s), b| {
                (c + b.calls, f + b.failures, s + b.slow)
            })
    }

    fn clear(&mut self) {
        self.buckets = [Bucket::default(); BUCKETS];
    }
}

#[derive(Debug)]
enum Phase {
    Closed,
    Open {
        until: Instant,
    },
    /// `admitted` probes let through in this cycle (in flight or done), `succeeded` of them done well.
    HalfOpen {
        admitted: u32,
        succeeded: u32,
    },
}

#[derive(Debug)]
struct State {
    phase: Phase,
    window: Window,
    /// Bumped on every state change, so that late results of an earlier phase are ignored.
    generation: u64,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    name: &'static str,
    settings: BreakerSettings,
    epoch: Instant,
    state: Mutex<State>,
}

/// Leave to make one call; report its result with [`Permit::record`].
#[must_use]
pub struct Permit {
    breaker: Arc<CircuitBreaker>,
    generation: u64,
    probe: bool,
    started: Instant,
    recorded: bool,
}

impl CircuitBreaker {
    pub fn new(name: &'static str, settings: BreakerSettings) -> Arc<Self> {
        let window = Window::new(settings.window);
        metrics::gauge!("grpc_client_circuit_state", "target" => name)
            .set(BreakerState::Closed.gauge());
        Arc::new(Self {
            name,
            settings,
            epoch: Instant::now(),
            state: Mutex::new(State {
                phase: Phase::Closed,
                window,
                generation: 0,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn state(&self) -> BreakerState {
        match self.lock().phase {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// A permit, or how long until the circuit may let a call through.
    pub fn try_acquire(self: &Arc<Self>) -> Result<Permit, Duration> {
        let now = Instant::now();
        let mut s = self.lock();
        let probe = match s.phase {
            Phase::Closed => false,
            Phase::Open { until } if now < until => return Err(until - now),
            Phase::Open { .. } => {
                self.enter(
                    &mut s,
                    Phase::HalfOpen {
                        admitted: 1,
                        succeeded: 0,
                    },
                );
                true
            }
            Phase::HalfOpen {
                ref mut admitted, ..
            } => {
                if *admitted >= self.settings.half_open_calls {
                    // The probes are out; their answers decide. Ask again shortly.
                    return Err(self.settings.open_for.min(Duration::from_secs(1)));
                }
                *admitted += 1;
                true
            }
        };
        Ok(Permit {
            breaker: self.clone(),
            generation: s.generation,
            probe,
            started: now,
            recorded: false,
        })
    }

    fn enter(&self, s: &mut State, phase: Phase) {
        let state = match phase {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        };
        s.phase = phase;
        s.generation += 1;
        s.window.clear();
        metrics::gauge!("grpc_client_circuit_state", "target" => self.name).set(state.gauge());
        match state {
            BreakerState::Open => {
                tracing::warn!(target: "grpc", dependency = self.name, "circuit opened")
            }
            BreakerState::HalfOpen => {
                tracing::info!(target: "grpc", dependency = self.name, "circuit half-open: probing")
            }
            BreakerState::Closed => {
                tracing::info!(target: "grpc", dependency = self.name, "circuit closed")
            }
        }
    }

    fn open(&self, s: &mut State) {
        self.enter(
            s,
            Phase::Open {
                until: Instant::now() + self.settings.open_for,
            },
        );
    }

    fn on_result(&self, generation: u64, probe: bool, failure: bool, took: Duration) {
        let slow = took >= self.settings.slow_call_duration;
        let mut s = self.lock();
        if s.generation != generation {
            return;
        }
        if probe {
            if failure || slow {
                self.open(&mut s);
            } else if let Phase::HalfOpen {
                ref mut succeeded, ..
            } = s.phase
            {
                *succeeded += 1;
                if *succeeded >= self.settings.half_open_calls {
                    self.enter(&mut s, Phase::Closed);
                }
            }
            return;
        }
        let since = self.epoch.elapsed();
        s.window.record(since, failure, slow);
        let (calls, failures, slow_calls) = s.window.totals(since);
        if calls >= self.settings.minimum_calls {
            let rate = |n: u32| f64::from(n) / f64::from(calls);
            if rate(failures) >= self.settings.failure_rate
                || rate(slow_calls) >= self.settings.slow_call_rate
            {
                self.open(&mut s);
            }
        }
    }

    fn on_cancelled_probe(&self, generation: u64) {
        let mut s = self.lock();
        if s.generation == generation {
            if let Phase::HalfOpen {
                ref mut admitted, ..
            } = s.phase
            {
                *admitted = admitted.saturating_sub(1);
            }
        }
    }
}

impl Permit {
    /// Report the call's result; its duration is measured from the permit.
    pub fn record(mut self, failure: bool) {
        self.recorded = true;
        self.breaker
            .on_result(self.generation, self.probe, failure, self.started.elapsed());
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.recorded && self.probe {
            self.breaker.on_cancelled_probe(self.generation);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            failure_rate: 0.5,
            slow_call_duration: Duration::from_secs(10),
            slow_call_rate: 0.8,
            minimum_calls: 4,
            window: Duration::from_secs(10),
            open_for: Duration::from_millis(50),
            half_open_calls: 2,
        }
    }

    fn call(b: &Arc<CircuitBreaker>, failure: bool) {
        b.try_acquire().expect("permitted").record(failure);
    }

    #[test]
    fn opens_at_the_failure_rate_once_there_are_enough_calls() {
        let b = CircuitBreaker::new("t", settings());
        call(&b, true);
        call(&b, true);
        call(&b, true);
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "three calls are below the minimum"
        );
        call(&b, false);
        assert_eq!(b.state(), BreakerState::Open, "3 of 4 failed");
        let wait = b.try_acquire().err().expect("refused while open");
        assert!(wait <= Duration::from_millis(50));
    }

    #[test]
    fn stays_closed_below_the_rate() {
        let b = CircuitBreaker::new("t", settings());
        for i in 0..20 {
            call(&b, i % 4 == 0);
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn slow_calls_open_it_too() {
        let b = CircuitBreaker::new(
            "t",
            BreakerSettings {
                slow_call_duration: Duration::ZERO,
                ..settings()
            },
        );
        for _ in 0..4 {
            call(&b, false);
        }
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn old_calls_leave_the_window() {
        let b = CircuitBreaker::new(
            "t",
            BreakerSettings {
                window: Duration::from_millis(100),
                ..settings()
            },
        );
        for _ in 0..3 {
            call(&b, true);
        }
        std::thread::sleep(Duration::from_millis(150));
        call(&b, true);
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "the first three failures are out of the window"
        );
    }

    #[test]
    fn half_open_probes_close_it_or_open_it_again() {
        let b = CircuitBreaker::new("t", settings());
        for _ in 0..4 {
            call(&b, true);
        }
        assert_eq!(b.state(), BreakerState::Open);
        std::thread::sleep(Duration::from_millis(60));
        let p1 = b.try_acquire().expect("first probe");
        let p2 = b.try_acquire().expect("second probe");
        assert!(b.try_acquire().is_err(), "only two probes");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        p1.record(false);
        p2.record(true);
        assert_eq!(b.state(), BreakerState::Open, "a failed probe reopens");

        std::thread::sleep(Duration::from_millis(60));
        let p = b.try_acquire().expect("probe");
        drop(p); // cancelled: gives its slot back
        call(&b, false);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        call(&b, false);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn late_results_of_an_earlier_phase_are_ignored() {
        let b = CircuitBreaker::new("t", settings());
        let late = b.try_acquire().unwrap();
        for _ in 0..4 {
            call(&b, true);
        }
        assert_eq!(b.state(), BreakerState::Open);
        std::thread::sleep(Duration::from_millis(60));
        let p = b.try_acquire().unwrap();
        late.record(true);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        p.record(false);
    }
}
