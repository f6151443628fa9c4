//! Which replica runs each pull source: the one holding its advisory lock.
//!
//! SSE and poll sources must run on exactly one replica at a time, or two
//! replicas would read the same stream and fight over its position. Each
//! replica keeps one session outside the pool and takes a session-level
//! advisory lock per pull source it runs; the other replicas try again
//! every [`RETRY`]. When the owner dies, its session ends, PostgreSQL
//! releases its locks, and a standby takes the source over from the
//! stored position (which moves in the same transaction as the events,
//! so nothing is lost and at most a batch is read twice, deduplicated).
//! When this replica's session is lost, every source it owned stops here
//! (the locks are gone) and competes again.
//!
//! Locks are keyed by a hash of the source name. Two names with the same
//! hash share a lock; as one session holds all of a replica's locks (they
//! are re-entrant within it), such a pair simply runs on one replica.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::{PgStore, connect};

/// How often a standby replica tries to take a source over.
pub const RETRY: Duration = Duration::from_secs(2);

/// The first key of hookd's pull-source locks (the second is the name's hash).
const LOCK_CLASS: i32 = 0x686b_7064; // "hkpd"

/// This replica's session holding its pull-source locks.
#[derive(Default)]
pub struct Owner {
    session: Mutex<Option<Session>>,
}

struct Session {
    client: tokio_postgres::Client,
    lost: CancellationToken,
}

impl PgStore {
    /// Waits until this replica holds `source`'s lock, or `stop` fires
    /// (None). The token returned fires if the lock is lost with the session.
    pub async fn own_source(
        &self,
        source: &str,
        stop: &CancellationToken,
    ) -> Option<CancellationToken> {
        let mut said = false;
        loop {
            match self.try_own(source).await {
                Ok(Some(lost)) => {
                    if said {
                        tracing::info!(source, "took the pull source over");
                    }
                    return Some(lost);
                }
                Ok(None) if !said => {
                    tracing::info!(source, "another replica runs this pull source; standing by");
                    said = true;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(source, "cannot take the pull source's lock: {e}"),
            }
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = tokio::time::sleep(RETRY) => {}
            }
        }
    }

    async fn try_own(&self, source: &str) -> Result<Option<CancellationToken>, String> {
        let mut guard = self.inner.owner.session.lock().await;
        if guard.as_ref().is_some_and(|s| s.lost.is_cancelled()) {
            *guard = None;
        }
        if guard.is_none() {
            let lost = CancellationToken::new();
            let client =
                connect::session(&self.inner.cfg, &self.inner.opts.ca_certs, lost.clone()).await?;
            *guard = Some(Session { client, lost });
        }
        let s = guard.as_ref().expect("connected above");
        let got: bool = s
            .client
            .query_one(
                "SELECT pg_try_advisory_lock($1, hashtext($2))",
                &[&LOCK_CLASS, &source],
            )
            .await
            .map_err(|e| super::describe(&e))?
            .get(0);
        Ok(got.then(|| s.lost.clone()))
    }

    /// Lets go of `source` (it stopped on this replica), so another
    /// replica may take it.
    pub async fn release_source(&self, source: &str) {
        let guard = self.inner.owner.session.lock().await;
        let Some(s) = guard.as_ref().filter(|s| !s.lost.is_cancelled()) else {
            return;
        };
        if let Err(e) = s
            .client
            .query_one(
                "SELECT pg_advisory_unlock($1, hashtext($2))",
                &[&LOCK_CLASS, &source],
            )
            .await
        {
            tracing::warn!(
                source,
                "cannot release the pull source's lock: {}",
                super::describe(&e)
            );
        }
    }
}
