//! The DynamoDB store (CONTRACT §7). Every create and transition is one `TransactWriteItems`;
//! condition failures become the domain's conflicts, never a 500.
//!
//! One file per table ([`reservations`], [`orders`], [`idempotency`], [`outbox`], with the
//! relay's side in [`outbox_relay`] and one user's listing in [`by_user`]); the cross-table
//! transactions in [`writes`]; the shared requests in [`requests`] and error mapping in
//! [`errors`]. This file is the [`Store`] trait over them.

pub mod by_user;
pub mod errors;
pub mod idempotency;
pub mod item;
pub mod orders;
pub mod outbox;
pub mod outbox_relay;
pub mod redrive;
pub mod requests;
pub mod reservations;
pub mod shards;
pub mod spans;
pub mod tables;
pub mod writes;

use std::time::Duration as StdDuration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Duration, Utc};

use self::requests::{first_by_pk, scan_all};
use super::{Settlement, Store, StoreAudit, StoreError, Transition, UserListPosition};
use crate::domain::{Order, OutboxEvent, Reservation};
use crate::idempotency::{Begin, IdempotencyCompletion, IdempotencyRecord, IdempotencyTicket};

pub use self::shards::ShardLayout;
use self::shards::{shard_of, ShardRounds};

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
    shards: ShardLayout,
    /// The window of `pending_by_due` each relay round reads.
    relay_rounds: ShardRounds,
    /// The window of `holds_by_expiry` each sweep reads.
    expiry_rounds: ShardRounds,
    /// When this process's holds fall due, and in which shard: the sweep reads those shards first
    /// once they are due. Bounded; past the bound the rotating window alone finds them.
    expiry_hints: std::sync::Mutex<std::collections::BTreeSet<(DateTime<Utc>, u32)>>,
}

/// Hints kept at most (a few minutes of holds at a rush's rate per process).
const EXPIRY_HINTS: usize = 50_000;

/// A client for `endpoint` (or AWS itself), built once at start-up. Credentials come from the
/// standard chain.
pub async fn client(endpoint: Option<&str>, region: &str, timeout: StdDuration) -> Client {
    client_with(endpoint, region, timeout, None).await
}

/// [`client`] with a test's extra interceptor (see `config::ClientTaps`).
pub async fn client_with(
    endpoint: Option<&str>,
    region: &str,
    timeout: StdDuration,
    tap: Option<aws_sdk_dynamodb::config::SharedInterceptor>,
) -> Client {
    let sdk = crate::aws::sdk_config(endpoint, region, timeout).await;
    let mut conf = aws_sdk_dynamodb::config::Builder::from(&sdk).interceptor(spans::DynamoSpans);
    if let Some(tap) = tap {
        conf.push_interceptor(tap);
    }
    Client::from_conf(conf.build())
}

impl DynamoStore {
    pub fn new(client: Client, tables: TableNames) -> Self {
        Self {
            client,
            tables,
            retention: super::Retention::default(),
            shards: ShardLayout::default(),
            relay_rounds: ShardRounds::new(&ShardLayout::default()),
            expiry_rounds: ShardRounds::new(&ShardLayout::default()),
            expiry_hints: Default::default(),
        }
    }

    pub fn with_retention(self, retention: super::Retention) -> Self {
        Self { retention, ..self }
    }

    /// The sparse indexes' shards (`DYNAMODB_INDEX_SHARDS*`).
    pub fn with_shards(self, shards: ShardLayout) -> Self {
        Self {
            shards,
            relay_rounds: ShardRounds::new(&shards),
            expiry_rounds: ShardRounds::new(&shards),
            ..self
        }
    }

    /// The sweep reads the shard of `r` first once it is due.
    fn hint_expiry(&self, r: &Reservation) {
        let mut hints = self.expiry_hints.lock().unwrap_or_else(|e| e.into_inner());
        if hints.len() < EXPIRY_HINTS {
            hints.insert((r.hold_expires_at, shard_of(&r.id, self.shards.current)));
        }
    }

    /// Mark the shards of the hints due at `now` for the next sweep.
    fn due_hints(&self, now: DateTime<Utc>) {
        let mut hints = self.expiry_hints.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(&(at, shard)) = hints.first() {
            if at > now {
                break;
            }
            hints.pop_first();
            self.expiry_rounds.mark(shard);
        }
    }

