//! Saved provider registrations in PostgreSQL (the `subscriptions` table:
//! remote id, provider-issued secret), and the per-source lock that makes
//! `register` run once across replicas.
//!
//! The lock is a session-level advisory lock on a connection of its own,
//! held while one replica looks for a saved registration, talks to the
//! provider and saves what it answered; a second replica waits, then finds
//! the first one's registration and reuses it instead of creating a
//! duplicate subscription (or rotating the secret the first one saved). If
//! the holder is dropped without being released (its task was cancelled),
//! the connection is closed rather than returned to the pool, which ends
//! the lock; a replica that dies ends it the same way.

use std::collections::HashMap;

use deadpool_postgres::{GenericClient, Object};

use super::{PgStore, Result};
use crate::store::subscriptions::Registration;

/// First half of the advisory lock key ("hook" in ASCII); the second half
/// is `hashtext(source)`. Distinct from the migration lock, which uses the
/// one-number form.
const REGISTER_LOCK_CLASS: i32 = 0x686f_6f6b;

/// Holds one source's registration lock until [`SourceLock::release`].
pub struct SourceLock {
    conn: Option<Object>,
    source: String,
}

impl SourceLock {
    /// Ends the lock and returns its connection to the pool.
    pub async fn release(mut self) -> Result<()> {
        let Some(conn) = self.conn.take() else {
            return Ok(());
        };
        let r = conn
            .execute(
                "SELECT pg_advisory_unlock($1, hashtext($2))",
                &[&REGISTER_LOCK_CLASS, &self.source],
            )
            .await;
        if r.is_err() {
            // Never put a connection back that may still hold the lock.
            drop(Object::take(conn));
        }
        r.map(drop).map_err(Into::into)
    }
}

impl Drop for SourceLock {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Closing the session ends its advisory locks.
            drop(Object::take(conn));
        }
    }
}

impl PgStore {
    /// Waits for `source`'s registration lock (see the module comment).
    pub async fn lock_registration(&self, source: &str) -> Result<SourceLock> {
        let conn = self.conn().await?;
        let got: bool = conn
            .query_one(
                "SELECT pg_try_advisory_lock($1, hashtext($2))",
                &[&REGISTER_LOCK_CLASS, &source],
            )
            .await?
            .get(0);
        let lock = SourceLock {
            conn: Some(conn),
            source: source.to_string(),
        };
        if !got {
            tracing::info!(
                source = %source,
                "another hookd is registering this source; waiting for it to finish"
            );
            let conn = lock.conn.as_ref().expect("set above");
            conn.execute(
                "SELECT pg_advisory_lock($1, hashtext($2))",
                &[&REGISTER_LOCK_CLASS, &source],
            )
            .await?;
        }
        Ok(lock)
    }

    pub async fn registration(&self, source: &str) -> Result<Option<Registration>> {
        let conn = self.conn().await?;
        get(&conn, source).await
    }

    pub async fn save_registration(&self, r: &Registration) -> Result<()> {
        let conn = self.conn().await?;
        save(&conn, r).await
    }

    pub async fn delete_registration(&self, source: &str) -> Result<bool> {
        let conn = self.conn().await?;
        delete(&conn, source).await
    }

    pub async fn issued_secrets(&self) -> Result<HashMap<String, Vec<Vec<u8>>>> {
        let conn = self.conn().await?;
        issued_secrets(&conn).await
    }
}

/// Secrets providers issued, by source name.
pub async fn issued_secrets(c: &impl GenericClient) -> Result<HashMap<String, Vec<Vec<u8>>>> {
    let rows = c
        .query(
            "SELECT source, secret FROM subscriptions WHERE secret IS NOT NULL",
            &[],
        )
        .await?;
    let mut out: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    for r in rows {
        out.entry(r.get(0)).or_default().push(r.get(1));
    }
    Ok(out)
}

pub async fn get(c: &impl GenericClient, source: &str) -> Result<Option<Registration>> {
    let row = c
        .query_opt(
            "SELECT source, provider, remote_id, secret, info, updated_at
             FROM subscriptions WHERE source = $1",
            &[&source],
        )
        .await?;
    Ok(row.map(|r| {
        let info: String = r.get(4);
        Registration {
            source: r.get(0),
            provider: r.get(1),
            remote_id: r.get(2),
            secret: r.get(3),
            info: serde_json::from_str(&info).unwrap_or_default(),
            updated_at: r.get(5),
        }
    }))
}

/// Inserts or replaces a registration. A `None` secret keeps the stored one.
pub async fn save(c: &impl GenericClient, r: &Registration) -> Result<()> {
    c.execute(
        "INSERT INTO subscriptions (source, provider, remote_id, secret, info, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (source) DO UPDATE SET provider = EXCLUDED.provider,
             remote_id = EXCLUDED.remote_id,
             secret = COALESCE(EXCLUDED.secret, subscriptions.secret), info = EXCLUDED.info,
             updated_at = EXCLUDED.updated_at",
        &[
            &r.source,
            &r.provider,
            &r.remote_id,
            &r.secret,
            &r.info.to_string(),
            &r.updated_at,
        ],
    )
    .await?;
    Ok(())
}

pub async fn delete(c: &impl GenericClient, source: &str) -> Result<bool> {
    Ok(
        c.execute("DELETE FROM subscriptions WHERE source = $1", &[&source])
            .await?
            > 0,
    )
}
