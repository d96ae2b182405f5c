//! Typed configuration from environment variables (CONTRACT §9), with the profiles local/dev/prod.
//!
//! clap reads the variables (each an argument with `env = "NAME"`, a default and a typed value
//! parser; see [`env`] for what is added on top); [`Config::from_env`] then fills in what depends
//! on the profile and validates the whole, once: the one place `serve`, `config check` and every
//! subcommand get their configuration from. Durations are `Duration`s and secrets
//! `SecretString`s, so `Debug` and logs never show them.

mod auth;
mod cache;
mod describe;
mod env;
mod grpc;
mod http;
mod kinds;
mod store;
mod validate;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use crate::store::dynamo::TableNames;
pub use env::Variable;
use env::{millis, secret, secs, trimmed};

pub use auth::{
    check_issuer_url, parse_algorithms, redact_url, AdmissionSettings, IssuerSettings,
    RateLimitSettings,
};
pub use cache::CacheSettings;
pub use grpc::GrpcClientSettings;
pub use http::HttpSettings;
pub use kinds::{AdmissionMode, BundledPeers, Profile, StoreKind};
pub use store::{
    ClientTaps, DynamoSettings, EventBridgeSettings, IndexShardSettings, OutboxSettings,
    RetentionSettings,
};

#[derive(Clone, Debug)]
pub struct Config {
    pub profile: Profile,
    pub host: IpAddr,
    pub port: u16,
    pub http: HttpSettings,
    /// `HOLD_TTL_SECONDS`.
    pub hold_ttl: Duration,
    /// `IDEMPOTENCY_TTL_SECONDS`.
    pub idempotency_ttl: Duration,
    /// `IDEMPOTENCY_LEASE_SECONDS`.
    pub idempotency_lease: Duration,
    /// `JWT_DEV_SECRET`.
    pub jwt_dev_secret: Option<SecretString>,
    pub jwt_issuer_uri: Option<String>,
    pub issuer: IssuerSettings,
    pub admission: AdmissionSettings,
    pub cache: CacheSettings,
    pub rate_limits: RateLimitSettings,
    pub data_dir: PathBuf,
    pub catalog_file: Option<PathBuf>,
    /// `EXPIRY_SWEEP_INTERVAL_MS`.
    pub expiry_interval: Duration,
    pub expiry_batch: usize,
    pub outbox: OutboxSettings,
    pub retention: RetentionSettings,
    /// `AWS_REGION` (or `AWS_DEFAULT_REGION`), for DynamoDB and EventBridge.
    pub aws_region: String,
    pub store: StoreKind,
    pub dynamodb: DynamoSettings,
    pub events: EventBridgeSettings,
    /// The inventory's gRPC address; unset: the bundled inventory runs in this process, reached as
    /// `bundled_peers` says.
    pub inventory_grpc_address: Option<String>,
    /// `INVENTORY_STORE`: where the bundled inventory keeps its seats (in process and in
    /// `reservation-api inventory`); memory in local, DynamoDB (`DYNAMODB_TABLE_SEATS`) otherwise.
    pub inventory_store: StoreKind,
    pub inventory_client: GrpcClientSettings,
    /// The payment service's gRPC address; unset: the bundled simulator runs in process.
    pub payment_grpc_address: Option<String>,
    pub payment_client: GrpcClientSettings,
    /// `BUNDLED_PEERS`: the bundled peers called in process (default) or over a loopback port.
    pub bundled_peers: BundledPeers,
}

/// A configuration the service refuses: every problem, one line each (stderr, exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.join("; "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

