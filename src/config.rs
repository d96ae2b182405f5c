//! Typed configuration from environment variables (CONTRACT §9), with the profiles local/dev/prod.

use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use crate::store::dynamo::TableNames;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    Local,
    Dev,
    Prod,
}

impl FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "local" => Ok(Self::Local),
            "dev" => Ok(Self::Dev),
            "prod" => Ok(Self::Prod),
            other => Err(format!(
                "APP_PROFILE must be local, dev or prod, not {other:?}"
            )),
        }
    }
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Dev => "dev",
            Self::Prod => "prod",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Memory,
    Dynamodb,
}

impl FromStr for StoreKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "memory" => Ok(Self::Memory),
            "dynamodb" => Ok(Self::Dynamodb),
            other => Err(format!("must be memory or dynamodb, not {other:?}")),
        }
    }
}

impl StoreKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Dynamodb => "dynamodb",
        }
    }
}

#[derive(Clone, Debug)]
pub struct DynamoSettings {
    /// `DYNAMODB_ENDPOINT`: a local server (moto) instead of AWS.
    pub endpoint: Option<String>,
    pub tables: TableNames,
    /// `DYNAMODB_AUTO_CREATE`: create missing tables at start (local and dev only).
    pub auto_create: bool,
    /// `DYNAMODB_TIMEOUT_MS`: the deadline of one store operation, retries included.
    pub timeout_ms: u64,
}

/// How long finished records are kept, and how the embedded store's sweeper removes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionSettings {
    /// `OUTBOX_RETENTION_SECONDS`: a PUBLISHED event is removed this long after publication.
    pub outbox_secs: i64,
    /// `RESERVATION_RETENTION_SECONDS`: a CONFIRMED, CANCELLED or EXPIRED reservation (with its
    /// order) is removed this long after its last change.
    pub reservation_secs: i64,
    /// `RETENTION_SWEEP_INTERVAL_MS`: how often the embedded store's sweeper runs.
    pub sweep_interval_ms: u64,
    /// `RETENTION_SWEEP_BATCH`: items removed per lock hold.
    pub sweep_batch: usize,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            outbox_secs: 3600,
            reservation_secs: 86_400,
            sweep_interval_ms: 1000,
            sweep_batch: 500,
        }
    }
}

impl RetentionSettings {
    pub fn retention(&self) -> crate::store::Retention {
        crate::store::Retention {
            outbox: chrono::Duration::seconds(self.outbox_secs),
            reservations: chrono::Duration::seconds(self.reservation_secs),
        }
    }
}

