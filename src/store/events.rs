//! Stored events: insert with dedup, list with filters, show one, prune.
//!
//! `(source, event_id)` is unique. An insert that hits an existing key is a
//! duplicate: the existing row's counter goes up and nothing else changes,
//! so a provider's retry is never dispatched twice. The deliveries for the
//! event's handlers are created in the same transaction as the event.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use super::Result;
use crate::timefmt;

/// A normalized event ready to be stored.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub source: String,
    pub provider: String,
    pub event_id: String,
    pub id_synthetic: bool,
    pub event_type: String,
    pub type_raw: String,
    pub occurred_at: Option<i64>,
    pub received_at: i64,
    /// The request headers worth keeping (secrets already removed), as a
    /// JSON array of `[name, value]` pairs — serialized by the caller so the
    /// single writer thread does not spend time on it.
    pub headers_json: String,
    pub body: bytes::Bytes,
    /// How the request was verified (scheme/variant and key index).
    pub verified: String,
    /// Handlers the event is routed to; one delivery each.
    pub handlers: Vec<String>,
}

/// The outcome of storing one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ingested {
    Accepted { id: i64, deliveries: usize },
    Duplicate { id: i64 },
}

/// Inserts the event and its deliveries, or counts a duplicate.
pub fn insert(conn: &Connection, e: &NewEvent) -> Result<Ingested> {
    // No `RETURNING`: SQLite runs it through a temporary table opened and
    // closed for every statement, a tenth of the writer's work per event.
    // The row count and the last rowid of this connection say the same.
    let changed = conn
        .prepare_cached(
            "INSERT INTO events (source, provider, event_id, id_synthetic, type, type_raw,
                                 occurred_at, received_at, headers, body, verified, routed)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT (source, event_id) DO NOTHING",
        )?
        .execute(params![
            e.source,
            e.provider,
            e.event_id,
            e.id_synthetic,
            e.event_type,
            e.type_raw,
            e.occurred_at,
            e.received_at,
            e.headers_json,
            &e.body[..],
            e.verified,
            e.handlers.len() as i64,
        ])?;
    let inserted = (changed == 1).then(|| conn.last_insert_rowid());
    let Some(id) = inserted else {
        let id = conn
            .prepare_cached(
                "UPDATE events SET duplicates = duplicates + 1
                 WHERE source = ?1 AND event_id = ?2 RETURNING id",
            )?
            .query_row(params![e.source, e.event_id], |r| r.get(0))?;
        return Ok(Ingested::Duplicate { id });
    };
    super::deliveries::create(conn, id, &e.handlers, e.received_at)?;
    Ok(Ingested::Accepted {
        id,
        deliveries: e.handlers.len(),
    })
}

/// One event as listed (`hookd events list`). Field names are the `--json` contract.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct EventRow {
    pub id: i64,
    pub event_id: String,
    pub source: String,
    pub provider: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub occurred_at: Option<String>,
    pub received_at: String,
    pub status: String,
    pub duplicates: i64,
    pub id_synthetic: bool,
}

/// Everything stored about one event (`hookd events show`).
#[derive(Clone, Debug, Serialize)]
pub struct EventDetail {
    #[serde(flatten)]
    pub row: EventRow,
    pub type_raw: String,
    pub verified: String,
    pub headers: Vec<(String, String)>,
    #[serde(skip)]
    pub body: Vec<u8>,
    #[serde(skip)]
    pub received_at_us: i64,
}

/// Filters of `hookd events list` and `hookd replay`.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub source: Option<String>,
    /// Glob on the normalized type.
    pub type_glob: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub status: Option<String>,
    pub limit: Option<usize>,
    /// Only ids below this: the next page of a newest-first listing.
    pub before: Option<i64>,
}

/// The statuses `STATUS_SQL` gives an event (`--status` of the listings).
pub const STATUSES: [&str; 6] = [
    "unrouted",
    "pending",
    "running",
    "failed",
    "succeeded",
    "dead",
];

/// The event's overall state, derived from its deliveries (shared with PostgreSQL).
const STATUS_SQL: &str = super::rules::EVENT_STATUS_SQL;

const ROW_COLUMNS: &str = "e.id, e.event_id, e.source, e.provider, e.type, e.occurred_at,
    e.received_at, e.duplicates, e.id_synthetic";

