//! The one-shot operator commands: `token`, `tables create`, `inventory seed`, `inventory archive`,
//! `probe`.

use std::path::Path;
use std::time::Duration;

use secrecy::ExposeSecret;

use super::CliError;
use crate::auth::{dev_key, jwt};
use crate::config::{Config, GrpcClientSettings, Profile};
use crate::grpc::health::PeerHealth;
use crate::inventory::catalog::Catalog;
use crate::inventory::dynamo::{archive, seed};
use crate::startup::dynamodb_client;
use crate::store::dynamo;

/// `token`: a development JWT for `sub`, signed with the development key (not in prod).
pub fn token(sub: &str, ttl: i64) -> Result<(), CliError> {
    let config = Config::from_env()?;
    if config.profile == Profile::Prod {
        return Err(CliError::TokenInProd);
    }
    if sub.is_empty() || ttl <= 0 {
        return Err(CliError::TokenArgs);
    }
    let secret = dev_key::load_or_create(
        config.jwt_dev_secret.as_ref().map(|s| s.expose_secret()),
        &config.data_dir,
    )
    .map_err(CliError::Startup)?;
    println!("{}", jwt::mint(&secret, sub, ttl));
    Ok(())
}

/// `tables create`: whichever of the tables are missing; one `created`/`exists` line each.
pub async fn create_tables() -> Result<(), CliError> {
    let config = Config::from_env()?;
    let d = &config.dynamodb;
    let client = dynamodb_client(&config).await;
    let created = dynamo::tables::create_missing(&client, &d.tables)
        .await
        .map_err(CliError::Startup)?;
    for t in [
        &d.tables.reservations,
        &d.tables.orders,
        &d.tables.idempotency,
        &d.tables.outbox,
        &d.tables.seats,
    ] {
        let what = if created.contains(t) {
            "created"
        } else {
            "exists"
        };
        println!("{what}\t{t}");
    }
    // The index shards are values, not schema: a change is applied by configuration, in the steps
    // of docs/outbox.md ("Changing the shard count").
    let s = &d.index_shards;
    let previous = s.previous.map_or("(unset)".into(), |p| p.to_string());
    println!(
        "index shards\tDYNAMODB_INDEX_SHARDS={} DYNAMODB_INDEX_SHARDS_PREVIOUS={previous}: \
         to change the count, see docs/outbox.md#changing-the-shard-count",
        s.current
    );
    Ok(())
}

/// `inventory seed`: a catalogue's events and seats into the seats table.
pub async fn seed(catalog: &Path) -> Result<(), CliError> {
    let config = Config::from_env()?;
    let catalog = Catalog::load(Some(catalog)).map_err(CliError::Startup)?;
    let d = &config.dynamodb;
    let client = dynamodb_client(&config).await;
    let r = seed::seed(&client, &d.tables.seats, &catalog)
        .await
        .map_err(CliError::Startup)?;
    println!(
        "seeded\t{}\tevents={} rows={} seats={}",
        d.tables.seats, r.events, r.rows, r.seats
    );
    Ok(())
}

/// `inventory archive`: a finished event's summary as JSON (stdout or `out`); with `yes`, its
/// items deleted from the seats table.
pub async fn archive(event: &str, yes: bool, out: Option<&Path>) -> Result<(), CliError> {
    let config = Config::from_env()?;
    let client = dynamodb_client(&config).await;
    let table = &config.dynamodb.tables.seats;
    let failed = |e: archive::ArchiveError| CliError::Startup(e.to_string());
    let summary = archive::summarise(&client, table, event, chrono::Utc::now())
        .await
        .map_err(failed)?;
    let json =
        serde_json::to_string_pretty(&summary).map_err(|e| CliError::Startup(e.to_string()))?;
    // Written before anything is deleted: the rows are the only record of the sold seats.
    match out {
        Some(p) => std::fs::write(p, json + "\n")?,
        None => println!("{json}"),
    }
    if !yes {
        eprintln!("dry run: nothing deleted (pass --yes once the event is over)");
        return Ok(());
    }
    let n = archive::delete(&client, table, &summary)
        .await
        .map_err(failed)?;
    eprintln!("archived {event}: {n} items deleted from {table}");
    Ok(())
}

/// `probe`: Ok when `url` (`http://…` answering 2xx, or `grpc://host:port` answering
/// `grpc.health.v1` SERVING for `service`) is healthy.
pub async fn probe(url: &str, service: &str) -> Result<(), CliError> {
    let unhealthy = |reason: String| CliError::Unhealthy {
        url: url.to_owned(),
        reason,
    };
    if let Some(addr) = url.strip_prefix("grpc://") {
        let settings = GrpcClientSettings {
            timeout: Duration::from_secs(1),
            ..Default::default()
        };
        return PeerHealth::new("probe", service, addr, &settings)
            .map_err(CliError::Startup)?
            .check()
            .await
            .map_err(|e| unhealthy(e.to_string()));
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .map_err(|e| unhealthy(e.to_string()))?;
    let r = client
        .get(url)
        .send()
        .await
        .map_err(|e| unhealthy(e.to_string()))?;
    if r.status().is_success() {
        Ok(())
    } else {
        Err(unhealthy(r.status().to_string()))
    }
}
