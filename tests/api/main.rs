//! The API test suite: one binary, the real app on port 0 per test.

// Not every suite uses every helper, and the skeleton's empty suites import them unused.
#[allow(dead_code)]
mod helpers;
mod peers;

#[allow(unused_imports)]
mod errors;
#[allow(unused_imports)]
mod expiry;
mod grpc;
#[allow(unused_imports)]
mod idempotency;
#[allow(unused_imports)]
mod lifecycle;
mod payment;
#[allow(unused_imports)]
mod races;
mod resilience;
