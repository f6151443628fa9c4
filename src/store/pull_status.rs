//! What each SSE and poll source is doing, for operators.
//!
//! The daemon writes a row per pull source on every state change (connect,
//! disconnect, error, stop) and counts events in the same job that stores
//! them; any CLI verb (`hookd subscriptions`) reads it with [`list`], joined
//! with the source's position, so no running daemon has to be asked.

use rusqlite::{Connection, params};
use serde::Serialize;

use super::Result;
use crate::timefmt;

/// What a pull source is doing now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Opening the stream (or about to make the first poll).
    Connecting,
    /// SSE stream open.
    Connected,
    /// A poll is running.
    Polling,
    /// Between polls; the last one succeeded.
    Idle,
    /// Waiting to retry after an error.
    Backoff,
    /// No webhook id yet (`hookd register` or `webhook_id`).
    WaitingForId,
    /// Stopped for good (401/403/404): needs the operator.
    Stopped,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Connecting => "connecting",
            State::Connected => "connected",
            State::Polling => "polling",
            State::Idle => "idle",
            State::Backoff => "backoff",
            State::WaitingForId => "waiting_for_id",
            State::Stopped => "stopped",
        }
    }
}

/// One pull source as `hookd subscriptions` shows it. Times are RFC 3339.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct PullStatus {
    pub source: String,
    pub mode: String,
    pub state: String,
    /// The stream is open (SSE) or the last poll succeeded (poll).
    pub connected: bool,
    pub state_since: String,
    pub last_event_at: Option<String>,
    pub events: i64,
    pub reconnects: i64,
    pub polls: i64,
    pub cursor: Option<String>,
    pub position_at: Option<String>,
    pub last_event_id: Option<String>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
}

/// Records a state; `state_since` moves only when the state changes.
pub fn set_state(
    conn: &Connection,
    source: &str,
    mode: &str,
    state: State,
    now: i64,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO pull_status (source, mode, state, state_since, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT (source) DO UPDATE SET mode = excluded.mode, state = excluded.state,
             state_since = CASE WHEN pull_status.state = excluded.state
                                THEN pull_status.state_since ELSE excluded.state_since END,
             updated_at = excluded.updated_at",
    )?
    .execute(params![source, mode, state.name(), now])?;
    Ok(())
}

/// Records a state together with the error that caused it.
pub fn set_error(
    conn: &Connection,
    source: &str,
    mode: &str,
    state: State,
    error: &str,
    now: i64,
) -> Result<()> {
    set_state(conn, source, mode, state, now)?;
    conn.prepare_cached(
        "UPDATE pull_status SET last_error = ?2, last_error_at = ?3 WHERE source = ?1",
    )?
    .execute(params![source, error, now])?;
    Ok(())
}

/// Counters moved by a batch or a request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub events: i64,
    pub polls: i64,
    pub reconnects: i64,
    /// Newest event time of the batch (unix µs).
    pub last_event_at: Option<i64>,
}

pub fn count(conn: &Connection, source: &str, c: &Counts, now: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE pull_status SET events = events + ?2, polls = polls + ?3,
             reconnects = reconnects + ?4,
             last_event_at = COALESCE(MAX(last_event_at, ?5), ?5, last_event_at),
             updated_at = ?6
         WHERE source = ?1",
    )?
    .execute(params![
        source,
        c.events,
        c.polls,
        c.reconnects,
        c.last_event_at,
        now
    ])?;
    Ok(())
}

/// Whether a source in `state` is connected: its stream is open (SSE) or
/// its last poll succeeded (poll).
pub fn is_connected(state: &str) -> bool {
    ["connected", "polling", "idle"].contains(&state)
}

/// Every pull source's status with its position, by name.
pub fn list(conn: &Connection) -> Result<Vec<PullStatus>> {
    let mut stmt = conn.prepare_cached(
        "SELECT s.source, s.mode, s.state, s.state_since, s.last_event_at, s.events,
                s.reconnects, s.polls, c.cursor, c.position_at, c.last_event_id,
                s.last_error, s.last_error_at
         FROM pull_status s LEFT JOIN cursors c ON c.source = s.source
         ORDER BY s.source",
    )?;
    let time = |v: Option<i64>| v.map(timefmt::format_micros);
    let rows = stmt.query_map([], |r| {
        let state: String = r.get(2)?;
        Ok(PullStatus {
            source: r.get(0)?,
            mode: r.get(1)?,
            connected: is_connected(&state),
            state,
            state_since: timefmt::format_micros(r.get(3)?),
            last_event_at: time(r.get(4)?),
            events: r.get(5)?,
            reconnects: r.get(6)?,
            polls: r.get(7)?,
            cursor: r.get(8)?,
            position_at: time(r.get(9)?),
            last_event_id: r.get(10)?,
            last_error: r.get(11)?,
            last_error_at: time(r.get(12)?),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Forgets the status of sources that are no longer pull sources (their
/// cursors stay, in case they come back).
pub fn retain(conn: &Connection, names: &[String]) -> Result<usize> {
    let keep = serde_json::to_string(names).unwrap_or_else(|_| "[]".into());
    Ok(conn.execute(
        "DELETE FROM pull_status WHERE source NOT IN (SELECT value FROM json_each(?1))",
        [keep],
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::cursors;

    #[test]
    fn states_counts_errors_and_positions_are_listed() {
        let mut c = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut c).unwrap();
        set_state(&c, "a", "sse", State::Connecting, 10).unwrap();
        set_state(&c, "a", "sse", State::Connected, 20).unwrap();
        set_state(&c, "a", "sse", State::Connected, 30).unwrap();
        count(
            &c,
            "a",
            &Counts {
                events: 3,
                last_event_at: Some(25),
                ..Default::default()
            },
            30,
        )
        .unwrap();
        count(
            &c,
            "a",
            &Counts {
                reconnects: 1,
                ..Default::default()
            },
            31,
        )
        .unwrap();
        cursors::advance(
            &c,
            "a",
            &cursors::Advance {
                last_event_id: Some("7".into()),
                ..Default::default()
            },
            30,
        )
        .unwrap();
        set_error(&c, "b", "poll", State::Stopped, "401 Unauthorized", 40).unwrap();
        let rows = list(&c).unwrap();
        assert_eq!(rows.len(), 2);
        let a = &rows[0];
        assert_eq!((a.state.as_str(), a.connected), ("connected", true));
        assert_eq!(a.state_since, timefmt::format_micros(20));
        assert_eq!((a.events, a.reconnects), (3, 1));
        assert_eq!(a.last_event_at, Some(timefmt::format_micros(25)));
        assert_eq!(a.last_event_id.as_deref(), Some("7"));
        let b = &rows[1];
        assert!(!b.connected);
        assert_eq!(b.last_error.as_deref(), Some("401 Unauthorized"));
        assert_eq!(retain(&c, &["b".to_string()]).unwrap(), 1);
        assert_eq!(list(&c).unwrap().len(), 1);
    }
}
