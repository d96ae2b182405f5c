//! `outbox redrive`: put FAILED outbox events back to PENDING so that the running relays publish
//! them again (see `store::redrive` for the order it keeps).

use super::CliError;
use crate::config::Config;
use crate::startup::build_store;
use crate::store::redrive::{redrive, Redrive};

/// Redrive `which` in the configured store; one `redriven` line per event, then a total.
pub async fn redrive_command(which: Redrive) -> Result<(), CliError> {
    let config = Config::from_env()?;
    let store = build_store(&config).await.map_err(CliError::Startup)?;
    let done = redrive(&*store, &which, crate::service::now_ms())
        .await
        .map_err(|e| CliError::Startup(format!("redrive: {e}")))?;
    for e in &done {
        println!("redriven\t{}\t{}\t{}", e.id, e.reservation_id, e.seq);
    }
    println!("redriven\t{} events", done.len());
    if let (Redrive::Event(id), true) = (&which, done.is_empty()) {
        return Err(CliError::Startup(format!("no FAILED event {id}")));
    }
    Ok(())
}
