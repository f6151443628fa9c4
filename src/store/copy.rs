//! `hookd store copy`: moves a SQLite store (the state directory's
//! `hookd.db`) into PostgreSQL, so a user who started on one machine can
//! run replicas without losing history.
//!
//! Every table goes: events (ids, dedup keys, bodies, headers, times),
//! deliveries with their state, attempts, refused requests, pull cursors
//! and pull status, and saved registrations with the secrets providers
//! issued. Ids are kept, so `hookd events show ID` shows the same event on
//! both; the PostgreSQL id sequences then continue after the highest copied
//! id. A delivery that was running when the SQLite store was last written
//! is copied with a lease that has already ended, so the first replica
//! counts it as interrupted and runs it again, as a restarted SQLite daemon
//! would.
//!
//! It all happens in one PostgreSQL transaction: an error leaves the target
//! as it was. SQLite is read in one read transaction (a consistent
//! snapshot, streamed in chunks rather than held in memory), and if
//! anything else committed to it while the copy ran (a daemon still
//! running), the PostgreSQL transaction is rolled back and the copy
//! refused: stop `hookd run` first. A target that holds any row is refused
//! unless the caller asks to replace it ([`Target::Replace`]).

use std::path::Path;

use deadpool_postgres::Object;
use futures_util::pin_mut;
use rusqlite::types::ValueRef;
use tokio::sync::mpsc;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use super::pg::{connect, describe, schema as pg_schema};

/// What may be in the PostgreSQL store before the copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Nothing: a target with any row is refused.
    MustBeEmpty,
    /// Anything: it is deleted first (in the same transaction).
    Replace,
}

/// How a column is read from SQLite and written to PostgreSQL.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Int8,
    Int4,
    /// SQLite INTEGER 0/1.
    Bool,
    Text,
    Bytea,
}

impl Kind {
    fn pg_type(self) -> Type {
        match self {
            Kind::Int8 => Type::INT8,
            Kind::Int4 => Type::INT4,
            Kind::Bool => Type::BOOL,
            Kind::Text => Type::TEXT,
            Kind::Bytea => Type::BYTEA,
        }
    }
}

/// One table: its PostgreSQL columns, and for each the SQLite expression
/// that fills it (the column itself, except for the lease of a running
/// delivery, which SQLite does not have).
struct Table {
    name: &'static str,
    /// What one row and several are called in the summary.
    label: (&'static str, &'static str),
    columns: &'static [(&'static str, &'static str, Kind)],
    order: &'static str,
    /// Has an identity `id` whose sequence must continue after the copy.
    identity: bool,
}

impl Table {
    /// "event" or "events", for `n` rows.
    fn counted(&self, n: u64) -> &'static str {
        if n == 1 { self.label.0 } else { self.label.1 }
    }
}

use Kind::*;

