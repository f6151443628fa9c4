//! Refused requests in PostgreSQL (`hookd rejected`): the same bounded
//! log as SQLite's, shared by the replicas. The trim keeps the newest
//! `keep` ids; with replicas inserting at once that is the newest `keep`
//! give or take the inserts in flight.

use deadpool_postgres::GenericClient;

use super::Result;
use crate::store::rejected::{BODY_KEEP, NewRejection, RejectedRow, preview};
use crate::timefmt;

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
    let stmt = c
        .prepare_cached(
            "SELECT id, source, path, reason, code, status, received_at, remote, body_len, body
             FROM rejected WHERE ($1::text IS NULL OR source = $1) ORDER BY id DESC LIMIT $2",
        )
        .await?;
    let rows = c.query(&stmt, &[&source, &(limit as i64)]).await?;
    Ok(rows
        .iter()
        .map(|r| RejectedRow {
            id: r.get(0),
            source: r.get(1),
            path: r.get(2),
            reason: r.get(3),
            code: r.get(4),
            status: r.get::<_, i32>(5) as u16,
            received_at: timefmt::format_micros(r.get(6)),
            remote: r.get(7),
            body_len: r.get(8),
            body_preview: preview(&r.get::<_, Vec<u8>>(9)),
        })
        .collect())
}
