//! The gRPC side of the service: the generated contract code, the bundled inventory and payment
//! servers, and the resilient clients the service uses to reach them.

pub mod convert;
pub mod health;
pub mod inventory_client;
pub mod inventory_server;
pub mod local;
pub mod payment_client;
pub mod payment_server;
pub mod resilience;

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::config::GrpcClientSettings;

/// Code generated from `proto/` by `build.rs` (protox + tonic-prost-build).
pub mod proto {
    pub mod common {
        pub mod v1 {
            tonic::include_proto!("common.v1");
        }
    }
    pub mod reservation {
        pub mod v1 {
            tonic::include_proto!("reservation.v1");
        }
    }
    pub mod payment {
        pub mod v1 {
            tonic::include_proto!("payment.v1");
        }
    }
}

/// Metadata hints on `GetPaymentStatus`: what the caller is about to check the payment against.
/// A real payment service ignores them; the simulator echoes them (see [`payment_server`]).
pub const HINT_RESERVATION_ID: &str = "x-reservation-id";
pub const HINT_AMOUNT: &str = "x-amount";
pub const HINT_CURRENCY: &str = "x-currency";

/// The endpoint a client reports (readiness, logs) when it calls a bundled peer in this process.
pub const IN_PROCESS: &str = "in-process";

/// `http://host:port` for a bare `host:port`.
pub fn endpoint_uri(address: &str) -> String {
    if address.contains("://") {
        address.to_owned()
    } else {
        format!("http://{address}")
    }
}

/// The one channel of a dependency, shared by every call: it connects on first use (so that the
/// service starts while the dependency is down) and reconnects after a failure. Must be called
/// inside a tokio runtime.
pub fn channel(address: &str, settings: &GrpcClientSettings) -> Result<Channel, String> {
    let uri = endpoint_uri(address);
    let endpoint = Endpoint::from_shared(uri.clone()).map_err(|e| format!("{uri}: {e}"))?;
    Ok(endpoint
        .connect_timeout(settings.timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .connect_lazy())
}
