use std::process::ExitCode;

use clap::Parser;
use reservation_api::cli::{self, Cli};

/// mimalloc rather than glibc's malloc: allocation was 15-18 % of a create's CPU with glibc
/// (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let result = cli::run(Cli::parse()).await;
    // The log lines still queued for stdout (logging's writer thread).
    reservation_api::telemetry::logging::flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.report(),
    }
}
