//! The one way this service connects to Redis (admission and the read-through cache): lazily, so
//! that it starts while Redis is down, with every wait bounded by `timeout`.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// A connection manager for `url`; `var` names the setting in the error.
pub fn lazy(url: &str, var: &str, timeout: Duration) -> Result<ConnectionManager, String> {
    let client = redis::Client::open(url).map_err(|e| format!("{var}: {e}"))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_lazy_with_config(client, config).map_err(|e| format!("{var}: {e}"))
}
