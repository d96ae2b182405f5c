//! The idempotency table: `pk` = scoped key; `request_hash, status, token, response_status,
//! response_body, expires_at` (epoch ms, checked on read) and `ttl` (epoch s, for DynamoDB's own
//! late sweeper). The begin/complete/abandon protocol on it (`crate::idempotency`).

use aws_sdk_dynamodb::types::{TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Duration, TimeZone, Utc};

use super::errors::{is_condition_failure, sdk_err};
use super::item::{get_n, get_s, n, opt_s, s, Item};
use crate::idempotency::{
    Begin, IdempotencyCompletion, IdempotencyRecord, IdempotencyTicket, RecordStatus,
    StoredResponse,
};
use crate::store::{ConflictKind, StoreError};

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

/// The completion as one item of the transaction it lands with.
pub fn completion_item(
    table: &str,
    c: Option<&IdempotencyCompletion>,
) -> Result<Option<TransactWriteItem>, StoreError> {
    c.map(|c| {
        complete(table, c, Utc::now()).map(|u| TransactWriteItem::builder().update(u).build())
    })
    .transpose()
}

async fn read_record(
    client: &Client,
    table: &str,
    scoped_key: &str,
) -> Result<Option<IdempotencyRecord>, StoreError> {
    let got = client
        .get_item()
        .table_name(table)
        .key("pk", s(scoped_key))
        .consistent_read(true)
        .send()
        .await
        .map_err(sdk_err)?;
    got.item().map(from_item).transpose()
}

/// [`crate::store::Store::begin_request`].
pub async fn begin(
    client: &Client,
    table: &str,
    scoped_key: &str,
    request_hash: &str,
    now: DateTime<Utc>,
    lease: Duration,
    ttl: Duration,
) -> Result<Begin, StoreError> {
    // One token for every attempt: a put whose answer was lost (and whose SDK retry then failed
    // its condition) is recognised as ours by the read that follows.
    let token = uuid::Uuid::new_v4().to_string();
    let started = || {
        Begin::Started(IdempotencyTicket {
            scoped_key: scoped_key.to_owned(),
            token: token.clone(),
            expires_at: now + ttl,
        })
    };
    for _ in 0..3 {
        let found = read_record(client, table, scoped_key).await?;
        if let Some(r) = &found {
            if r.status == RecordStatus::InProgress && r.token == token {
                return Ok(started());
            }
        }
        if let Some(found) = found.and_then(|r| r.judge(request_hash, now)) {
            return Ok(found);
        }
        let record = IdempotencyRecord {
            scoped_key: scoped_key.to_owned(),
            request_hash: request_hash.to_owned(),
            status: RecordStatus::InProgress,
            token: token.clone(),
            response: None,
            expires_at: now + lease,
        };
        let put = client
            .put_item()
            .table_name(table)
            .set_item(Some(to_item(&record)))
            .condition_expression("attribute_not_exists(pk) OR expires_at <= :now")
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .send()
            .await;
        match put {
            Ok(_) => return Ok(started()),
            // Someone else started it first: read again and judge what they wrote.
            Err(e) if is_condition_failure(&e) => continue,
            Err(e) => return Err(sdk_err(e)),
        }
    }
    Ok(Begin::InFlight)
}

/// [`crate::store::Store::complete_request`] on its own (not alongside a transition).
pub async fn complete_alone(
    client: &Client,
    table: &str,
    c: &IdempotencyCompletion,
) -> Result<(), StoreError> {
    let u = complete(table, c, Utc::now())?;
    let req = client
        .update_item()
        .table_name(u.table_name())
        .set_key(Some(u.key().clone()))
        .update_expression(u.update_expression())
        .set_condition_expression(u.condition_expression().map(str::to_owned))
        .set_expression_attribute_names(u.expression_attribute_names().cloned())
        .set_expression_attribute_values(u.expression_attribute_values().cloned());
    match req.send().await {
        Ok(_) => Ok(()),
        Err(e) if is_condition_failure(&e) => {
            Err(StoreError::Conflict(ConflictKind::IdempotencyLost))
        }
        Err(e) => Err(sdk_err(e)),
    }
}

/// [`crate::store::Store::abandon_request`]: free the key, if the record is still ours.
pub async fn abandon(
    client: &Client,
    table: &str,
    ticket: &IdempotencyTicket,
) -> Result<(), StoreError> {
    let out = client
        .delete_item()
        .table_name(table)
        .key("pk", s(&ticket.scoped_key))
        .condition_expression("#status = :in_progress AND #token = :token")
        .expression_attribute_names("#status", "status")
        .expression_attribute_names("#token", "token")
        .expression_attribute_values(":in_progress", s("IN_PROGRESS"))
        .expression_attribute_values(":token", s(&ticket.token))
        .send()
        .await;
    match out {
        Ok(_) => Ok(()),
        // Not ours any more: nothing to free.
        Err(e) if is_condition_failure(&e) => Ok(()),
        Err(e) => Err(sdk_err(e)),
    }
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
