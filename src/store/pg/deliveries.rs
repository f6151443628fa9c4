//! Deliveries in PostgreSQL: create, claim under a lease, renew, finish,
//! hand back, and take over the runs of a replica that stopped renewing.
//!
//! A claim takes due rows with `FOR UPDATE SKIP LOCKED`, so replicas
//! claiming at once each get different rows without waiting on each
//! other, and stamps them with this replica's name and a lease end. The
//! claiming replica renews its leases while it runs them. Finishing or
//! handing back a run only touches a row this replica still holds: once
//! another replica took it over (the lease ran out), the late result is
//! dropped, as the run was already counted as interrupted. The rules
//! (states, what follows an attempt) are [`crate::store::rules`].

use deadpool_postgres::{GenericClient, Transaction};
use tokio_postgres::Row;

use super::Result;
use crate::store::deliveries::{
    AttemptRecord, AttemptRow, Claimed, DeliveryFilter, DeliveryRow, FAILED, Next, PENDING, Record,
};
use crate::store::rules;
use crate::timefmt;

/// Creates a pending delivery per handler for a freshly stored event.
pub async fn create(tx: &Transaction<'_>, event: i64, handlers: &[String], now: i64) -> Result<()> {
    if handlers.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO deliveries (event, handler, status, next_attempt_at, updated_at)
             SELECT $1, h, 'pending', $3, $3 FROM unnest($2::text[]) AS h",
        )
        .await?;
    tx.execute(&stmt, &[&event, &handlers, &now]).await?;
    Ok(())
}

/// Claims the oldest due deliveries of `handler` for `owner` until `lease_until`.
const CLAIM_SQL: &str = "WITH due AS (
        SELECT id FROM deliveries
        WHERE handler = $1 AND status IN ('pending', 'failed') AND next_attempt_at <= $2
        ORDER BY next_attempt_at, id LIMIT $3
        FOR UPDATE SKIP LOCKED)
    UPDATE deliveries d SET status = 'running', attempts = d.attempts + 1, updated_at = $2,
                            ahead = FALSE, lease_owner = $4, lease_until = $5
    FROM due, events e
    WHERE d.id = due.id AND e.id = d.event
    RETURNING d.id, d.handler, d.attempts, d.replay, e.id, e.event_id, e.source, e.provider,
              e.type, e.occurred_at, e.received_at, e.body, d.updated_at";

pub async fn claim(
    c: &impl GenericClient,
    handler: &str,
    now: i64,
    limit: usize,
    owner: &str,
    lease_until: i64,
) -> Result<Vec<Claimed>> {
    let stmt = c.prepare_cached(CLAIM_SQL).await?;
    let rows = c
        .query(
            &stmt,
            &[&handler, &now, &(limit as i64), &owner, &lease_until],
        )
        .await?;
    let mut out: Vec<Claimed> = rows.iter().map(claimed_row).collect();
    out.sort_by_key(|c| c.delivery);
    Ok(out)
}

fn claimed_row(r: &Row) -> Claimed {
    Claimed {
        delivery: r.get(0),
        handler: r.get(1),
        attempt: r.get::<_, i32>(2) as u32,
        replay: r.get(3),
        event: r.get(4),
        event_id: r.get(5),
        source: r.get(6),
        provider: r.get(7),
        event_type: r.get(8),
        occurred_at: r.get(9),
        received_at: r.get(10),
        body: r.get(11),
        ahead: false,
        claimed_at: r.get(12),
    }
}

/// Extends every lease `owner` holds to `lease_until`. Returns how many.
pub async fn renew(c: &impl GenericClient, owner: &str, lease_until: i64) -> Result<u64> {
    let stmt = c
        .prepare_cached(
            "UPDATE deliveries SET lease_until = $2 WHERE lease_owner = $1 AND status = 'running'",
        )
        .await?;
    Ok(c.execute(&stmt, &[&owner, &lease_until]).await?)
}

