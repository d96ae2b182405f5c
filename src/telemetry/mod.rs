//! Logs (one JSON object a line), traces (OpenTelemetry over OTLP) and metrics.

pub mod ids;
pub mod logging;
pub mod metrics;
pub mod otel;
pub mod trace;
