//! Reading and writing DynamoDB attribute maps.
//!
//! By hand rather than with `serde_dynamo`: timestamps are stored as RFC 3339 with milliseconds
//! (index sort keys compared as strings), and keys and sparse-index attributes are derived, so a
//! serde mapping would need an attribute on most fields and would not be shorter.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use crate::domain::event::rfc3339;
use crate::store::StoreError;

pub type Item = HashMap<String, AttributeValue>;

pub fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub fn t(v: DateTime<Utc>) -> AttributeValue {
    AttributeValue::S(rfc3339(v))
}

pub fn list(v: &[String]) -> AttributeValue {
    AttributeValue::L(v.iter().map(|x| s(x.clone())).collect())
}

fn missing(name: &str) -> StoreError {
    StoreError::Internal(format!("stored item lacks or mistypes {name}"))
}

pub fn get_s(item: &Item, name: &str) -> Result<String, StoreError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .ok_or_else(|| missing(name))
}

pub fn opt_s(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

pub fn get_n<T: std::str::FromStr>(item: &Item, name: &str) -> Result<T, StoreError> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| missing(name))
}

pub fn get_t(item: &Item, name: &str) -> Result<DateTime<Utc>, StoreError> {
    get_s(item, name)?.parse().map_err(|_| missing(name))
}

pub fn opt_t(item: &Item, name: &str) -> Option<DateTime<Utc>> {
    opt_s(item, name).and_then(|v| v.parse().ok())
}

pub fn get_list(item: &Item, name: &str) -> Result<Vec<String>, StoreError> {
    let l = item
        .get(name)
        .and_then(|v| v.as_l().ok())
        .ok_or_else(|| missing(name))?;
    l.iter()
        .map(|v| v.as_s().cloned().map_err(|_| missing(name)))
        .collect()
}

/// The sparse-index shard attribute of `id` among `shards` (see [`super::shards`]).
pub fn shard_of(id: &str, shards: u32) -> String {
    super::shards::shard_of(id, shards).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let now = crate::service::now_ms();
        let mut item = Item::new();
        item.insert("a".into(), s("x"));
        item.insert("b".into(), n(42));
        item.insert("c".into(), t(now));
        item.insert("d".into(), list(&["A-1".into(), "A-2".into()]));
        assert_eq!(get_s(&item, "a").unwrap(), "x");
        assert_eq!(get_n::<i64>(&item, "b").unwrap(), 42);
        assert_eq!(get_t(&item, "c").unwrap(), now);
        assert_eq!(get_list(&item, "d").unwrap(), vec!["A-1", "A-2"]);
        assert!(get_s(&item, "b").is_err());
        assert!(shard_of("rsv_abc", 8).parse::<u32>().unwrap() < 8);
    }
}