/// In an order that satisfies the foreign keys.
const TABLES: &[Table] = &[
    Table {
        name: "events",
        label: ("event", "events"),
        columns: &[
            ("id", "id", Int8),
            ("source", "source", Text),
            ("provider", "provider", Text),
            ("event_id", "event_id", Text),
            ("id_synthetic", "id_synthetic", Bool),
            ("type", "type", Text),
            ("type_raw", "type_raw", Text),
            ("occurred_at", "occurred_at", Int8),
            ("received_at", "received_at", Int8),
            ("headers", "headers", Text),
            ("body", "body", Bytea),
            ("verified", "verified", Text),
            ("routed", "routed", Int4),
            ("duplicates", "duplicates", Int4),
        ],
        order: "id",
        identity: true,
    },
    Table {
        name: "deliveries",
        label: ("delivery", "deliveries"),
        columns: &[
            ("id", "id", Int8),
            ("event", "event", Int8),
            ("handler", "handler", Text),
            ("status", "status", Text),
            ("attempts", "attempts", Int4),
            ("next_attempt_at", "next_attempt_at", Int8),
            ("replay", "replay", Bool),
            ("updated_at", "updated_at", Int8),
            ("last_error", "last_error", Text),
            ("ahead", "ahead", Bool),
            (
                "lease_owner",
                "CASE WHEN status = 'running' THEN 'hookd store copy' END",
                Text,
            ),
            (
                "lease_until",
                "CASE WHEN status = 'running' THEN 0 END",
                Int8,
            ),
        ],
        order: "id",
        identity: true,
    },
    Table {
        name: "attempts",
        label: ("attempt", "attempts"),
        columns: &[
            ("id", "id", Int8),
            ("delivery", "delivery", Int8),
            ("attempt", "attempt", Int4),
            ("replay", "replay", Bool),
            ("started_at", "started_at", Int8),
            ("duration_us", "duration_us", Int8),
            ("outcome", "outcome", Text),
            ("exit_code", "exit_code", Int4),
            ("signal", "signal", Int4),
            ("stdout", "stdout", Bytea),
            ("stderr", "stderr", Bytea),
            ("stdout_truncated", "stdout_truncated", Bool),
            ("stderr_truncated", "stderr_truncated", Bool),
            ("http_status", "http_status", Int4),
        ],
        order: "id",
        identity: true,
    },
    Table {
        name: "rejected",
        label: ("refused request", "refused requests"),
        columns: &[
            ("id", "id", Int8),
            ("source", "source", Text),
            ("path", "path", Text),
            ("status", "status", Int4),
            ("reason", "reason", Text),
            ("code", "code", Text),
            ("received_at", "received_at", Int8),
            ("remote", "remote", Text),
            ("headers", "headers", Text),
            ("body", "body", Bytea),
            ("body_len", "body_len", Int8),
        ],
        order: "id",
        identity: true,
    },
    Table {
        name: "cursors",
        label: ("pull cursor", "pull cursors"),
        columns: &[
            ("source", "source", Text),
            ("cursor", "cursor", Text),
            ("updated_at", "updated_at", Int8),
            ("position_at", "position_at", Int8),
            ("last_event_id", "last_event_id", Text),
        ],
        order: "source",
        identity: false,
    },
    Table {
        name: "pull_status",
        label: ("pull status", "pull statuses"),
        columns: &[
            ("source", "source", Text),
            ("mode", "mode", Text),
            ("state", "state", Text),
            ("state_since", "state_since", Int8),
            ("last_event_at", "last_event_at", Int8),
            ("events", "events", Int8),
            ("reconnects", "reconnects", Int8),
            ("polls", "polls", Int8),
            ("last_error", "last_error", Text),
            ("last_error_at", "last_error_at", Int8),
            ("updated_at", "updated_at", Int8),
        ],
        order: "source",
        identity: false,
    },
    Table {
        name: "subscriptions",
        label: ("saved registration", "saved registrations"),
        columns: &[
            ("source", "source", Text),
            ("provider", "provider", Text),
            ("remote_id", "remote_id", Text),
            ("secret", "secret", Bytea),
            ("info", "info", Text),
            ("updated_at", "updated_at", Int8),
        ],
        order: "source",
        identity: false,
    },
];

/// Rows sent from the SQLite reader at a time (or fewer, past [`CHUNK_BYTES`]).
const CHUNK_ROWS: usize = 1000;
const CHUNK_BYTES: usize = 8 << 20;

/// How many rows of each table were copied, in the order the tables are copied, each
/// with what the rows are called ("events", "saved registration").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Copied {
    pub tables: Vec<(&'static str, u64)>,
}

type Value = Box<dyn ToSql + Send + Sync>;
type Row = Vec<Value>;

/// What the SQLite reader sends.
enum Msg {
    Rows(Vec<Row>),
    /// The current table is done.
    TableEnd,
    /// Everything was read; true when another connection committed to the
    /// SQLite store while it was being read.
    Done {
        changed: bool,
    },
}

