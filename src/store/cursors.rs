//! Where each pull source stands: its poll cursor, the time up to which it
//! has every event (`position_at`, where a backfill starts) and the SSE
//! Last-Event-ID.
//!
//! A position is only ever written by the same job that stores the events
//! it covers ([`advance`] inside the batch's savepoint), so after a crash
//! the stored position and the stored events agree: nothing is skipped, and
//! what is read again is a duplicate. `position_at` only moves forward.

use rusqlite::{Connection, OptionalExtension, params};

use super::Result;

/// A stored position.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    /// The provider's own cursor value, as it was in the last item.
    pub cursor: Option<String>,
    /// Unix µs up to which the source has every event.
    pub position_at: Option<i64>,
    pub last_event_id: Option<String>,
    pub updated_at: i64,
}

/// What a committed batch moves; `None` fields stay as they are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Advance {
    pub cursor: Option<String>,
    pub position_at: Option<i64>,
    pub last_event_id: Option<String>,
}

impl Advance {
    pub fn is_empty(&self) -> bool {
        self.cursor.is_none() && self.position_at.is_none() && self.last_event_id.is_none()
    }
}

pub fn get(conn: &Connection, source: &str) -> Result<Option<Cursor>> {
    Ok(conn
        .prepare_cached(
            "SELECT cursor, position_at, last_event_id, updated_at FROM cursors WHERE source = ?1",
        )?
        .query_row([source], |r| {
            Ok(Cursor {
                cursor: r.get(0)?,
                position_at: r.get(1)?,
                last_event_id: r.get(2)?,
                updated_at: r.get(3)?,
            })
        })
        .optional()?)
}

/// Moves a source's position; `position_at` never goes back.
pub fn advance(conn: &Connection, source: &str, a: &Advance, now: i64) -> Result<()> {
    if a.is_empty() {
        return Ok(());
    }
    conn.prepare_cached(
        "INSERT INTO cursors (source, cursor, position_at, last_event_id, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (source) DO UPDATE SET
             cursor = COALESCE(excluded.cursor, cursors.cursor),
             position_at = CASE
                 WHEN excluded.position_at IS NULL THEN cursors.position_at
                 WHEN cursors.position_at IS NULL THEN excluded.position_at
                 ELSE MAX(cursors.position_at, excluded.position_at) END,
             last_event_id = COALESCE(excluded.last_event_id, cursors.last_event_id),
             updated_at = excluded.updated_at",
    )?
    .execute(params![
        source,
        a.cursor,
        a.position_at,
        a.last_event_id,
        now
    ])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut c).unwrap();
        c
    }

    #[test]
    fn position_only_moves_forward_and_fields_keep() {
        let c = db();
        assert_eq!(get(&c, "s").unwrap(), None);
        let a = Advance {
            cursor: Some("t2".into()),
            position_at: Some(200),
            last_event_id: Some("e2".into()),
        };
        advance(&c, "s", &a, 1).unwrap();
        advance(
            &c,
            "s",
            &Advance {
                position_at: Some(100),
                ..Default::default()
            },
            2,
        )
        .unwrap();
        let got = get(&c, "s").unwrap().unwrap();
        assert_eq!(got.position_at, Some(200), "an older position is ignored");
        assert_eq!(got.cursor.as_deref(), Some("t2"));
        assert_eq!(got.last_event_id.as_deref(), Some("e2"));
        assert_eq!(got.updated_at, 2);
        advance(
            &c,
            "s",
            &Advance {
                position_at: Some(300),
                last_event_id: Some("e3".into()),
                ..Default::default()
            },
            3,
        )
        .unwrap();
        let got = get(&c, "s").unwrap().unwrap();
        assert_eq!(
            (got.position_at, got.last_event_id.as_deref()),
            (Some(300), Some("e3"))
        );
    }
}
