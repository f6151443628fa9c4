//! Pull sources' state in PostgreSQL: each source's position (cursor) and
//! status row, and the batch commit that stores pulled events and moves
//! the position in one transaction, so the position is durable exactly
//! when the events are (as on SQLite, `crate::store::cursors`).
//!
//! Which replica pulls a source is decided elsewhere (`owner`); these
//! statements assume the caller owns the source.

use deadpool_postgres::{GenericClient, Object};

use super::{Result, batch};
use crate::store::cursors::{Advance, Cursor};
use crate::store::events::{Ingested, NewEvent};
use crate::store::pull_status::{Counts, State};

/// The stored position of `source`.
pub async fn cursor(c: &impl GenericClient, source: &str) -> Result<Option<Cursor>> {
    let stmt = c
        .prepare_cached(
            "SELECT cursor, position_at, last_event_id, updated_at FROM cursors WHERE source = $1",
        )
        .await?;
    Ok(c.query_opt(&stmt, &[&source]).await?.map(|r| Cursor {
        cursor: r.get(0),
        position_at: r.get(1),
        last_event_id: r.get(2),
        updated_at: r.get(3),
    }))
}

/// Moves `source`'s position: fields given replace the stored ones, and
/// `position_at` only moves forward.
pub async fn advance(c: &impl GenericClient, source: &str, a: &Advance, now: i64) -> Result<()> {
    if a.is_empty() {
        return Ok(());
    }
    let stmt = c
        .prepare_cached(
            "INSERT INTO cursors (source, cursor, position_at, last_event_id, updated_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (source) DO UPDATE SET
                 cursor = COALESCE(excluded.cursor, cursors.cursor),
                 position_at = GREATEST(cursors.position_at, excluded.position_at),
                 last_event_id = COALESCE(excluded.last_event_id, cursors.last_event_id),
                 updated_at = excluded.updated_at",
        )
        .await?;
    c.execute(
        &stmt,
        &[&source, &a.cursor, &a.position_at, &a.last_event_id, &now],
    )
    .await?;
    Ok(())
}

/// Stores a pulled batch, moves the position and counts the batch in the
/// source's status, in one transaction. Outcomes in input order.
pub async fn commit(
    conn: &mut Object,
    source: &str,
    events: &[NewEvent],
    a: &Advance,
    counts: &Counts,
    now: i64,
) -> Result<Vec<Ingested>> {
    let tx = conn.transaction().await?;
    let out = batch::insert_within(&tx, events).await?;
    advance(&tx, source, a, now).await?;
    count(&tx, source, counts, now).await?;
    tx.commit().await?;
    Ok(out)
}

/// Sets the state of `source`'s status row (creating it); `state_since`
/// only moves when the state changes. With `error`, records it too.
pub async fn set_state(
    c: &impl GenericClient,
    source: &str,
    mode: &str,
    state: State,
    error: Option<&str>,
    now: i64,
) -> Result<()> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO pull_status (source, mode, state, state_since, updated_at)
             VALUES ($1, $2, $3, $4, $4)
             ON CONFLICT (source) DO UPDATE SET mode = excluded.mode, state = excluded.state,
                 state_since = CASE WHEN pull_status.state = excluded.state
                                    THEN pull_status.state_since ELSE excluded.state_since END,
                 updated_at = excluded.updated_at,
                 last_error = COALESCE($5, pull_status.last_error),
                 last_error_at = CASE WHEN $5::text IS NULL THEN pull_status.last_error_at
                                      ELSE $4 END",
        )
        .await?;
    c.execute(&stmt, &[&source, &mode, &state.name(), &now, &error])
        .await?;
    Ok(())
}

/// Adds to `source`'s counters.
pub async fn count(c: &impl GenericClient, source: &str, k: &Counts, now: i64) -> Result<()> {
    let stmt = c
        .prepare_cached(
            "UPDATE pull_status SET events = events + $2, polls = polls + $3,
                 reconnects = reconnects + $4,
                 last_event_at = GREATEST(last_event_at, $5),
                 updated_at = $6
             WHERE source = $1",
        )
        .await?;
    c.execute(
        &stmt,
        &[
            &source,
            &k.events,
            &k.polls,
            &k.reconnects,
            &k.last_event_at,
            &now,
        ],
    )
    .await?;
    Ok(())
}

/// Deletes the status rows of sources not in `names`. Returns how many.
pub async fn retain(c: &impl GenericClient, names: &[String]) -> Result<u64> {
    let stmt = c
        .prepare_cached("DELETE FROM pull_status WHERE NOT (source = ANY($1))")
        .await?;
    Ok(c.execute(&stmt, &[&names]).await?)
}
