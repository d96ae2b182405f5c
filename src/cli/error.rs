//! Why a subcommand failed, and how the process reports it.

use std::net::SocketAddr;
use std::process::ExitCode;

use crate::config::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The environment's configuration is refused: one stderr line per problem, exit code 2.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The service, a peer server or a store could not be built (the message names the part).
    #[error("{0}")]
    Startup(String),
    #[error("bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("development tokens are not for the prod profile")]
    TokenInProd,
    #[error("--sub must be non-empty and --ttl positive")]
    TokenArgs,
    /// `probe`: the server did not answer healthy.
    #[error("{url}: {reason}")]
    Unhealthy { url: String, reason: String },
}

impl CliError {
    /// Print the error on stderr (a refused configuration: one line per problem) and give the
    /// exit code: 2 for a refused configuration, 1 for anything else.
    pub fn report(&self) -> ExitCode {
        match self {
            Self::Config(e) => {
                for p in &e.problems {
                    eprintln!("reservation-api: {p}");
                }
                ExitCode::from(2)
            }
            other => {
                eprintln!("reservation-api: {other}");
                ExitCode::FAILURE
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_configuration_exits_2_and_anything_else_1() {
        let config = CliError::Config(ConfigError {
            problems: vec!["A".into(), "B".into()],
        });
        assert_eq!(config.to_string(), "A; B");
        assert_eq!(config.report(), ExitCode::from(2));
        assert_eq!(CliError::TokenArgs.report(), ExitCode::FAILURE);
    }
}
