//! The orders table: `pk` = order_id, `sk` = reservation_id.

use aws_sdk_dynamodb::types::Put;

use super::item::{get_list, get_n, get_s, get_t, list, n, s, t, Item};
use crate::domain::Order;
use crate::store::StoreError;

pub fn to_item(o: &Order) -> Item {
    Item::from([
        ("pk".into(), s(&o.id)),
        ("sk".into(), s(&o.reservation_id)),
        ("user_id".into(), s(&o.user_id)),
        ("event_id".into(), s(&o.event_id)),
        ("seat_ids".into(), list(&o.seat_ids)),
        ("total_amount".into(), n(o.total_amount)),
        ("currency".into(), s(&o.currency)),
        ("status".into(), s(&o.status)),
        ("payment_intent_id".into(), s(&o.payment_intent_id)),
        ("created_at".into(), t(o.created_at)),
    ])
}

pub fn from_item(item: &Item) -> Result<Order, StoreError> {
    Ok(Order {
        id: get_s(item, "pk")?,
        reservation_id: get_s(item, "sk")?,
        user_id: get_s(item, "user_id")?,
        event_id: get_s(item, "event_id")?,
        seat_ids: get_list(item, "seat_ids")?,
        total_amount: get_n(item, "total_amount")?,
        currency: get_s(item, "currency")?,
        status: get_s(item, "status")?,
        payment_intent_id: get_s(item, "payment_intent_id")?,
        created_at: get_t(item, "created_at")?,
    })
}

/// A new order; `ttl` (epoch seconds) is its reservation's, so that both go together.
pub fn put_new(table: &str, o: &Order, ttl: Option<i64>) -> Result<Put, StoreError> {
    let mut item = to_item(o);
    if let Some(ttl) = ttl {
        item.insert("ttl".into(), n(ttl));
    }
    Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)")
        .build()
        .map_err(|e| StoreError::Internal(e.to_string()))
}
