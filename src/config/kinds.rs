//! The configuration's enumerations: `APP_PROFILE`, `STORE` / `INVENTORY_STORE`, `ADMISSION_MODE`,
//! `BUNDLED_PEERS`.
//!
//! Each parses case-insensitively (and trimmed) through `FromStr`, which clap uses as its value
//! parser, so a bad value is reported with the accepted ones.

use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    Local,
    Dev,
    Prod,
}

impl FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
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
        match s.trim().to_ascii_lowercase().as_str() {
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

/// `ADMISSION_MODE`: whether a create needs the waiting room's admission token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdmissionMode {
    Off,
    Redis,
}

impl FromStr for AdmissionMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" => Ok(Self::Off),
            "redis" => Ok(Self::Redis),
            other => Err(format!(
                "ADMISSION_MODE must be off or redis, not {other:?}"
            )),
        }
    }
}

impl AdmissionMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Redis => "redis",
        }
    }
}

/// `BUNDLED_PEERS`: how the service reaches the bundled inventory and payment simulator (those
/// without an `…_GRPC_ADDRESS`). `in-process` (the default) calls their handlers directly, through
/// the same client stack; `loopback` serves them on a `127.0.0.1` port and calls them over gRPC,
/// as a remote peer is called (for the gRPC tests and benchmarks, and to debug the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BundledPeers {
    InProcess,
    Loopback,
}

impl FromStr for BundledPeers {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "in-process" => Ok(Self::InProcess),
            "loopback" => Ok(Self::Loopback),
            other => Err(format!(
                "BUNDLED_PEERS must be in-process or loopback, not {other:?}"
            )),
        }
    }
}

impl BundledPeers {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProcess => "in-process",
            Self::Loopback => "loopback",
        }
    }
}
