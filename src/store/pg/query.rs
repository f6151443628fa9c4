//! What the CLI verbs and the console read from PostgreSQL: events listed
//! and shown, the tail's views, refused requests page by page, deliveries
//! by status, events kept by prune, and the pull sources' status.
//!
//! Each query returns the same rows as its SQLite twin (same columns, same
//! order, same derived status: [`rules::EVENT_STATUS_SQL`]), so a verb
//! prints the same on both. A `--type` glob (SQLite's `GLOB`) becomes an
//! anchored regular expression here ([`glob_regex`]).

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::{PgStore, Result};
use crate::store::deliveries::{AttemptRow, EndedAttempt};
use crate::store::events::{EventDetail, EventFilter, EventRow};
use crate::store::pull_status::PullStatus;
use crate::store::rejected::{RejectedRow, preview};
use crate::store::rules;
use crate::timefmt;

const ROW_COLUMNS: &str = "e.id, e.event_id, e.source, e.provider, e.type, e.occurred_at,
    e.received_at, e.duplicates, e.id_synthetic";

/// `f`'s events with their status, `$7` < id < `$8`; ordered and limited by the caller.
const FILTERED_SQL: &str =
    "SELECT * FROM (SELECT {ROW_COLUMNS}, {STATUS_SQL} AS status FROM events e
       WHERE ($1::text IS NULL OR e.source = $1)
         AND ($2::text IS NULL OR e.type ~ $2)
         AND ($3::bigint IS NULL OR e.received_at >= $3)
         AND ($4::bigint IS NULL OR e.received_at < $4)
         AND e.id > $7 AND e.id < $8) AS x
     WHERE ($5::text IS NULL OR status = $5)";

/// A regular expression no text matches.
const NOTHING: &str = "x^";

/// A SQLite `GLOB` pattern as an anchored POSIX regular expression: `*`
/// any run, `?` one character, `[...]` a set (`[^...]` its complement),
/// everything else literal.
pub fn glob_regex(glob: &str) -> String {
    let mut out = String::from("^");
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            '[' => {
                let mut set = String::from("[");
                if chars.peek() == Some(&'^') {
                    set.push(chars.next().unwrap_or('^'));
                }
                // A `]` first in the set is one of its members.
                if chars.peek() == Some(&']') {
                    set.push_str("\\]");
                    chars.next();
                }
                let mut closed = false;
                for s in chars.by_ref() {
                    if s == ']' {
                        closed = true;
                        break;
                    }
                    if s == '\\' {
                        set.push('\\');
                    }
                    set.push(s);
                }
                if closed {
                    out.push_str(&set);
                    out.push(']');
                } else {
                    // No closing bracket: SQLite matches nothing; neither
                    // does this (a character before the start).
                    return NOTHING.into();
                }
            }
            c if c.is_alphanumeric() || c == '_' || c == ' ' => out.push(c),
            c => {
                out.push('\\');
                out.push(c);
            }
        }
    }
    out.push('$');
    out
}

fn event_row(r: &Row) -> EventRow {
    EventRow {
        id: r.get(0),
        event_id: r.get(1),
        source: r.get(2),
        provider: r.get(3),
        event_type: r.get(4),
        occurred_at: r.get::<_, Option<i64>>(5).map(timefmt::format_micros),
        received_at: timefmt::format_micros(r.get(6)),
        duplicates: r.get::<_, i32>(7).into(),
        id_synthetic: r.get(8),
        status: r.get(9),
    }
}

async fn filtered(
    c: &impl GenericClient,
    f: &EventFilter,
    (after, before): (i64, i64),
    order: &str,
) -> Result<Vec<EventRow>> {
    let sql = format!(
        "{} ORDER BY id {order} LIMIT $6",
        FILTERED_SQL
            .replace("{ROW_COLUMNS}", ROW_COLUMNS)
            .replace("{STATUS_SQL}", rules::EVENT_STATUS_SQL)
    );
    let stmt = c.prepare_cached(&sql).await?;
    let glob = f.type_glob.as_deref().map(glob_regex);
    let limit = f.limit.map(|l| l as i64);
    let rows = c
        .query(
            &stmt,
            &[
                &f.source, &glob, &f.since, &f.until, &f.status, &limit, &after, &before,
            ],
        )
        .await?;
    Ok(rows.iter().map(event_row).collect())
}

/// Events matching `f`, newest first (below `f.before` when set).
pub async fn list_events(c: &impl GenericClient, f: &EventFilter) -> Result<Vec<EventRow>> {
    filtered(c, f, (0, f.before.unwrap_or(i64::MAX)), "DESC").await
}

