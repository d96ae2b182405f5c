//! The two writes of a reservation's life, each one `TransactWriteItems` across the tables: a new
//! HOLD with its first event, and a move of a HOLD to its next state with its order (on confirm)
//! and event; either may carry the request's idempotency completion.

use aws_sdk_dynamodb::types::TransactWriteItem;
use aws_sdk_dynamodb::Client;

use super::requests::{request_token, transact};
use super::{idempotency, orders, outbox, reservations, TableNames};
use crate::domain::{OutboxEvent, Reservation};
use crate::idempotency::IdempotencyCompletion;
use crate::store::{ConflictKind, StoreError, Transition};

pub async fn create_hold(
    client: &Client,
    tables: &TableNames,
    shards: u32,
    r: &Reservation,
    event: &OutboxEvent,
    completion: Option<&IdempotencyCompletion>,
) -> Result<(), StoreError> {
    let mut items = vec![
        TransactWriteItem::builder()
            .put(reservations::put_new(&tables.reservations, r, shards)?)
            .build(),
        TransactWriteItem::builder()
            .put(outbox::put_new(&tables.outbox, event, shards)?)
            .build(),
    ];
    let mut kinds = vec![
        ConflictKind::ReservationExists,
        ConflictKind::ReservationExists,
    ];
    if let Some(c) = idempotency::completion_item(&tables.idempotency, completion)? {
        items.push(c);
        kinds.push(ConflictKind::IdempotencyLost);
    }
    transact(
        client,
        items,
        &kinds,
        request_token(&r.id, r.version, &event.id),
    )
    .await
}

/// `retention`: how long a reservation in a final state (and its order) is kept.
pub async fn transition(
    client: &Client,
    tables: &TableNames,
    shards: u32,
    tr: Transition<'_>,
    retention: chrono::Duration,
) -> Result<(), StoreError> {
    let mut items = vec![TransactWriteItem::builder()
        .put(reservations::put_transition(
            &tables.reservations,
            tr.next,
            tr.expected_version,
            shards,
            retention,
        )?)
        .build()];
    let mut kinds = vec![ConflictKind::StaleReservation];
    if let Some(o) = tr.order {
        let ttl = reservations::final_ttl(tr.next, retention);
        items.push(
            TransactWriteItem::builder()
                .put(orders::put_new(&tables.orders, o, ttl)?)
                .build(),
        );
        kinds.push(ConflictKind::StaleReservation);
    }
    items.push(
        TransactWriteItem::builder()
            .put(outbox::put_new(&tables.outbox, tr.event, shards)?)
            .build(),
    );
    kinds.push(ConflictKind::StaleReservation);
    if let Some(c) = idempotency::completion_item(&tables.idempotency, tr.completion)? {
        items.push(c);
        kinds.push(ConflictKind::IdempotencyLost);
    }
    let token = request_token(&tr.next.id, tr.next.version, &tr.event.id);
    transact(client, items, &kinds, token).await
}
