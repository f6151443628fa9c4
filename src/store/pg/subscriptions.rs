//! Saved provider registrations in PostgreSQL, shared by every replica:
//! the secrets providers issued (so any replica verifies what the
//! provider signs) and each source's subscription (a pull source's
//! webhook id). See `crate::store::subscriptions` for the SQLite side.

use std::collections::HashMap;

use deadpool_postgres::GenericClient;

use super::Result;
use crate::store::subscriptions::Registration;

/// Secrets providers issued, by source name.
pub async fn issued_secrets(c: &impl GenericClient) -> Result<HashMap<String, Vec<Vec<u8>>>> {
    let stmt = c
        .prepare_cached("SELECT source, secret FROM subscriptions WHERE secret IS NOT NULL")
        .await?;
    let mut out: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    for r in c.query(&stmt, &[]).await? {
        out.entry(r.get(0)).or_default().push(r.get(1));
    }
    Ok(out)
}

/// The saved registration of `source`.
pub async fn get(c: &impl GenericClient, source: &str) -> Result<Option<Registration>> {
    let stmt = c
        .prepare_cached(
            "SELECT source, provider, remote_id, secret, info, updated_at
             FROM subscriptions WHERE source = $1",
        )
        .await?;
    Ok(c.query_opt(&stmt, &[&source]).await?.map(|r| {
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