/// Copies the SQLite store at `sqlite` into the PostgreSQL store at `url`
/// (migrating it first if it is new). `url` is a resolved `postgres://`
/// URL; messages name its database and host, never its password.
pub async fn copy(
    sqlite: &Path,
    url: &str,
    ca: &connect::ExtraRoots,
    target: Target,
) -> Result<Copied, String> {
    if !sqlite.exists() {
        return Err(format!(
            "no SQLite store at {} (has `hookd run` been started with this config?)",
            sqlite.display()
        ));
    }
    let cfg = connect::parse_url(url)?;
    let name = connect::describe_target(&cfg);
    let pool = connect::pool(&cfg, 1, ca)?;
    let mut client: Object = pool
        .get()
        .await
        .map_err(|e| format!("cannot connect to {name}: {}", pool_error(&e)))?;
    pg_schema::migrate(&mut client)
        .await
        .map_err(|e| format!("{name}: {e}"))?;

    let fail = |what: &str, e: tokio_postgres::Error| format!("{name}: {what}: {}", describe(&e));
    let tx = client
        .transaction()
        .await
        .map_err(|e| fail("cannot start the copy", e))?;
    let all = TABLES.iter().map(|t| t.name).collect::<Vec<_>>().join(", ");
    match target {
        Target::Replace => {
            tx.batch_execute(&format!("TRUNCATE {all} RESTART IDENTITY"))
                .await
                .map_err(|e| fail("cannot empty the store", e))?;
        }
        Target::MustBeEmpty => {
            // Replicas running on the target wait until the copy ends.
            tx.batch_execute(&format!("LOCK TABLE {all} IN EXCLUSIVE MODE"))
                .await
                .map_err(|e| fail("cannot lock the tables", e))?;
            let held = held(&tx).await.map_err(|e| fail("cannot count rows", e))?;
            if !held.is_empty() {
                return Err(format!(
                    "{name} is not empty (it holds {}); copying would mix two stores. Copy into an empty database, or pass --replace to delete what it holds first",
                    held.join(", ")
                ));
            }
        }
    }

    let (tx_rows, mut rx_rows) = mpsc::channel::<Result<Msg, String>>(4);
    let path = sqlite.to_path_buf();
    let reader = tokio::task::spawn_blocking(move || read_sqlite(&path, &tx_rows));
    let mut copied = Copied::default();
    for t in TABLES {
        let n = write_table(&tx, t, &mut rx_rows)
            .await
            .map_err(|e| format!("{name}: cannot copy {}: {e}", t.name))?;
        copied.tables.push((t.counted(n), n));
    }
    let changed = match rx_rows.recv().await {
        Some(Ok(Msg::Done { changed })) => changed,
        Some(Err(e)) => return Err(e),
        _ => return Err("the SQLite reader stopped early".into()),
    };
    reader
        .await
        .map_err(|e| format!("the SQLite reader failed: {e}"))?;
    if changed {
        return Err(format!(
            "{} changed while it was being copied (is `hookd run` still running on it?); nothing was copied: stop the daemon and copy again",
            sqlite.display()
        ));
    }
    for t in TABLES.iter().filter(|t| t.identity) {
        // The next id after the highest copied one (1 when none).
        tx.execute(
            &format!(
                "SELECT setval(pg_get_serial_sequence('{0}', 'id'), COALESCE(MAX(id), 0) + 1, false) FROM {0}",
                t.name
            ),
            &[],
        )
        .await
        .map_err(|e| fail(&format!("cannot move the id sequence of {}", t.name), e))?;
    }
    tx.commit()
        .await
        .map_err(|e| fail("cannot commit the copy", e))?;
    Ok(copied)
}

/// "3 events, 1 saved registration": the tables of the target that hold rows.
async fn held(
    tx: &deadpool_postgres::Transaction<'_>,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let mut out = Vec::new();
    for t in TABLES {
        let n: i64 = tx
            .query_one(&format!("SELECT COUNT(*) FROM {}", t.name), &[])
            .await?
            .get(0);
        if n > 0 {
            out.push(format!("{n} {}", t.counted(n as u64)));
        }
    }
    Ok(out)
}

