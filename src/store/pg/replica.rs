//! What a running replica asks of PostgreSQL beyond ingest and single
//! claims: the dispatcher's record-and-claim, its queue probes, pull
//! sources' positions and status, the provider secrets it verifies with,
//! and the pool's figures for `/metrics`.

use super::{PgStore, Result, deliveries, pull};
use crate::store::cursors::{Advance, Cursor};
use crate::store::deliveries::{Claimed, Record};
use crate::store::events::{Ingested, NewEvent};
use crate::store::pull_status::{Counts, State};

/// The pool's state, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolFigures {
    /// Connections open now.
    pub size: usize,
    /// Of those, idle.
    pub idle: usize,
    /// Callers waiting for a connection.
    pub waiting: usize,
    /// The most the pool opens.
    pub max: usize,
}

impl PgStore {
    /// Records an attempt and makes the slot's next claims in one transaction.
    pub async fn record(&self, r: &Record) -> Result<Vec<Claimed>> {
        let mut conn = self.conn().await?;
        let lease_until = self.lease_until(r.now);
        deliveries::record(&mut conn, self.owner(), lease_until, r).await
    }

    pub async fn handlers_with_due_work(&self, names: &[String], now: i64) -> Result<Vec<String>> {
        let conn = self.conn().await?;
        deliveries::handlers_with_due_work(&conn, names, now).await
    }

    pub async fn next_due_after(&self, now: i64) -> Result<Option<i64>> {
        let conn = self.conn().await?;
        deliveries::next_due_after(&conn, now).await
    }

    pub async fn waiting_for_unknown(
        &self,
        configured: &[String],
        cap: i64,
    ) -> Result<Vec<(String, i64)>> {
        let conn = self.conn().await?;
        deliveries::waiting_for_unknown(&conn, configured, cap).await
    }

    pub async fn cursor(&self, source: &str) -> Result<Option<Cursor>> {
        let conn = self.conn().await?;
        pull::cursor(&conn, source).await
    }

    pub async fn pull_commit(
        &self,
        source: &str,
        events: &[NewEvent],
        a: &Advance,
        counts: &Counts,
        now: i64,
    ) -> Result<Vec<Ingested>> {
        let mut conn = self.conn().await?;
        pull::commit(&mut conn, source, events, a, counts, now).await
    }

    pub async fn pull_state(
        &self,
        source: &str,
        mode: &str,
        state: State,
        error: Option<&str>,
        now: i64,
    ) -> Result<()> {
        let conn = self.conn().await?;
        pull::set_state(&conn, source, mode, state, error, now).await
    }

    pub async fn pull_count(&self, source: &str, counts: &Counts, now: i64) -> Result<()> {
        let conn = self.conn().await?;
        pull::count(&conn, source, counts, now).await
    }

    pub async fn pull_retain(&self, names: &[String]) -> Result<u64> {
        let conn = self.conn().await?;
        pull::retain(&conn, names).await
    }

    /// The pool's figures right now.
    pub fn pool_figures(&self) -> PoolFigures {
        let s = self.inner.pool.status();
        PoolFigures {
            size: s.size,
            idle: s.available,
            waiting: s.waiting,
            max: s.max_size,
        }
    }
}
