//! One user's reservations, newest first, through the `reservations_by_user` index (`user_id`,
//! `created_at`; keys only), then a consistent `BatchGetItem` of the reservations themselves.
//!
//! The index orders by `created_at` alone, so reservations made in the same millisecond come back
//! in no fixed order: the query reads past the page until the millisecond at its end is complete,
//! and the keys are sorted by (`created_at`, id) here, which makes the order total.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;

use super::errors::sdk_err;
use super::item::{get_s, s, Item};
use super::requests::{batch_get_consistent, BATCH_GET_MAX};
use super::reservations;
use crate::domain::event::rfc3339;
use crate::domain::Reservation;
use crate::store::{StoreError, UserListPosition};

pub const RESERVATIONS_BY_USER: &str = "reservations_by_user";

/// (`created_at` as stored, reservation id, event id): sorted newest first.
type Key = (String, String, String);

pub async fn page(
    client: &Client,
    table: &str,
    user_id: &str,
    after: Option<&UserListPosition>,
    limit: usize,
) -> Result<Vec<Reservation>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let keys = newest_keys(client, table, user_id, after, limit).await?;
    let mut found = batch_get(client, table, &keys).await?;
    Ok(keys
        .iter()
        .filter_map(|(_, id, _)| found.remove(id))
        .collect())
}

/// The keys of the page: the `limit` newest strictly after `after`.
async fn newest_keys(
    client: &Client,
    table: &str,
    user_id: &str,
    after: Option<&UserListPosition>,
    limit: usize,
) -> Result<Vec<Key>, StoreError> {
    let after = after.map(|p| (rfc3339(p.created_at), p.id.clone()));
    let mut keys: Vec<Key> = Vec::new();
    let mut start: Option<Item> = None;
    loop {
        let mut q = client
            .query()
            .table_name(table)
            .index_name(RESERVATIONS_BY_USER)
            .scan_index_forward(false)
            .expression_attribute_values(":u", s(user_id))
            .limit((limit + 1).min(1000) as i32)
            .set_exclusive_start_key(start.take());
        q = match &after {
            // `<=`: the position's own millisecond may hold older ids still to come.
            Some((created, _)) => q
                .key_condition_expression("user_id = :u AND created_at <= :c")
                .expression_attribute_values(":c", s(created)),
            None => q.key_condition_expression("user_id = :u"),
        };
        let out = q.send().await.map_err(sdk_err)?;
        let mut oldest_read: Option<String> = None;
        for item in out.items() {
            let key = (
                get_s(item, "created_at")?,
                get_s(item, "pk")?,
                get_s(item, "sk")?,
            );
            oldest_read = Some(key.0.clone());
            if after
                .as_ref()
                .is_none_or(|(c, id)| (&key.0, &key.1) < (c, id))
            {
                keys.push(key);
            }
        }
        keys.sort_by(|a, b| (&b.0, &b.1).cmp(&(&a.0, &a.1)));
        start = out.last_evaluated_key().cloned();
        // Done when the page is full and a strictly older millisecond has been seen (nothing of
        // the page's last millisecond is left unread), or when the index has nothing more.
        let complete = keys.len() >= limit
            && oldest_read
                .as_ref()
                .is_some_and(|oldest| *oldest < keys[limit - 1].0);
        if start.is_none() || complete {
            break;
        }
    }
    keys.truncate(limit);
    Ok(keys)
}

/// The reservations of `keys` by id, read consistently.
async fn batch_get(
    client: &Client,
    table: &str,
    keys: &[Key],
) -> Result<HashMap<String, Reservation>, StoreError> {
    let mut found = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(BATCH_GET_MAX) {
        let keys = chunk
            .iter()
            .map(|(_, id, event)| Item::from([("pk".into(), s(id)), ("sk".into(), s(event))]))
            .collect();
        let got = batch_get_consistent(client, table, keys, None, 4, || {}).await?;
        if !got.unprocessed.is_empty() {
            return Err(StoreError::Unavailable(
                "BatchGetItem left keys unprocessed".into(),
            ));
        }
        for item in &got.items {
            let r = reservations::from_item(item)?;
            found.insert(r.id.clone(), r);
        }
    }
    Ok(found)
}
