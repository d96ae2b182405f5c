//! The bundled catalogue: events with priced sections of rows of seats, read from a JSON file.

use serde::{Deserialize, Serialize};

/// The catalogue shipped with the service (`catalog/events.json`), compiled in so that the default
/// run needs no file at all.
pub const BUNDLED: &str = include_str!("../../catalog/events.json");

#[derive(Clone, Debug, Deserialize)]
pub struct Catalog {
    pub events: Vec<EventSpec>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct EventSpec {
    pub id: String,
    pub name: String,
    #[serde(default = "default_currency")]
    pub currency: String,
    /// Best first: best-available picks from the first section that can seat the party.
    pub sections: Vec<SectionSpec>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct SectionSpec {
    pub id: String,
    pub name: String,
    pub price: i64,
    pub rows: Vec<String>,
    pub seats_per_row: u32,
}

fn default_currency() -> String {
    "KRW".into()
}

impl Catalog {
    pub fn parse(json: &str) -> Result<Self, String> {
        let c: Catalog = serde_json::from_str(json).map_err(|e| format!("catalogue: {e}"))?;
        for e in &c.events {
            if e.sections
                .iter()
                .any(|s| s.price < 0 || s.rows.is_empty() || s.seats_per_row == 0)
            {
                return Err(format!(
                    "catalogue: event {} has an empty or negatively priced section",
                    e.id
                ));
            }
            // A seat id is `{row}-{number}` across the whole event: two rows with one label
            // would make two seats answer to each id (the seat map would show both, a buyer
            // could pick only one of them).
            let mut labels = std::collections::HashSet::new();
            if let Some(row) = e
                .sections
                .iter()
                .flat_map(|s| &s.rows)
                .find(|r| !labels.insert(r.as_str()))
            {
                return Err(format!(
                    "catalogue: event {} names row {row} more than once (row labels are unique per event)",
                    e.id
                ));
            }
        }
        Ok(c)
    }

    pub fn bundled() -> Self {
        Self::parse(BUNDLED).expect("the bundled catalogue is valid")
    }

    pub fn load(path: Option<&std::path::Path>) -> Result<Self, String> {
        match path {
            None => Ok(Self::bundled()),
            Some(p) => Self::parse(
                &std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?,
            ),
        }
    }

    /// A one-event catalogue of `seats` seats in rows of ten, for tests and benchmarks.
    pub fn single(event_id: &str, seats: u32, price: i64) -> Self {
        let rows = seats.div_ceil(10);
        assert!(seats.is_multiple_of(10), "whole rows of ten");
        Self {
            events: vec![EventSpec {
                id: event_id.into(),
                name: event_id.into(),
                currency: default_currency(),
                sections: vec![SectionSpec {
                    id: "GA".into(),
                    name: "General".into(),
                    price,
                    rows: (0..rows).map(|r| format!("R{r}")).collect(),
                    seats_per_row: 10,
                }],
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_label_used_twice_in_an_event_is_refused() {
        let json = |second: &str| {
            format!(
                r#"{{"events":[{{"id":"e","name":"E","sections":[
                {{"id":"A","name":"A","price":1,"rows":["R1","R2"],"seats_per_row":2}},
                {{"id":"B","name":"B","price":1,"rows":["{second}"],"seats_per_row":2}}]}}]}}"#
            )
        };
        let err = Catalog::parse(&json("R1")).unwrap_err();
        assert!(err.contains("names row R1 more than once"), "{err}");
        assert!(Catalog::parse(&json("R3")).is_ok());
    }

    #[test]
    fn the_bundled_catalogue_has_the_seed_event() {
        let c = Catalog::bundled();
        let e = c.events.iter().find(|e| e.id == "evt_2025_1001").unwrap();
        let seats: u32 = e
            .sections
            .iter()
            .map(|s| s.rows.len() as u32 * s.seats_per_row)
            .sum();
        assert!(seats >= 200, "a few hundred seats, got {seats}");
    }
}
