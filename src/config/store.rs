//! Where the data lives and how it leaves: DynamoDB, retention, the outbox relay, EventBridge.

use std::time::Duration;

use super::env::{millis, secs, trimmed};
use crate::store::dynamo::TableNames;

#[derive(Clone, Debug)]
pub struct DynamoSettings {
    /// `DYNAMODB_ENDPOINT`: a local server (moto) instead of AWS.
    pub endpoint: Option<String>,
    /// `DYNAMODB_TABLE_*`.
    pub tables: TableNames,
    /// `DYNAMODB_AUTO_CREATE`: create missing tables at start (local and dev only).
    pub auto_create: bool,
    /// `DYNAMODB_TIMEOUT_MS`: the deadline of one store operation, retries included.
    pub timeout: Duration,
}

/// How long finished records are kept, and how the embedded store's sweeper removes them.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct RetentionSettings {
    /// A PUBLISHED event is removed this long after publication.
    #[arg(id = "OUTBOX_RETENTION_SECONDS", env = "OUTBOX_RETENTION_SECONDS", default_value = "3600", value_parser = secs)]
    pub outbox: Duration,
    /// A CONFIRMED, CANCELLED or EXPIRED reservation (with its order) is removed this long after
    /// its last change.
    #[arg(id = "RESERVATION_RETENTION_SECONDS", env = "RESERVATION_RETENTION_SECONDS", default_value = "86400", value_parser = secs)]
    pub reservation: Duration,
    /// How often the embedded store's sweeper runs.
    #[arg(id = "RETENTION_SWEEP_INTERVAL_MS", env = "RETENTION_SWEEP_INTERVAL_MS", default_value = "1000", value_parser = millis)]
    pub sweep_interval: Duration,
    /// Items removed per lock hold.
    #[arg(id = "RETENTION_SWEEP_BATCH", env = "RETENTION_SWEEP_BATCH", default_value = "500", value_parser = trimmed::<usize>)]
    pub sweep_batch: usize,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        super::env::defaults()
    }
}

impl RetentionSettings {
    pub fn retention(&self) -> crate::store::Retention {
        let chrono = |d: Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        crate::store::Retention {
            outbox: chrono(self.outbox),
            reservations: chrono(self.reservation),
        }
    }

    /// Every problem of these settings, one line each.
    pub fn problems(&self, out: &mut Vec<String>) {
        if self.outbox.is_zero() || self.reservation.is_zero() {
            out.push(
                "OUTBOX_RETENTION_SECONDS and RESERVATION_RETENTION_SECONDS must be positive"
                    .into(),
            );
        }
        if self.sweep_interval.is_zero() || self.sweep_batch == 0 {
            out.push(
                "RETENTION_SWEEP_INTERVAL_MS and RETENTION_SWEEP_BATCH must be positive".into(),
            );
        }
    }
}

/// The outbox relay (`OUTBOX_…`).
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct OutboxSettings {
    /// The relay's safety-net poll (writes wake it at once).
    #[arg(id = "OUTBOX_POLL_INTERVAL_MS", env = "OUTBOX_POLL_INTERVAL_MS", default_value = "1000", value_parser = millis)]
    pub poll_interval: Duration,
    /// How long a relay's claim on an event lasts.
    #[arg(id = "OUTBOX_LEASE_SECONDS", env = "OUTBOX_LEASE_SECONDS", default_value = "30", value_parser = secs)]
    pub lease: Duration,
    /// Publish attempts before an event is marked FAILED.
    #[arg(id = "OUTBOX_MAX_ATTEMPTS", env = "OUTBOX_MAX_ATTEMPTS", default_value = "8", value_parser = trimmed::<u32>)]
    pub max_attempts: u32,
    /// Events claimed, published and settled per round (one DynamoDB transaction: at most 100).
    #[arg(id = "OUTBOX_BATCH_SIZE", env = "OUTBOX_BATCH_SIZE", default_value = "100", value_parser = trimmed::<usize>)]
    pub batch_size: usize,
    /// After a part batch, how long the relay lets more events gather before the next round.
    #[arg(id = "OUTBOX_LINGER_MS", env = "OUTBOX_LINGER_MS", default_value = "50", value_parser = millis)]
    pub linger: Duration,
    /// How long SIGTERM waits for the relay to publish what is due.
    #[arg(id = "OUTBOX_DRAIN_TIMEOUT_MS", env = "OUTBOX_DRAIN_TIMEOUT_MS", default_value = "5000", value_parser = millis)]
    pub drain_timeout: Duration,
    /// The first retry's delay; each further attempt doubles it (with jitter).
    #[arg(id = "OUTBOX_BACKOFF_BASE_MS", env = "OUTBOX_BACKOFF_BASE_MS", default_value = "200", value_parser = millis)]
    pub backoff_base: Duration,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        super::env::defaults()
    }
}

impl OutboxSettings {
    /// Every problem of these settings, one line each.
    pub fn problems(&self, out: &mut Vec<String>) {
        if !(1..=100).contains(&self.batch_size) {
            out.push(
                "OUTBOX_BATCH_SIZE must be 1-100 (a DynamoDB transaction takes at most 100 items)"
                    .into(),
            );
        }
        if self.max_attempts == 0 {
            out.push("OUTBOX_MAX_ATTEMPTS must be positive".into());
        }
    }
}

#[derive(Clone, Debug)]
pub struct EventBridgeSettings {
    /// `EVENTBRIDGE_ENDPOINT`: a local server (moto) instead of AWS.
    pub endpoint: Option<String>,
    /// `EVENTBRIDGE_BUS_NAME`.
    pub bus_name: String,
    /// `EVENT_SOURCE`: the events' `Source`.
    pub source: String,
    /// Publish to EventBridge (else to the JSON log): on in dev and prod, and in local when an
    /// endpoint or a bus is configured.
    pub enabled: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_and_outbox_defaults_and_limits() {
        let r = RetentionSettings::default();
        assert_eq!(r.retention().outbox, chrono::Duration::seconds(3600));
        assert_eq!(r.reservation, Duration::from_secs(86_400));
        let mut out = Vec::new();
        r.problems(&mut out);
        OutboxSettings::default().problems(&mut out);
        assert!(out.is_empty(), "{out:?}");
        OutboxSettings {
            batch_size: 101,
            max_attempts: 0,
            ..Default::default()
        }
        .problems(&mut out);
        RetentionSettings {
            sweep_batch: 0,
            ..r
        }
        .problems(&mut out);
        assert_eq!(out.len(), 3, "{out:?}");
    }
}
