//! Where the data lives and how it leaves: DynamoDB, retention, the outbox relay, EventBridge.

use std::time::Duration;

use super::env::{millis, secs, trimmed};
use crate::store::dynamo::{ShardLayout, TableNames};

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
    pub index_shards: IndexShardSettings,
    /// A test seam: extra interceptors on the clients the app builds (never set from the
    /// environment).
    pub taps: ClientTaps,
}

/// Interceptors a test puts on the DynamoDB clients the app builds, to count their requests.
#[derive(Clone, Debug, Default)]
pub struct ClientTaps {
    /// On the reservation store's client.
    pub store: Option<aws_sdk_dynamodb::config::SharedInterceptor>,
    /// On the bundled inventory's client.
    pub seats: Option<aws_sdk_dynamodb::config::SharedInterceptor>,
}

/// The shards of the sparse indexes `holds_by_expiry` and `pending_by_due` (docs/outbox.md,
/// "Index shards").
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct IndexShardSettings {
    /// Partition keys new index entries spread over (each takes ~1,000 WCU/s).
    #[arg(id = "DYNAMODB_INDEX_SHARDS", env = "DYNAMODB_INDEX_SHARDS", default_value = "64", value_parser = trimmed::<u32>)]
    pub current: u32,
    /// During a change of `DYNAMODB_INDEX_SHARDS`, the count before it: readers cover both.
    #[arg(id = "DYNAMODB_INDEX_SHARDS_PREVIOUS", env = "DYNAMODB_INDEX_SHARDS_PREVIOUS", value_parser = trimmed::<u32>)]
    pub previous: Option<u32>,
    /// Shards one relay round or expiry sweep queries (a rotating window; local writes first).
    #[arg(id = "DYNAMODB_INDEX_SHARDS_PER_ROUND", env = "DYNAMODB_INDEX_SHARDS_PER_ROUND", default_value = "8", value_parser = trimmed::<u32>)]
    pub per_round: u32,
}

impl Default for IndexShardSettings {
    fn default() -> Self {
        super::env::defaults()
    }
}

impl IndexShardSettings {
    pub fn layout(&self) -> ShardLayout {
        ShardLayout {
            current: self.current,
            previous: self.previous,
            per_round: self.per_round,
        }
    }

    /// Every problem of these settings, one line each.
    pub fn problems(&self, out: &mut Vec<String>) {
        let ok = |n: u32| (1..=1024).contains(&n);
        if !ok(self.current) || !self.previous.is_none_or(ok) || !ok(self.per_round) {
            out.push(
                "DYNAMODB_INDEX_SHARDS, DYNAMODB_INDEX_SHARDS_PREVIOUS and \
                 DYNAMODB_INDEX_SHARDS_PER_ROUND must be 1-1024"
                    .into(),
            );
        }
    }
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
    /// What the service gave up on is kept this long for an operator: a FAILED outbox event
    /// (from its failure; `outbox redrive` puts it back) and a HOLD the expiry sweeper could not
    /// finish (from its hold's end).
    #[arg(id = "FAILED_RETENTION_SECONDS", env = "FAILED_RETENTION_SECONDS", default_value = "1209600", value_parser = secs)]
    pub failed: Duration,
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
            failed: chrono(self.failed),
        }
    }

    /// Every problem of these settings, one line each.
    pub fn problems(&self, out: &mut Vec<String>) {
        if self.outbox.is_zero() || self.reservation.is_zero() || self.failed.is_zero() {
            out.push(
                "OUTBOX_RETENTION_SECONDS, RESERVATION_RETENTION_SECONDS and \
                 FAILED_RETENTION_SECONDS must be positive"
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
