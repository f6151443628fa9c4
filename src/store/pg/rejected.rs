//! Refused requests in PostgreSQL (`hookd rejected`): the same bounded
//! log as SQLite's, shared by the replicas. The trim keeps the newest
//! `keep` ids; with replicas inserting at once that is the newest `keep`
//! give or take the inserts in flight.

use deadpool_postgres::GenericClient;

use super::Result;
use crate::store::rejected::{BODY_KEEP, NewRejection, RejectedRow};

/// Records one refusal and trims the table to the newest `keep` rows.
pub async fn insert(c: &impl GenericClient, r: &NewRejection, keep: usize) -> Result<()> {
    let body = &r.body[..r.body.len().min(BODY_KEEP)];
    let headers = serde_json::to_string(&r.headers).unwrap_or_else(|_| "[]".into());
    let stmt = c
        .prepare_cached(
            "INSERT INTO rejected (source, path, status, reason, code, received_at, remote, headers, body, body_len)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        )
        .await?;
    let newest: i64 = c
        .query_one(
            &stmt,
            &[
                &r.source,
                &r.path,
                &(r.status as i32),
                &r.reason,
                &r.code,
                &r.received_at,
                &r.remote,
                &headers,
                &body,
                &(r.body.len() as i64),
            ],
        )
        .await?
        .get(0);
    let trim = c
        .prepare_cached("DELETE FROM rejected WHERE id <= $1")
        .await?;
    c.execute(&trim, &[&(newest - keep as i64)]).await?;
    Ok(())
}

/// The newest refusals first.
pub async fn list(
    c: &impl GenericClient,
    source: Option<&str>,
    limit: usize,
) -> Result<Vec<RejectedRow>> {
    super::query::rejected_page(c, source, None, limit).await
}