    /// The relay of this process finds a local write in its next round.
    fn wrote(&self, event: &OutboxEvent) {
        self.relay_rounds
            .mark(shard_of(&event.id, self.shards.current));
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
        let table = &self.tables.idempotency;
        idempotency::begin(
            &self.client,
            table,
            scoped_key,
            request_hash,
            now,
            lease,
            ttl,
        )
        .await
    }

    async fn complete_request(&self, c: &IdempotencyCompletion) -> Result<(), StoreError> {
        idempotency::complete_alone(&self.client, &self.tables.idempotency, c).await
    }

    async fn abandon_request(&self, ticket: &IdempotencyTicket) -> Result<(), StoreError> {
        idempotency::abandon(&self.client, &self.tables.idempotency, ticket).await
    }

    async fn create_hold(
        &self,
        r: &Reservation,
        event: &OutboxEvent,
        completion: Option<&IdempotencyCompletion>,
    ) -> Result<(), StoreError> {
        let shards = self.shards.current;
        let out =
            writes::create_hold(&self.client, &self.tables, shards, r, event, completion).await;
        self.wrote(event);
        self.hint_expiry(r);
        out
    }

    async fn transition(&self, tr: Transition<'_>) -> Result<(), StoreError> {
        let (shards, retention) = (self.shards.current, self.retention.reservations);
        let event = tr.event;
        let out = writes::transition(&self.client, &self.tables, shards, tr, retention).await;
        self.wrote(event);
        out
    }

    async fn get_reservation(&self, id: &str) -> Result<Option<Reservation>, StoreError> {
        first_by_pk(&self.client, &self.tables.reservations, id)
            .await?
            .as_ref()
            .map(reservations::from_item)
            .transpose()
    }

    async fn get_order(&self, id: &str) -> Result<Option<Order>, StoreError> {
        first_by_pk(&self.client, &self.tables.orders, id)
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
        let table = &self.tables.reservations;
        by_user::page(&self.client, table, user_id, after, limit).await
    }

    async fn due_holds(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Reservation>, StoreError> {
        let table = &self.tables.reservations;
        self.due_hints(now);
        reservations::due_holds(&self.client, table, &self.expiry_rounds, now, limit).await
    }

    async fn defer_expiry(
        &self,
        r: &Reservation,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let (table, failed) = (&self.tables.reservations, self.retention.failed);
        reservations::defer_expiry(&self.client, table, r, retry_at, failed).await
    }

    async fn claim_events(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        let table = &self.tables.outbox;
        let rounds = &self.relay_rounds;
        outbox_relay::claim(&self.client, table, rounds, owner, now, lease_until, limit).await
    }

    async fn settle_events(
        &self,
        owner: &str,
        batch: &[(OutboxEvent, Settlement)],
    ) -> Result<Vec<String>, StoreError> {
        let (table, retention) = (&self.tables.outbox, &self.retention);
        outbox_relay::settle(&self.client, table, owner, batch, retention).await
    }

    async fn events_for(&self, reservation_id: &str) -> Result<Vec<OutboxEvent>, StoreError> {
        outbox::events_for(&self.client, &self.tables.outbox, reservation_id).await
    }

    async fn failed_events(&self, limit: usize) -> Result<Vec<OutboxEvent>, StoreError> {
        redrive::failed(&self.client, &self.tables.outbox, limit).await
    }

    async fn redrive_event(
        &self,
        event: &OutboxEvent,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (table, shards) = (&self.tables.outbox, self.shards.current);
        let back = redrive::put_back(&self.client, table, event, now, shards).await?;
        self.wrote(event);
        Ok(back)
    }

    async fn pending_events(&self) -> Result<usize, StoreError> {
        outbox_relay::pending(&self.client, &self.tables.outbox, self.shards.span()).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.client
            .describe_table()
            .table_name(&self.tables.reservations)
            .send()
            .await
            .map_err(errors::sdk_err)?;
        Ok(())
    }

    async fn audit(&self) -> Result<StoreAudit, StoreError> {
        let scan = |table| scan_all(&self.client, table);
        let reservations = scan(&self.tables.reservations)
            .await?
            .iter()
            .map(reservations::from_item)
            .collect::<Result<_, _>>()?;
        let events = scan(&self.tables.outbox)
            .await?
            .iter()
            .map(outbox::from_item)
            .collect::<Result<_, _>>()?;
        let records: Vec<IdempotencyRecord> = scan(&self.tables.idempotency)
            .await?
            .iter()
            .map(idempotency::from_item)
            .collect::<Result<_, _>>()?;
        Ok(StoreAudit::new(reservations, events, records))
    }
}
