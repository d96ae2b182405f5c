//! Logs (one JSON object a line) and the request's trace context.

pub mod logging;
pub mod metrics;
pub mod trace;