#[derive(Clone, Debug)]
pub struct OutboxSettings {
    pub poll_interval_ms: u64,
    pub lease_secs: u64,
    pub max_attempts: u32,
    /// Events claimed, published and settled per round (one DynamoDB transaction: at most 100).
    pub batch_size: usize,
    /// After a part batch, how long the relay lets more events gather before the next round.
    pub linger_ms: u64,
    /// How long SIGTERM waits for the relay to publish what is due.
    pub drain_timeout_ms: u64,
    /// The first retry's delay; each further attempt doubles it (with jitter).
    pub backoff_base_ms: u64,
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

/// A gRPC dependency's client: deadline, retry, circuit breaker and bulkhead (`<PREFIX>_…` variables,
/// prefix `INVENTORY` or `PAYMENT`).
#[derive(Clone, Debug, PartialEq)]
pub struct GrpcClientSettings {
    /// Deadline of one call, retries included; sent as `grpc-timeout` (`_TIMEOUT_MS`).
    pub timeout_ms: u64,
    /// Bulkhead: calls in flight at most; one more is refused at once (`_MAX_CONCURRENT`).
    pub max_concurrent: usize,
    /// Attempts of one call, the first included (`_RETRY_MAX_ATTEMPTS`; 1 turns retries off).
    pub retry_max_attempts: usize,
    /// First backoff; doubles per retry, ±50 % jitter (`_RETRY_BACKOFF_MS`).
    pub retry_backoff_ms: u64,
    /// Backoff cap before jitter (`_RETRY_MAX_BACKOFF_MS`).
    pub retry_max_backoff_ms: u64,
    /// Open the circuit at this share of failed calls in the window (`_CB_FAILURE_RATE_PERCENT`).
    pub cb_failure_rate_percent: u8,
    /// A call at least this long is slow (`_CB_SLOW_CALL_MS`; default 80 % of the deadline).
    pub cb_slow_call_ms: Option<u64>,
    /// Open the circuit at this share of slow calls in the window (`_CB_SLOW_CALL_RATE_PERCENT`).
    pub cb_slow_call_rate_percent: u8,
    /// Calls in the window before the rates are judged (`_CB_MINIMUM_CALLS`).
    pub cb_minimum_calls: u32,
    /// Length of the sliding window (`_CB_WINDOW_SECONDS`).
    pub cb_window_secs: u64,
    /// How long an open circuit refuses calls before it lets probes through (`_CB_OPEN_MS`).
    pub cb_open_ms: u64,
    /// Probes let through when half-open; all must succeed to close (`_CB_HALF_OPEN_CALLS`).
    pub cb_half_open_calls: u32,
}

impl Default for GrpcClientSettings {
    fn default() -> Self {
        Self {
            timeout_ms: 250,
            max_concurrent: 1024,
            retry_max_attempts: 3,
            retry_backoff_ms: 10,
            retry_max_backoff_ms: 50,
            cb_failure_rate_percent: 50,
            cb_slow_call_ms: None,
            cb_slow_call_rate_percent: 80,
            cb_minimum_calls: 10,
            cb_window_secs: 10,
            cb_open_ms: 5000,
            cb_half_open_calls: 3,
        }
    }
}

impl GrpcClientSettings {
    fn read(r: &mut Reader, prefix: &str) -> Self {
        let d = Self::default();
        let name = |s: &str| format!("{prefix}_{s}");
        Self {
            timeout_ms: r.parse(&name("TIMEOUT_MS"), d.timeout_ms),
            max_concurrent: r.parse(&name("MAX_CONCURRENT"), d.max_concurrent),
            retry_max_attempts: r.parse(&name("RETRY_MAX_ATTEMPTS"), d.retry_max_attempts),
            retry_backoff_ms: r.parse(&name("RETRY_BACKOFF_MS"), d.retry_backoff_ms),
            retry_max_backoff_ms: r.parse(&name("RETRY_MAX_BACKOFF_MS"), d.retry_max_backoff_ms),
            cb_failure_rate_percent: r
                .parse(&name("CB_FAILURE_RATE_PERCENT"), d.cb_failure_rate_percent),
            cb_slow_call_ms: var(&name("CB_SLOW_CALL_MS"))
                .map(|_| r.parse(&name("CB_SLOW_CALL_MS"), d.slow_call_ms())),
            cb_slow_call_rate_percent: r.parse(
                &name("CB_SLOW_CALL_RATE_PERCENT"),
                d.cb_slow_call_rate_percent,
            ),
            cb_minimum_calls: r.parse(&name("CB_MINIMUM_CALLS"), d.cb_minimum_calls),
            cb_window_secs: r.parse(&name("CB_WINDOW_SECONDS"), d.cb_window_secs),
            cb_open_ms: r.parse(&name("CB_OPEN_MS"), d.cb_open_ms),
            cb_half_open_calls: r.parse(&name("CB_HALF_OPEN_CALLS"), d.cb_half_open_calls),
        }
    }

    /// The slow-call threshold: as configured, or 80 % of the deadline.
    pub fn slow_call_ms(&self) -> u64 {
        self.cb_slow_call_ms
            .unwrap_or(self.timeout_ms * 4 / 5)
            .max(1)
    }

    /// The first problems, joined on one line, if any.
    pub fn validate(&self, prefix: &str) -> Result<(), String> {
        let mut out = Vec::new();
        self.problems(prefix, &mut out);
        if out.is_empty() {
            Ok(())
        } else {
            Err(out.join("; "))
        }
    }

    /// Every problem of these settings, one line each.
    pub fn problems(&self, prefix: &str, out: &mut Vec<String>) {
        let mut bad = |what: &str| out.push(format!("{prefix}_{what}"));
        if !(1..=60_000).contains(&self.timeout_ms) {
            bad("TIMEOUT_MS must be 1-60000");
        }
        if self.max_concurrent == 0 {
            bad("MAX_CONCURRENT must be positive");
        }
        if !(1..=10).contains(&self.retry_max_attempts) {
            bad("RETRY_MAX_ATTEMPTS must be 1-10");
        }
        if self.retry_backoff_ms > self.retry_max_backoff_ms {
            bad("RETRY_BACKOFF_MS must not exceed RETRY_MAX_BACKOFF_MS");
        }
        if !(1..=100).contains(&self.cb_failure_rate_percent)
            || !(1..=100).contains(&self.cb_slow_call_rate_percent)
        {
            bad("CB_FAILURE_RATE_PERCENT and CB_SLOW_CALL_RATE_PERCENT must be 1-100");
        }
        if self.cb_slow_call_ms == Some(0) {
            bad("CB_SLOW_CALL_MS must be positive");
        }
        if self.cb_minimum_calls == 0 || self.cb_half_open_calls == 0 || self.cb_open_ms == 0 {
            bad("CB_MINIMUM_CALLS, CB_HALF_OPEN_CALLS and CB_OPEN_MS must be positive");
        }
        if !(1..=3600).contains(&self.cb_window_secs) {
            bad("CB_WINDOW_SECONDS must be 1-3600");
        }
    }
}

/// The HTTP server's limits (`HTTP_…`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpSettings {
    /// `HTTP_HEADER_READ_TIMEOUT_MS`: a request head must arrive within this, counted from when
    /// the connection starts waiting for it (also between requests on a kept-alive HTTP/1.1
    /// connection); else the connection is closed.
    pub header_read_timeout_ms: u64,
    /// `HTTP_IDLE_TIMEOUT_MS`: a connection that moved no byte for this long is closed gracefully.
    pub idle_timeout_ms: u64,
    /// `HTTP_REQUEST_TIMEOUT_MS`: the whole request's deadline (→ 504 `UPSTREAM_TIMEOUT`).
    pub request_timeout_ms: u64,
    /// `HTTP_MAX_CONNECTIONS`: open connections served at most.
    pub max_connections: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            request_timeout_ms: 30_000,
            max_connections: 10_000,
        }
    }
}