/// Every variable, as clap reads it. A setting without a default here (an `Option`) either is
/// optional or has a default that depends on the profile, filled in by [`Vars::resolve`].
#[derive(clap::Args)]
struct Vars {
    #[arg(id = "APP_PROFILE", env = "APP_PROFILE", default_value = "local", value_parser = trimmed::<Profile>)]
    profile: Profile,
    #[arg(id = "SERVER_HOST", env = "SERVER_HOST", default_value = "0.0.0.0", value_parser = trimmed::<IpAddr>)]
    host: IpAddr,
    #[arg(id = "SERVER_PORT", env = "SERVER_PORT", default_value = "8080", value_parser = trimmed::<u16>)]
    port: u16,
    #[command(flatten)]
    http: HttpSettings,
    #[arg(id = "HOLD_TTL_SECONDS", env = "HOLD_TTL_SECONDS", default_value = "60", value_parser = secs)]
    hold_ttl: Duration,
    #[arg(id = "IDEMPOTENCY_TTL_SECONDS", env = "IDEMPOTENCY_TTL_SECONDS", default_value = "300", value_parser = secs)]
    idempotency_ttl: Duration,
    #[arg(id = "IDEMPOTENCY_LEASE_SECONDS", env = "IDEMPOTENCY_LEASE_SECONDS", default_value = "10", value_parser = secs)]
    idempotency_lease: Duration,
    #[arg(id = "JWT_DEV_SECRET", env = "JWT_DEV_SECRET", value_parser = secret, hide_env_values = true)]
    jwt_dev_secret: Option<SecretString>,
    #[arg(id = "JWT_ISSUER_URI", env = "JWT_ISSUER_URI")]
    jwt_issuer_uri: Option<String>,
    #[command(flatten)]
    issuer: IssuerSettings,
    #[arg(id = "ADMISSION_MODE", env = "ADMISSION_MODE", value_parser = trimmed::<AdmissionMode>)]
    admission_mode: Option<AdmissionMode>,
    #[arg(id = "REDIS_URL", env = "REDIS_URL", value_parser = secret, hide_env_values = true)]
    redis_url: Option<SecretString>,
    #[arg(id = "REDIS_TIMEOUT_MS", env = "REDIS_TIMEOUT_MS", default_value = "250", value_parser = millis)]
    redis_timeout: Duration,
    #[command(flatten)]
    cache: CacheSettings,
    #[arg(id = "RATE_LIMIT_USER_RPS", env = "RATE_LIMIT_USER_RPS", value_parser = trimmed::<u32>)]
    user_rps: Option<u32>,
    #[arg(id = "RATE_LIMIT_USER_BURST", env = "RATE_LIMIT_USER_BURST", value_parser = trimmed::<u32>)]
    user_burst: Option<u32>,
    #[arg(id = "RATE_LIMIT_GLOBAL_RPS", env = "RATE_LIMIT_GLOBAL_RPS", value_parser = trimmed::<u32>)]
    global_rps: Option<u32>,
    #[arg(id = "DATA_DIR", env = "DATA_DIR", default_value = ".local-data")]
    data_dir: PathBuf,
    #[arg(id = "CATALOG_FILE", env = "CATALOG_FILE")]
    catalog_file: Option<PathBuf>,
    #[arg(id = "EXPIRY_SWEEP_INTERVAL_MS", env = "EXPIRY_SWEEP_INTERVAL_MS", default_value = "500", value_parser = millis)]
    expiry_interval: Duration,
    #[arg(id = "EXPIRY_SWEEP_BATCH", env = "EXPIRY_SWEEP_BATCH", default_value = "200", value_parser = trimmed::<usize>)]
    expiry_batch: usize,
    #[command(flatten)]
    outbox: OutboxSettings,
    #[command(flatten)]
    retention: RetentionSettings,
    #[arg(id = "AWS_REGION", env = "AWS_REGION")]
    aws_region: Option<String>,
    #[arg(id = "AWS_DEFAULT_REGION", env = "AWS_DEFAULT_REGION")]
    aws_default_region: Option<String>,
    #[arg(id = "STORE", env = "STORE", value_parser = trimmed::<StoreKind>)]
    store: Option<StoreKind>,
    #[arg(id = "DYNAMODB_ENDPOINT", env = "DYNAMODB_ENDPOINT")]
    dynamodb_endpoint: Option<String>,
    #[arg(id = "DYNAMODB_TABLE_RESERVATIONS", env = "DYNAMODB_TABLE_RESERVATIONS", default_value_t = TableNames::default().reservations)]
    table_reservations: String,
    #[arg(id = "DYNAMODB_TABLE_ORDERS", env = "DYNAMODB_TABLE_ORDERS", default_value_t = TableNames::default().orders)]
    table_orders: String,
    #[arg(id = "DYNAMODB_TABLE_IDEMPOTENCY", env = "DYNAMODB_TABLE_IDEMPOTENCY", default_value_t = TableNames::default().idempotency)]
    table_idempotency: String,
    #[arg(id = "DYNAMODB_TABLE_OUTBOX", env = "DYNAMODB_TABLE_OUTBOX", default_value_t = TableNames::default().outbox)]
    table_outbox: String,
    #[arg(id = "DYNAMODB_TABLE_SEATS", env = "DYNAMODB_TABLE_SEATS", default_value_t = TableNames::default().seats)]
    table_seats: String,
    #[arg(id = "DYNAMODB_AUTO_CREATE", env = "DYNAMODB_AUTO_CREATE", default_value = "false", value_parser = trimmed::<bool>, action = clap::ArgAction::Set)]
    dynamodb_auto_create: bool,
    #[arg(id = "DYNAMODB_TIMEOUT_MS", env = "DYNAMODB_TIMEOUT_MS", default_value = "3000", value_parser = millis)]
    dynamodb_timeout: Duration,
    #[command(flatten)]
    index_shards: store::IndexShardSettings,
    #[arg(id = "EVENTBRIDGE_ENDPOINT", env = "EVENTBRIDGE_ENDPOINT")]
    eventbridge_endpoint: Option<String>,
    #[arg(id = "EVENTBRIDGE_BUS_NAME", env = "EVENTBRIDGE_BUS_NAME")]
    eventbridge_bus_name: Option<String>,
    #[arg(
        id = "EVENT_SOURCE",
        env = "EVENT_SOURCE",
        default_value = "reservation-api"
    )]
    event_source: String,
    #[arg(id = "INVENTORY_STORE", env = "INVENTORY_STORE", value_parser = trimmed::<StoreKind>)]
    inventory_store: Option<StoreKind>,
    #[arg(id = "INVENTORY_GRPC_ADDRESS", env = "INVENTORY_GRPC_ADDRESS")]
    inventory_grpc_address: Option<String>,
    #[command(flatten)]
    inventory_client: grpc::InventoryClientVars,
    #[arg(id = "PAYMENT_GRPC_ADDRESS", env = "PAYMENT_GRPC_ADDRESS")]
    payment_grpc_address: Option<String>,
    #[command(flatten)]
    payment_client: grpc::PaymentClientVars,
    #[arg(id = "BUNDLED_PEERS", env = "BUNDLED_PEERS", value_parser = trimmed::<BundledPeers>)]
    bundled_peers: Option<BundledPeers>,
}

