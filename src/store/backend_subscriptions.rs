//! Saved provider registrations (remote id, provider-issued secret) on
//! either backend, and the lock that keeps two hookd processes from
//! registering one source at the same time.
//!
//! On SQLite the lock is a no-op: one daemon owns the state directory and
//! runs its registrations one after another. On PostgreSQL it is an
//! advisory lock per source ([`super::pg::subscriptions`]), so replicas
//! starting together register each source once.

use std::collections::HashMap;

use super::pg::subscriptions::SourceLock;
use super::subscriptions::{self, Registration};
use super::{Backend, Result};

/// Held while one source is being registered; [`RegistrationLock::release`]
/// ends it (dropping it ends it too, less gracefully).
pub struct RegistrationLock(Option<SourceLock>);

impl RegistrationLock {
    pub async fn release(self) -> Result<()> {
        match self.0 {
            Some(l) => l.release().await,
            None => Ok(()),
        }
    }
}

impl Backend {
    /// Waits until no other hookd on this store is registering `source`.
    pub async fn lock_registration(&self, source: &str) -> Result<RegistrationLock> {
        match self {
            Backend::Sqlite(_) => Ok(RegistrationLock(None)),
            Backend::Postgres(p) => Ok(RegistrationLock(Some(p.lock_registration(source).await?))),
        }
    }

    /// The saved registration of `source`, if any.
    pub async fn registration(&self, source: &str) -> Result<Option<Registration>> {
        match self {
            Backend::Sqlite(s) => {
                let source = source.to_string();
                s.read(move |c| subscriptions::get(c, &source)).await
            }
            Backend::Postgres(p) => p.registration(source).await,
        }
    }

    /// Saves a registration; a `None` secret keeps the saved one.
    pub async fn save_registration(&self, r: Registration) -> Result<()> {
        match self {
            Backend::Sqlite(s) => s.write(move |c| subscriptions::save(c, &r)).await,
            Backend::Postgres(p) => p.save_registration(&r).await,
        }
    }

    /// Forgets `source`'s registration. False when there was none.
    pub async fn delete_registration(&self, source: &str) -> Result<bool> {
        match self {
            Backend::Sqlite(s) => {
                let source = source.to_string();
                s.write(move |c| subscriptions::delete(c, &source)).await
            }
            Backend::Postgres(p) => p.delete_registration(source).await,
        }
    }

    /// Secrets providers issued, by source name.
    pub async fn issued_secrets(&self) -> Result<HashMap<String, Vec<Vec<u8>>>> {
        match self {
            Backend::Sqlite(s) => s.read(subscriptions::issued_secrets).await,
            Backend::Postgres(p) => p.issued_secrets().await,
        }
    }
}