/// Records an attempt and moves the delivery on, if `owner` still holds
/// the claim that made this attempt (the attempt number tells a claim from
/// a later one of the same delivery by the same replica, after a
/// take-over). False when the lease was lost (nothing recorded).
pub async fn finish(
    c: &impl GenericClient,
    owner: &str,
    delivery: i64,
    a: &AttemptRecord,
    next: Next,
    now: i64,
) -> Result<bool> {
    let t = rules::after_attempt(next, &a.summary, now);
    let stmt = c
        .prepare_cached(
            "WITH moved AS (
                UPDATE deliveries SET status = $2, next_attempt_at = $3, last_error = $4,
                       updated_at = $5, lease_owner = NULL, lease_until = NULL
                WHERE id = $1 AND status = 'running' AND lease_owner = $6 AND attempts = $7
                RETURNING id)
             INSERT INTO attempts (delivery, attempt, replay, started_at, duration_us, outcome,
                                   exit_code, signal, stdout, stderr, stdout_truncated, stderr_truncated,
                                   http_status)
             SELECT id, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18 FROM moved",
        )
        .await?;
    let n = c
        .execute(
            &stmt,
            &[
                &delivery,
                &t.status,
                &t.next_attempt_at,
                &t.last_error,
                &now,
                &owner,
                &(a.attempt as i32),
                &a.replay,
                &a.started_at,
                &a.duration_us,
                &a.outcome,
                &a.exit_code,
                &a.signal,
                &a.stdout,
                &a.stderr,
                &a.stdout_truncated,
                &a.stderr_truncated,
                &a.http_status.map(i32::from),
            ],
        )
        .await?;
    Ok(n == 1)
}

/// Undoes `owner`'s claims that never ran: back to waiting, the attempt
/// count as it was. Returns how many.
pub async fn unclaim(c: &impl GenericClient, owner: &str, ids: &[i64]) -> Result<u64> {
    let stmt = c
        .prepare_cached(&format!(
            "UPDATE deliveries SET attempts = attempts - 1, status = {},
                    lease_owner = NULL, lease_until = NULL
             WHERE id = ANY($1) AND status = 'running' AND lease_owner = $2",
            rules::UNCLAIMED_STATUS_SQL
        ))
        .await?;
    Ok(c.execute(&stmt, &[&ids, &owner]).await?)
}

/// Takes over runs whose lease ended before `now`: each counts as an
/// interrupted attempt and is due again at once. Rows another replica is
/// taking over at the same moment are skipped. Returns how many.
pub async fn take_over_expired(c: &impl GenericClient, now: i64) -> Result<u64> {
    let stmt = c
        .prepare_cached(
            "WITH lost AS (
                SELECT id FROM deliveries
                WHERE status = 'running' AND lease_until < $1
                FOR UPDATE SKIP LOCKED),
             counted AS (
                INSERT INTO attempts (delivery, attempt, replay, started_at, duration_us, outcome)
                SELECT d.id, d.attempts, d.replay, d.updated_at, $1 - d.updated_at, $2
                FROM deliveries d JOIN lost ON lost.id = d.id)
             UPDATE deliveries d SET status = 'failed', next_attempt_at = $1, updated_at = $1,
                    ahead = FALSE, lease_owner = NULL, lease_until = NULL, last_error = $3
             FROM lost WHERE d.id = lost.id",
        )
        .await?;
    Ok(c.execute(
        &stmt,
        &[&now, &rules::INTERRUPTED, &rules::INTERRUPTED_LEASE],
    )
    .await?)
}

/// The earliest time any queued delivery becomes due, if any is queued.
pub async fn next_due(c: &impl GenericClient) -> Result<Option<i64>> {
    let stmt = c
        .prepare_cached(
            "SELECT MIN(next_attempt_at) FROM deliveries WHERE status IN ('pending', 'failed')",
        )
        .await?;
    Ok(c.query_one(&stmt, &[]).await?.get(0))
}

/// Queue depth (waiting and running) and the age of its oldest entry.
pub async fn queue_depth(c: &impl GenericClient, now: i64) -> Result<(i64, i64)> {
    let stmt = c
        .prepare_cached(
            "SELECT COUNT(*), MIN(updated_at) FROM deliveries
             WHERE status IN ('pending', 'failed', 'running')",
        )
        .await?;
    let row = c.query_one(&stmt, &[]).await?;
    let oldest: Option<i64> = row.get(1);
    Ok((row.get(0), oldest.map_or(0, |t| now - t)))
}