/// Events matching `f` with an id above `after`, oldest first (`hookd tail`).
pub async fn events_after(
    c: &impl GenericClient,
    f: &EventFilter,
    after: i64,
) -> Result<Vec<EventRow>> {
    filtered(c, f, (after, f.before.unwrap_or(i64::MAX)), "ASC").await
}

/// The largest id of `table` (0 when empty): where `hookd tail` starts.
async fn newest_id(c: &impl GenericClient, table: &str) -> Result<i64> {
    let sql = format!("SELECT COALESCE(MAX(id), 0)::bigint FROM {table}");
    Ok(c.query_one(&sql, &[]).await?.get(0))
}

/// One event with its headers and body.
pub async fn event(c: &impl GenericClient, id: i64) -> Result<Option<EventDetail>> {
    let sql = format!(
        "SELECT {ROW_COLUMNS}, {}, e.type_raw, e.verified, e.headers, e.body
         FROM events e WHERE e.id = $1",
        rules::EVENT_STATUS_SQL
    );
    let stmt = c.prepare_cached(&sql).await?;
    let Some(r) = c.query_opt(&stmt, &[&id]).await? else {
        return Ok(None);
    };
    let headers: String = r.get(12);
    Ok(Some(EventDetail {
        received_at_us: r.get(6),
        row: event_row(&r),
        type_raw: r.get(10),
        verified: r.get(11),
        headers: serde_json::from_str(&headers).unwrap_or_default(),
        body: r.get(13),
    }))
}

/// Up to `limit` attempts with an id above `after`, oldest first, of one
/// source and of types matching a glob when given (`hookd tail --deliveries`).
pub async fn attempts_after(
    c: &impl GenericClient,
    after: i64,
    (source, type_glob): (Option<&str>, Option<&str>),
    limit: usize,
) -> Result<Vec<EndedAttempt>> {
    let stmt = c
        .prepare_cached(
            "SELECT a.delivery, d.handler, a.attempt, a.replay, a.started_at, a.duration_us,
                    a.outcome, a.exit_code, a.signal, a.stdout, a.stderr, a.stdout_truncated,
                    a.stderr_truncated, a.http_status,
                    a.id, e.id, e.event_id, e.source, e.type, d.status
             FROM attempts a JOIN deliveries d ON d.id = a.delivery JOIN events e ON e.id = d.event
             WHERE a.id > $1 AND ($2::text IS NULL OR e.source = $2)
               AND ($4::text IS NULL OR e.type ~ $4)
             ORDER BY a.id LIMIT $3",
        )
        .await?;
    let glob = type_glob.map(glob_regex);
    let rows = c
        .query(&stmt, &[&after, &source, &(limit as i64), &glob])
        .await?;
    Ok(rows
        .iter()
        .map(|r| EndedAttempt {
            attempt: attempt_row(r),
            seq: r.get(14),
            event: r.get(15),
            event_id: r.get(16),
            source: r.get(17),
            event_type: r.get(18),
            status: r.get(19),
        })
        .collect())
}

/// An attempt from the first 14 columns of `attempts_after`'s query
/// (and of `deliveries::attempts_for_event`'s, which are the same).
pub(super) fn attempt_row(r: &Row) -> AttemptRow {
    let text = |i: usize| {
        String::from_utf8_lossy(&r.get::<_, Option<Vec<u8>>>(i).unwrap_or_default()).into_owned()
    };
    AttemptRow {
        delivery: r.get(0),
        handler: r.get(1),
        attempt: r.get::<_, i32>(2) as u32,
        replay: r.get(3),
        started_at: timefmt::format_micros(r.get(4)),
        duration_ms: r.get::<_, i64>(5) as f64 / 1000.0,
        outcome: r.get(6),
        exit_code: r.get(7),
        signal: r.get(8),
        stdout: text(9),
        stderr: text(10),
        stdout_truncated: r.get(11),
        stderr_truncated: r.get(12),
        http_status: r
            .get::<_, Option<i32>>(13)
            .and_then(|s| u16::try_from(s).ok()),
    }
}