impl HttpSettings {
    fn read(r: &mut Reader) -> Self {
        let d = Self::default();
        Self {
            header_read_timeout_ms: r
                .parse("HTTP_HEADER_READ_TIMEOUT_MS", d.header_read_timeout_ms),
            idle_timeout_ms: r.parse("HTTP_IDLE_TIMEOUT_MS", d.idle_timeout_ms),
            request_timeout_ms: r.parse("HTTP_REQUEST_TIMEOUT_MS", d.request_timeout_ms),
            max_connections: r.parse("HTTP_MAX_CONNECTIONS", d.max_connections),
        }
    }

    /// Every problem of these settings, one line each.
    pub fn problems(&self, out: &mut Vec<String>) {
        for (name, v) in [
            ("HTTP_HEADER_READ_TIMEOUT_MS", self.header_read_timeout_ms),
            ("HTTP_IDLE_TIMEOUT_MS", self.idle_timeout_ms),
            ("HTTP_REQUEST_TIMEOUT_MS", self.request_timeout_ms),
        ] {
            if !(1..=3_600_000).contains(&v) {
                out.push(format!("{name} must be 1-3600000"));
            }
        }
        if self.max_connections == 0 {
            out.push("HTTP_MAX_CONNECTIONS must be positive".into());
        }
    }
}

/// `ADMISSION_MODE`: whether a create needs the waiting room's admission token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdmissionMode {
    Off,
    Redis,
}

impl FromStr for AdmissionMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "off" => Ok(Self::Off),
            "redis" => Ok(Self::Redis),
            other => Err(format!(
                "ADMISSION_MODE must be off or redis, not {other:?}"
            )),
        }
    }
}

#[derive(Clone, Debug)]
pub struct AdmissionSettings {
    /// `ADMISSION_MODE`: `off` by default in local and dev, `redis` in prod.
    pub mode: AdmissionMode,
    /// `REDIS_URL`: `redis://host:port[/db]`.
    pub redis_url: Option<String>,
    /// `REDIS_TIMEOUT_MS`: the deadline of one Redis call (connecting included).
    pub timeout_ms: u64,
}

/// Token buckets, per replica (`RATE_LIMIT_…`; 0 turns one off).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// `RATE_LIMIT_USER_RPS`: requests a second per user (`sub`).
    pub user_rps: u32,
    /// `RATE_LIMIT_USER_BURST`: the user's bucket size (0: equal to the rate).
    pub user_burst: u32,
    /// `RATE_LIMIT_GLOBAL_RPS`: requests a second for the whole replica (its burst is one second's worth).
    pub global_rps: u32,
}

/// The OIDC issuer's tokens (`JWT_…`).
#[derive(Clone, Debug)]
pub struct IssuerSettings {
    /// `JWT_JWKS_URI`: the keys' address; unset: found by OIDC discovery.
    pub jwks_uri: Option<String>,
    /// `JWT_AUDIENCE`: when set, the token's `aud` must contain it.
    pub audience: Option<String>,
    /// `JWT_ALGORITHMS`: accepted signing algorithms, asymmetric only.
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    /// `JWT_LEEWAY_SECONDS`: clock skew allowed on `exp` and `nbf` (development tokens too).
    pub leeway_secs: u64,
}

impl Default for IssuerSettings {
    fn default() -> Self {
        use jsonwebtoken::Algorithm;
        Self {
            jwks_uri: None,
            audience: None,
            algorithms: vec![Algorithm::RS256, Algorithm::ES256],
            leeway_secs: 60,
        }
    }
}

