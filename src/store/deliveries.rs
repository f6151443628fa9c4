//! Deliveries: one row per (event, handler), the durable dispatch queue.
//!
//! States: `pending` (never tried, or handed back), `running` (claimed by
//! the dispatcher), `failed` (last attempt failed, retry at
//! `next_attempt_at`), `succeeded`, `dead` (attempts used up). Every attempt
//! is kept in `attempts` with its outcome and captured output. Claiming
//! bumps the attempt counter in the same statement that marks the row
//! running, so a run interrupted by a crash shows up as attempt > 1. A row
//! claimed *ahead* (running, `ahead = 1`) is one a slot holds but has not
//! started; recovery returns it untouched, without counting an attempt.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{Result, replay, rules};

pub use super::rules::{DEAD, FAILED, Next, PENDING, RUNNING, SUCCEEDED};
pub const STATUSES: [&str; 5] = [PENDING, RUNNING, FAILED, SUCCEEDED, DEAD];

mod listing;
pub use listing::*;

/// Creates a pending delivery per handler for a freshly stored event.
pub fn create(conn: &Connection, event: i64, handlers: &[String], now: i64) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO deliveries (event, handler, status, next_attempt_at, updated_at)
         VALUES (?1, ?2, 'pending', ?3, ?3)",
    )?;
    for h in handlers {
        stmt.execute(params![event, h, now])?;
    }
    Ok(())
}

/// A claimed delivery with what the handler needs to see.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub delivery: i64,
    pub handler: String,
    pub attempt: u32,
    pub replay: bool,
    pub event: i64,
    pub event_id: String,
    pub source: String,
    pub provider: String,
    pub event_type: String,
    pub occurred_at: Option<i64>,
    pub received_at: i64,
    pub body: Vec<u8>,
    /// Claimed ahead: held by a slot, its handler not started yet.
    pub ahead: bool,
    /// When it was claimed: with the id, it names this claim in the start log.
    pub claimed_at: i64,
}

/// Claims the oldest due deliveries of a handler. The parameters are
/// written `+?N`: SQLite plans with the values of plain bound parameters
/// here (the LIMIT, and the handler against the partial indexes), so
/// rebinding them made it re-parse and re-plan the statement on every claim
/// — measured as the largest part of a claim. The unary plus keeps the plan
/// independent of the values and still uses `deliveries_queue`.
const CLAIM_SQL: &str =
    "UPDATE deliveries SET status = 'running', attempts = attempts + 1, updated_at = ?2,
                           ahead = +?4
     WHERE id IN (SELECT id FROM deliveries
                  WHERE handler = +?1 AND status IN ('pending', 'failed') AND next_attempt_at <= +?2
                  ORDER BY next_attempt_at, id LIMIT +?3)
     RETURNING id";

/// Marks up to `limit` due deliveries of `handler` running and returns them,
/// oldest due first, all to be started right away.
pub fn claim_due(conn: &Connection, handler: &str, now: i64, limit: usize) -> Result<Vec<Claimed>> {
    claim(conn, handler, now, limit, false)
}

