//! `reservation-api inventory seed`: write a catalogue's events into the seats table. Rows are
//! written before the event item that lists them, and only their description is set — never a
//! seat's holder or end — so seeding again changes nothing and a seed that adds rows or seats to
//! an event keeps every hold and sale.

use aws_sdk_dynamodb::Client;

use super::client::{sdk_error, SeatsClient};
use super::layout::{meta_key, n, row_key, s, EventMeta};
use crate::inventory::catalog::{Catalog, EventSpec};

/// What a seed did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeedReport {
    pub events: usize,
    pub rows: usize,
    pub seats: u64,
}

/// A seed may add sections, rows and seats, never take any away: a removed seat could be held or
/// sold.
fn check_growth(old: &EventSpec, new: &EventSpec) -> Result<(), String> {
    let new_meta = EventMeta::new(new.clone());
    for row in EventMeta::new(old.clone()).rows {
        let kept = new_meta
            .row_index
            .get(&row.label)
            .map(|&i| &new_meta.rows[i])
            .is_some_and(|r| r.section == row.section && r.seats >= row.seats);
        if !kept {
            return Err(format!(
                "event {}: the catalogue drops or shrinks row {} of section {}; a seed only adds seats",
                new.id, row.label, row.section
            ));
        }
    }
    Ok(())
}

pub async fn seed(client: &Client, table: &str, catalog: &Catalog) -> Result<SeedReport, String> {
    let db = SeatsClient::new(client.clone(), table);
    let mut report = SeedReport::default();
    for spec in &catalog.events {
        if let Some(old) = db
            .get(&meta_key(&spec.id))
            .await
            .map_err(|e| e.to_string())?
        {
            let old = EventMeta::from_item(&old).map_err(|e| e.to_string())?;
            check_growth(&old.spec, spec)?;
        }
    }
    for spec in &catalog.events {
        let meta = EventMeta::new(spec.clone());
        for row in &meta.rows {
            client
                .update_item()
                .table_name(table)
                .key("pk", s(row_key(&spec.id, &row.label)))
                .update_expression("SET #row = :row, #sec = :sec, seats = :n, price = :p")
                .expression_attribute_names("#row", "row")
                .expression_attribute_names("#sec", "section")
                .expression_attribute_values(":row", s(&row.label))
                .expression_attribute_values(":sec", s(&row.section))
                .expression_attribute_values(":n", n(row.seats))
                .expression_attribute_values(":p", n(row.price))
                .send()
                .await
                .map_err(|e| format!("seed row {}: {}", row.label, sdk_error(e)))?;
            report.rows += 1;
            report.seats += u64::from(row.seats);
        }
        let spec_json = serde_json::to_string(spec).map_err(|e| e.to_string())?;
        client
            .put_item()
            .table_name(table)
            .item("pk", s(meta_key(&spec.id)))
            .item("name", s(&spec.name))
            .item("currency", s(&spec.currency))
            .item("spec", s(spec_json))
            .send()
            .await
            .map_err(|e| format!("seed event {}: {}", spec.id, sdk_error(e)))?;
        report.events += 1;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_may_add_seats_but_never_remove_them() {
        let small = Catalog::single("e", 20, 100).events.remove(0);
        let big = Catalog::single("e", 30, 100).events.remove(0);
        assert!(check_growth(&small, &big).is_ok());
        assert!(check_growth(&small, &small).is_ok());
        let err = check_growth(&big, &small).unwrap_err();
        assert!(err.contains("row R2"), "{err}");
        let mut wider = small.clone();
        wider.sections[0].seats_per_row = 12;
        assert!(check_growth(&small, &wider).is_ok());
        assert!(check_growth(&wider, &small).is_err());
    }
}
