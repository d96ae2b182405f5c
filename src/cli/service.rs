//! `serve` and `config check`: the HTTP service and the configuration it reads.

use super::CliError;
use crate::config::Config;
use crate::startup::{shutdown_signal, Application};
use crate::telemetry::logging;
use crate::telemetry::otel::Tracing;

/// `config check`: the same reading and validation as `serve`, without building anything.
pub fn config_check() -> Result<(), CliError> {
    for line in Config::from_env()?.describe() {
        println!("{line}");
    }
    Ok(())
}

/// `serve`. A configuration the service refuses is one line per problem on stderr and exit code
/// 2, before anything listens (a crash-looping pod shows why at once).
pub async fn serve() -> Result<(), CliError> {
    let config = Config::from_env()?;
    let traces = Tracing::new("reservation-api");
    logging::init(&traces);
    traces.announce();
    let result = match Application::build(config).await {
        Ok(app) => app
            .run_until_stopped(shutdown_signal())
            .await
            .map_err(CliError::from),
        Err(e) => Err(CliError::Startup(e)),
    };
    traces.shutdown().await;
    result
}
