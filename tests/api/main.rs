//! The API test suite: one binary, the real app on port 0 per test.

mod fault_proxy;
mod helpers;
mod issuer;
mod moto;
mod peers;

mod admission;
mod ambiguous;
mod cache;
mod cache_workload;
mod capacity;
mod edges;
mod errors;
mod expiry;
mod grpc;
mod idempotency;
mod identity;
mod languages;
mod lifecycle;
mod listing;
mod metrics;
mod openapi;
mod openapi_frontend;
mod ops_assets;
mod payment;
mod races;
mod rate_limits;
mod readiness;
mod redrive;
mod retention;
mod seat_map;
mod timed;
mod workload;