/// Like [`claim_due`]; with `ahead`, the deliveries are held by a slot and
/// not started yet: the dispatcher's start log tells recovery which of
/// those it did start.
pub fn claim(
    conn: &Connection,
    handler: &str,
    now: i64,
    limit: usize,
    ahead: bool,
) -> Result<Vec<Claimed>> {
    let mut stmt = conn.prepare_cached(CLAIM_SQL)?;
    let ids = stmt
        .query_map(params![handler, now, limit as i64, ahead], |r| {
            r.get::<_, i64>(0)
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut load = conn.prepare_cached(
        "SELECT d.id, d.handler, d.attempts, d.replay, e.id, e.event_id, e.source, e.provider,
                e.type, e.occurred_at, e.received_at, e.body, d.ahead, d.updated_at
         FROM deliveries d JOIN events e ON e.id = d.event WHERE d.id = ?1",
    )?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(load.query_row([id], claimed_row)?);
    }
    out.sort_by_key(|c| c.delivery);
    Ok(out)
}

fn claimed_row(r: &Row<'_>) -> rusqlite::Result<Claimed> {
    Ok(Claimed {
        delivery: r.get(0)?,
        handler: r.get(1)?,
        attempt: r.get(2)?,
        replay: r.get(3)?,
        event: r.get(4)?,
        event_id: r.get(5)?,
        source: r.get(6)?,
        provider: r.get(7)?,
        event_type: r.get(8)?,
        occurred_at: r.get(9)?,
        received_at: r.get(10)?,
        body: r.get(11)?,
        ahead: r.get(12)?,
        claimed_at: r.get(13)?,
    })
}

/// One finished (or abandoned) attempt, as stored.
#[derive(Clone, Debug, Default)]
pub struct AttemptRecord {
    pub attempt: u32,
    pub replay: bool,
    pub started_at: i64,
    pub duration_us: i64,
    /// `ok`, `exit`, `signal`, `timeout`, `spawn_error`, `nack`, `interrupted`;
    /// for http handlers also `http` (a non-2xx answer) and `connect_error`.
    pub outcome: String,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// The answer's status, for an http handler's attempt that got one.
    pub http_status: Option<u16>,
    /// An exec run's stdout; an http attempt's response body.
    pub stdout: Vec<u8>,
    /// An exec run's stderr; why an http attempt got no (complete) answer.
    pub stderr: Vec<u8>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    /// Readable summary, kept as the delivery's `last_error` on failure.
    pub summary: String,
    /// When the next try may come, as the target asked (`Retry-After`);
    /// not stored, it decides `next_attempt_at`.
    pub retry_after: Option<std::time::Duration>,
    /// A failure retrying cannot mend (an http 4xx with `retry_on_4xx =
    /// false`): the delivery is dead at once. Not stored.
    pub no_retry: bool,
}

/// An attempt to record, and what the slot that ran it wants next: the
/// dispatcher's one write after each run, on either backend.
#[derive(Clone, Debug)]
pub struct Record {
    pub delivery: i64,
    pub rec: std::sync::Arc<AttemptRecord>,
    pub next: Next,
    pub now: i64,
    /// Deliveries to claim for the same slot in the same transaction.
    pub then_claim: Option<ClaimNext>,
}

/// The claims a slot makes along with its record.
#[derive(Clone, Debug)]
pub struct ClaimNext {
    pub handler: String,
    pub want: usize,
    /// Held by the slot ahead of running (see [`claim`]).
    pub ahead: bool,
    /// Other handlers waiting for the global cap: when one has due work,
    /// nothing is claimed and the slot's global permit goes to it.
    pub rivals: Vec<String>,
}

/// Stores the attempt, moves its delivery on and makes the slot's claims,
/// all in the caller's transaction (one writer job).
pub fn record(conn: &Connection, r: &Record) -> Result<Vec<Claimed>> {
    finish(conn, r.delivery, &r.rec, r.next, r.now)?;
    let Some(cn) = &r.then_claim else {
        return Ok(Vec::new());
    };
    if !cn.rivals.is_empty() && !handlers_with_due_work(conn, &cn.rivals, r.now)?.is_empty() {
        return Ok(Vec::new());
    }
    claim(conn, &cn.handler, r.now, cn.want, cn.ahead)
}

/// Handlers (of `names`) that have a delivery due at `now`: one index probe each.
pub fn handlers_with_due_work(
    conn: &Connection,
    names: &[String],
    now: i64,
) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT 1 FROM deliveries
         WHERE handler = ?1 AND status IN ('pending', 'failed') AND next_attempt_at <= ?2 LIMIT 1",
    )?;
    let mut out = Vec::new();
    for name in names {
        if stmt.exists(params![name, now])? {
            out.push(name.clone());
        }
    }
    Ok(out)
}

/// The earliest time a queued delivery falls due after `now`.
pub fn next_due_after(conn: &Connection, now: i64) -> Result<Option<i64>> {
    Ok(conn.query_row(
        "SELECT MIN(next_attempt_at) FROM deliveries WHERE status IN ('pending', 'failed') AND next_attempt_at > ?1",
        [now],
        |r| r.get(0),
    )?)
}

