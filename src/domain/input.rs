//! Request bodies parsed into validated inputs. Every bad field is reported at once.

use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

/// Field name → what is wrong with it; rendered as the envelope's `details`.
pub type FieldErrors = BTreeMap<String, String>;

pub const MAX_QTY: u32 = 10;
pub const MAX_INTENT_CHARS: usize = 128;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateInput {
    pub event_id: String,
    pub qty: u32,
    pub seat_ids: Option<Vec<String>>,
    pub user_id: Option<String>,
    pub reservation_token: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfirmInput {
    pub payment_intent_id: String,
}

/// An event id as the contract allows it: 1–64 characters of `[A-Za-z0-9_-]`.
pub fn is_event_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn is_seat_id(s: &str) -> bool {
    (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Ids and intents are printable text: a control character (NUL, newline, DEL, C1) is refused.
pub fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

const NO_CONTROL: &str = "must not contain control characters";

fn object(body: &Value) -> Result<&serde_json::Map<String, Value>, FieldErrors> {
    body.as_object()
        .ok_or_else(|| FieldErrors::from([("body".to_owned(), "must be a JSON object".to_owned())]))
}

/// An optional string field: absent and `null` are both "not given".
fn opt_string(
    map: &serde_json::Map<String, Value>,
    name: &str,
    errors: &mut FieldErrors,
) -> Option<String> {
    match map.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            errors.insert(name.to_owned(), "must be a string".to_owned());
            None
        }
    }
}

fn qty_field(
    map: &serde_json::Map<String, Value>,
    name: &str,
    errors: &mut FieldErrors,
) -> Option<u32> {
    match map.get(name) {
        None | Some(Value::Null) => None,
        // An integral number written with a fraction (`2.0`) is the integer JSON Schema says it is.
        Some(v) => match v.as_u64().or_else(|| {
            v.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                .map(|f| f as u64)
        }) {
            Some(n) if (1..=u64::from(MAX_QTY)).contains(&n) => Some(n as u32),
            _ => {
                errors.insert(
                    name.to_owned(),
                    format!("must be an integer from 1 to {MAX_QTY}"),
                );
                Some(0)
            }
        },
    }
}

impl CreateInput {
    pub fn parse(body: &Value) -> Result<Self, FieldErrors> {
        let map = object(body)?;
        let mut errors = FieldErrors::new();

        let event_id = opt_string(map, "event_id", &mut errors);
        match &event_id {
            Some(id) if is_event_id(id) => {}
            Some(_) => {
                errors.insert(
                    "event_id".into(),
                    "must be 1-64 characters of [A-Za-z0-9_-]".into(),
                );
            }
            None => {
                errors
                    .entry("event_id".into())
                    .or_insert_with(|| "is required".into());
            }
        }

        let qty = qty_field(map, "qty", &mut errors);
        let quantity = qty_field(map, "quantity", &mut errors);
        let qty = match (qty, quantity) {
            (Some(a), Some(b)) if a != b && a != 0 && b != 0 => {
                errors.insert(
                    "quantity".into(),
                    "differs from qty; send one of them".into(),
                );
                0
            }
            (Some(a), _) => a,
            (None, Some(b)) => b,
            (None, None) => {
                errors.insert("qty".into(), "is required".into());
                0
            }
        };

        let seat_ids = match map.get("seat_ids") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => {
                let ids: Vec<String> = items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect();
                let distinct: HashSet<&str> = ids.iter().map(String::as_str).collect();
                if ids.len() != items.len() || !ids.iter().all(|s| is_seat_id(s)) {
                    errors.insert(
                        "seat_ids".into(),
                        "each id must be 1-32 characters of [A-Za-z0-9-]".into(),
                    );
                } else if distinct.len() != ids.len() {
                    errors.insert("seat_ids".into(), "must not repeat a seat".into());
                } else if qty != 0 && ids.len() != qty as usize {
                    errors.insert(
                        "seat_ids".into(),
                        format!("must hold exactly qty ({qty}) ids"),
                    );
                }
                Some(ids)
            }
            Some(_) => {
                errors.insert("seat_ids".into(), "must be an array of seat ids".into());
                None
            }
        };

        let user_id = opt_string(map, "user_id", &mut errors);
        let reservation_token = opt_string(map, "reservation_token", &mut errors);
        for (name, value) in [
            ("user_id", &user_id),
            ("reservation_token", &reservation_token),
        ] {
            if value.as_deref().is_some_and(has_control) {
                errors.insert(name.into(), NO_CONTROL.into());
            }
        }

        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            event_id: event_id.unwrap_or_default(),
            qty,
            seat_ids,
            user_id,
            reservation_token,
        })
    }
}

