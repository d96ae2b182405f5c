//! The DynamoDB store (CONTRACT §7). Every create and transition is one `TransactWriteItems`;
//! condition failures become the domain's conflicts, never a 500.

pub mod by_user;
pub mod idempotency;
pub mod item;
pub mod orders;
pub mod outbox;
pub mod outbox_relay;
pub mod reservations;
pub mod spans;
pub mod tables;

use std::time::Duration as StdDuration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::TransactWriteItem;
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Duration, Utc};

use self::item::{n, s, t, Item};
use super::{
    ConflictKind, Settlement, Store, StoreAudit, StoreError, Transition, UserListPosition,
};
use crate::domain::{Order, OutboxEvent, Reservation};
use crate::idempotency::{
    Begin, IdempotencyCompletion, IdempotencyRecord, IdempotencyTicket, RecordStatus,
};

/// Partitions of the sparse indexes (holds by expiry, pending events by due time). Fixed: changing
/// it strands items in shards nobody reads.
pub const SHARDS: u32 = 8;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableNames {
    pub reservations: String,
    pub orders: String,
    pub idempotency: String,
    pub outbox: String,
    /// The bundled inventory's seats (`INVENTORY_STORE=dynamodb`).
    pub seats: String,
}

impl Default for TableNames {
    fn default() -> Self {
        Self {
            reservations: "ticket-reservations".into(),
            orders: "ticket-orders".into(),
            idempotency: "ticket-idempotency".into(),
            outbox: "ticket-outbox".into(),
            seats: "ticket-seats".into(),
        }
    }
}

impl TableNames {
    /// Names with a prefix, so that tests can each have their own tables.
    pub fn prefixed(prefix: &str) -> Self {
        let d = Self::default();
        Self {
            reservations: format!("{prefix}{}", d.reservations),
            orders: format!("{prefix}{}", d.orders),
            idempotency: format!("{prefix}{}", d.idempotency),
            outbox: format!("{prefix}{}", d.outbox),
            seats: format!("{prefix}{}", d.seats),
        }
    }
}

pub struct DynamoStore {
    client: Client,
    tables: TableNames,
    /// Written as each finished item's `ttl`, for DynamoDB's own expiry.
    retention: super::Retention,
}

/// A client for `endpoint` (or AWS itself), built once at start-up. Credentials come from the
/// standard chain.
pub async fn client(endpoint: Option<&str>, region: &str, timeout: StdDuration) -> Client {
    let sdk = crate::aws::sdk_config(endpoint, region, timeout).await;
    Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(spans::DynamoSpans)
            .build(),
    )
}

/// Map an SDK failure that is not a condition failure.
fn sdk_err<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    e: SdkError<E, R>,
) -> StoreError {
    match &e {
        SdkError::TimeoutError(_) => StoreError::Timeout,
        SdkError::DispatchFailure(d) if d.is_timeout() => StoreError::Timeout,
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StoreError::Unavailable(format!("{e:?}"))
        }
        SdkError::ServiceError(se) => service_err(se.err().code(), se.err().message()),
        _ => StoreError::Internal(format!("{e:?}")),
    }
}

/// Throttling and DynamoDB's own failures are worth a retry (503); anything else is a bug (500).
fn service_err(code: Option<&str>, message: Option<&str>) -> StoreError {
    let code = code.unwrap_or("Unknown");
    let msg = format!("{code}: {}", message.unwrap_or_default());
    match code {
        "ProvisionedThroughputExceededException"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "InternalServerError"
        | "InternalFailure"
        | "ServiceUnavailable"
        // Another attempt with the same ClientRequestToken is still running: its outcome is not
        // known yet, so this is an ambiguous failure, settled by reading.
        | "TransactionInProgressException"
        // The token was used with other items: a retried operation that changed, never a bug of
        // the caller's request; treated like a lost answer.
        | "IdempotentParameterMismatchException" => StoreError::Unavailable(msg),
        _ => StoreError::Internal(msg),
    }
}

/// The ClientRequestToken (at most 36 characters) of the write that moves reservation `id` to
/// `version` with event `event_id`. Every logical write has its own event, so a retry of the same
/// write repeats the token and nothing else does.
fn request_token(id: &str, version: u64, event_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{id}/{version}/{event_id}"));
    hex::encode(&digest[..16])
}

/// Each item's cancellation reason code when DynamoDB cancelled a transaction; any other failure
/// mapped as [`sdk_err`] does.
fn cancellation_reasons<R: std::fmt::Debug>(
    err: SdkError<TransactWriteItemsError, R>,
) -> Result<Vec<Option<String>>, StoreError> {
    let service = match err {
        SdkError::ServiceError(se) => se.into_err(),
        other => return Err(sdk_err(other)),
    };
    match &service {
        TransactWriteItemsError::TransactionCanceledException(tc) => Ok(tc
            .cancellation_reasons()
            .iter()
            .map(|r| r.code().map(str::to_owned))
            .collect()),
        _ => Err(service_err(service.code(), service.message())),
    }
}