/// (event, handler) pairs of deliveries in `status`, of one handler when given.
pub async fn pairs_with_status(
    c: &impl GenericClient,
    status: &str,
    handler: Option<&str>,
) -> Result<Vec<(i64, String)>> {
    let stmt = c
        .prepare_cached(
            "SELECT event, handler FROM deliveries
             WHERE status = $1 AND ($2::text IS NULL OR handler = $2)
             ORDER BY event, handler",
        )
        .await?;
    let rows = c.query(&stmt, &[&status, &handler]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Events received before `before` that prune keeps: their work is unfinished.
pub async fn unfinished_before(c: &impl GenericClient, before: i64) -> Result<i64> {
    let sql = format!(
        "SELECT COUNT(*) FROM events e WHERE e.received_at < $1
           AND EXISTS (SELECT 1 FROM deliveries d WHERE d.event = e.id AND {})",
        rules::UNFINISHED_SQL
    );
    Ok(c.query_one(&sql, &[&before]).await?.get(0))
}

/// The newest refused requests first, ids below `before` when given.
pub async fn rejected_page(
    c: &impl GenericClient,
    source: Option<&str>,
    before: Option<i64>,
    limit: usize,
) -> Result<Vec<RejectedRow>> {
    let stmt = c
        .prepare_cached(
            "SELECT id, source, path, reason, code, status, received_at, remote, body_len, body
             FROM rejected WHERE ($1::text IS NULL OR source = $1) AND id < $3
             ORDER BY id DESC LIMIT $2",
        )
        .await?;
    let before = before.unwrap_or(i64::MAX);
    let rows = c.query(&stmt, &[&source, &(limit as i64), &before]).await?;
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

/// Every pull source's recorded status with its position, by name.
pub async fn pull_statuses(c: &impl GenericClient) -> Result<Vec<PullStatus>> {
    let stmt = c
        .prepare_cached(
            "SELECT s.source, s.mode, s.state, s.state_since, s.last_event_at, s.events,
                    s.reconnects, s.polls, c.cursor, c.position_at, c.last_event_id,
                    s.last_error, s.last_error_at
             FROM pull_status s LEFT JOIN cursors c ON c.source = s.source
             ORDER BY s.source",
        )
        .await?;
    let time = |v: Option<i64>| v.map(timefmt::format_micros);
    let rows = c.query(&stmt, &[]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let state: String = r.get(2);
            PullStatus {
                source: r.get(0),
                mode: r.get(1),
                connected: crate::store::pull_status::is_connected(&state),
                state,
                state_since: timefmt::format_micros(r.get(3)),
                last_event_at: time(r.get(4)),
                events: r.get(5),
                reconnects: r.get(6),
                polls: r.get(7),
                cursor: r.get(8),
                position_at: time(r.get(9)),
                last_event_id: r.get(10),
                last_error: r.get(11),
                last_error_at: time(r.get(12)),
            }
        })
        .collect())
}

impl PgStore {
    pub async fn list_events(&self, f: EventFilter) -> Result<Vec<EventRow>> {
        list_events(&self.conn().await?, &f).await
    }

    pub async fn events_after(&self, f: EventFilter, after: i64) -> Result<Vec<EventRow>> {
        events_after(&self.conn().await?, &f, after).await
    }

    pub async fn event(&self, id: i64) -> Result<Option<EventDetail>> {
        event(&self.conn().await?, id).await
    }

    pub async fn newest_event_id(&self) -> Result<i64> {
        newest_id(&self.conn().await?, "events").await
    }

    pub async fn newest_attempt_id(&self) -> Result<i64> {
        newest_id(&self.conn().await?, "attempts").await
    }

    pub async fn attempts_after(
        &self,
        after: i64,
        source: Option<String>,
        type_glob: Option<String>,
        limit: usize,
    ) -> Result<Vec<EndedAttempt>> {
        let only = (source.as_deref(), type_glob.as_deref());
        attempts_after(&self.conn().await?, after, only, limit).await
    }

    pub async fn pairs_with_status(
        &self,
        status: &str,
        handler: Option<String>,
    ) -> Result<Vec<(i64, String)>> {
        pairs_with_status(&self.conn().await?, status, handler.as_deref()).await
    }

    pub async fn unfinished_before(&self, before: i64) -> Result<i64> {
        unfinished_before(&self.conn().await?, before).await
    }

    pub async fn rejected_page(
        &self,
        source: Option<String>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<RejectedRow>> {
        rejected_page(&self.conn().await?, source.as_deref(), before, limit).await
    }

    pub async fn pull_statuses(&self) -> Result<Vec<PullStatus>> {
        pull_statuses(&self.conn().await?).await
    }
}

#[cfg(test)]
mod tests {
    use super::glob_regex;

    #[test]
    fn globs_become_anchored_regexes() {
        assert_eq!(glob_regex("message.*"), "^message\\..*$");
        assert_eq!(glob_regex("a?c"), "^a.c$");
        assert_eq!(glob_regex("[^ab]x"), "^[^ab]x$");
        assert_eq!(glob_regex("[]a]"), "^[\\]a]$");
        assert_eq!(glob_regex("a+b(c)"), "^a\\+b\\(c\\)$");
        assert_eq!(glob_regex("[ab"), super::NOTHING);
    }
}
