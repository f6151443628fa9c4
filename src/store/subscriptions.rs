//! What a provider told us when we registered a source: its subscription id
//! and, for providers that issue secrets once (LinkUp, Linked API), the
//! signing secret. Persisted before anything else can fail, so the secret
//! is never lost; used for verification from then on.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};

use super::Result;

/// A stored registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    pub source: String,
    pub provider: String,
    pub remote_id: Option<String>,
    pub secret: Option<Vec<u8>>,
    pub info: serde_json::Value,
    pub updated_at: i64,
}

/// Secrets providers issued, by source name.
pub fn issued_secrets(conn: &Connection) -> Result<HashMap<String, Vec<Vec<u8>>>> {
    let mut stmt =
        conn.prepare_cached("SELECT source, secret FROM subscriptions WHERE secret IS NOT NULL")?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
    })?;
    let mut out: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    for row in rows {
        let (source, secret) = row?;
        out.entry(source).or_default().push(secret);
    }
    Ok(out)
}

pub fn get(conn: &Connection, source: &str) -> Result<Option<Registration>> {
    Ok(conn
        .query_row(
            "SELECT source, provider, remote_id, secret, info, updated_at FROM subscriptions WHERE source = ?1",
            [source],
            |r| {
                let info: String = r.get(4)?;
                Ok(Registration {
                    source: r.get(0)?,
                    provider: r.get(1)?,
                    remote_id: r.get(2)?,
                    secret: r.get(3)?,
                    info: serde_json::from_str(&info).unwrap_or_default(),
                    updated_at: r.get(5)?,
                })
            },
        )
        .optional()?)
}

/// Inserts or replaces a registration. A `None` secret keeps the stored one.
pub fn save(conn: &Connection, r: &Registration) -> Result<()> {
    conn.execute(
        "INSERT INTO subscriptions (source, provider, remote_id, secret, info, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (source) DO UPDATE SET provider = excluded.provider, remote_id = excluded.remote_id,
             secret = COALESCE(excluded.secret, subscriptions.secret), info = excluded.info,
             updated_at = excluded.updated_at",
        params![r.source, r.provider, r.remote_id, r.secret, r.info.to_string(), r.updated_at],
    )?;
    Ok(())
}

pub fn delete(conn: &Connection, source: &str) -> Result<bool> {
    Ok(conn.execute("DELETE FROM subscriptions WHERE source = ?1", [source])? > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_survives_an_update_without_one() {
        let mut c = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut c).unwrap();
        let mut r = Registration {
            source: "lu".into(),
            provider: "linkup".into(),
            remote_id: Some("w1".into()),
            secret: Some(b"s3cret".to_vec()),
            info: serde_json::json!({"mode": "custom"}),
            updated_at: 1,
        };
        save(&c, &r).unwrap();
        r.secret = None;
        r.updated_at = 2;
        save(&c, &r).unwrap();
        assert_eq!(
            get(&c, "lu").unwrap().unwrap().secret.as_deref(),
            Some(&b"s3cret"[..])
        );
        assert_eq!(issued_secrets(&c).unwrap()["lu"], vec![b"s3cret".to_vec()]);
        assert!(delete(&c, "lu").unwrap());
        assert!(issued_secrets(&c).unwrap().is_empty());
    }
}
