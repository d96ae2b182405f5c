//! JSON parsed into a `Value` that refuses duplicate object keys.
//!
//! serde_json keeps the last of two equal keys without a word (`{"qty":1,"qty":3}` is `qty: 3`),
//! so a proxy or a log that reads the first one sees another request than we serve. No well-kept
//! crate offers a strict `Value`; this is serde's own seed/visitor pattern, building the same
//! `Value` serde_json would (serde_json's recursion limit still applies: it is enforced by its
//! deserializer, not by the visitor).

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a body was refused.
#[derive(Debug)]
pub enum StrictJsonError {
    /// An object repeats this key (the first one found).
    DuplicateKey(String),
    Malformed(serde_json::Error),
}

/// Parse `bytes` as one JSON document whose objects have distinct keys.
pub fn from_slice(bytes: &[u8]) -> Result<Value, StrictJsonError> {
    let duplicate = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = Seed(&duplicate)
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v));
    match (parsed, duplicate.into_inner()) {
        (_, Some(key)) => Err(StrictJsonError::DuplicateKey(key)),
        (Ok(v), None) => Ok(v),
        (Err(e), None) => Err(StrictJsonError::Malformed(e)),
    }
}

/// Carries the slot where the first duplicate key is reported.
#[derive(Clone, Copy)]
struct Seed<'a>(&'a RefCell<Option<String>>);

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(self)? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                let msg = format!("duplicate key {key:?}");
                self.0.borrow_mut().get_or_insert(key);
                return Err(de::Error::custom(msg));
            }
            let value = map.next_value_seed(self)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_like_serde_json() {
        let text = r#"{"a":[1,-2,3.5,"x",null,true,{"b":{}}],"c":"d"}"#;
        let strict = from_slice(text.as_bytes()).unwrap();
        assert_eq!(strict, serde_json::from_str::<Value>(text).unwrap());
        assert_eq!(from_slice(b" 7 ").unwrap(), json!(7));
    }

    #[test]
    fn a_duplicate_key_is_named_at_any_depth() {
        for (text, key) in [
            (r#"{"qty":1,"qty":3}"#, "qty"),
            (r#"{"a":{"b":1,"b":1}}"#, "b"),
            (r#"[{"x":1},{"y":1,"y":2}]"#, "y"),
        ] {
            match from_slice(text.as_bytes()) {
                Err(StrictJsonError::DuplicateKey(k)) => assert_eq!(k, key, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn malformed_and_trailing_input_are_refused() {
        for text in ["{", r#"{"a":1} x"#, "", "[1,]"] {
            assert!(
                matches!(
                    from_slice(text.as_bytes()),
                    Err(StrictJsonError::Malformed(_))
                ),
                "{text}"
            );
        }
    }
}