/// Streams one table's rows from the reader into `COPY … FROM STDIN`.
async fn write_table(
    tx: &deadpool_postgres::Transaction<'_>,
    t: &Table,
    rx: &mut mpsc::Receiver<Result<Msg, String>>,
) -> Result<u64, String> {
    let cols = t.columns.iter().map(|c| c.0).collect::<Vec<_>>().join(", ");
    let types: Vec<Type> = t.columns.iter().map(|c| c.2.pg_type()).collect();
    let sink = tx
        .copy_in(&format!("COPY {} ({cols}) FROM STDIN BINARY", t.name))
        .await
        .map_err(|e| describe(&e))?;
    let writer = BinaryCopyInWriter::new(sink, &types);
    pin_mut!(writer);
    loop {
        match rx.recv().await {
            Some(Ok(Msg::Rows(rows))) => {
                for row in rows {
                    let refs: Vec<&(dyn ToSql + Sync)> = row
                        .iter()
                        .map(|v| v.as_ref() as &(dyn ToSql + Sync))
                        .collect();
                    writer
                        .as_mut()
                        .write(&refs)
                        .await
                        .map_err(|e| describe(&e))?;
                }
            }
            Some(Ok(Msg::TableEnd)) => break,
            Some(Ok(Msg::Done { .. })) => return Err("the SQLite reader ended early".into()),
            Some(Err(e)) => return Err(e),
            None => return Err("the SQLite reader stopped".into()),
        }
    }
    writer.finish().await.map_err(|e| describe(&e))
}

/// Reads every table of [`TABLES`] in one read transaction and sends the
/// rows in chunks; ends with whether the store changed meanwhile.
fn read_sqlite(path: &Path, out: &mpsc::Sender<Result<Msg, String>>) {
    let send = |m: Result<Msg, String>| out.blocking_send(m).is_ok();
    let what = |e: &dyn std::fmt::Display| format!("cannot read {}: {e}", path.display());
    let mut conn = match super::connect(path, false) {
        Ok(c) => c,
        Err(e) => {
            send(Err(what(&e)));
            return;
        }
    };
    // A store from an older hookd gets the columns this one copies.
    if let Err(e) = super::schema::migrate(&mut conn) {
        send(Err(what(&e)));
        return;
    }
    let version = |c: &rusqlite::Connection| -> rusqlite::Result<i64> {
        c.query_row("PRAGMA data_version", [], |r| r.get(0))
    };
    let result = (|| -> Result<bool, String> {
        let before = version(&conn).map_err(|e| what(&e))?;
        let snapshot = conn.transaction().map_err(|e| what(&e))?;
        for t in TABLES {
            if !read_table(&snapshot, t, &send).map_err(|e| what(&e))? {
                return Ok(false);
            }
            if !send(Ok(Msg::TableEnd)) {
                return Ok(false);
            }
        }
        snapshot.commit().map_err(|e| what(&e))?;
        let after = version(&conn).map_err(|e| what(&e))?;
        Ok(before != after)
    })();
    match result {
        Ok(changed) => {
            send(Ok(Msg::Done { changed }));
        }
        Err(e) => {
            send(Err(e));
        }
    }
}