/// `JWT_ALGORITHMS`: a comma-separated list of asymmetric JWS algorithms.
pub fn parse_algorithms(v: &str) -> Result<Vec<jsonwebtoken::Algorithm>, String> {
    use jsonwebtoken::Algorithm;
    let mut algs = Vec::new();
    for name in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let alg: Algorithm = name
            .parse()
            .map_err(|_| format!("JWT_ALGORITHMS: unknown algorithm {name:?}"))?;
        if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
            return Err(format!(
                "JWT_ALGORITHMS: {name} is symmetric; issuer tokens must be signed with a published public key"
            ));
        }
        if !algs.contains(&alg) {
            algs.push(alg);
        }
    }
    if algs.is_empty() {
        return Err("JWT_ALGORITHMS must name at least one algorithm".into());
    }
    Ok(algs)
}

/// An issuer or JWKS address: `https://`, or `http://` to a loopback host only.
pub fn check_issuer_url(name: &str, url: &str) -> Result<(), String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("{name}={url:?}: {e}"))?;
    let loopback = matches!(u.host(), Some(url::Host::Domain("localhost")))
        || matches!(u.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
        || matches!(u.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback());
    match u.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(format!(
            "{name}={url:?}: an http:// issuer is allowed only on loopback (127.0.0.1, localhost); use https://"
        )),
        other => Err(format!("{name}={url:?}: scheme {other:?} is not https")),
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub profile: Profile,
    pub host: IpAddr,
    pub port: u16,
    pub http: HttpSettings,
    pub hold_ttl_secs: i64,
    pub idempotency_ttl_secs: i64,
    pub idempotency_lease_secs: i64,
    pub jwt_dev_secret: Option<String>,
    pub jwt_issuer_uri: Option<String>,
    pub issuer: IssuerSettings,
    pub admission: AdmissionSettings,
    pub rate_limits: RateLimitSettings,
    pub data_dir: PathBuf,
    pub catalog_file: Option<PathBuf>,
    pub expiry_interval_ms: u64,
    pub expiry_batch: usize,
    pub outbox: OutboxSettings,
    pub retention: RetentionSettings,
    /// `AWS_REGION` (or `AWS_DEFAULT_REGION`), for DynamoDB and EventBridge.
    pub aws_region: String,
    pub store: StoreKind,
    pub dynamodb: DynamoSettings,
    pub events: EventBridgeSettings,
    /// The inventory's gRPC address; unset: the bundled inventory runs in process on a loopback port.
    pub inventory_grpc_address: Option<String>,
    /// `INVENTORY_STORE`: where the bundled inventory keeps its seats (in process and in
    /// `reservation-api inventory`); memory in local, DynamoDB (`DYNAMODB_TABLE_SEATS`) otherwise.
    pub inventory_store: StoreKind,
    pub inventory_client: GrpcClientSettings,
    /// The payment service's gRPC address; unset: the bundled simulator runs in process.
    pub payment_grpc_address: Option<String>,
    pub payment_client: GrpcClientSettings,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            profile: Profile::Local,
            host: IpAddr::from([0, 0, 0, 0]),
            port: 8080,
            http: HttpSettings::default(),
            hold_ttl_secs: 60,
            idempotency_ttl_secs: 300,
            idempotency_lease_secs: 10,
            jwt_dev_secret: None,
            jwt_issuer_uri: None,
            issuer: IssuerSettings::default(),
            admission: AdmissionSettings {
                mode: AdmissionMode::Off,
                redis_url: None,
                timeout_ms: 250,
            },
            rate_limits: RateLimitSettings::default(),
            data_dir: PathBuf::from(".local-data"),
            catalog_file: None,
            expiry_interval_ms: 500,
            expiry_batch: 200,
            retention: RetentionSettings::default(),
            outbox: OutboxSettings {
                poll_interval_ms: 1000,
                lease_secs: 30,
                max_attempts: 8,
                batch_size: 100,
                linger_ms: 50,
                drain_timeout_ms: 5000,
                backoff_base_ms: 200,
            },
            events: EventBridgeSettings {
                endpoint: None,
                bus_name: "ticket-reservation-events".into(),
                source: "reservation-api".into(),
                enabled: false,
            },
            aws_region: "ap-northeast-2".into(),
            store: StoreKind::Memory,
            dynamodb: DynamoSettings {
                endpoint: None,
                tables: TableNames::default(),
                auto_create: false,
                timeout_ms: 3000,
            },
            inventory_grpc_address: None,
            inventory_store: StoreKind::Memory,
            inventory_client: GrpcClientSettings::default(),
            payment_grpc_address: None,
            payment_client: GrpcClientSettings::default(),
        }
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Reads the variables, keeping every one that does not parse (with its default in its place) so
/// that `config check` reports them all at once rather than the first.
#[derive(Default)]
struct Reader {
    problems: Vec<String>,
}

