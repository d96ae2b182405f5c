//! The command line: `serve` (the default), `config check`, `token`, `tables`, `outbox redrive`,
//! and the bundled gRPC peers `inventory` and `payment`. The definitions are here; each
//! subcommand's body is in the file of what it runs ([`service`]: the HTTP service and its
//! configuration, [`peers`]: the bundled gRPC servers, [`tools`]: the one-shot operator commands,
//! [`outbox`]: the outbox's), and fails with a typed [`CliError`].

mod error;
pub mod outbox;
pub mod peers;
pub mod service;
pub mod tools;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use error::CliError;

use crate::store::redrive::Redrive;

#[derive(Debug, Parser)]
#[command(
    name = "reservation-api",
    version,
    about = "Hold seats, pay, confirm or cancel — without overselling."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service (configured by environment variables; see the README).
    Serve,
    /// Print a development JWT signed with the local development key (not for prod).
    Token {
        /// The user the token is for (`sub`).
        #[arg(long)]
        sub: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
    },
    /// Manage the DynamoDB tables (DYNAMODB_ENDPOINT, AWS_REGION, DYNAMODB_TABLE_*).
    Tables {
        #[command(subcommand)]
        action: TablesAction,
    },
    /// Run the bundled seat inventory as a `reservation.v1.InventoryService` gRPC server
    /// (`INVENTORY_STORE=memory|dynamodb`), or seed its DynamoDB table.
    Inventory {
        #[command(subcommand)]
        action: Option<InventoryAction>,
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1:9090")]
        listen: SocketAddr,
        /// A catalogue JSON file (default: the bundled catalogue).
        #[arg(long)]
        catalog: Option<PathBuf>,
        /// Serve the inventory's metrics at `GET /metrics` (Prometheus text) on this address.
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
    },
    /// Check the configuration `serve` would read from the environment, contacting nothing.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Exit 0 when a server is healthy: `http://host:port/path` answers 2xx, or `grpc://host:port`
    /// answers `grpc.health.v1` SERVING. For container HEALTHCHECKs (the runtime image has no curl).
    Probe {
        /// `http://…` or `grpc://host:port`.
        url: String,
        /// The gRPC service to ask about (default: the server as a whole).
        #[arg(long, default_value = "")]
        service: String,
    },
    /// Operate on the outbox (STORE, DYNAMODB_*).
    Outbox {
        #[command(subcommand)]
        action: OutboxAction,
    },
    /// Run the payment simulator as a `payment.v1.PaymentService` gRPC server.
    Payment {
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1:9091")]
        listen: SocketAddr,
    },
}

#[derive(Debug, Subcommand)]
pub enum InventoryAction {
    /// Write a catalogue's events and seats into the seats table (`DYNAMODB_TABLE_SEATS`).
    /// Idempotent: holds and sales are kept, and seats may be added to an event, never removed.
    Seed {
        /// The catalogue JSON file.
        #[arg(long)]
        catalog: PathBuf,
    },
    /// Archive a finished event: print its summary (sold seats per row, the sales) as JSON and,
    /// with `--yes`, delete its rows and holds from the seats table. Refused while a hold of the
    /// event is live; without `--yes` nothing is deleted.
    Archive {
        /// The event.
        #[arg(long)]
        event: String,
        /// The event is over: delete its items.
        #[arg(long)]
        yes: bool,
        /// Write the summary to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum OutboxAction {
    /// Put FAILED events back to PENDING with their attempts reset, so that the relay publishes
    /// them again; a reservation's events in order (docs/outbox.md, "Redrive and retention").
    Redrive {
        /// Every FAILED event.
        #[arg(
            long,
            conflicts_with = "event_id",
            required_unless_present = "event_id"
        )]
        all: bool,
        /// One event (its `detail.id`), with the FAILED events of its reservation before it.
        #[arg(long)]
        event_id: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Apply every validation of `serve`; print the effective configuration (secrets redacted) and
    /// exit 0, or print one line per problem on stderr and exit 2.
    Check,
}

#[derive(Debug, Subcommand)]
pub enum TablesAction {
    /// Create whichever of the tables are missing (idempotent).
    Create,
}

/// Run the command line's choice (`serve` when none).
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => service::serve().await,
        Command::Config {
            action: ConfigAction::Check,
        } => service::config_check(),
        Command::Token { sub, ttl } => tools::token(&sub, ttl),
        Command::Tables {
            action: TablesAction::Create,
        } => tools::create_tables().await,
        Command::Inventory {
            action: Some(InventoryAction::Seed { catalog }),
            ..
        } => tools::seed(&catalog).await,
        Command::Inventory {
            action: Some(InventoryAction::Archive { event, yes, out }),
            ..
        } => tools::archive(&event, yes, out.as_deref()).await,
        Command::Inventory {
            action: None,
            listen,
            catalog,
            metrics_listen,
        } => peers::inventory(listen, catalog, metrics_listen).await,
        Command::Payment { listen } => peers::payment(listen).await,
        Command::Outbox {
            action: OutboxAction::Redrive { all: _, event_id },
        } => {
            let which = event_id.map_or(Redrive::All, Redrive::Event);
            outbox::redrive_command(which).await
        }
        Command::Probe { url, service } => tools::probe(&url, &service).await,
    }
}
