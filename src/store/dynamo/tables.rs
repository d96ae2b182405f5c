//! `dynamodb/tables.json` (the AWS CLI `create-table` input, one per table) and creating whatever
//! tables are missing, idempotently.

use std::time::Duration;

use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;
use serde::Deserialize;

use super::TableNames;

/// How long the tables together may take to become ACTIVE. The SDK's waiter polls at 20 s or
/// more apart after its first look (AWS's own schedule); on DynamoDB Local and moto a new table is
/// ACTIVE at once.
const TABLE_WAIT: Duration = Duration::from_secs(120);

pub const TABLES_JSON: &str = include_str!("../../../dynamodb/tables.json");
/// The TTL of each table that has one (AWS CLI `update-time-to-live` input per table).
pub const TTL_JSON: &str = include_str!("../../../dynamodb/ttl.json");

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TtlDef {
    time_to_live_specification: TtlSpec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TtlSpec {
    attribute_name: String,
    enabled: bool,
}

#[derive(Debug, Deserialize)]
struct TtlDefinitions {
    reservations: TtlDef,
    orders: TtlDef,
    idempotency: TtlDef,
    outbox: TtlDef,
    /// Finished hold items of the seat inventory (row items never carry `ttl`).
    seats: TtlDef,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TableDef {
    attribute_definitions: Vec<AttrDef>,
    key_schema: Vec<KeyDef>,
    #[serde(default)]
    global_secondary_indexes: Vec<IndexDef>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AttrDef {
    attribute_name: String,
    attribute_type: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyDef {
    attribute_name: String,
    key_type: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct IndexDef {
    index_name: String,
    key_schema: Vec<KeyDef>,
    projection: ProjectionDef,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ProjectionDef {
    projection_type: String,
}

#[derive(Debug, Deserialize)]
struct Definitions {
    reservations: TableDef,
    orders: TableDef,
    idempotency: TableDef,
    outbox: TableDef,
    seats: TableDef,
}

fn keys(defs: &[KeyDef]) -> Result<Vec<KeySchemaElement>, String> {
    defs.iter()
        .map(|k| {
            KeySchemaElement::builder()
                .attribute_name(&k.attribute_name)
                .key_type(KeyType::from(k.key_type.as_str()))
                .build()
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// Create each missing table (and the idempotency table's TTL); existing tables are left alone.
/// Returns the names it created.
pub async fn create_missing(client: &Client, names: &TableNames) -> Result<Vec<String>, String> {
    let defs: Definitions =
        serde_json::from_str(TABLES_JSON).map_err(|e| format!("dynamodb/tables.json: {e}"))?;
    let existing = list_tables(client).await?;
    let mut created = Vec::new();
    for (name, def) in [
        (&names.reservations, &defs.reservations),
        (&names.orders, &defs.orders),
        (&names.idempotency, &defs.idempotency),
        (&names.outbox, &defs.outbox),
        (&names.seats, &defs.seats),
    ] {
        if existing.contains(name) {
            continue;
        }
        let mut req = client
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .set_key_schema(Some(keys(&def.key_schema)?));
        for a in &def.attribute_definitions {
            req = req.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(&a.attribute_name)
                    .attribute_type(ScalarAttributeType::from(a.attribute_type.as_str()))
                    .build()
                    .map_err(|e| e.to_string())?,
            );
        }
        for g in &def.global_secondary_indexes {
            req = req.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(&g.index_name)
                    .set_key_schema(Some(keys(&g.key_schema)?))
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::from(
                                g.projection.projection_type.as_str(),
                            ))
                            .build(),
                    )
                    .build()
                    .map_err(|e| e.to_string())?,
            );
        }
        match req.send().await {
            Ok(_) => created.push(name.clone()),
            // Another replica created it meanwhile.
            Err(e) if format!("{e:?}").contains("ResourceInUseException") => continue,
            Err(e) => return Err(format!("create table {name}: {e:?}")),
        }
    }
    let all = [
        names.reservations.as_str(),
        &names.orders,
        &names.idempotency,
        &names.outbox,
        &names.seats,
    ];
    wait_active(client, &all, TABLE_WAIT).await?;
    let ttls: TtlDefinitions =
        serde_json::from_str(TTL_JSON).map_err(|e| format!("dynamodb/ttl.json: {e}"))?;
    for (name, ttl) in [
        (&names.reservations, &ttls.reservations),
        (&names.orders, &ttls.orders),
        (&names.idempotency, &ttls.idempotency),
        (&names.outbox, &ttls.outbox),
        (&names.seats, &ttls.seats),
    ] {
        if !created.contains(name) {
            continue;
        }
        let spec = &ttl.time_to_live_specification;
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(&spec.attribute_name)
                    .enabled(spec.enabled)
                    .build()
                    .map_err(|e| e.to_string())?,
            )
            .send()
            .await
            .map_err(|e| format!("TTL on {name}: {e:?}"))?;
    }
    Ok(created)
}

async fn list_tables(client: &Client) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut start: Option<String> = None;
    loop {
        let out = client
            .list_tables()
            .set_exclusive_start_table_name(start.take())
            .send()
            .await
            .map_err(|e| format!("list tables: {e:?}"))?;
        names.extend(out.table_names().iter().cloned());
        match out.last_evaluated_table_name() {
            Some(n) => start = Some(n.to_owned()),
            None => return Ok(names),
        }
    }
}

/// Wait until every table is ACTIVE (the SDK's `table_exists` waiter, all tables at once); a table
/// that is not ACTIVE within `max_wait` is an error.
pub async fn wait_active(
    client: &Client,
    names: &[&str],
    max_wait: Duration,
) -> Result<(), String> {
    futures::future::try_join_all(names.iter().map(|&name| async move {
        client
            .wait_until_table_exists()
            .table_name(name)
            .wait(max_wait)
            .await
            .map(drop)
            .map_err(|e| {
                format!(
                    "table {name} not ACTIVE within {max_wait:?}: {}",
                    DisplayErrorContext(&e)
                )
            })
    }))
    .await
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client of a DynamoDB stand-in on loopback that answers every `DescribeTable` with
    /// `status`.
    async fn client_seeing(status: &'static str) -> Client {
        let app = axum::Router::new().fallback(move || async move {
            (
                [("content-type", "application/x-amz-json-1.0")],
                format!(r#"{{"Table":{{"TableName":"t","TableStatus":"{status}"}}}}"#),
            )
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let conf = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "k", "s", None, None, "test",
            ))
            .endpoint_url(url)
            .build();
        Client::from_conf(conf)
    }

    #[tokio::test]
    async fn a_table_that_never_becomes_active_is_an_error_once_the_wait_is_over() {
        let client = client_seeing("CREATING").await;
        let started = std::time::Instant::now();
        let err = wait_active(&client, &["t"], Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(err.contains("not ACTIVE"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(30));
        let client = client_seeing("ACTIVE").await;
        wait_active(&client, &["t", "u"], Duration::from_secs(1))
            .await
            .unwrap();
    }

    #[test]
    fn every_table_with_retention_has_a_ttl_on_the_attribute_the_store_writes() {
        let d: TtlDefinitions = serde_json::from_str(TTL_JSON).unwrap();
        for t in [
            &d.reservations,
            &d.orders,
            &d.idempotency,
            &d.outbox,
            &d.seats,
        ] {
            assert_eq!(t.time_to_live_specification.attribute_name, "ttl");
            assert!(t.time_to_live_specification.enabled);
        }
    }

    #[test]
    fn the_bundled_definitions_parse() {
        let d: Definitions = serde_json::from_str(TABLES_JSON).unwrap();
        assert_eq!(d.reservations.global_secondary_indexes.len(), 2);
        assert_eq!(d.outbox.global_secondary_indexes.len(), 2);
        assert_eq!(d.idempotency.key_schema[0].attribute_name, "pk");
    }

    #[test]
    fn the_default_table_names_are_those_of_tables_json() {
        let d: serde_json::Value = serde_json::from_str(TABLES_JSON).unwrap();
        let t = TableNames::default();
        for (key, name) in [
            ("reservations", &t.reservations),
            ("orders", &t.orders),
            ("idempotency", &t.idempotency),
            ("outbox", &t.outbox),
            ("seats", &t.seats),
        ] {
            assert_eq!(d[key]["TableName"], name.as_str(), "{key}");
        }
        assert_eq!(d.as_object().unwrap().len(), 5);
    }
}
