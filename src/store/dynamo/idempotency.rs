//! The idempotency table: `pk` = scoped key; `request_hash, status, token, response_status,
//! response_body, expires_at` (epoch ms, checked on read) and `ttl` (epoch s, for DynamoDB's own
//! late sweeper).

use aws_sdk_dynamodb::types::Update;
use chrono::{DateTime, TimeZone, Utc};

use super::item::{get_n, get_s, n, opt_s, s, Item};
use crate::idempotency::{IdempotencyCompletion, IdempotencyRecord, RecordStatus, StoredResponse};
use crate::store::StoreError;

fn status_str(s: RecordStatus) -> &'static str {
    match s {
        RecordStatus::InProgress => "IN_PROGRESS",
        RecordStatus::Completed => "COMPLETED",
    }
}

pub fn to_item(r: &IdempotencyRecord) -> Item {
    let mut item = Item::from([
        ("pk".into(), s(&r.scoped_key)),
        ("request_hash".into(), s(&r.request_hash)),
        ("status".into(), s(status_str(r.status))),
        ("token".into(), s(&r.token)),
        ("expires_at".into(), n(r.expires_at.timestamp_millis())),
        ("ttl".into(), n(r.expires_at.timestamp() + 1)),
    ]);
    if let Some(resp) = &r.response {
        item.insert("response_status".into(), n(resp.status));
        item.insert("response_body".into(), s(&resp.body));
    }
    item
}

pub fn from_item(item: &Item) -> Result<IdempotencyRecord, StoreError> {
    let status = match get_s(item, "status")?.as_str() {
        "IN_PROGRESS" => RecordStatus::InProgress,
        "COMPLETED" => RecordStatus::Completed,
        other => {
            return Err(StoreError::Internal(format!(
                "unknown idempotency status {other}"
            )))
        }
    };
    let response = match (item.get("response_status"), opt_s(item, "response_body")) {
        (Some(_), Some(body)) => Some(StoredResponse {
            status: get_n(item, "response_status")?,
            body,
        }),
        _ => None,
    };
    Ok(IdempotencyRecord {
        scoped_key: get_s(item, "pk")?,
        request_hash: get_s(item, "request_hash")?,
        status,
        token: get_s(item, "token")?,
        response,
        expires_at: millis(get_n(item, "expires_at")?),
    })
}

pub fn millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Complete the record, only if it is still IN_PROGRESS for this request and its lease holds.
pub fn complete(
    table: &str,
    c: &IdempotencyCompletion,
    now: DateTime<Utc>,
) -> Result<Update, StoreError> {
    Update::builder()
        .table_name(table)
        .key("pk", s(&c.ticket.scoped_key))
        .update_expression(
            "SET #status = :completed, response_status = :rs, response_body = :rb, expires_at = :exp, #ttl = :ttl",
        )
        .condition_expression("#status = :in_progress AND #token = :token AND expires_at > :now")
        .expression_attribute_names("#status", "status")
        .expression_attribute_names("#token", "token")
        .expression_attribute_names("#ttl", "ttl")
        .expression_attribute_values(":completed", s("COMPLETED"))
        .expression_attribute_values(":in_progress", s("IN_PROGRESS"))
        .expression_attribute_values(":token", s(&c.ticket.token))
        .expression_attribute_values(":now", n(now.timestamp_millis()))
        .expression_attribute_values(":rs", n(c.response.status))
        .expression_attribute_values(":rb", s(&c.response.body))
        .expression_attribute_values(":exp", n(c.ticket.expires_at.timestamp_millis()))
        .expression_attribute_values(":ttl", n(c.ticket.expires_at.timestamp() + 1))
        .build()
        .map_err(|e| StoreError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips() {
        let r = IdempotencyRecord {
            scoped_key: "idem_1".into(),
            request_hash: "h".into(),
            status: RecordStatus::Completed,
            token: "t".into(),
            response: Some(StoredResponse {
                status: 201,
                body: "{\"a\":1}".into(),
            }),
            expires_at: crate::service::now_ms(),
        };
        assert_eq!(from_item(&to_item(&r)).unwrap(), r);
    }
}