impl Reader {
    fn parse<T: FromStr>(&mut self, name: &str, default: T) -> T
    where
        T::Err: std::fmt::Display,
    {
        match var(name) {
            None => default,
            Some(v) => match v.trim().parse() {
                Ok(x) => x,
                Err(e) => {
                    self.problems.push(format!("{name}={v:?}: {e}"));
                    default
                }
            },
        }
    }
}

impl Config {
    /// The configuration of the environment, validated (`serve` and every subcommand); the
    /// problems joined on one line.
    pub fn from_env() -> Result<Self, String> {
        Self::check_env().map_err(|p| p.join("; "))
    }

    /// The configuration of the environment, or every problem with it, one line each
    /// (`reservation-api config check`). Reads nothing but the environment.
    pub fn check_env() -> Result<Self, Vec<String>> {
        let mut r = Reader::default();
        let d = Self::default();
        let profile: Profile = r.parse("APP_PROFILE", d.profile);
        let default_store = if profile == Profile::Local {
            StoreKind::Memory
        } else {
            StoreKind::Dynamodb
        };
        let t = d.dynamodb.tables.clone();
        // Admission and rate limits guard the real on-sale; off for a laptop.
        let default_admission = if profile == Profile::Prod {
            AdmissionMode::Redis
        } else {
            AdmissionMode::Off
        };
        let default_limits = if profile == Profile::Local {
            RateLimitSettings::default()
        } else {
            RateLimitSettings {
                user_rps: 10,
                user_burst: 20,
                global_rps: 2000,
            }
        };
        let c = Self {
            profile,
            host: r.parse("SERVER_HOST", d.host),
            port: r.parse("SERVER_PORT", d.port),
            http: HttpSettings::read(&mut r),
            hold_ttl_secs: r.parse("HOLD_TTL_SECONDS", d.hold_ttl_secs),
            idempotency_ttl_secs: r.parse("IDEMPOTENCY_TTL_SECONDS", d.idempotency_ttl_secs),
            idempotency_lease_secs: r.parse("IDEMPOTENCY_LEASE_SECONDS", d.idempotency_lease_secs),
            jwt_dev_secret: var("JWT_DEV_SECRET"),
            jwt_issuer_uri: var("JWT_ISSUER_URI"),
            issuer: IssuerSettings {
                jwks_uri: var("JWT_JWKS_URI"),
                audience: var("JWT_AUDIENCE"),
                algorithms: match var("JWT_ALGORITHMS") {
                    Some(v) => parse_algorithms(&v).unwrap_or_else(|e| {
                        r.problems.push(e);
                        d.issuer.algorithms.clone()
                    }),
                    None => d.issuer.algorithms,
                },
                leeway_secs: r.parse("JWT_LEEWAY_SECONDS", d.issuer.leeway_secs),
            },
            admission: AdmissionSettings {
                mode: r.parse("ADMISSION_MODE", default_admission),
                redis_url: var("REDIS_URL"),
                timeout_ms: r.parse("REDIS_TIMEOUT_MS", d.admission.timeout_ms),
            },
            rate_limits: RateLimitSettings {
                user_rps: r.parse("RATE_LIMIT_USER_RPS", default_limits.user_rps),
                user_burst: r.parse("RATE_LIMIT_USER_BURST", default_limits.user_burst),
                global_rps: r.parse("RATE_LIMIT_GLOBAL_RPS", default_limits.global_rps),
            },
            data_dir: var("DATA_DIR").map(PathBuf::from).unwrap_or(d.data_dir),
            catalog_file: var("CATALOG_FILE").map(PathBuf::from),
            expiry_interval_ms: r.parse("EXPIRY_SWEEP_INTERVAL_MS", d.expiry_interval_ms),
            expiry_batch: r.parse("EXPIRY_SWEEP_BATCH", d.expiry_batch),
            outbox: OutboxSettings {
                poll_interval_ms: r.parse("OUTBOX_POLL_INTERVAL_MS", d.outbox.poll_interval_ms),
                lease_secs: r.parse("OUTBOX_LEASE_SECONDS", d.outbox.lease_secs),
                max_attempts: r.parse("OUTBOX_MAX_ATTEMPTS", d.outbox.max_attempts),
                batch_size: r.parse("OUTBOX_BATCH_SIZE", d.outbox.batch_size),
                linger_ms: r.parse("OUTBOX_LINGER_MS", d.outbox.linger_ms),
                drain_timeout_ms: r.parse("OUTBOX_DRAIN_TIMEOUT_MS", d.outbox.drain_timeout_ms),
                backoff_base_ms: r.parse("OUTBOX_BACKOFF_BASE_MS", d.outbox.backoff_base_ms),
            },
            retention: RetentionSettings {
                outbox_secs: r.parse("OUTBOX_RETENTION_SECONDS", d.retention.outbox_secs),
                reservation_secs: r.parse(
                    "RESERVATION_RETENTION_SECONDS",
                    d.retention.reservation_secs,
                ),
                sweep_interval_ms: r
                    .parse("RETENTION_SWEEP_INTERVAL_MS", d.retention.sweep_interval_ms),
                sweep_batch: r.parse("RETENTION_SWEEP_BATCH", d.retention.sweep_batch),
            },
            events: EventBridgeSettings {
                endpoint: var("EVENTBRIDGE_ENDPOINT"),
                bus_name: var("EVENTBRIDGE_BUS_NAME").unwrap_or(d.events.bus_name),
                source: var("EVENT_SOURCE").unwrap_or(d.events.source),
                enabled: profile != Profile::Local
                    || var("EVENTBRIDGE_ENDPOINT").is_some()
                    || var("EVENTBRIDGE_BUS_NAME").is_some(),
            },
            aws_region: var("AWS_REGION")
                .or_else(|| var("AWS_DEFAULT_REGION"))
                .unwrap_or(d.aws_region),
            store: r.parse("STORE", default_store),
            dynamodb: DynamoSettings {
                endpoint: var("DYNAMODB_ENDPOINT"),
                tables: TableNames {
                    reservations: var("DYNAMODB_TABLE_RESERVATIONS").unwrap_or(t.reservations),
                    orders: var("DYNAMODB_TABLE_ORDERS").unwrap_or(t.orders),
                    idempotency: var("DYNAMODB_TABLE_IDEMPOTENCY").unwrap_or(t.idempotency),
                    outbox: var("DYNAMODB_TABLE_OUTBOX").unwrap_or(t.outbox),
                    seats: var("DYNAMODB_TABLE_SEATS").unwrap_or(t.seats),
                },
                auto_create: r.parse("DYNAMODB_AUTO_CREATE", d.dynamodb.auto_create),
                timeout_ms: r.parse("DYNAMODB_TIMEOUT_MS", d.dynamodb.timeout_ms),
            },
            inventory_grpc_address: var("INVENTORY_GRPC_ADDRESS"),
            inventory_store: r.parse("INVENTORY_STORE", default_store),
            inventory_client: GrpcClientSettings::read(&mut r, "INVENTORY"),
            payment_grpc_address: var("PAYMENT_GRPC_ADDRESS"),
            payment_client: GrpcClientSettings::read(&mut r, "PAYMENT"),
        };
        let mut problems = r.problems;
        problems.extend(c.problems());
        if problems.is_empty() {
            Ok(c)
        } else {
            Err(problems)
        }
    }

