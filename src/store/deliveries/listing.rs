//! Deliveries and attempts as the operator sees them: the listings of
//! `hookd deliveries`, `events show`, the console and `hookd tail`, with
//! their `--json` field names. Read-only: claiming, recording and recovery
//! are the parent module's.

use rusqlite::{Connection, Row, params};
use serde::Serialize;

use super::super::Result;
use crate::store::rules::{FAILED, PENDING, RUNNING};
use crate::timefmt;

/// One delivery as listed (`hookd deliveries`). Field names are the `--json` contract.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DeliveryRow {
    pub id: i64,
    pub event: i64,
    pub event_id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub handler: String,
    pub status: String,
    pub attempts: u32,
    pub next_attempt_at: Option<String>,
    pub replay: bool,
    pub last_error: Option<String>,
    pub updated_at: String,
    /// Claimed ahead by an exec slot and not started yet: it counts as
    /// running, but its handler has not been spawned. Set by [`DeliveryRow::mark_held`].
    pub held: bool,
    /// The claim's time when the row was claimed ahead and is running.
    #[serde(skip)]
    pub(crate) claimed_ahead_at: Option<i64>,
}

impl DeliveryRow {
    /// Sets `held` from the start log: `started(id, claimed_at)` says
    /// whether the run of that claim was started.
    pub fn mark_held(&mut self, started: impl Fn(i64, i64) -> bool) {
        self.held = self
            .claimed_ahead_at
            .is_some_and(|at| !started(self.id, at));
    }