/// Deliveries as `hookd deliveries` lists them, newest first.
pub async fn list(c: &impl GenericClient, f: &DeliveryFilter) -> Result<Vec<DeliveryRow>> {
    let stmt = c
        .prepare_cached(
            "SELECT d.id, d.event, e.event_id, e.source, e.type, d.handler, d.status, d.attempts,
                    d.next_attempt_at, d.replay, d.last_error, d.updated_at
             FROM deliveries d JOIN events e ON e.id = d.event
             WHERE ($1::text IS NULL OR d.handler = $1) AND ($2::text IS NULL OR d.status = $2)
               AND ($3::text IS NULL OR e.source = $3) AND ($4::bigint IS NULL OR d.updated_at >= $4)
               AND ($5::bigint IS NULL OR d.event = $5) AND d.id < $7
             ORDER BY d.id DESC LIMIT $6",
        )
        .await?;
    let limit = f.limit.map_or(i64::MAX, |l| l as i64);
    let before = f.before.unwrap_or(i64::MAX);
    let rows = c
        .query(
            &stmt,
            &[
                &f.handler, &f.status, &f.source, &f.since, &f.event, &limit, &before,
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let status: String = r.get(6);
            let waiting = status == PENDING || status == FAILED;
            DeliveryRow {
                id: r.get(0),
                event: r.get(1),
                event_id: r.get(2),
                source: r.get(3),
                event_type: r.get(4),
                handler: r.get(5),
                attempts: r.get::<_, i32>(7) as u32,
                next_attempt_at: waiting.then(|| timefmt::format_micros(r.get(8))),
                replay: r.get(9),
                last_error: r.get(10),
                updated_at: timefmt::format_micros(r.get(11)),
                held: false,
                // Claims ahead are not made on PostgreSQL.
                claimed_ahead_at: None,
                status,
            }
        })
        .collect())
}

/// Every stored attempt of one event's deliveries, oldest first.
pub async fn attempts_for_event(c: &impl GenericClient, event: i64) -> Result<Vec<AttemptRow>> {
    let stmt = c
        .prepare_cached(
            "SELECT a.delivery, d.handler, a.attempt, a.replay, a.started_at, a.duration_us, a.outcome,
                    a.exit_code, a.signal, a.stdout, a.stderr, a.stdout_truncated, a.stderr_truncated,
                    a.http_status
             FROM attempts a JOIN deliveries d ON d.id = a.delivery
             WHERE d.event = $1 ORDER BY a.id",
        )
        .await?;
    let rows = c.query(&stmt, &[&event]).await?;
    Ok(rows.iter().map(super::query::attempt_row).collect())
}

/// Handlers (of `names`) that have a delivery due at `now`.
pub async fn handlers_with_due_work(
    c: &impl GenericClient,
    names: &[String],
    now: i64,
) -> Result<Vec<String>> {
    let stmt = c
        .prepare_cached(
            "SELECT h FROM unnest($1::text[]) AS h WHERE EXISTS (
                SELECT 1 FROM deliveries WHERE handler = h
                AND status IN ('pending', 'failed') AND next_attempt_at <= $2)",
        )
        .await?;
    Ok(c.query(&stmt, &[&names, &now])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// The earliest time a queued delivery falls due after `now`.
pub async fn next_due_after(c: &impl GenericClient, now: i64) -> Result<Option<i64>> {
    let stmt = c
        .prepare_cached(
            "SELECT MIN(next_attempt_at) FROM deliveries
             WHERE status IN ('pending', 'failed') AND next_attempt_at > $1",
        )
        .await?;
    Ok(c.query_one(&stmt, &[&now]).await?.get(0))
}

/// Handlers not in `configured` with deliveries waiting, and how many
/// (counted up to `cap`).
pub async fn waiting_for_unknown(
    c: &impl GenericClient,
    configured: &[String],
    cap: i64,
) -> Result<Vec<(String, i64)>> {
    let stmt = c
        .prepare_cached(
            "SELECT handler, LEAST(COUNT(*), $2) FROM deliveries
             WHERE status IN ('pending', 'failed') AND NOT (handler = ANY($1))
             GROUP BY handler ORDER BY handler",
        )
        .await?;
    Ok(c.query(&stmt, &[&configured, &cap])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// Records the attempt of a run `owner` still holds and makes the slot's
/// next claims, in one transaction. A run whose lease another replica took
/// over records nothing and claims nothing (it was counted as interrupted
/// there); that is logged.
pub async fn record(
    conn: &mut deadpool_postgres::Object,
    owner: &str,
    lease_until: i64,
    r: &Record,
) -> Result<Vec<Claimed>> {
    let tx = conn.transaction().await?;
    if !finish(&tx, owner, r.delivery, &r.rec, r.next, r.now).await? {
        tracing::warn!(
            delivery = r.delivery,
            "the run ended after its lease was taken over by another replica; its result is dropped"
        );
        return Ok(Vec::new());
    }
    let mut claimed = Vec::new();
    if let Some(cn) = &r.then_claim
        && (cn.rivals.is_empty()
            || handlers_with_due_work(&tx, &cn.rivals, r.now)
                .await?
                .is_empty())
    {
        claimed = claim(&tx, &cn.handler, r.now, cn.want, owner, lease_until).await?;
    }
    if r.next == Next::HandBack {
        // Due now: another replica may take it at once.
        tx.execute("SELECT pg_notify($1, '')", &[&super::connect::WORK_CHANNEL])
            .await?;
    }
    tx.commit().await?;
    Ok(claimed)
}