impl Vars {
    /// The configuration, with the defaults that depend on the profile.
    fn resolve(self) -> Config {
        let profile = self.profile;
        let default_store = if profile == Profile::Local {
            StoreKind::Memory
        } else {
            StoreKind::Dynamodb
        };
        // Admission and rate limits guard the real on-sale; off for a laptop.
        let default_admission = if profile == Profile::Prod {
            AdmissionMode::Redis
        } else {
            AdmissionMode::Off
        };
        let (user_rps, user_burst, global_rps) = if profile == Profile::Local {
            (0, 0, 0)
        } else {
            (10, 20, 2000)
        };
        let events_enabled = profile != Profile::Local
            || self.eventbridge_endpoint.is_some()
            || self.eventbridge_bus_name.is_some();
        Config {
            profile,
            host: self.host,
            port: self.port,
            http: self.http,
            hold_ttl: self.hold_ttl,
            idempotency_ttl: self.idempotency_ttl,
            idempotency_lease: self.idempotency_lease,
            jwt_dev_secret: self.jwt_dev_secret,
            jwt_issuer_uri: self.jwt_issuer_uri,
            issuer: self.issuer,
            admission: AdmissionSettings {
                mode: self.admission_mode.unwrap_or(default_admission),
                redis_url: self.redis_url,
                timeout: self.redis_timeout,
            },
            cache: self.cache,
            rate_limits: RateLimitSettings {
                user_rps: self.user_rps.unwrap_or(user_rps),
                user_burst: self.user_burst.unwrap_or(user_burst),
                global_rps: self.global_rps.unwrap_or(global_rps),
            },
            data_dir: self.data_dir,
            catalog_file: self.catalog_file,
            expiry_interval: self.expiry_interval,
            expiry_batch: self.expiry_batch,
            outbox: self.outbox,
            retention: self.retention,
            aws_region: self
                .aws_region
                .or(self.aws_default_region)
                .unwrap_or_else(|| "ap-northeast-2".into()),
            store: self.store.unwrap_or(default_store),
            dynamodb: DynamoSettings {
                endpoint: self.dynamodb_endpoint,
                tables: TableNames {
                    reservations: self.table_reservations,
                    orders: self.table_orders,
                    idempotency: self.table_idempotency,
                    outbox: self.table_outbox,
                    seats: self.table_seats,
                },
                auto_create: self.dynamodb_auto_create,
                timeout: self.dynamodb_timeout,
                index_shards: self.index_shards,
                taps: Default::default(),
            },
            events: EventBridgeSettings {
                endpoint: self.eventbridge_endpoint,
                bus_name: self
                    .eventbridge_bus_name
                    .unwrap_or_else(|| "ticket-reservation-events".into()),
                source: self.event_source,
                enabled: events_enabled,
            },
            inventory_grpc_address: self.inventory_grpc_address,
            inventory_store: self.inventory_store.unwrap_or(default_store),
            inventory_client: self.inventory_client.into(),
            payment_grpc_address: self.payment_grpc_address,
            payment_client: self.payment_client.into(),
            bundled_peers: self.bundled_peers.unwrap_or(BundledPeers::InProcess),
        }
    }
}

/// The configuration every default gives (the local profile), whatever the environment holds.
impl Default for Config {
    fn default() -> Self {
        env::defaults::<Vars>().resolve()
    }
}

impl Config {
    /// The configuration of the environment, validated, or every problem with it (a variable
    /// that does not parse, and every rule it breaks). Reads nothing but the environment; the one
    /// place the configuration is read and validated.
    pub fn from_env() -> Result<Self, ConfigError> {
        let (vars, mut problems) = env::read::<Vars>();
        let config = vars.resolve();
        problems.extend(config.problems());
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Every variable the configuration reads, with its default, as clap declares them.
    pub fn variables() -> Vec<Variable> {
        env::variables::<Vars>()
    }
}