    /// The status as shown to a person: `running (held)`, `failed (replay)`.
    pub fn shown_status(&self) -> String {
        let notes: Vec<&str> = [(self.held, "held"), (self.replay, "replay")]
            .into_iter()
            .filter_map(|(on, note)| on.then_some(note))
            .collect();
        if notes.is_empty() {
            self.status.clone()
        } else {
            format!("{} ({})", self.status, notes.join(", "))
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct DeliveryFilter {
    pub handler: Option<String>,
    pub status: Option<String>,
    pub source: Option<String>,
    pub since: Option<i64>,
    pub event: Option<i64>,
    pub limit: Option<usize>,
    /// Only ids below this: the next page of a newest-first listing.
    pub before: Option<i64>,
}

pub fn list(conn: &Connection, f: &DeliveryFilter) -> Result<Vec<DeliveryRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT d.id, d.event, e.event_id, e.source, e.type, d.handler, d.status, d.attempts,
                d.next_attempt_at, d.replay, d.last_error, d.updated_at, d.ahead
         FROM deliveries d JOIN events e ON e.id = d.event
         WHERE (?1 IS NULL OR d.handler = ?1) AND (?2 IS NULL OR d.status = ?2)
           AND (?3 IS NULL OR e.source = ?3) AND (?4 IS NULL OR d.updated_at >= ?4)
           AND (?5 IS NULL OR d.event = ?5) AND d.id < ?7
         ORDER BY d.id DESC LIMIT ?6",
    )?;
    let limit = f.limit.map(|l| l as i64).unwrap_or(-1);
    let before = f.before.unwrap_or(i64::MAX);
    let rows = stmt.query_map(
        params![
            f.handler, f.status, f.source, f.since, f.event, limit, before
        ],
        |r| {
            let status: String = r.get(6)?;
            let waiting = status == PENDING || status == FAILED;
            let updated_at: i64 = r.get(11)?;
            let ahead: bool = r.get(12)?;
            Ok(DeliveryRow {
                id: r.get(0)?,
                event: r.get(1)?,
                event_id: r.get(2)?,
                source: r.get(3)?,
                event_type: r.get(4)?,
                handler: r.get(5)?,
                attempts: r.get(7)?,
                next_attempt_at: waiting
                    .then(|| r.get::<_, i64>(8).map(timefmt::format_micros))
                    .transpose()?,
                replay: r.get(9)?,
                last_error: r.get(10)?,
                updated_at: timefmt::format_micros(updated_at),
                held: false,
                claimed_ahead_at: (ahead && status == RUNNING).then_some(updated_at),
                status,
            })
        },
    )?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// One stored attempt, for `hookd events show`.
#[derive(Clone, Debug, Serialize)]
pub struct AttemptRow {
    pub delivery: i64,
    pub handler: String,
    pub attempt: u32,
    pub replay: bool,
    pub started_at: String,
    pub duration_ms: f64,
    pub outcome: String,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// An http attempt's answer status; its body is in `stdout`.
    pub http_status: Option<u16>,
    pub stdout: String,
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
}

const ATTEMPT_COLUMNS: &str = "a.delivery, d.handler, a.attempt, a.replay, a.started_at,
    a.duration_us, a.outcome, a.exit_code, a.signal, a.stdout, a.stderr, a.stdout_truncated,
    a.stderr_truncated, a.http_status";

fn attempt_row(r: &Row<'_>) -> rusqlite::Result<AttemptRow> {
    let text = |i: usize| -> rusqlite::Result<String> {
        Ok(
            String::from_utf8_lossy(&r.get::<_, Option<Vec<u8>>>(i)?.unwrap_or_default())
                .into_owned(),
        )
    };
    Ok(AttemptRow {
        delivery: r.get(0)?,
        handler: r.get(1)?,
        attempt: r.get(2)?,
        replay: r.get(3)?,
        started_at: timefmt::format_micros(r.get(4)?),
        duration_ms: r.get::<_, i64>(5)? as f64 / 1000.0,
        outcome: r.get(6)?,
        exit_code: r.get(7)?,
        signal: r.get(8)?,
        stdout: text(9)?,
        stderr: text(10)?,
        stdout_truncated: r.get(11)?,
        stderr_truncated: r.get(12)?,
        http_status: r.get(13)?,
    })
}

pub fn attempts_for_event(conn: &Connection, event: i64) -> Result<Vec<AttemptRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ATTEMPT_COLUMNS}
         FROM attempts a JOIN deliveries d ON d.id = a.delivery
         WHERE d.event = ?1 ORDER BY a.id"
    ))?;
    let rows = stmt.query_map([event], attempt_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// An attempt that has ended, with its event (`hookd tail --deliveries`).
#[derive(Clone, Debug, Serialize)]
pub struct EndedAttempt {
    /// The attempt's own id: the tail's cursor.
    #[serde(skip)]
    pub seq: i64,
    pub event: i64,
    pub event_id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The delivery's status now.
    pub status: String,
    #[serde(flatten)]
    pub attempt: AttemptRow,
}

/// Up to `limit` attempts with an id above `after`, oldest first,
/// optionally of one source and of event types matching a glob.
pub fn attempts_after(
    conn: &Connection,
    after: i64,
    (source, type_glob): (Option<&str>, Option<&str>),
    limit: usize,
) -> Result<Vec<EndedAttempt>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ATTEMPT_COLUMNS}, a.id, e.id, e.event_id, e.source, e.type, d.status
         FROM attempts a JOIN deliveries d ON d.id = a.delivery JOIN events e ON e.id = d.event
         WHERE a.id > ?1 AND (?2 IS NULL OR e.source = ?2) AND (?4 IS NULL OR e.type GLOB ?4)
         ORDER BY a.id LIMIT ?3"
    ))?;
    let rows = stmt.query_map(params![after, source, limit as i64, type_glob], |r| {
        Ok(EndedAttempt {
            attempt: attempt_row(r)?,
            seq: r.get(14)?,
            event: r.get(15)?,
            event_id: r.get(16)?,
            source: r.get(17)?,
            event_type: r.get(18)?,
            status: r.get(19)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// The newest attempt's id (0 when there is none).
pub fn newest_attempt_id(conn: &Connection) -> Result<i64> {
    Ok(
        conn.query_row("SELECT COALESCE(MAX(id), 0) FROM attempts", [], |r| {
            r.get(0)
        })?,
    )
}

/// (event, handler) pairs of deliveries in `status`, optionally of one handler.
pub fn pairs_with_status(
    conn: &Connection,
    status: &str,
    handler: Option<&str>,
) -> Result<Vec<(i64, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT event, handler FROM deliveries WHERE status = ?1 AND (?2 IS NULL OR handler = ?2)
         ORDER BY event, handler",
    )?;
    let rows = stmt.query_map(params![status, handler], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}