    /// The first problems joined on one line, if any.
    pub fn validate(&self) -> Result<(), String> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// Every problem of this configuration, one line each. Checks only; contacts nothing.
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut bad = |p: &str| out.push(p.to_owned());
        if !(1..=3600).contains(&self.hold_ttl_secs) {
            bad("HOLD_TTL_SECONDS must be 1-3600");
        }
        if self.idempotency_ttl_secs < 1 || self.idempotency_lease_secs < 1 {
            bad("IDEMPOTENCY_TTL_SECONDS and IDEMPOTENCY_LEASE_SECONDS must be positive");
        }
        if !(1..=100).contains(&self.outbox.batch_size) {
            bad("OUTBOX_BATCH_SIZE must be 1-100 (a DynamoDB transaction takes at most 100 items)");
        }
        if self.outbox.max_attempts == 0 {
            bad("OUTBOX_MAX_ATTEMPTS must be positive");
        }
        self.http.problems(&mut out);
        let r = &self.retention;
        if r.outbox_secs < 1 || r.reservation_secs < 1 {
            out.push(
                "OUTBOX_RETENTION_SECONDS and RESERVATION_RETENTION_SECONDS must be positive"
                    .into(),
            );
        }
        if r.sweep_interval_ms == 0 || r.sweep_batch == 0 {
            out.push(
                "RETENTION_SWEEP_INTERVAL_MS and RETENTION_SWEEP_BATCH must be positive".into(),
            );
        }
        let mut bad = |p: &str| out.push(p.to_owned());
        if self.profile == Profile::Prod {
            if self.dynamodb.auto_create {
                bad("DYNAMODB_AUTO_CREATE is for local and dev; create prod tables with `reservation-api tables create`");
            }
            if self.jwt_dev_secret.is_some() {
                bad("the prod profile refuses the development JWT key: unset JWT_DEV_SECRET");
            }
            if self.jwt_issuer_uri.is_none() {
                bad("the prod profile needs JWT_ISSUER_URI (an OIDC issuer)");
            }
            if self.store == StoreKind::Memory {
                bad("the prod profile refuses STORE=memory: it loses every reservation on restart and is not shared across replicas; use STORE=dynamodb");
            }
            if self.inventory_grpc_address.is_none() || self.payment_grpc_address.is_none() {
                bad("the prod profile needs INVENTORY_GRPC_ADDRESS and PAYMENT_GRPC_ADDRESS: the bundled in-process inventory would oversell across replicas");
            }
        }
        if self.issuer.algorithms.is_empty() {
            bad("JWT_ALGORITHMS must name at least one algorithm");
        }
        if !(1..=60_000).contains(&self.admission.timeout_ms) {
            bad("REDIS_TIMEOUT_MS must be 1-60000");
        }
        if let Some(issuer) = &self.jwt_issuer_uri {
            out.extend(check_issuer_url("JWT_ISSUER_URI", issuer).err());
        }
        if let Some(jwks) = &self.issuer.jwks_uri {
            out.extend(check_issuer_url("JWT_JWKS_URI", jwks).err());
        }
        if self.admission.mode == AdmissionMode::Redis {
            match &self.admission.redis_url {
                None => {
                    out.push("ADMISSION_MODE=redis needs REDIS_URL (redis://host:port[/db])".into())
                }
                Some(u) if !u.starts_with("redis://") && !u.starts_with("rediss://") => {
                    out.push(format!(
                        "REDIS_URL={:?} must be redis://host:port[/db]",
                        redact_url(u)
                    ))
                }
                // What `serve` does with it, short of connecting (the client connects lazily).
                Some(u) => {
                    if let Err(e) = redis::Client::open(u.as_str()) {
                        out.push(format!("REDIS_URL={:?}: {e}", redact_url(u)));
                    }
                }
            }
        }
        self.inventory_client.problems("INVENTORY", &mut out);
        self.payment_client.problems("PAYMENT", &mut out);
        out
    }

    /// The effective configuration as `NAME=value` lines (the variables that set it), secrets
    /// redacted: what `config check` prints.
    pub fn describe(&self) -> Vec<String> {
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "(unset)".into());
        let secret = |v: &Option<String>| match v {
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
            format!("DYNAMODB_TIMEOUT_MS={}", self.dynamodb.timeout_ms),
            format!("DYNAMODB_TABLE_RESERVATIONS={}", t.reservations),
            format!("DYNAMODB_TABLE_ORDERS={}", t.orders),
            format!("DYNAMODB_TABLE_IDEMPOTENCY={}", t.idempotency),
            format!("DYNAMODB_TABLE_OUTBOX={}", t.outbox),
            format!("DYNAMODB_TABLE_SEATS={}", t.seats),
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
            format!("HOLD_TTL_SECONDS={}", self.hold_ttl_secs),
            format!("IDEMPOTENCY_TTL_SECONDS={}", self.idempotency_ttl_secs),
            format!("IDEMPOTENCY_LEASE_SECONDS={}", self.idempotency_lease_secs),
            format!("JWT_DEV_SECRET={}", secret(&self.jwt_dev_secret)),
            format!("JWT_ISSUER_URI={}", opt(&self.jwt_issuer_uri)),
            format!("JWT_JWKS_URI={}", opt(&self.issuer.jwks_uri)),
            format!("JWT_AUDIENCE={}", opt(&self.issuer.audience)),
            format!("JWT_ALGORITHMS={}", algorithms.join(",")),
            format!("JWT_LEEWAY_SECONDS={}", self.issuer.leeway_secs),
            format!(
                "ADMISSION_MODE={}",
                match self.admission.mode {
                    AdmissionMode::Off => "off",
                    AdmissionMode::Redis => "redis",
                }
            ),
            format!(
                "REDIS_URL={}",
                self.admission
                    .redis_url
                    .as_deref()
                    .map_or("(unset)".into(), redact_url)
            ),
            format!("REDIS_TIMEOUT_MS={}", self.admission.timeout_ms),
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
            format!("EXPIRY_SWEEP_INTERVAL_MS={}", self.expiry_interval_ms),
            format!("EXPIRY_SWEEP_BATCH={}", self.expiry_batch),
            format!("OUTBOX_POLL_INTERVAL_MS={}", self.outbox.poll_interval_ms),
            format!("OUTBOX_LEASE_SECONDS={}", self.outbox.lease_secs),
            format!("OUTBOX_MAX_ATTEMPTS={}", self.outbox.max_attempts),
            format!("OUTBOX_BATCH_SIZE={}", self.outbox.batch_size),
            format!("OUTBOX_LINGER_MS={}", self.outbox.linger_ms),
            format!("OUTBOX_DRAIN_TIMEOUT_MS={}", self.outbox.drain_timeout_ms),
            format!("OUTBOX_BACKOFF_BASE_MS={}", self.outbox.backoff_base_ms),
            format!("INVENTORY_STORE={}", self.inventory_store.as_str()),
        ];
        for (prefix, address, c) in [
            (
                "INVENTORY",
                &self.inventory_grpc_address,
                &self.inventory_client,
            ),
            ("PAYMENT", &self.payment_grpc_address, &self.payment_client),
        ] {
            lines.push(format!(
                "{prefix}_GRPC_ADDRESS={}",
                address.as_deref().unwrap_or("(bundled, in process)")
            ));
            lines.push(format!("{prefix}_TIMEOUT_MS={}", c.timeout_ms));
            lines.push(format!("{prefix}_MAX_CONCURRENT={}", c.max_concurrent));
            lines.push(format!(
                "{prefix}_RETRY_MAX_ATTEMPTS={}",
                c.retry_max_attempts
            ));
            lines.push(format!("{prefix}_CB_SLOW_CALL_MS={}", c.slow_call_ms()));
            lines.push(format!("{prefix}_CB_OPEN_MS={}", c.cb_open_ms));
        }
        lines
    }
}