/// Records an attempt and moves the delivery on.
pub fn finish(
    conn: &Connection,
    delivery: i64,
    a: &AttemptRecord,
    next: Next,
    now: i64,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO attempts (delivery, attempt, replay, started_at, duration_us, outcome, exit_code,
                               signal, stdout, stderr, stdout_truncated, stderr_truncated, http_status)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        delivery,
        a.attempt,
        a.replay,
        a.started_at,
        a.duration_us,
        a.outcome,
        a.exit_code,
        a.signal,
        a.stdout,
        a.stderr,
        a.stdout_truncated,
        a.stderr_truncated,
        a.http_status
    ])?;
    let t = rules::after_attempt(next, &a.summary, now);
    conn.prepare_cached(
        "UPDATE deliveries SET status = ?2, next_attempt_at = ?3, last_error = ?4, updated_at = ?5
         WHERE id = ?1",
    )?
    .execute(params![
        delivery,
        t.status,
        t.next_attempt_at,
        t.last_error,
        now
    ])?;
    Ok(())
}

/// Undoes claims that never ran (a slot's claimed-ahead delivery when it
/// stops, or found at recovery): back to waiting, the attempt count as it was. Only rows still
/// `running` are touched.
pub fn unclaim(conn: &Connection, ids: &[i64]) -> Result<()> {
    let mut stmt = conn.prepare_cached(&format!(
        "UPDATE deliveries SET attempts = attempts - 1, ahead = 0,
                status = {}
         WHERE id = ?1 AND status = 'running'",
        rules::UNCLAIMED_STATUS_SQL
    ))?;
    for id in ids {
        stmt.execute([id])?;
    }
    Ok(())
}

/// What start-up recovery found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Runs in flight when the daemon stopped: an interrupted attempt each.
    pub interrupted: usize,
    /// Claimed ahead and never started: back in the queue as they were.
    pub handed_back: usize,
}

/// At start-up: runs that were in flight when the daemon stopped are
/// recorded as interrupted attempts and become due again. A delivery that
/// was only claimed ahead (`ahead = 1`) and that `started` (given the id
/// and the claim's time) says never started goes back to waiting with no
/// attempt counted. Without `started` (the start log was unreadable) every
/// running row counts as interrupted.
pub fn recover_running(
    conn: &Connection,
    now: i64,
    started: Option<&impl Fn(i64, i64) -> bool>,
) -> Result<Recovered> {
    let mut never_started = Vec::new();
    if let Some(started) = started {
        let held: Vec<(i64, i64)> = conn
            .prepare(
                "SELECT id, updated_at FROM deliveries WHERE status = 'running' AND ahead = 1",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        never_started.extend(
            held.into_iter()
                .filter(|&(id, claimed_at)| !started(id, claimed_at))
                .map(|(id, _)| id),
        );
    }
    unclaim(conn, &never_started)?;
    conn.execute(
        "INSERT INTO attempts (delivery, attempt, replay, started_at, duration_us, outcome)
         SELECT id, attempts, replay, updated_at, ?1 - updated_at, ?2
         FROM deliveries WHERE status = 'running'",
        params![now, rules::INTERRUPTED],
    )?;
    let interrupted = conn.execute(
        "UPDATE deliveries SET status = 'failed', next_attempt_at = ?1, updated_at = ?1, ahead = 0,
                last_error = ?2
         WHERE status = 'running'",
        params![now, rules::INTERRUPTED_AT_START],
    )?;
    Ok(Recovered {
        interrupted,
        handed_back: never_started.len(),
    })
}

pub use super::replay::Requeued;

/// Puts one (event, handler) back in the queue as a replay, as
/// [`super::replay`] says: a running delivery is left alone, another starts
/// over, a missing one is created.
pub fn requeue(conn: &Connection, event: i64, handler: &str, now: i64) -> Result<Requeued> {
    let status: Option<String> = conn
        .prepare_cached("SELECT status FROM deliveries WHERE event = ?1 AND handler = ?2")?
        .query_row(params![event, handler], |r| r.get(0))
        .optional()?;
    let r = replay::replayed(now);
    match replay::step(status.as_deref()) {
        replay::Step::Skip => return Ok(Requeued::AlreadyRunning),
        replay::Step::Reset => {
            conn.prepare_cached(
                "UPDATE deliveries SET status = ?3, attempts = ?4, replay = ?5, next_attempt_at = ?6,
                        updated_at = ?7, last_error = NULL
                 WHERE event = ?1 AND handler = ?2",
            )?
            .execute(params![
                event,
                handler,
                r.status,
                r.attempts,
                r.replay,
                r.next_attempt_at,
                r.updated_at
            ])?;
        }
        replay::Step::Create => {
            conn.prepare_cached(
                "INSERT INTO deliveries (event, handler, status, attempts, replay, next_attempt_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                event,
                handler,
                r.status,
                r.attempts,
                r.replay,
                r.next_attempt_at,
                r.updated_at
            ])?;
            conn.prepare_cached("UPDATE events SET routed = routed + 1 WHERE id = ?1")?
                .execute([event])?;
        }
    }
    Ok(Requeued::Queued)
}

