//! Refused requests, kept for diagnosis (`hookd rejected`).
//!
//! A wrong secret should be diagnosable in one command, so 401s and 422s
//! are recorded with their reason. The table is bounded: only the newest
//! `keep` rows survive and bodies are truncated, so a flood of forged
//! requests cannot fill the disk.

use rusqlite::{Connection, params};
use serde::Serialize;

use super::Result;
use crate::timefmt;

/// Longest body prefix kept for a refused request.
pub const BODY_KEEP: usize = 1024;

#[derive(Clone, Debug)]
pub struct NewRejection {
    pub source: Option<String>,
    pub path: String,
    pub status: u16,
    pub reason: String,
    pub code: String,
    pub received_at: i64,
    pub remote: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// One refused request as listed. Field names are the `--json` contract.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RejectedRow {
    pub id: i64,
    pub source: Option<String>,
    pub path: String,
    pub reason: String,
    pub code: String,
    pub status: u16,
    pub received_at: String,
    pub remote: Option<String>,
    pub body_len: i64,
    pub body_preview: String,
}

/// Records one refusal and trims the table to the newest `keep` rows.
pub fn insert(conn: &Connection, r: &NewRejection, keep: usize) -> Result<()> {
    let body = &r.body[..r.body.len().min(BODY_KEEP)];
    let headers = serde_json::to_string(&r.headers).unwrap_or_else(|_| "[]".into());
    conn.prepare_cached(
        "INSERT INTO rejected (source, path, status, reason, code, received_at, remote, headers, body, body_len)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        r.source,
        r.path,
        r.status,
        r.reason,
        r.code,
        r.received_at,
        r.remote,
        headers,
        body,
        r.body.len() as i64
    ])?;
    let newest = conn.last_insert_rowid();
    conn.prepare_cached("DELETE FROM rejected WHERE id <= ?1")?
        .execute([newest - keep as i64])?;
    Ok(())
}

/// The newest refusals first.
pub fn list(conn: &Connection, source: Option<&str>, limit: usize) -> Result<Vec<RejectedRow>> {
    page(conn, source, None, limit)
}

/// Like [`list`], only ids below `before`: the next page.
pub fn page(
    conn: &Connection,
    source: Option<&str>,
    before: Option<i64>,
    limit: usize,
) -> Result<Vec<RejectedRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, source, path, reason, code, status, received_at, remote, body_len, body
         FROM rejected WHERE (?1 IS NULL OR source = ?1) AND id < ?3 ORDER BY id DESC LIMIT ?2",
    )?;
    let before = before.unwrap_or(i64::MAX);
    let rows = stmt.query_map(params![source, limit as i64, before], |r| {
        let body: Vec<u8> = r.get(9)?;
        Ok(RejectedRow {
            id: r.get(0)?,
            source: r.get(1)?,
            path: r.get(2)?,
            reason: r.get(3)?,
            code: r.get(4)?,
            status: r.get(5)?,
            received_at: timefmt::format_micros(r.get(6)?),
            remote: r.get(7)?,
            body_len: r.get(8)?,
            body_preview: preview(&body),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// A short printable preview of a body.
pub(crate) fn preview(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(120)]);
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_newest_and_truncates() {
        let mut c = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut c).unwrap();
        for i in 0..10 {
            let r = NewRejection {
                source: Some("s".into()),
                path: "/hooks/s".into(),
                status: 401,
                reason: format!("bad {i}"),
                code: "bad_signature".into(),
                received_at: i,
                remote: None,
                headers: vec![],
                body: vec![b'x'; 5000],
            };
            insert(&c, &r, 3).unwrap();
        }
        let rows = list(&c, None, 100).unwrap();
        assert_eq!(
            rows.iter().map(|r| r.reason.as_str()).collect::<Vec<_>>(),
            ["bad 9", "bad 8", "bad 7"]
        );
        assert_eq!(rows[0].body_len, 5000);
        let older = page(&c, None, Some(rows[0].id), 1).unwrap();
        assert_eq!(older[0].reason, "bad 8");
        let stored: i64 = c
            .query_row("SELECT MAX(LENGTH(body)) FROM rejected", [], |r| r.get(0))
            .unwrap();
        assert_eq!(stored, BODY_KEEP as i64);
    }
}