/// `url` with its password (and a user name) replaced, for printing.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() || !u.username().is_empty() => {
            let _ = u.set_username("redacted");
            let _ = u.set_password(Some("redacted"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "(unparsable, redacted)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prod_refuses_the_dev_key_and_needs_an_issuer() {
        let mut c = Config {
            profile: Profile::Prod,
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().contains("JWT_ISSUER_URI"));
        c.jwt_issuer_uri = Some("https://issuer.example".into());
        c.jwt_dev_secret = Some("dev".into());
        assert!(c.validate().unwrap_err().contains("development JWT key"));
    }

    #[test]
    fn prod_refuses_memory_the_bundled_peers_and_a_remote_http_issuer() {
        let mut c = Config {
            profile: Profile::Prod,
            jwt_issuer_uri: Some("https://issuer.example".into()),
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().contains("STORE=memory"));
        c.store = StoreKind::Dynamodb;
        assert!(c.validate().unwrap_err().contains("INVENTORY_GRPC_ADDRESS"));
        c.inventory_grpc_address = Some("inv:9090".into());
        assert!(c.validate().unwrap_err().contains("PAYMENT_GRPC_ADDRESS"));
        c.payment_grpc_address = Some("pay:9090".into());
        assert!(c.validate().is_ok());
        c.jwt_issuer_uri = Some("http://issuer.example".into());
        assert!(c.validate().unwrap_err().contains("loopback"));
        for ok in ["http://127.0.0.1:8080/realms/x", "http://localhost:1"] {
            c.jwt_issuer_uri = Some(ok.into());
            assert!(c.validate().is_ok(), "{ok}");
        }
    }

    #[test]
    fn issuer_algorithms_are_asymmetric_only() {
        use jsonwebtoken::Algorithm;
        assert_eq!(
            parse_algorithms("RS256, ES256,RS256").unwrap(),
            vec![Algorithm::RS256, Algorithm::ES256]
        );
        assert!(parse_algorithms("HS256").unwrap_err().contains("symmetric"));
        assert!(parse_algorithms("none").is_err());
        assert!(parse_algorithms(" , ").is_err());
    }

    #[test]
    fn local_is_the_default_and_valid() {
        let c = Config::default();
        assert_eq!(c.profile, Profile::Local);
        assert!(c.validate().is_ok());
        assert!("PROD".parse::<Profile>().is_ok());
        assert!("staging".parse::<Profile>().is_err());
    }

    #[test]
    fn grpc_client_defaults_and_limits() {
        let c = Config::default();
        assert_eq!(c.inventory_client.timeout_ms, 250);
        assert_eq!(c.inventory_client.max_concurrent, 1024);
        assert_eq!(c.payment_client.timeout_ms, 250);
        assert_eq!(c.inventory_client.slow_call_ms(), 200);
        assert!(c.inventory_grpc_address.is_none() && c.payment_grpc_address.is_none());
        let bad = [
            GrpcClientSettings {
                timeout_ms: 0,
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
                retry_backoff_ms: 100,
                retry_max_backoff_ms: 10,
                ..Default::default()
            },
        ];
        for s in bad {
            let e = Config {
                inventory_client: s.clone(),
                ..Config::default()
            }
            .validate()
            .unwrap_err();
            assert!(e.starts_with("INVENTORY_"), "{s:?}: {e}");
        }
    }
}
