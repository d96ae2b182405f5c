//! Shared AWS SDK configuration: region, endpoint override (a local server such as moto), and
//! deadlines. Credentials come from the standard chain. Built once at start-up per client.

use std::time::Duration;

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
        .timeout_config(timeouts);
    if let Some(ep) = endpoint {
        loader = loader.endpoint_url(ep);
    }
    loader.load().await
}