fn event_row(r: &Row<'_>, status: String) -> rusqlite::Result<EventRow> {
    Ok(EventRow {
        id: r.get(0)?,
        event_id: r.get(1)?,
        source: r.get(2)?,
        provider: r.get(3)?,
        event_type: r.get(4)?,
        occurred_at: r.get::<_, Option<i64>>(5)?.map(timefmt::format_micros),
        received_at: timefmt::format_micros(r.get(6)?),
        duplicates: r.get(7)?,
        id_synthetic: r.get(8)?,
        status,
    })
}

/// The rows of `f` with their status, `?7` < id < `?8`; the caller orders and limits.
const FILTERED_SQL: &str =
    "SELECT * FROM (SELECT {ROW_COLUMNS}, {STATUS_SQL} AS status FROM events e
       WHERE (?1 IS NULL OR e.source = ?1)
         AND (?2 IS NULL OR e.type GLOB ?2)
         AND (?3 IS NULL OR e.received_at >= ?3)
         AND (?4 IS NULL OR e.received_at < ?4)
         AND e.id > ?7 AND e.id < ?8)
     WHERE (?5 IS NULL OR status = ?5)";

fn filtered(
    conn: &Connection,
    f: &EventFilter,
    (after, before): (i64, i64),
    order: &str,
) -> Result<Vec<EventRow>> {
    let sql = format!(
        "{} ORDER BY id {order} LIMIT ?6",
        FILTERED_SQL
            .replace("{ROW_COLUMNS}", ROW_COLUMNS)
            .replace("{STATUS_SQL}", STATUS_SQL)
    );
    let limit = f.limit.map(|l| l as i64).unwrap_or(-1);
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        params![
            f.source,
            f.type_glob,
            f.since,
            f.until,
            f.status,
            limit,
            after,
            before
        ],
        |r| event_row(r, r.get(9)?),
    )?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Lists events, newest first (below `f.before` when set).
pub fn list(conn: &Connection, f: &EventFilter) -> Result<Vec<EventRow>> {
    filtered(conn, f, (0, f.before.unwrap_or(i64::MAX)), "DESC")
}

/// Events matching `f` with an id above `after`, oldest first: what
/// `hookd tail` has not printed yet.
pub fn after(conn: &Connection, f: &EventFilter, after: i64) -> Result<Vec<EventRow>> {
    filtered(conn, f, (after, f.before.unwrap_or(i64::MAX)), "ASC")
}

/// The newest event's id (0 when there is none): where `hookd tail` starts.
pub fn newest_id(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("SELECT COALESCE(MAX(id), 0) FROM events", [], |r| r.get(0))?)
}

/// Ids of the events matching `f`, oldest first (for replay).
pub fn ids(conn: &Connection, f: &EventFilter) -> Result<Vec<i64>> {
    let mut rows = list(conn, f)?;
    rows.reverse();
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// One event with its headers and body.
pub fn get(conn: &Connection, id: i64) -> Result<Option<EventDetail>> {
    let sql = format!(
        "SELECT {ROW_COLUMNS}, {STATUS_SQL}, e.type_raw, e.verified, e.headers, e.body
         FROM events e WHERE e.id = ?1"
    );
    let detail = conn
        .query_row(&sql, [id], |r| {
            let row = event_row(r, r.get(9)?)?;
            let headers: String = r.get(12)?;
            Ok(EventDetail {
                received_at_us: r.get(6)?,
                row,
                type_raw: r.get(10)?,
                verified: r.get(11)?,
                headers: serde_json::from_str(&headers).unwrap_or_default(),
                body: r.get(13)?,
            })
        })
        .optional()?;
    Ok(detail)
}

/// Deletes up to `batch` events received before `before` whose work is
/// finished (no delivery pending, failed-and-retrying or running). Returns
/// how many went. Their dedup keys go with them.
pub fn prune(conn: &Connection, before: i64, batch: usize) -> Result<usize> {
    let sql = format!(
        "DELETE FROM events WHERE id IN (
            SELECT e.id FROM events e WHERE e.received_at < ?1
              AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event = e.id AND {})
            LIMIT ?2)",
        super::rules::UNFINISHED_SQL
    );
    let n = conn.execute(&sql, params![before, batch as i64])?;
    Ok(n)
}