/// The earliest time any queued delivery becomes due, if any is queued.
pub fn next_due(conn: &Connection) -> Result<Option<i64>> {
    Ok(conn.query_row(
        "SELECT MIN(next_attempt_at) FROM deliveries WHERE status IN ('pending', 'failed')",
        [],
        |r| r.get(0),
    )?)
}

/// Queue depth and the age of its oldest entry (for metrics and status).
pub fn queue_depth(conn: &Connection, now: i64) -> Result<(i64, i64)> {
    // Two queries, each answered from its own partial index.
    let part = |sql: &str| -> Result<(i64, Option<i64>)> {
        Ok(conn
            .prepare_cached(sql)?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?)
    };
    let (waiting, w_oldest) = part(
        "SELECT COUNT(*), MIN(updated_at) FROM deliveries WHERE status IN ('pending', 'failed')",
    )?;
    let (running, r_oldest) =
        part("SELECT COUNT(*), MIN(updated_at) FROM deliveries WHERE status = 'running'")?;
    let oldest = match (w_oldest, r_oldest) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok((waiting + running, oldest.map_or(0, |t| now - t)))
}

/// Handlers not in `configured` that still have deliveries waiting (pending
/// or failed), with how many. Walks the distinct handler names of the
/// queue index one seek at a time, so it costs one lookup per handler
/// rather than a scan of the backlog; a count stops at `cap`.
pub fn waiting_for_unknown(
    conn: &Connection,
    configured: &[String],
    cap: i64,
) -> Result<Vec<(String, i64)>> {
    let mut next = conn.prepare_cached(
        "SELECT handler FROM deliveries
         WHERE status IN ('pending', 'failed') AND handler > ?1
         ORDER BY handler LIMIT 1",
    )?;
    let mut count = conn.prepare_cached(
        "SELECT COUNT(*) FROM (SELECT 1 FROM deliveries
         WHERE status IN ('pending', 'failed') AND handler = ?1 LIMIT ?2)",
    )?;
    let mut out = Vec::new();
    let mut after = String::new();
    while let Some(h) = next
        .query_row([&after], |r| r.get::<_, String>(0))
        .optional()?
    {
        if !configured.contains(&h) {
            let n = count.query_row(params![h, cap], |r| r.get(0))?;
            out.push((h.clone(), n));
        }
        after = h;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::events::{self, Ingested};

    fn db_with_event(handlers: &[&str]) -> (Connection, i64) {
        let mut c = Connection::open_in_memory().unwrap();
        c.pragma_update(None, "foreign_keys", true).unwrap();
        crate::store::stable_plans(&c).unwrap();
        crate::store::schema::migrate(&mut c).unwrap();
        let e = events::tests::event("s", "e1", handlers);
        let Ingested::Accepted { id, .. } = events::insert(&c, &e).unwrap() else {
            panic!()
        };
        (c, id)
    }

    fn fail(attempt: u32) -> AttemptRecord {
        AttemptRecord {
            attempt,
            outcome: "exit".into(),
            exit_code: Some(1),
            summary: "exit 1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn waiting_deliveries_of_unknown_handlers_are_found_and_counted() {
        let (c, _) = db_with_event(&["a", "gone", "old"]);
        for id in ["e2", "e3"] {
            events::insert(&c, &events::tests::event("s", id, &["a", "gone"])).unwrap();
        }
        // Finished work is not waiting: `old` has nothing left.
        let old = claim_due(&c, "old", 2_000, 10).unwrap();
        finish(
            &c,
            old[0].delivery,
            &AttemptRecord {
                attempt: 1,
                outcome: "ok".into(),
                ..Default::default()
            },
            Next::Succeeded,
            3_000,
        )
        .unwrap();
        assert_eq!(
            waiting_for_unknown(&c, &["a".into()], 100).unwrap(),
            [("gone".to_string(), 3)]
        );
        assert_eq!(
            waiting_for_unknown(&c, &["a".into()], 2).unwrap(),
            [("gone".to_string(), 2)],
            "the count stops at the cap"
        );
        assert!(
            waiting_for_unknown(&c, &["a".into(), "gone".into()], 100)
                .unwrap()
                .is_empty()
        );
        let plan: String = c
            .query_row(
                "EXPLAIN QUERY PLAN SELECT handler FROM deliveries
                 WHERE status IN ('pending', 'failed') AND handler > '' ORDER BY handler LIMIT 1",
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("deliveries_queue"), "{plan}");
    }

    #[test]
    fn claim_retry_and_die() {
        let (c, ev) = db_with_event(&["h", "other"]);
        let got = claim_due(&c, "h", 2_000, 10).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].attempt, got[0].event, got[0].event_id.as_str()),
            (1, ev, "e1")
        );
        assert!(
            claim_due(&c, "h", 2_000, 10).unwrap().is_empty(),
            "running is not claimed twice"
        );
        finish(&c, got[0].delivery, &fail(1), Next::RetryAt(5_000), 2_100).unwrap();
        assert!(
            claim_due(&c, "h", 4_999, 10).unwrap().is_empty(),
            "not due yet"
        );
        assert_eq!(
            next_due(&c).unwrap(),
            Some(1_000),
            "the other handler's delivery is due"
        );
        let again = claim_due(&c, "h", 5_000, 10).unwrap();
        assert_eq!(again[0].attempt, 2);
        finish(&c, again[0].delivery, &fail(2), Next::Dead, 5_100).unwrap();
        let rows = list(
            &c,
            &DeliveryFilter {
                handler: Some("h".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!((rows[0].status.as_str(), rows[0].attempts), (DEAD, 2));
        assert_eq!(rows[0].last_error.as_deref(), Some("exit 1"));
        assert_eq!(attempts_for_event(&c, ev).unwrap().len(), 2);
        // The tail's view: attempts after a cursor, oldest first.
        let newest = newest_attempt_id(&c).unwrap();
        let ended = attempts_after(&c, 0, (None, None), 10).unwrap();
        assert_eq!(ended.iter().map(|a| a.seq).collect::<Vec<_>>(), [1, newest]);
        assert_eq!(
            (ended[1].attempt.attempt, ended[1].status.as_str()),
            (2, DEAD)
        );
        assert_eq!(attempts_after(&c, 1, (None, None), 10).unwrap().len(), 1);
        assert!(
            attempts_after(&c, 0, (Some("other"), None), 10)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            attempts_after(&c, 0, (None, Some("message.*")), 10)
                .unwrap()
                .len(),
            2
        );
        assert!(
            attempts_after(&c, 0, (None, Some("call.*")), 10)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn claiming_does_not_re_prepare_its_statement() {
        let (c, _) = db_with_event(&["h"]);
        for (now, limit) in [(2_000, 1), (2_001, 4), (2_002, 1)] {
            claim_due(&c, "h", now, limit).unwrap();
        }
        let stmt = c.prepare_cached(CLAIM_SQL).unwrap();
        assert_eq!(stmt.get_status(rusqlite::StatementStatus::RePrepare), 0);
        assert!(stmt.get_status(rusqlite::StatementStatus::Run) >= 3);
        // And the unary pluses keep the queue index in use.
        let plan: Vec<String> = c
            .prepare(&format!("EXPLAIN QUERY PLAN {CLAIM_SQL}"))
            .unwrap()
            .query_map(params!["h", 1, 1, false], |r| r.get(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(
            plan.iter()
                .any(|p| p.contains("deliveries_queue (handler=? AND next_attempt_at<?)")),
            "{plan:?}"
        );
    }

    #[test]
    fn recovery_counts_an_attempt_only_for_runs_that_started() {
        let (c, _) = db_with_event(&["h"]);
        for i in 2..=4 {
            events::insert(&c, &events::tests::event("s", &format!("e{i}"), &["h"])).unwrap();
        }
        let mut got = claim_due(&c, "h", 2_000, 1).unwrap();
        got.extend(claim(&c, "h", 2_000, 2, true).unwrap());
        let ahead: Vec<bool> = got.iter().map(|d| d.ahead).collect();
        assert_eq!(ahead, [false, true, true], "the first starts, two are held");
        // The start log says the second one was started too.
        let started = |id, at| (id, at) == (got[1].delivery, got[1].claimed_at);

        let r = recover_running(&c, 3_000, Some(&started)).unwrap();
        assert_eq!(
            r,
            Recovered {
                interrupted: 2,
                handed_back: 1
            }
        );
        let rows: Vec<(String, i64, i64, i64)> = c
            .prepare(
                "SELECT status, attempts, ahead,
                        (SELECT COUNT(*) FROM attempts a WHERE a.delivery = d.id)
                 FROM deliveries d ORDER BY id",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let interrupted = (FAILED.to_string(), 1, 0, 1);
        let untouched = (PENDING.to_string(), 0, 0, 0);
        assert_eq!(
            rows,
            [
                interrupted.clone(),
                interrupted,
                untouched.clone(),
                untouched
            ]
        );
    }

    /// Every statement the connection holds (its cache included), with how
    /// often SQLite had to compile it again.
    fn reprepares(c: &Connection) -> Vec<(String, i32)> {
        use rusqlite::ffi;
        let mut out = Vec::new();
        // SAFETY: the handle is live for `c`'s lifetime; we only walk its
        // statement list and read status counters and SQL text, on this thread.
        unsafe {
            let db = c.handle();
            let mut s = ffi::sqlite3_next_stmt(db, std::ptr::null_mut());
            while !s.is_null() {
                let n = ffi::sqlite3_stmt_status(s, ffi::SQLITE_STMTSTATUS_REPREPARE, 0);
                let sql = std::ffi::CStr::from_ptr(ffi::sqlite3_sql(s));
                out.push((sql.to_string_lossy().into_owned(), n));
                s = ffi::sqlite3_next_stmt(db, s);
            }
        }
        out
    }

    #[test]
    fn the_dispatch_cycle_never_re_prepares_a_statement() {
        // What a slot does over and over: claim (and load) with new ids,
        // record with every kind of next step, claim again.
        let (c, _) = db_with_event(&["h"]);
        for i in 2..12 {
            let e = events::tests::event("s", &format!("e{i}"), &["h"]);
            events::insert(&c, &e).unwrap();
        }
        let nexts = [
            Next::Succeeded,
            Next::RetryAt(1_000),
            Next::Dead,
            Next::HandBack,
        ];
        for (round, next) in nexts.into_iter().cycle().take(12).enumerate() {
            let now = 2_000 + round as i64;
            for d in claim_due(&c, "h", now, 1 + round % 2).unwrap() {
                finish(&c, d.delivery, &fail(d.attempt), next, now).unwrap();
            }
        }
        let compiled_again: Vec<_> = reprepares(&c).into_iter().filter(|(_, n)| *n > 0).collect();
        assert!(compiled_again.is_empty(), "{compiled_again:#?}");
    }

    #[test]
    fn unclaimed_deliveries_are_as_they_were() {
        let (c, _) = db_with_event(&["h"]);
        let first = claim_due(&c, "h", 2_000, 1).unwrap();
        unclaim(&c, &[first[0].delivery]).unwrap();
        let row = |c: &Connection| -> (String, i64) {
            c.query_row("SELECT status, attempts FROM deliveries", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap()
        };
        assert_eq!(
            row(&c),
            (PENDING.into(), 0),
            "never ran: pending, no attempt"
        );
        let got = claim_due(&c, "h", 2_000, 1).unwrap();
        assert_eq!(got[0].attempt, 1, "the next claim is still attempt 1");
        finish(&c, got[0].delivery, &fail(1), Next::RetryAt(3_000), 2_100).unwrap();
        let again = claim_due(&c, "h", 3_000, 1).unwrap();
        unclaim(&c, &[again[0].delivery]).unwrap();
        assert_eq!(row(&c), (FAILED.into(), 1), "a retry goes back to failed");
        finish(
            &c,
            claim_due(&c, "h", 3_000, 1).unwrap()[0].delivery,
            &fail(2),
            Next::Dead,
            3_100,
        )
        .unwrap();
        unclaim(&c, &[again[0].delivery]).unwrap();
        assert_eq!(row(&c), (DEAD.into(), 2), "only running rows are touched");
        assert!(attempts_for_event(&c, got[0].event).unwrap().len() == 2);
    }

    /// A start from an earlier claim of the same delivery (it ran, failed
    /// and was claimed ahead again) does not count its new claim as run.
    #[test]
    fn recovery_tells_claims_of_one_delivery_apart() {
        let (c, _) = db_with_event(&["h"]);
        let first = claim(&c, "h", 2_000, 1, true).unwrap().remove(0);
        unclaim(&c, &[first.delivery]).unwrap();
        let again = claim(&c, "h", 2_500, 1, true).unwrap().remove(0);
        assert_eq!((again.delivery, again.claimed_at), (first.delivery, 2_500));
        let started = |id, at| (id, at) == (first.delivery, first.claimed_at);
        let r = recover_running(&c, 3_000, Some(&started)).unwrap();
        assert_eq!(
            r,
            Recovered {
                interrupted: 0,
                handed_back: 1
            }
        );
    }

    #[test]
    fn interrupted_runs_come_back_with_a_higher_attempt() {
        let (c, _) = db_with_event(&["h"]);
        claim_due(&c, "h", 2_000, 10).unwrap();
        assert_eq!(
            recover_running(&c, 3_000, Some(&|_, _| false))
                .unwrap()
                .interrupted,
            1
        );
        let again = claim_due(&c, "h", 3_000, 10).unwrap();
        assert_eq!(again[0].attempt, 2);
        let a = attempts_for_event(&c, again[0].event).unwrap();
        assert_eq!(a[0].outcome, "interrupted");
    }

    #[test]
    fn requeue_resets_and_creates() {
        let (c, ev) = db_with_event(&["h"]);
        let d = claim_due(&c, "h", 2_000, 1).unwrap().remove(0);
        assert_eq!(
            requeue(&c, ev, "h", 3_000).unwrap(),
            Requeued::AlreadyRunning
        );
        finish(&c, d.delivery, &fail(1), Next::Dead, 2_500).unwrap();
        assert_eq!(requeue(&c, ev, "h", 3_000).unwrap(), Requeued::Queued);
        assert_eq!(requeue(&c, ev, "new", 3_000).unwrap(), Requeued::Queued);
        let again = claim_due(&c, "h", 3_000, 1).unwrap().remove(0);
        assert!(again.replay);
        assert_eq!(again.attempt, 1);
        assert_eq!(claim_due(&c, "new", 3_000, 1).unwrap().len(), 1);
        assert_eq!(pairs_with_status(&c, RUNNING, None).unwrap().len(), 2);
    }
}