impl ConfirmInput {
    pub fn parse(body: &Value) -> Result<Self, FieldErrors> {
        let map = object(body)?;
        let mut errors = FieldErrors::new();
        let id = opt_string(map, "payment_intent_id", &mut errors);
        match id {
            Some(id) if has_control(&id) => Err(FieldErrors::from([(
                "payment_intent_id".to_owned(),
                NO_CONTROL.to_owned(),
            )])),
            Some(id) if (1..=MAX_INTENT_CHARS).contains(&id.chars().count()) => Ok(Self {
                payment_intent_id: id,
            }),
            Some(_) => Err(FieldErrors::from([(
                "payment_intent_id".to_owned(),
                format!("must be 1-{MAX_INTENT_CHARS} characters"),
            )])),
            None => {
                errors
                    .entry("payment_intent_id".into())
                    .or_insert_with(|| "is required".into());
                Err(errors)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_good_create_parses() {
        let c = CreateInput::parse(
            &json!({"event_id":"evt_2025_1001","qty":2,"seat_ids":["A-1","A-2"],"extra":1}),
        )
        .unwrap();
        assert_eq!(c.qty, 2);
        assert_eq!(c.seat_ids.unwrap(), vec!["A-1", "A-2"]);
    }

    #[test]
    fn quantity_is_an_alias_and_must_agree() {
        assert_eq!(
            CreateInput::parse(&json!({"event_id":"e","quantity":3}))
                .unwrap()
                .qty,
            3
        );
        assert_eq!(
            CreateInput::parse(&json!({"event_id":"e","quantity":3,"qty":3}))
                .unwrap()
                .qty,
            3
        );
        let e = CreateInput::parse(&json!({"event_id":"e","quantity":3,"qty":2})).unwrap_err();
        assert!(e.contains_key("quantity"));
    }

    #[test]
    fn every_bad_field_is_named() {
        let e = CreateInput::parse(
            &json!({"event_id":"bad id!","qty":11,"seat_ids":"A-1","user_id":5}),
        )
        .unwrap_err();
        for f in ["event_id", "qty", "seat_ids", "user_id"] {
            assert!(e.contains_key(f), "{f} not reported in {e:?}");
        }
        let e = CreateInput::parse(&json!({})).unwrap_err();
        assert!(e.contains_key("event_id") && e.contains_key("qty"));
        assert!(CreateInput::parse(&json!([1]))
            .unwrap_err()
            .contains_key("body"));
    }

    #[test]
    fn seat_ids_must_match_qty_and_be_distinct_and_well_formed() {
        let bad = [
            json!({"event_id":"e","qty":2,"seat_ids":["A-1"]}),
            json!({"event_id":"e","qty":2,"seat_ids":["A-1","A-1"]}),
            json!({"event_id":"e","qty":1,"seat_ids":["A_1"]}),
            json!({"event_id":"e","qty":1,"seat_ids":[1]}),
            json!({"event_id":"e","qty":1,"seat_ids":["123456789012345678901234567890123"]}),
        ];
        for b in bad {
            assert!(
                CreateInput::parse(&b).unwrap_err().contains_key("seat_ids"),
                "{b}"
            );
        }
    }

    #[test]
    fn qty_bounds_and_types() {
        for q in [json!(0), json!(11), json!(-1), json!(1.5), json!("2")] {
            assert!(
                CreateInput::parse(&json!({"event_id":"e","qty":q})).is_err(),
                "{q}"
            );
        }
        assert!(CreateInput::parse(&json!({"event_id":"e","qty":10})).is_ok());
        assert_eq!(
            CreateInput::parse(&json!({"event_id":"e","qty":2.0}))
                .unwrap()
                .qty,
            2
        );
        assert!(CreateInput::parse(&json!({"event_id":"e","qty":1e300})).is_err());
    }

    #[test]
    fn control_characters_are_refused_in_ids_and_intents() {
        for bad in ["pay\u{0}x", "pay\nx", "pay\u{7f}", "pay\u{85}"] {
            let e = ConfirmInput::parse(&json!({ "payment_intent_id": bad })).unwrap_err();
            assert_eq!(e["payment_intent_id"], NO_CONTROL, "{bad:?}");
        }
        let e = CreateInput::parse(
            &json!({"event_id":"e","qty":1,"user_id":"u\u{0}","reservation_token":"t\r"}),
        )
        .unwrap_err();
        assert!(e.contains_key("user_id") && e.contains_key("reservation_token"));
        assert!(ConfirmInput::parse(&json!({"payment_intent_id":"pay_ü_1"})).is_ok());
    }

    #[test]
    fn confirm_needs_a_payment_intent() {
        assert!(ConfirmInput::parse(&json!({})).is_err());
        assert!(ConfirmInput::parse(&json!({"payment_intent_id":""})).is_err());
        assert!(ConfirmInput::parse(&json!({"payment_intent_id":"x".repeat(129)})).is_err());
        assert_eq!(
            ConfirmInput::parse(&json!({"payment_intent_id":"pay_1"}))
                .unwrap()
                .payment_intent_id,
            "pay_1"
        );
    }
}