/// Events older than `before` kept back because their work is unfinished.
pub fn unfinished_before(conn: &Connection, before: i64) -> Result<i64> {
    let sql = format!(
        "SELECT COUNT(*) FROM events e WHERE e.received_at < ?1
           AND EXISTS (SELECT 1 FROM deliveries d WHERE d.event = e.id AND {})",
        super::rules::UNFINISHED_SQL
    );
    Ok(conn.query_row(&sql, [before], |r| r.get(0))?)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::schema;

    pub(crate) fn event(source: &str, id: &str, handlers: &[&str]) -> NewEvent {
        NewEvent {
            source: source.into(),
            provider: "generic".into(),
            event_id: id.into(),
            id_synthetic: false,
            event_type: "message.received".into(),
            type_raw: "message.received".into(),
            occurred_at: None,
            received_at: 1_000,
            headers_json: r#"[["content-type","application/json"]]"#.into(),
            body: bytes::Bytes::from_static(b"{}"),
            verified: "hmac".into(),
            handlers: handlers.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn db() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        c.pragma_update(None, "foreign_keys", true).unwrap();
        schema::migrate(&mut c).unwrap();
        c
    }

    #[test]
    fn dedups_by_source_and_event_id() {
        let c = db();
        let a = insert(&c, &event("s", "e1", &["h"])).unwrap();
        let Ingested::Accepted { id, deliveries: 1 } = a else {
            panic!("{a:?}")
        };
        assert_eq!(
            insert(&c, &event("s", "e1", &["h"])).unwrap(),
            Ingested::Duplicate { id }
        );
        assert!(matches!(
            insert(&c, &event("other", "e1", &[])).unwrap(),
            Ingested::Accepted { .. }
        ));
        let rows = list(&c, &EventFilter::default()).unwrap();
        assert_eq!(rows.len(), 2);
        let first = rows.iter().find(|r| r.id == id).unwrap();
        assert_eq!((first.duplicates, first.status.as_str()), (1, "pending"));
        let n: i64 = c
            .query_row("SELECT COUNT(*) FROM deliveries", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1, "a duplicate creates no delivery");
        assert_eq!(rows.iter().find(|r| r.id != id).unwrap().status, "unrouted");
    }

    #[test]
    fn filters() {
        let c = db();
        for (i, (src, ty)) in [
            ("a", "message.sent"),
            ("a", "call.completed"),
            ("b", "message.read"),
        ]
        .iter()
        .enumerate()
        {
            let mut e = event(src, &format!("e{i}"), &[]);
            e.event_type = ty.to_string();
            e.received_at = 1_000 * (i as i64 + 1);
            insert(&c, &e).unwrap();
        }
        let got = |f: EventFilter| {
            list(&c, &f)
                .unwrap()
                .into_iter()
                .map(|r| r.event_id)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            got(EventFilter {
                source: Some("a".into()),
                ..Default::default()
            }),
            ["e1", "e0"]
        );
        assert_eq!(
            got(EventFilter {
                type_glob: Some("message.*".into()),
                ..Default::default()
            }),
            ["e2", "e0"]
        );
        assert_eq!(
            got(EventFilter {
                since: Some(2_000),
                until: Some(3_000),
                ..Default::default()
            }),
            ["e1"]
        );
        assert_eq!(
            got(EventFilter {
                limit: Some(1),
                ..Default::default()
            }),
            ["e2"]
        );
        assert_eq!(
            got(EventFilter {
                status: Some("unrouted".into()),
                ..Default::default()
            })
            .len(),
            3
        );
        // Pages of a newest-first listing, and the tail's oldest-first view.
        assert_eq!(
            got(EventFilter {
                before: Some(3),
                limit: Some(1),
                ..Default::default()
            }),
            ["e1"]
        );
        let tail = after(&c, &EventFilter::default(), 1).unwrap();
        assert_eq!(
            tail.iter().map(|r| r.event_id.as_str()).collect::<Vec<_>>(),
            ["e1", "e2"]
        );
        assert_eq!(newest_id(&c).unwrap(), 3);
    }

    #[test]
    fn prune_keeps_unfinished_work() {
        let c = db();
        insert(&c, &event("s", "done", &[])).unwrap();
        insert(&c, &event("s", "busy", &["h"])).unwrap();
        assert_eq!(prune(&c, 2_000, 100).unwrap(), 1);
        assert_eq!(unfinished_before(&c, 2_000).unwrap(), 1);
        // After pruning, the same id is new again.
        assert!(matches!(
            insert(&c, &event("s", "done", &[])).unwrap(),
            Ingested::Accepted { .. }
        ));
        let full = get(&c, 2).unwrap().unwrap();
        assert_eq!(full.row.event_id, "busy");
        assert_eq!(full.body, b"{}");
        assert_eq!(full.headers[0].0, "content-type");
    }
}
