//! Shared AWS SDK configuration: region, endpoint override (a local server such as moto), and
//! deadlines. Credentials come from the standard chain. Built once at start-up per client.

use std::time::Duration;

/// At most two attempts of `timeout / 2` each: the SDK's retries fit in the operation deadline
/// (2 × timeout/2 = timeout) instead of being cut off by it. A retried write may find its first
/// attempt landed; the store's callers settle that by reading (see `service::ambiguity`).
pub const SDK_MAX_ATTEMPTS: u32 = 2;

fn retry_budget() -> aws_config::retry::RetryConfig {
    aws_config::retry::RetryConfig::standard()
        .with_max_attempts(SDK_MAX_ATTEMPTS)
        .with_initial_backoff(Duration::from_millis(10))
}

pub async fn sdk_config(
    endpoint: Option<&str>,
    region: &str,
    timeout: Duration,
) -> aws_config::SdkConfig {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .operation_timeout(timeout)
        .operation_attempt_timeout(timeout / 2)
        .connect_timeout(timeout / 2)
        .build();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .timeout_config(timeouts)
        .retry_config(retry_budget());
    if let Some(ep) = endpoint {
        loader = loader.endpoint_url(ep);
    }
    loader.load().await
}
