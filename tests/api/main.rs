//! The API test suite: one binary, the real app on port 0 per test.

mod fault_proxy;
mod helpers;
mod issuer;
mod moto;
mod peers;

mod admission;
mod ambiguous;
mod errors;
mod expiry;
mod grpc;
mod idempotency;
mod identity;
mod lifecycle;
mod metrics;
mod openapi;
mod payment;
mod races;
mod rate_limits;
mod readiness;
mod timed;
mod workload;
