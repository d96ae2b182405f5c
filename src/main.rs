use std::process::ExitCode;

use clap::Parser;
use reservation_api::cli::{self, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    match cli::run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.report(),
    }
}
