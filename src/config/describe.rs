//! The effective configuration as `NAME=value` lines, secrets redacted: what `config check` prints.

use secrecy::{ExposeSecret, SecretString};

use super::{redact_url, Config};

impl Config {
    /// The effective configuration as `NAME=value` lines (the variables that set it), secrets
    /// redacted.
    pub fn describe(&self) -> Vec<String> {
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "(unset)".into());
        let secret = |v: &Option<SecretString>| match v {
            Some(_) => "(set, redacted)".to_owned(),
            None => "(unset)".to_owned(),
        };
        let t = &self.dynamodb.tables;
        let algorithms: Vec<String> = self
            .issuer
            .algorithms
            .iter()
            .map(|a| format!("{a:?}"))
            .collect();
        let mut lines = vec![
            format!("APP_PROFILE={}", self.profile.as_str()),
            format!("SERVER_HOST={}", self.host),
            format!("SERVER_PORT={}", self.port),
            format!("STORE={}", self.store.as_str()),
            format!("AWS_REGION={}", self.aws_region),
            format!("DYNAMODB_ENDPOINT={}", opt(&self.dynamodb.endpoint)),
            format!("DYNAMODB_AUTO_CREATE={}", self.dynamodb.auto_create),
            format!("DYNAMODB_TIMEOUT_MS={}", self.dynamodb.timeout.as_millis()),
            format!("DYNAMODB_TABLE_RESERVATIONS={}", t.reservations),
            format!("DYNAMODB_TABLE_ORDERS={}", t.orders),
            format!("DYNAMODB_TABLE_IDEMPOTENCY={}", t.idempotency),
            format!("DYNAMODB_TABLE_OUTBOX={}", t.outbox),
            format!("DYNAMODB_TABLE_SEATS={}", t.seats),
            format!(
                "DYNAMODB_INDEX_SHARDS={}",
                self.dynamodb.index_shards.current
            ),
            format!(
                "DYNAMODB_INDEX_SHARDS_PREVIOUS={}",
                opt(&self.dynamodb.index_shards.previous.map(|n| n.to_string()))
            ),
            format!(
                "DYNAMODB_INDEX_SHARDS_PER_ROUND={}",
                self.dynamodb.index_shards.per_round
            ),
            format!("EVENTBRIDGE_ENDPOINT={}", opt(&self.events.endpoint)),
            format!("EVENTBRIDGE_BUS_NAME={}", self.events.bus_name),
            format!("EVENT_SOURCE={}", self.events.source),
            format!(
                "events.sink={}",
                if self.events.enabled {
                    "eventbridge"
                } else {
                    "log"
                }
            ),
            format!("HOLD_TTL_SECONDS={}", self.hold_ttl.as_secs()),
            format!("IDEMPOTENCY_TTL_SECONDS={}", self.idempotency_ttl.as_secs()),
            format!(
                "IDEMPOTENCY_LEASE_SECONDS={}",
                self.idempotency_lease.as_secs()
            ),
            format!("JWT_DEV_SECRET={}", secret(&self.jwt_dev_secret)),
            format!("JWT_ISSUER_URI={}", opt(&self.jwt_issuer_uri)),
            format!("JWT_JWKS_URI={}", opt(&self.issuer.jwks_uri)),
            format!("JWT_AUDIENCE={}", opt(&self.issuer.audience)),
            format!("JWT_ALGORITHMS={}", algorithms.join(",")),
            format!("JWT_LEEWAY_SECONDS={}", self.issuer.leeway.as_secs()),
            format!("ADMISSION_MODE={}", self.admission.mode.as_str()),
            format!(
                "REDIS_URL={}",
                self.admission
                    .redis_url
                    .as_ref()
                    .map_or("(unset)".into(), |u| redact_url(u.expose_secret()))
            ),
            format!("REDIS_TIMEOUT_MS={}", self.admission.timeout.as_millis()),
            format!("RATE_LIMIT_USER_RPS={}", self.rate_limits.user_rps),
            format!("RATE_LIMIT_USER_BURST={}", self.rate_limits.user_burst),
            format!("RATE_LIMIT_GLOBAL_RPS={}", self.rate_limits.global_rps),
            format!("DATA_DIR={}", self.data_dir.display()),
            format!(
                "CATALOG_FILE={}",
                self.catalog_file
                    .as_ref()
                    .map_or("(bundled)".into(), |p| p.display().to_string())
            ),
            format!(
                "EXPIRY_SWEEP_INTERVAL_MS={}",
                self.expiry_interval.as_millis()
            ),
            format!("EXPIRY_SWEEP_BATCH={}", self.expiry_batch),
        ];
        lines.extend(self.cache.describe());
        let o = &self.outbox;
        lines.extend([
            format!("OUTBOX_POLL_INTERVAL_MS={}", o.poll_interval.as_millis()),
            format!("OUTBOX_LEASE_SECONDS={}", o.lease.as_secs()),
            format!("OUTBOX_MAX_ATTEMPTS={}", o.max_attempts),
            format!("OUTBOX_BATCH_SIZE={}", o.batch_size),
            format!("OUTBOX_LINGER_MS={}", o.linger.as_millis()),
            format!("OUTBOX_DRAIN_TIMEOUT_MS={}", o.drain_timeout.as_millis()),
            format!("OUTBOX_BACKOFF_BASE_MS={}", o.backoff_base.as_millis()),
            format!("INVENTORY_STORE={}", self.inventory_store.as_str()),
            format!("BUNDLED_PEERS={}", self.bundled_peers.as_str()),
        ]);
        for (prefix, address, c) in [
            (
                "INVENTORY",
                &self.inventory_grpc_address,
                &self.inventory_client,
            ),
            ("PAYMENT", &self.payment_grpc_address, &self.payment_client),
        ] {
            lines.extend([
                format!(
                    "{prefix}_GRPC_ADDRESS={}",
                    address.as_deref().unwrap_or("(bundled, in process)")
                ),
                format!("{prefix}_TIMEOUT_MS={}", c.timeout.as_millis()),
                format!("{prefix}_MAX_CONCURRENT={}", c.max_concurrent),
                format!("{prefix}_RETRY_MAX_ATTEMPTS={}", c.retry_max_attempts),
                format!("{prefix}_CB_SLOW_CALL_MS={}", c.slow_call().as_millis()),
                format!("{prefix}_CB_OPEN_MS={}", c.cb_open.as_millis()),
            ]);
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_show_neither_in_describe_nor_in_debug() {
        let mut c = Config {
            jwt_dev_secret: Some("s3cret-dev-key".into()),
            ..Config::default()
        };
        c.admission.redis_url = Some("redis://admin:hunter2@redis:6379/0".into());
        let described = c.describe().join("\n");
        let debug = format!("{c:?}");
        for out in [&described, &debug] {
            assert!(!out.contains("s3cret") && !out.contains("hunter2"), "{out}");
        }
        assert!(described.contains("JWT_DEV_SECRET=(set, redacted)"));
        assert!(described.contains("HOLD_TTL_SECONDS=60\n"));
    }
}