fn is_condition_failure<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    matches!(e, SdkError::ServiceError(se) if se.err().code() == Some("ConditionalCheckFailedException"))
}

impl DynamoStore {
    pub fn new(client: Client, tables: TableNames) -> Self {
        Self {
            client,
            tables,
            retention: super::Retention::default(),
        }
    }

    pub fn with_retention(self, retention: super::Retention) -> Self {
        Self { retention, ..self }
    }

    /// One transaction; `kinds[i]` says what a condition failure of item `i` means. A transaction
    /// conflict with another in-flight transaction is retried briefly. `token` names the logical
    /// write (DynamoDB's ClientRequestToken), so that DynamoDB itself answers a retry of a
    /// transaction that already landed with success for 10 minutes instead of failing its
    /// conditions. Not relied upon: the service also settles such failures by reading.
    async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
        kinds: &[ConflictKind],
        token: String,
    ) -> Result<(), StoreError> {
        for attempt in 0..4 {
            let out = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .client_request_token(&token)
                .send()
                .await;
            let err = match out {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            let reasons = cancellation_reasons(err)?;
            if let Some(i) = reasons
                .iter()
                .position(|r| r.as_deref() == Some("ConditionalCheckFailed"))
            {
                return Err(StoreError::Conflict(
                    kinds
                        .get(i)
                        .copied()
                        .unwrap_or(ConflictKind::StaleReservation),
                ));
            }
            if reasons
                .iter()
                .any(|r| r.as_deref() == Some("TransactionConflict"))
                && attempt < 3
            {
                tokio::time::sleep(StdDuration::from_millis(10 << attempt)).await;
                continue;
            }
            return Err(StoreError::Unavailable(format!(
                "transaction cancelled: {reasons:?}"
            )));
        }
        Err(StoreError::Unavailable(
            "transaction conflicts persisted".into(),
        ))
    }

    /// Every page of a query (the SDK's paginator follows `LastEvaluatedKey`).
    async fn query_all(
        &self,
        q: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    ) -> Result<Vec<Item>, StoreError> {
        q.into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(sdk_err)
    }

    async fn scan_all(&self, table: &str) -> Result<Vec<Item>, StoreError> {
        let scan = self.client.scan().table_name(table).consistent_read(true);
        scan.into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(sdk_err)
    }

    /// The item with partition key `pk` (its sort key unknown to the caller), read consistently.
    async fn first_by_pk(&self, table: &str, pk: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(pk))
            .consistent_read(true)
            .limit(1)
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(out.items().first().cloned())
    }

    async fn read_record(&self, scoped_key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        let got = self
            .client
            .get_item()
            .table_name(&self.tables.idempotency)
            .key("pk", s(scoped_key))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_err)?;
        got.item().map(idempotency::from_item).transpose()
    }

    fn completion_item(
        &self,
        c: Option<&IdempotencyCompletion>,
    ) -> Result<Option<TransactWriteItem>, StoreError> {
        c.map(|c| {
            idempotency::complete(&self.tables.idempotency, c, Utc::now())
                .map(|u| TransactWriteItem::builder().update(u).build())
        })
        .transpose()
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn begin_request(
        &self,
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
            let found = self.read_record(scoped_key).await?;
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
            let put = self
                .client
                .put_item()
                .table_name(&self.tables.idempotency)
                .set_item(Some(idempotency::to_item(&record)))
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

    async fn complete_request(&self, c: &IdempotencyCompletion) -> Result<(), StoreError> {
        let u = idempotency::complete(&self.tables.idempotency, c, Utc::now())?;
        let mut req = self
            .client
            .update_item()
            .table_name(u.table_name())
            .set_key(Some(u.key().clone()))
            .update_expression(u.update_expression())
            .set_condition_expression(u.condition_expression().map(str::to_owned))
            .set_expression_attribute_names(u.expression_attribute_names().cloned());
        req = req.set_expression_attribute_values(u.expression_attribute_values().cloned());
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => {
                Err(StoreError::Conflict(ConflictKind::IdempotencyLost))
            }
            Err(e) => Err(sdk_err(e)),
        }
    }

    async fn abandon_request(&self, ticket: &IdempotencyTicket) -> Result<(), StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.tables.idempotency)
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

    async fn create_hold(
        &self,
        r: &Reservation,
        event: &OutboxEvent,
        completion: Option<&IdempotencyCompletion>,
    ) -> Result<(), StoreError> {
        let mut items = vec![
            TransactWriteItem::builder()
                .put(reservations::put_new(&self.tables.reservations, r, SHARDS)?)
                .build(),
            TransactWriteItem::builder()
                .put(outbox::put_new(&self.tables.outbox, event, SHARDS)?)
                .build(),
        ];
        let mut kinds = vec![
            ConflictKind::ReservationExists,
            ConflictKind::ReservationExists,
        ];
        if let Some(c) = self.completion_item(completion)? {
            items.push(c);
            kinds.push(ConflictKind::IdempotencyLost);
        }
        self.transact(items, &kinds, request_token(&r.id, r.version, &event.id))
            .await
    }

    async fn transition(&self, tr: Transition<'_>) -> Result<(), StoreError> {
        let mut items = vec![TransactWriteItem::builder()
            .put(reservations::put_transition(
                &self.tables.reservations,
                tr.next,
                tr.expected_version,
                SHARDS,
                self.retention.reservations,
            )?)
            .build()];
        let mut kinds = vec![ConflictKind::StaleReservation];
        if let Some(o) = tr.order {
            let ttl = reservations::final_ttl(tr.next, self.retention.reservations);
            items.push(
                TransactWriteItem::builder()
                    .put(orders::put_new(&self.tables.orders, o, ttl)?)
                    .build(),
            );
            kinds.push(ConflictKind::StaleReservation);
        }
        items.push(
            TransactWriteItem::builder()
                .put(outbox::put_new(&self.tables.outbox, tr.event, SHARDS)?)
                .build(),
        );
        kinds.push(ConflictKind::StaleReservation);
        if let Some(c) = self.completion_item(tr.completion)? {
            items.push(c);
            kinds.push(ConflictKind::IdempotencyLost);
        }
        let token = request_token(&tr.next.id, tr.next.version, &tr.event.id);
        self.transact(items, &kinds, token).await
    }

    async fn get_reservation(&self, id: &str) -> Result<Option<Reservation>, StoreError> {
        self.first_by_pk(&self.tables.reservations, id)
            .await?
            .as_ref()
            .map(reservations::from_item)
            .transpose()
    }

    async fn get_order(&self, id: &str) -> Result<Option<Order>, StoreError> {
        self.first_by_pk(&self.tables.orders, id)
            .await?
            .as_ref()
            .map(orders::from_item)
            .transpose()
    }

    async fn reservations_of_user(
        &self,
        user_id: &str,
        after: Option<&UserListPosition>,
        limit: usize,
    ) -> Result<Vec<Reservation>, StoreError> {
        by_user::page(
            &self.client,
            &self.tables.reservations,
            user_id,
            after,
            limit,
        )
        .await
    }

    async fn due_holds(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Reservation>, StoreError> {
        let per_shard = limit.div_ceil(SHARDS as usize).max(1) as i32;
        let queries = (0..SHARDS).map(|shard| {
            self.client
                .query()
                .table_name(&self.tables.reservations)
                .index_name(reservations::HOLDS_BY_EXPIRY)
                .key_condition_expression("expiry_shard = :s AND expiry_at <= :now")
                .expression_attribute_values(":s", s(shard.to_string()))
                .expression_attribute_values(":now", t(now))
                .limit(per_shard)
                .send()
        });
        let mut due = Vec::new();
        for out in futures::future::join_all(queries).await {
            for item in out.map_err(sdk_err)?.items() {
                due.push(reservations::from_item(item)?);
            }
        }
        due.sort_by_key(|r| r.hold_expires_at);
        due.truncate(limit);
        Ok(due)
    }

    async fn claim_events(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        outbox_relay::claim(
            &self.client,
            &self.tables.outbox,
            owner,
            now,
            lease_until,
            limit,
        )
        .await
    }

    async fn settle_events(
        &self,
        owner: &str,
        batch: &[(OutboxEvent, Settlement)],
    ) -> Result<Vec<String>, StoreError> {
        outbox_relay::settle(
            &self.client,
            &self.tables.outbox,
            owner,
            batch,
            self.retention.outbox,
        )
        .await
    }

    async fn events_for(&self, reservation_id: &str) -> Result<Vec<OutboxEvent>, StoreError> {
        let q = self
            .client
            .query()
            .table_name(&self.tables.outbox)
            .index_name(outbox::EVENTS_BY_RESERVATION)
            .key_condition_expression("reservation_id = :r")
            .expression_attribute_values(":r", s(reservation_id));
        self.query_all(q)
            .await?
            .iter()
            .map(outbox::from_item)
            .collect()
    }

    async fn pending_events(&self) -> Result<usize, StoreError> {
        outbox_relay::pending(&self.client, &self.tables.outbox).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.client
            .describe_table()
            .table_name(&self.tables.reservations)
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(())
    }

    async fn audit(&self) -> Result<StoreAudit, StoreError> {
        let reservations = self
            .scan_all(&self.tables.reservations)
            .await?
            .iter()
            .map(reservations::from_item)
            .collect::<Result<_, _>>()?;
        let events = self
            .scan_all(&self.tables.outbox)
            .await?
            .iter()
            .map(outbox::from_item)
            .collect::<Result<_, _>>()?;
        let records: Vec<IdempotencyRecord> = self
            .scan_all(&self.tables.idempotency)
            .await?
            .iter()
            .map(idempotency::from_item)
            .collect::<Result<_, _>>()?;
        Ok(StoreAudit::new(reservations, events, records))
    }
}
