//! The API test suite: one binary, the real app on port 0 per test.

mod fault_proxy;
mod helpers;
mod moto;
mod peers;

mod ambiguous;
mod errors;
mod expiry;
mod grpc;
mod idempotency;
mod lifecycle;
mod payment;
mod races;
mod timed;
mod workload;
