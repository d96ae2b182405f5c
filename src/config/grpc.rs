//! A gRPC dependency's client: deadline, retry, circuit breaker and bulkhead (`<PREFIX>_…`
//! variables, prefix `INVENTORY` or `PAYMENT`).

use std::time::Duration;

use super::env::{millis, secs, trimmed};

/// A gRPC dependency's client settings.
#[derive(Clone, Debug, PartialEq)]
pub struct GrpcClientSettings {
    /// Deadline of one call, retries included; sent as `grpc-timeout` (`_TIMEOUT_MS`).
    pub timeout: Duration,
    /// Bulkhead: calls in flight at most; one more is refused at once (`_MAX_CONCURRENT`).
    pub max_concurrent: usize,
    /// Attempts of one call, the first included (`_RETRY_MAX_ATTEMPTS`; 1 turns retries off).
    pub retry_max_attempts: usize,
    /// First backoff; doubles per retry, ±50 % jitter (`_RETRY_BACKOFF_MS`).
    pub retry_backoff: Duration,
    /// Backoff cap before jitter (`_RETRY_MAX_BACKOFF_MS`).
    pub retry_max_backoff: Duration,
    /// Open the circuit at this share of failed calls in the window (`_CB_FAILURE_RATE_PERCENT`).
    pub cb_failure_rate_percent: u8,
    /// A call at least this long is slow (`_CB_SLOW_CALL_MS`; default 80 % of the deadline).
    pub cb_slow_call: Option<Duration>,
    /// Open the circuit at this share of slow calls in the window (`_CB_SLOW_CALL_RATE_PERCENT`).
    pub cb_slow_call_rate_percent: u8,
    /// Calls in the window before the rates are judged (`_CB_MINIMUM_CALLS`).
    pub cb_minimum_calls: u32,
    /// Length of the sliding window (`_CB_WINDOW_SECONDS`).
    pub cb_window: Duration,
    /// How long an open circuit refuses calls before it lets probes through (`_CB_OPEN_MS`).
    pub cb_open: Duration,
    /// Probes let through when half-open; all must succeed to close (`_CB_HALF_OPEN_CALLS`).
    pub cb_half_open_calls: u32,
}

/// The clap arguments of one prefix. A macro, because clap's derive takes the variable names
/// as constants and the two dependencies have the same settings under different prefixes.
macro_rules! client_vars {
    ($name:ident, $prefix:literal) => {
        #[doc = concat!("The `", $prefix, "_…` variables.")]
        #[derive(clap::Args)]
        pub(crate) struct $name {
            #[arg(id = concat!($prefix, "_TIMEOUT_MS"), env = concat!($prefix, "_TIMEOUT_MS"), default_value = "250", value_parser = millis)]
            timeout: Duration,
            #[arg(id = concat!($prefix, "_MAX_CONCURRENT"), env = concat!($prefix, "_MAX_CONCURRENT"), default_value = "1024", value_parser = trimmed::<usize>)]
            max_concurrent: usize,
            #[arg(id = concat!($prefix, "_RETRY_MAX_ATTEMPTS"), env = concat!($prefix, "_RETRY_MAX_ATTEMPTS"), default_value = "3", value_parser = trimmed::<usize>)]
            retry_max_attempts: usize,
            #[arg(id = concat!($prefix, "_RETRY_BACKOFF_MS"), env = concat!($prefix, "_RETRY_BACKOFF_MS"), default_value = "10", value_parser = millis)]
            retry_backoff: Duration,
            #[arg(id = concat!($prefix, "_RETRY_MAX_BACKOFF_MS"), env = concat!($prefix, "_RETRY_MAX_BACKOFF_MS"), default_value = "50", value_parser = millis)]
            retry_max_backoff: Duration,
            #[arg(id = concat!($prefix, "_CB_FAILURE_RATE_PERCENT"), env = concat!($prefix, "_CB_FAILURE_RATE_PERCENT"), default_value = "50", value_parser = trimmed::<u8>)]
            cb_failure_rate_percent: u8,
            #[arg(id = concat!($prefix, "_CB_SLOW_CALL_MS"), env = concat!($prefix, "_CB_SLOW_CALL_MS"), value_parser = millis)]
            cb_slow_call: Option<Duration>,
            #[arg(id = concat!($prefix, "_CB_SLOW_CALL_RATE_PERCENT"), env = concat!($prefix, "_CB_SLOW_CALL_RATE_PERCENT"), default_value = "80", value_parser = trimmed::<u8>)]
            cb_slow_call_rate_percent: u8,
            #[arg(id = concat!($prefix, "_CB_MINIMUM_CALLS"), env = concat!($prefix, "_CB_MINIMUM_CALLS"), default_value = "10", value_parser = trimmed::<u32>)]
            cb_minimum_calls: u32,
            #[arg(id = concat!($prefix, "_CB_WINDOW_SECONDS"), env = concat!($prefix, "_CB_WINDOW_SECONDS"), default_value = "10", value_parser = secs)]
            cb_window: Duration,
            #[arg(id = concat!($prefix, "_CB_OPEN_MS"), env = concat!($prefix, "_CB_OPEN_MS"), default_value = "5000", value_parser = millis)]
            cb_open: Duration,
            #[arg(id = concat!($prefix, "_CB_HALF_OPEN_CALLS"), env = concat!($prefix, "_CB_HALF_OPEN_CALLS"), default_value = "3", value_parser = trimmed::<u32>)]
            cb_half_open_calls: u32,
        }

        impl From<$name> for GrpcClientSettings {
            fn from(v: $name) -> Self {
                Self {
                    timeout: v.timeout,
                    max_concurrent: v.max_concurrent,
                    retry_max_attempts: v.retry_max_attempts,
                    retry_backoff: v.retry_backoff,
                    retry_max_backoff: v.retry_max_backoff,
                    cb_failure_rate_percent: v.cb_failure_rate_percent,
                    cb_slow_call: v.cb_slow_call,
                    cb_slow_call_rate_percent: v.cb_slow_call_rate_percent,
                    cb_minimum_calls: v.cb_minimum_calls,
                    cb_window: v.cb_window,
                    cb_open: v.cb_open,
                    cb_half_open_calls: v.cb_half_open_calls,
                }
            }
        }
    };
}

