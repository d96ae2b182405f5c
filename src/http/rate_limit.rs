//! Token buckets in front of `/v1/*`, after authentication and before any work: one per user
//! (`sub`) and one for the replica. Limits are per replica: for a fleet of N replicas behind a
//! balancer, a user gets up to N × `RATE_LIMIT_USER_RPS` in the worst case, and the global limit
//! should be set to (what the dependencies sustain) ÷ N.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio_util::sync::CancellationToken;

use crate::config::RateLimitSettings;

/// How often idle users' buckets are forgotten (a full bucket carries no state worth keeping).
const CLEANUP_EVERY: Duration = Duration::from_secs(30);

struct Bucket<L> {
    limiter: L,
    /// The bucket size, for `RateLimit-Limit`.
    limit: u32,
}

pub struct RateLimits {
    user: Option<Bucket<DefaultKeyedRateLimiter<String>>>,
    global: Option<Bucket<DefaultDirectRateLimiter>>,
    clock: DefaultClock,
}

/// A request over a limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limited {
    /// `user` or `global`.
    pub scope: &'static str,
    pub limit: u32,
    /// Whole seconds until a request would pass, at least 1.
    pub retry_after_secs: u64,
}

fn quota(rps: u32, burst: u32) -> Option<(Quota, u32)> {
    let rate = NonZeroU32::new(rps)?;
    let burst = NonZeroU32::new(burst).unwrap_or(rate);
    Some((Quota::per_second(rate).allow_burst(burst), burst.get()))
}

impl RateLimits {
    pub fn new(s: &RateLimitSettings) -> Self {
        Self {
            user: quota(s.user_rps, s.user_burst).map(|(q, limit)| Bucket {
                limiter: RateLimiter::keyed(q),
                limit,
            }),
            global: quota(s.global_rps, s.global_rps).map(|(q, limit)| Bucket {
                limiter: RateLimiter::direct(q),
                limit,
            }),
            clock: DefaultClock::default(),
        }
    }

    pub fn is_off(&self) -> bool {
        self.user.is_none() && self.global.is_none()
    }

    /// Take one request for `user`: the user's bucket first, so that one user flooding is
    /// refused without spending the replica's budget.
    pub fn check(&self, user: &str) -> Result<(), Limited> {
        if let Some(b) = &self.user {
            if let Err(not_until) = b.limiter.check_key(&user.to_owned()) {
                return Err(self.limited(
                    "user",
                    b.limit,
                    not_until.wait_time_from(self.clock.now()),
                ));
            }
        }
        if let Some(b) = &self.global {
            if let Err(not_until) = b.limiter.check() {
                return Err(self.limited(
                    "global",
                    b.limit,
                    not_until.wait_time_from(self.clock.now()),
                ));
            }
        }
        Ok(())
    }

    fn limited(&self, scope: &'static str, limit: u32, wait: Duration) -> Limited {
        metrics::counter!("rate_limited_total", "scope" => scope).increment(1);
        Limited {
            scope,
            limit,
            retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
        }
    }

    /// Users with a bucket in memory.
    pub fn tracked_users(&self) -> usize {
        self.user.as_ref().map_or(0, |b| b.limiter.len())
    }

    /// Forget idle users' buckets now (the background task does this every 30 s).
    pub fn forget_idle(&self) {
        if let Some(b) = &self.user {
            b.limiter.retain_recent();
            b.limiter.shrink_to_fit();
        }
    }

    /// Run [`Self::forget_idle`] periodically until `stop` (nothing to run without a per-user
    /// limit).
    pub fn cleanup(
        self: &Arc<Self>,
        stop: CancellationToken,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        self.user.as_ref()?;
        // Held, not weak: it ends on `stop` alone, so that any other end is a failure.
        let limits = self.clone();
        Some(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(CLEANUP_EVERY) => limits.forget_idle(),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_over_the_burst_is_limited_and_others_are_not() {
        let l = RateLimits::new(&RateLimitSettings {
            user_rps: 1,
            user_burst: 3,
            global_rps: 0,
        });
        for _ in 0..3 {
            assert!(l.check("a").is_ok());
        }
        let e = l.check("a").unwrap_err();
        assert_eq!((e.scope, e.limit), ("user", 3));
        assert!(e.retry_after_secs >= 1);
        assert!(l.check("b").is_ok());
        assert_eq!(l.tracked_users(), 2);
    }

    #[test]
    fn idle_users_are_forgotten() {
        let l = RateLimits::new(&RateLimitSettings {
            user_rps: 100,
            user_burst: 1,
            global_rps: 0,
        });
        for i in 0..1000 {
            assert!(l.check(&format!("u{i}")).is_ok());
        }
        assert_eq!(l.tracked_users(), 1000);
        // After 10 ms each bucket is full again: nothing worth remembering.
        std::thread::sleep(Duration::from_millis(50));
        l.forget_idle();
        assert_eq!(l.tracked_users(), 0);
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let l = RateLimits::new(&RateLimitSettings::default());
        assert!(l.is_off());
        for _ in 0..1000 {
            assert!(l.check("a").is_ok());
        }
        assert_eq!(l.tracked_users(), 0);
    }
}
