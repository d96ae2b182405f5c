//! The HTTP server's limits (`HTTP_…`).

use std::time::Duration;

use super::env::{millis, trimmed};

/// The HTTP server's limits (`HTTP_…`).
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct HttpSettings {
    /// A request head must arrive within this, counted from when the connection starts waiting
    /// for it (also between requests on a kept-alive HTTP/1.1 connection); else the connection is
    /// closed.
    #[arg(id = "HTTP_HEADER_READ_TIMEOUT_MS", env = "HTTP_HEADER_READ_TIMEOUT_MS", default_value = "10000", value_parser = millis)]
    pub header_read_timeout: Duration,
    /// A connection that moved no byte for this long is closed gracefully.
    #[arg(id = "HTTP_IDLE_TIMEOUT_MS", env = "HTTP_IDLE_TIMEOUT_MS", default_value = "60000", value_parser = millis)]
    pub idle_timeout: Duration,
    /// The whole request's deadline (→ 504 `UPSTREAM_TIMEOUT`).
    #[arg(id = "HTTP_REQUEST_TIMEOUT_MS", env = "HTTP_REQUEST_TIMEOUT_MS", default_value = "30000", value_parser = millis)]
    pub request_timeout: Duration,
    /// Open connections served at most.
    #[arg(id = "HTTP_MAX_CONNECTIONS", env = "HTTP_MAX_CONNECTIONS", default_value = "10000", value_parser = trimmed::<usize>)]
    pub max_connections: usize,
    /// On SIGTERM, readiness answers DOWN while the listener still accepts, for this long; then
    /// it closes and in-flight requests finish.
    #[arg(id = "HTTP_SHUTDOWN_GRACE_MS", env = "HTTP_SHUTDOWN_GRACE_MS", default_value = "0", value_parser = millis)]
    pub shutdown_grace: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        super::env::defaults()
    }
}

impl HttpSettings {
    /// Every problem of these settings, one line each.
    pub fn problems(&self, out: &mut Vec<String>) {
        for (name, v) in [
            ("HTTP_HEADER_READ_TIMEOUT_MS", self.header_read_timeout),
            ("HTTP_IDLE_TIMEOUT_MS", self.idle_timeout),
            ("HTTP_REQUEST_TIMEOUT_MS", self.request_timeout),
        ] {
            if !(1..=3_600_000).contains(&v.as_millis()) {
                out.push(format!("{name} must be 1-3600000"));
            }
        }
        if self.max_connections == 0 {
            out.push("HTTP_MAX_CONNECTIONS must be positive".into());
        }
        if self.shutdown_grace > Duration::from_secs(300) {
            out.push("HTTP_SHUTDOWN_GRACE_MS must be 0-300000".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_come_from_the_clap_definitions_and_are_valid() {
        let d = HttpSettings::default();
        assert_eq!(d.header_read_timeout, Duration::from_secs(10));
        assert_eq!(d.request_timeout, Duration::from_secs(30));
        assert_eq!(d.max_connections, 10_000);
        let mut out = Vec::new();
        d.problems(&mut out);
        assert!(out.is_empty(), "{out:?}");
        HttpSettings {
            idle_timeout: Duration::ZERO,
            max_connections: 0,
            shutdown_grace: Duration::from_secs(301),
            ..d
        }
        .problems(&mut out);
        assert_eq!(out.len(), 3, "{out:?}");
    }
}
