//! The API test suite: one binary, the real app on port 0 per test.

mod helpers;
mod moto;
mod peers;

mod errors;
mod expiry;
mod grpc;
mod idempotency;
mod lifecycle;
mod metrics;
mod openapi;
mod payment;
mod races;
mod timed;
mod workload;
