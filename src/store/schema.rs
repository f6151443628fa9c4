//! The SQLite schema and its migrations.
//!
//! `PRAGMA user_version` holds the schema version. Each migration is one
//! batch of SQL applied in a transaction together with the version bump, so
//! a database is always at exactly one version. Never edit a released
//! migration; append a new one.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: events, deliveries with their attempts, refused requests, pull
    //    cursors, and what providers told us at registration.
    r#"
    CREATE TABLE events (
        id            INTEGER PRIMARY KEY,
        source        TEXT    NOT NULL,
        provider      TEXT    NOT NULL,
        event_id      TEXT    NOT NULL,
        id_synthetic  INTEGER NOT NULL DEFAULT 0,
        type          TEXT    NOT NULL,
        type_raw      TEXT    NOT NULL,
        occurred_at   INTEGER,
        received_at   INTEGER NOT NULL,
        headers       TEXT    NOT NULL,
        body          BLOB    NOT NULL,
        verified      TEXT    NOT NULL,
        routed        INTEGER NOT NULL DEFAULT 0,
        duplicates    INTEGER NOT NULL DEFAULT 0,
        UNIQUE (source, event_id)
    );
    CREATE INDEX events_received_at ON events (received_at);

    CREATE TABLE deliveries (
        id              INTEGER PRIMARY KEY,
        event           INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
        handler         TEXT    NOT NULL,
        status          TEXT    NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        replay          INTEGER NOT NULL DEFAULT 0,
        updated_at      INTEGER NOT NULL,
        last_error      TEXT,
        UNIQUE (event, handler)
    );
    CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
    CREATE INDEX deliveries_handler ON deliveries (handler, status);

    CREATE TABLE attempts (
        id               INTEGER PRIMARY KEY,
        delivery         INTEGER NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
        attempt          INTEGER NOT NULL,
        replay           INTEGER NOT NULL DEFAULT 0,
        started_at       INTEGER NOT NULL,
        duration_us      INTEGER NOT NULL,
        outcome          TEXT    NOT NULL,
        exit_code        INTEGER,
        signal           INTEGER,
        stdout           BLOB,
        stderr           BLOB,
        stdout_truncated INTEGER NOT NULL DEFAULT 0,
        stderr_truncated INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX attempts_delivery ON attempts (delivery);

    CREATE TABLE rejected (
        id          INTEGER PRIMARY KEY,
        source      TEXT,
        path        TEXT    NOT NULL,
        status      INTEGER NOT NULL,
        reason      TEXT    NOT NULL,
        code        TEXT    NOT NULL,
        received_at INTEGER NOT NULL,
        remote      TEXT,
        headers     TEXT    NOT NULL,
        body        BLOB    NOT NULL,
        body_len    INTEGER NOT NULL
    );

    CREATE TABLE cursors (
        source     TEXT PRIMARY KEY,
        cursor     TEXT,
        updated_at INTEGER NOT NULL
    );

    CREATE TABLE subscriptions (
        source     TEXT PRIMARY KEY,
        provider   TEXT    NOT NULL,
        remote_id  TEXT,
        secret     BLOB,
        info       TEXT    NOT NULL DEFAULT '{}',
        updated_at INTEGER NOT NULL
    );
    "#,
    // 2: the queue index. Claiming walks one handler's queued deliveries in
    //    due order; without this SQLite sorted every queued row per claim.
    r#"
    CREATE INDEX deliveries_queue ON deliveries (handler, next_attempt_at, id)
        WHERE status IN ('pending', 'failed');
    "#,
    // 3: pull sources. A cursor row also holds the time up to which a
    //    source has everything (`position_at`, where a backfill starts) and
    //    the SSE Last-Event-ID; both are written with the events they cover.
    //    `pull_status` is what an operator sees per SSE/poll source.
    r#"
    ALTER TABLE cursors ADD COLUMN position_at INTEGER;
    ALTER TABLE cursors ADD COLUMN last_event_id TEXT;

    CREATE TABLE pull_status (
        source        TEXT PRIMARY KEY,
        mode          TEXT    NOT NULL,
        state         TEXT    NOT NULL,
        state_since   INTEGER NOT NULL,
        last_event_at INTEGER,
        events        INTEGER NOT NULL DEFAULT 0,
        reconnects    INTEGER NOT NULL DEFAULT 0,
        polls         INTEGER NOT NULL DEFAULT 0,
        last_error    TEXT,
        last_error_at INTEGER,
        updated_at    INTEGER NOT NULL
    );
    "#,
    // 4: only open deliveries are indexed by state. A finished delivery
    //    (succeeded, dead) leaves the indexes instead of moving inside two
    //    full ones, which halves the B-tree work of each handler run. The
    //    CLI's filters on finished deliveries scan the table instead.
    r#"
    DROP INDEX deliveries_due;
    DROP INDEX deliveries_handler;
    CREATE INDEX deliveries_waiting ON deliveries (next_attempt_at, updated_at)
        WHERE status IN ('pending', 'failed');
    CREATE INDEX deliveries_running ON deliveries (updated_at)
        WHERE status = 'running';
    "#,
    // 5: a slot claims deliveries ahead of running them. `ahead = 1` marks
    //    a running row whose handler has not been started yet, so recovery
    //    after a crash hands it back instead of counting an attempt that
    //    never ran.
    r#"
    ALTER TABLE deliveries ADD COLUMN ahead INTEGER NOT NULL DEFAULT 0;
    "#,
    // 6: http handlers. An attempt records the answer's status; its body
    //    goes where an exec run's stdout does.
    r#"
    ALTER TABLE attempts ADD COLUMN http_status INTEGER;
    "#,
];

/// The version this build writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to [`VERSION`]. Refuses a database from a newer hookd.
pub fn migrate(conn: &mut Connection) -> Result<i64, String> {
    let current: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| format!("cannot read the schema version: {e}"))?;
    if current > VERSION {
        return Err(format!(
            "the database has schema version {current}, newer than this hookd understands ({VERSION}); use a newer hookd"
        ));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = i as i64 + 1;
        let tx = conn.transaction().map_err(|e| e.to_string())?;
        tx.execute_batch(sql)
            .and_then(|_| tx.pragma_update(None, "user_version", version))
            .and_then(|_| tx.commit())
            .map_err(|e| format!("migration to schema version {version} failed: {e}"))?;
    }
    Ok(VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_newer() {
        let mut c = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut c).unwrap(), VERSION);
        assert_eq!(migrate(&mut c).unwrap(), VERSION);
        c.pragma_update(None, "user_version", VERSION + 1).unwrap();
        assert!(migrate(&mut c).unwrap_err().contains("newer"));
    }
}
