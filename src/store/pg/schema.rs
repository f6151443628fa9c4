//! The PostgreSQL schema and its migrations.
//!
//! `hookd_schema` holds the version. Migrations run in one transaction
//! under a transaction-level advisory lock, so replicas starting together
//! on an empty database wait for each other: one migrates, the others see
//! the new version and do nothing. DDL is transactional in PostgreSQL, so a
//! failed migration leaves the database at the version it had. Never edit
//! a released migration; append a new one.
//!
//! The tables match the SQLite schema column for column (so a store can be
//! copied between them), with PostgreSQL types, plus the lease of a
//! running delivery (`lease_owner`, `lease_until`).

use tokio_postgres::Client;

/// Key of the advisory lock that serialises migrations ("hookd" in ASCII).
const MIGRATION_LOCK: i64 = 0x686f6f6b64;

const MIGRATIONS: &[&str] = &[
    // 1: the whole schema as of SQLite version 5, plus leases.
    r#"
    CREATE TABLE events (
        id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        source        TEXT    NOT NULL,
        provider      TEXT    NOT NULL,
        event_id      TEXT    NOT NULL,
        id_synthetic  BOOLEAN NOT NULL DEFAULT FALSE,
        type          TEXT    NOT NULL,
        type_raw      TEXT    NOT NULL,
        occurred_at   BIGINT,
        received_at   BIGINT  NOT NULL,
        headers       TEXT    NOT NULL,
        body          BYTEA   NOT NULL,
        verified      TEXT    NOT NULL,
        routed        INTEGER NOT NULL DEFAULT 0,
        duplicates    INTEGER NOT NULL DEFAULT 0,
        UNIQUE (source, event_id)
    );
    CREATE INDEX events_received_at ON events (received_at);

    CREATE TABLE deliveries (
        id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        event           BIGINT  NOT NULL REFERENCES events (id) ON DELETE CASCADE,
        handler         TEXT    NOT NULL,
        status          TEXT    NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at BIGINT  NOT NULL,
        replay          BOOLEAN NOT NULL DEFAULT FALSE,
        updated_at      BIGINT  NOT NULL,
        last_error      TEXT,
        ahead           BOOLEAN NOT NULL DEFAULT FALSE,
        lease_owner     TEXT,
        lease_until     BIGINT,
        UNIQUE (event, handler)
    );
    CREATE INDEX deliveries_queue ON deliveries (handler, next_attempt_at, id)
        WHERE status IN ('pending', 'failed');
    CREATE INDEX deliveries_waiting ON deliveries (next_attempt_at, updated_at)
        WHERE status IN ('pending', 'failed');
    CREATE INDEX deliveries_running ON deliveries (updated_at)
        WHERE status = 'running';
    CREATE INDEX deliveries_leases ON deliveries (lease_until)
        WHERE status = 'running';

    CREATE TABLE attempts (
        id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        delivery         BIGINT  NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
        attempt          INTEGER NOT NULL,
        replay           BOOLEAN NOT NULL DEFAULT FALSE,
        started_at       BIGINT  NOT NULL,
        duration_us      BIGINT  NOT NULL,
        outcome          TEXT    NOT NULL,
        exit_code        INTEGER,
        signal           INTEGER,
        stdout           BYTEA,
        stderr           BYTEA,
        stdout_truncated BOOLEAN NOT NULL DEFAULT FALSE,
        stderr_truncated BOOLEAN NOT NULL DEFAULT FALSE,
        http_status      INTEGER
    );
    CREATE INDEX attempts_delivery ON attempts (delivery);

    CREATE TABLE rejected (
        id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        source      TEXT,
        path        TEXT    NOT NULL,
        status      INTEGER NOT NULL,
        reason      TEXT    NOT NULL,
        code        TEXT    NOT NULL,
        received_at BIGINT  NOT NULL,
        remote      TEXT,
        headers     TEXT    NOT NULL,
        body        BYTEA   NOT NULL,
        body_len    BIGINT  NOT NULL
    );

    CREATE TABLE cursors (
        source        TEXT PRIMARY KEY,
        cursor        TEXT,
        updated_at    BIGINT NOT NULL,
        position_at   BIGINT,
        last_event_id TEXT
    );

    CREATE TABLE subscriptions (
        source     TEXT PRIMARY KEY,
        provider   TEXT   NOT NULL,
        remote_id  TEXT,
        secret     BYTEA,
        info       TEXT   NOT NULL DEFAULT '{}',
        updated_at BIGINT NOT NULL
    );

    CREATE TABLE pull_status (
        source        TEXT PRIMARY KEY,
        mode          TEXT    NOT NULL,
        state         TEXT    NOT NULL,
        state_since   BIGINT  NOT NULL,
        last_event_at BIGINT,
        events        BIGINT  NOT NULL DEFAULT 0,
        reconnects    BIGINT  NOT NULL DEFAULT 0,
        polls         BIGINT  NOT NULL DEFAULT 0,
        last_error    TEXT,
        last_error_at BIGINT,
        updated_at    BIGINT  NOT NULL
    );
    "#,
];

/// The version this build writes.
pub const VERSION: i32 = MIGRATIONS.len() as i32;

/// Brings the database up to [`VERSION`], once across replicas. Refuses a
/// database from a newer hookd. Returns the version found before.
pub async fn migrate(client: &mut Client) -> Result<i32, String> {
    let fail = |what: &str, e: tokio_postgres::Error| format!("{what}: {}", super::describe(&e));
    let tx = client
        .transaction()
        .await
        .map_err(|e| fail("cannot start the migration", e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|e| fail("cannot take the migration lock", e))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS hookd_schema (
             one     BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
             version INTEGER NOT NULL)",
    )
    .await
    .map_err(|e| fail("cannot create hookd_schema", e))?;
    let found: i32 = tx
        .query_opt("SELECT version FROM hookd_schema", &[])
        .await
        .map_err(|e| fail("cannot read the schema version", e))?
        .map_or(0, |r| r.get(0));
    if found > VERSION {
        return Err(format!(
            "the database has schema version {found}, newer than this hookd understands ({VERSION}); use a newer hookd"
        ));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = i as i32 + 1;
        tx.batch_execute(sql)
            .await
            .map_err(|e| fail(&format!("migration to schema version {version} failed"), e))?;
    }
    tx.execute(
        "INSERT INTO hookd_schema (version) VALUES ($1)
         ON CONFLICT (one) DO UPDATE SET version = EXCLUDED.version",
        &[&VERSION],
    )
    .await
    .map_err(|e| fail("cannot record the schema version", e))?;
    tx.commit()
        .await
        .map_err(|e| fail("cannot commit the migration", e))?;
    Ok(found)
}
