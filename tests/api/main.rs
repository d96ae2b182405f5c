//! The API test suite: one binary, the real app on port 0 per test.

mod helpers;

mod errors;
mod events;
mod expiry;
mod idempotency;
mod lifecycle;
mod moto;
mod races;
mod workload;