client_vars!(InventoryClientVars, "INVENTORY");
client_vars!(PaymentClientVars, "PAYMENT");

impl Default for GrpcClientSettings {
    /// The defaults of the clap definitions (the same for both prefixes).
    fn default() -> Self {
        super::env::defaults::<InventoryClientVars>().into()
    }
}

impl GrpcClientSettings {
    /// The slow-call threshold: as configured, or 80 % of the deadline.
    pub fn slow_call(&self) -> Duration {
        self.cb_slow_call
            .unwrap_or(self.timeout * 4 / 5)
            .max(Duration::from_millis(1))
    }

    /// Every problem of these settings, one line each.
    pub fn problems(&self, prefix: &str, out: &mut Vec<String>) {
        let mut bad = |what: &str| out.push(format!("{prefix}_{what}"));
        if !(1..=60_000).contains(&self.timeout.as_millis()) {
            bad("TIMEOUT_MS must be 1-60000");
        }
        if self.max_concurrent == 0 {
            bad("MAX_CONCURRENT must be positive");
        }
        if !(1..=10).contains(&self.retry_max_attempts) {
            bad("RETRY_MAX_ATTEMPTS must be 1-10");
        }
        if self.retry_backoff > self.retry_max_backoff {
            bad("RETRY_BACKOFF_MS must not exceed RETRY_MAX_BACKOFF_MS");
        }
        if !(1..=100).contains(&self.cb_failure_rate_percent)
            || !(1..=100).contains(&self.cb_slow_call_rate_percent)
        {
            bad("CB_FAILURE_RATE_PERCENT and CB_SLOW_CALL_RATE_PERCENT must be 1-100");
        }
        if self.cb_slow_call.is_some_and(|d| d.is_zero()) {
            bad("CB_SLOW_CALL_MS must be positive");
        }
        if self.cb_minimum_calls == 0 || self.cb_half_open_calls == 0 || self.cb_open.is_zero() {
            bad("CB_MINIMUM_CALLS, CB_HALF_OPEN_CALLS and CB_OPEN_MS must be positive");
        }
        if !(1..=3600).contains(&self.cb_window.as_secs()) || self.cb_window.subsec_nanos() != 0 {
            bad("CB_WINDOW_SECONDS must be 1-3600");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_client_defaults_and_limits() {
        let d = GrpcClientSettings::default();
        assert_eq!(d.timeout, Duration::from_millis(250));
        assert_eq!(d.max_concurrent, 1024);
        assert_eq!(d.slow_call(), Duration::from_millis(200));
        let bad = [
            GrpcClientSettings {
                timeout: Duration::ZERO,
                ..Default::default()
            },
            GrpcClientSettings {
                max_concurrent: 0,
                ..Default::default()
            },
            GrpcClientSettings {
                retry_max_attempts: 0,
                ..Default::default()
            },
            GrpcClientSettings {
                cb_failure_rate_percent: 0,
                ..Default::default()
            },
            GrpcClientSettings {
                cb_half_open_calls: 0,
                ..Default::default()
            },
            GrpcClientSettings {
                retry_backoff: Duration::from_millis(100),
                retry_max_backoff: Duration::from_millis(10),
                ..Default::default()
            },
        ];
        for s in bad {
            let mut out = Vec::new();
            s.problems("INVENTORY", &mut out);
            assert_eq!(out.len(), 1, "{s:?}: {out:?}");
            assert!(out[0].starts_with("INVENTORY_"), "{s:?}: {out:?}");
        }
    }
}
