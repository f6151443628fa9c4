//! Stored events in PostgreSQL: insert with dedup, in batches.
//!
//! The unique constraint on `(source, event_id)` decides what is a
//! duplicate (`ON CONFLICT DO NOTHING`), never a read before the write: of
//! two replicas inserting the same key at once, the second waits for the
//! first's commit and then counts a duplicate. A batch inserts its events
//! in key order, so two replicas' batches that share keys take the row
//! locks in the same order and cannot deadlock each other.

use deadpool_postgres::{GenericClient, Transaction};

use super::{Result, deliveries};
use crate::store::events::{Ingested, NewEvent};

const INSERT_SQL: &str =
    "INSERT INTO events (source, provider, event_id, id_synthetic, type, type_raw,
                             occurred_at, received_at, headers, body, verified, routed)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
    ON CONFLICT (source, event_id) DO NOTHING
    RETURNING id";

const DUPLICATE_SQL: &str = "UPDATE events SET duplicates = duplicates + 1
    WHERE source = $1 AND event_id = $2 RETURNING id";

/// Inserts one event and its deliveries, or counts a duplicate, inside `tx`.
pub async fn insert(tx: &Transaction<'_>, e: &NewEvent) -> Result<Ingested> {
    let stmt = tx.prepare_cached(INSERT_SQL).await?;
    let routed = e.handlers.len() as i32;
    let row = tx
        .query_opt(
            &stmt,
            &[
                &e.source,
                &e.provider,
                &e.event_id,
                &e.id_synthetic,
                &e.event_type,
                &e.type_raw,
                &e.occurred_at,
                &e.received_at,
                &e.headers_json,
                &&e.body[..],
                &e.verified,
                &routed,
            ],
        )
        .await?;
    let Some(row) = row else {
        let stmt = tx.prepare_cached(DUPLICATE_SQL).await?;
        let id: i64 = tx.query_one(&stmt, &[&e.source, &e.event_id]).await?.get(0);
        return Ok(Ingested::Duplicate { id });
    };
    let id: i64 = row.get(0);
    deliveries::create(tx, id, &e.handlers, e.received_at).await?;
    Ok(Ingested::Accepted {
        id,
        deliveries: e.handlers.len(),
    })
}

/// Deletes up to `batch` events received before `before` whose work is
/// finished (no delivery pending, failed-and-retrying or running), with
/// their dedup keys. Returns how many went.
pub async fn prune(c: &impl GenericClient, before: i64, batch: usize) -> Result<u64> {
    let stmt = c
        .prepare_cached(&format!(
            "DELETE FROM events WHERE id IN (
                SELECT e.id FROM events e WHERE e.received_at < $1
                  AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event = e.id AND {})
                LIMIT $2)",
            crate::store::rules::UNFINISHED_SQL
        ))
        .await?;
    Ok(c.execute(&stmt, &[&before, &(batch as i64)]).await?)
}

/// The order a batch is inserted in: by key, so concurrent batches lock
/// shared keys in one order.
pub fn key_order(events: &[NewEvent]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..events.len()).collect();
    order.sort_by(|&a, &b| {
        (&events[a].source, &events[a].event_id).cmp(&(&events[b].source, &events[b].event_id))
    });
    order
}