/// Sends one table's rows; false when the receiver is gone.
fn read_table(
    conn: &rusqlite::Connection,
    t: &Table,
    send: &impl Fn(Result<Msg, String>) -> bool,
) -> rusqlite::Result<bool> {
    let exprs = t.columns.iter().map(|c| c.1).collect::<Vec<_>>().join(", ");
    let mut stmt = conn.prepare(&format!(
        "SELECT {exprs} FROM {} ORDER BY {}",
        t.name, t.order
    ))?;
    let mut rows = stmt.query([])?;
    let mut chunk: Vec<Row> = Vec::new();
    let mut bytes = 0;
    while let Some(r) = rows.next()? {
        let mut row: Row = Vec::with_capacity(t.columns.len());
        for (i, (col, _, kind)) in t.columns.iter().enumerate() {
            let v = r.get_ref(i)?;
            bytes += match v {
                ValueRef::Text(b) | ValueRef::Blob(b) => b.len(),
                _ => 8,
            };
            row.push(value(v, *kind).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    i,
                    v.data_type(),
                    format!("{}.{col}: {e}", t.name).into(),
                )
            })?);
        }
        chunk.push(row);
        if chunk.len() >= CHUNK_ROWS || bytes >= CHUNK_BYTES {
            if !send(Ok(Msg::Rows(std::mem::take(&mut chunk)))) {
                return Ok(false);
            }
            bytes = 0;
        }
    }
    Ok(chunk.is_empty() || send(Ok(Msg::Rows(chunk))))
}

/// One SQLite value as the PostgreSQL column wants it.
fn value(v: ValueRef<'_>, kind: Kind) -> Result<Value, String> {
    let int = |v: ValueRef<'_>| -> Result<Option<i64>, String> {
        match v {
            ValueRef::Null => Ok(None),
            ValueRef::Integer(i) => Ok(Some(i)),
            other => Err(format!(
                "expected an integer, found {:?}",
                other.data_type()
            )),
        }
    };
    let bytes = |v: ValueRef<'_>| -> Result<Option<Vec<u8>>, String> {
        match v {
            ValueRef::Null => Ok(None),
            ValueRef::Text(b) | ValueRef::Blob(b) => Ok(Some(b.to_vec())),
            other => Err(format!(
                "expected text or bytes, found {:?}",
                other.data_type()
            )),
        }
    };
    Ok(match kind {
        Int8 => Box::new(int(v)?),
        Int4 => Box::new(
            int(v)?
                .map(i32::try_from)
                .transpose()
                .map_err(|_| "a number too large for the column".to_string())?,
        ),
        Bool => Box::new(int(v)?.map(|i| i != 0)),
        Bytea => Box::new(bytes(v)?),
        Text => Box::new(
            bytes(v)?
                .map(String::from_utf8)
                .transpose()
                .map_err(|_| "text that is not UTF-8".to_string())?,
        ),
    })
}

fn pool_error(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => describe(e),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The copy's check for a daemon still writing: another connection's
    /// commit between two reads of `data_version` changes it; this
    /// connection's own reads do not.
    #[test]
    fn data_version_sees_another_connections_commit() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::prepare_state_dir(dir.path()).unwrap();
        let mut a = crate::store::connect(&db, false).unwrap();
        crate::store::schema::migrate(&mut a).unwrap();
        let b = crate::store::connect(&db, false).unwrap();
        let v = |c: &rusqlite::Connection| -> i64 {
            c.query_row("PRAGMA data_version", [], |r| r.get(0))
                .unwrap()
        };
        let before = v(&a);
        let tx = a.transaction().unwrap();
        tx.query_row("SELECT COUNT(*) FROM events", [], |r| r.get::<_, i64>(0))
            .unwrap();
        tx.commit().unwrap();
        assert_eq!(v(&a), before, "reading alone changes nothing");
        b.execute(
            "INSERT INTO cursors (source, cursor, updated_at) VALUES ('s', 'c', 1)",
            [],
        )
        .unwrap();
        assert_ne!(v(&a), before, "another connection committed");
    }

    #[test]
    fn values_convert_or_name_the_problem() {
        assert!(value(ValueRef::Integer(1 << 40), Int4).is_err());
        assert!(value(ValueRef::Blob(&[0xff, 0xfe]), Text).is_err());
        assert!(value(ValueRef::Text(b"x"), Int8).is_err());
        assert!(value(ValueRef::Null, Bool).is_ok());
    }
}
