//! Replay in PostgreSQL: (event, handler) pairs back in the dispatch queue,
//! as [`crate::store::replay`] says, one transaction per batch of pairs.
//!
//! Each pair's delivery is locked (`FOR UPDATE`) before it is looked at,
//! so a replica claiming it at the same moment either ran first (the
//! delivery is running and left alone) or waits for the replay. A replayed
//! delivery holds no lease. Queued work is announced with NOTIFY at commit,
//! so idle replicas pick it up at once.

use deadpool_postgres::Transaction;

use super::{PgStore, Result, connect};
use crate::store::replay::{self, Requeued, Step};

/// Puts one pair back in the queue inside `tx`.
async fn requeue_one(
    tx: &Transaction<'_>,
    event: i64,
    handler: &str,
    now: i64,
) -> Result<Requeued> {
    let look = tx
        .prepare_cached(
            "SELECT status FROM deliveries WHERE event = $1 AND handler = $2 FOR UPDATE",
        )
        .await?;
    let status: Option<String> = tx
        .query_opt(&look, &[&event, &handler])
        .await?
        .map(|r| r.get(0));
    let r = replay::replayed(now);
    let values: [&(dyn tokio_postgres::types::ToSql + Sync); 7] = [
        &event,
        &handler,
        &r.status,
        &r.attempts,
        &r.replay,
        &r.next_attempt_at,
        &r.updated_at,
    ];
    match replay::step(status.as_deref()) {
        Step::Skip => return Ok(Requeued::AlreadyRunning),
        Step::Reset => {
            let reset = tx
                .prepare_cached(
                    "UPDATE deliveries SET status = $3, attempts = $4, replay = $5,
                            next_attempt_at = $6, updated_at = $7, last_error = NULL,
                            lease_owner = NULL, lease_until = NULL
                     WHERE event = $1 AND handler = $2",
                )
                .await?;
            tx.execute(&reset, &values).await?;
        }
        Step::Create => {
            // Another replay may create it first: then it is queued all the same.
            let create = tx
                .prepare_cached(
                    "WITH made AS (
                        INSERT INTO deliveries (event, handler, status, attempts, replay,
                                                next_attempt_at, updated_at)
                        VALUES ($1, $2, $3, $4, $5, $6, $7)
                        ON CONFLICT (event, handler) DO NOTHING
                        RETURNING event)
                     UPDATE events SET routed = routed + 1 FROM made WHERE events.id = made.event",
                )
                .await?;
            tx.execute(&create, &values).await?;
        }
    }
    Ok(Requeued::Queued)
}

impl PgStore {
    /// Replays `pairs` in one transaction; outcomes in input order.
    pub async fn requeue(&self, pairs: Vec<(i64, String)>, now: i64) -> Result<Vec<Requeued>> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let mut out = Vec::with_capacity(pairs.len());
        for (event, handler) in &pairs {
            out.push(requeue_one(&tx, *event, handler, now).await?);
        }
        if out.contains(&Requeued::Queued) {
            // Delivered to listening replicas only when the transaction commits.
            tx.execute("SELECT pg_notify($1, '')", &[&connect::WORK_CHANNEL])
                .await?;
        }
        tx.commit().await?;
        Ok(out)
    }
}
