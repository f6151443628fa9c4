//! One store interface over the two backends: SQLite in the state
//! directory (one node, the group-commit writer) and PostgreSQL (any
//! number of replicas on one database).
//!
//! Each method is one operation of the daemon, the dispatcher or the CLI,
//! named by what it does, not how; the SQLite arm runs the same function
//! through the writer that callers use today (so nothing changes for a
//! single node), the PostgreSQL arm runs its own SQL. What a claim is and
//! what follows an attempt are [`super::rules`], shared by both.
//!
//! Leases only exist on PostgreSQL: a SQLite store has one process, whose
//! dispatcher recovers interrupted runs at start
//! ([`super::deliveries::recover_running`]), so renewing and taking over
//! leases are no-ops there.

use super::deliveries::{
    self, AttemptRecord, AttemptRow, Claimed, DeliveryFilter, DeliveryRow, Next,
};
use super::events::{self, Ingested, NewEvent};
use super::pg::PgStore;
use super::rejected::{self, NewRejection, RejectedRow};
use super::{Result, Store};

/// The store the daemon runs on.
#[derive(Clone)]
pub enum Backend {
    Sqlite(Store),
    Postgres(PgStore),
}

impl Backend {
    /// Stores one event and its deliveries, or counts a duplicate; answers
    /// once committed.
    pub async fn insert_event(&self, e: NewEvent) -> Result<Ingested> {
        match self {
            Backend::Sqlite(s) => s.write(move |c| events::insert(c, &e)).await,
            Backend::Postgres(p) => p.insert_event(e).await,
        }
    }

    /// Stores several events in one transaction; outcomes in input order.
    pub async fn insert_events(&self, es: Vec<NewEvent>) -> Result<Vec<Ingested>> {
        match self {
            Backend::Sqlite(s) => {
                s.write(move |c| es.iter().map(|e| events::insert(c, e)).collect())
                    .await
            }
            Backend::Postgres(p) => p.insert_events(es).await,
        }
    }

    /// Claims up to `limit` due deliveries of `handler`, to run now.
    pub async fn claim(&self, handler: &str, now: i64, limit: usize) -> Result<Vec<Claimed>> {
        match self {
            Backend::Sqlite(s) => {
                let h = handler.to_string();
                s.write(move |c| deliveries::claim_due(c, &h, now, limit))
                    .await
            }
            Backend::Postgres(p) => p.claim(handler, now, limit).await,
        }
    }

    /// Records an attempt and moves the delivery on. False when this
    /// process no longer holds the run (its lease was taken over): nothing
    /// was recorded.
    pub async fn finish(
        &self,
        delivery: i64,
        a: AttemptRecord,
        next: Next,
        now: i64,
    ) -> Result<bool> {
        match self {
            Backend::Sqlite(s) => {
                s.write(move |c| deliveries::finish(c, delivery, &a, next, now).map(|()| true))
                    .await
            }
            Backend::Postgres(p) => p.finish(delivery, a, next, now).await,
        }
    }

    /// Hands back claims that never ran, as they were.
    pub async fn unclaim(&self, ids: Vec<i64>) -> Result<()> {
        match self {
            Backend::Sqlite(s) => s.write(move |c| deliveries::unclaim(c, &ids)).await,
            Backend::Postgres(p) => p.unclaim(ids).await.map(drop),
        }
    }

    /// Extends the leases of this process's runs. Returns how many.
    pub async fn renew(&self, now: i64) -> Result<u64> {
        match self {
            Backend::Sqlite(_) => Ok(0),
            Backend::Postgres(p) => p.renew(now).await,
        }
    }

    /// Takes over runs whose lease ended before `now` (their replica
    /// stopped): each counts as an interrupted attempt. Returns how many.
    pub async fn take_over_expired(&self, now: i64) -> Result<u64> {
        match self {
            Backend::Sqlite(_) => Ok(0),
            Backend::Postgres(p) => p.take_over_expired(now).await,
        }
    }

    /// The earliest time a queued delivery falls due.
    pub async fn next_due(&self) -> Result<Option<i64>> {
        match self {
            Backend::Sqlite(s) => s.read(deliveries::next_due).await,
            Backend::Postgres(p) => p.next_due().await,
        }
    }

    /// Queue depth and the age of its oldest entry.
    pub async fn queue_depth(&self, now: i64) -> Result<(i64, i64)> {
        match self {
            Backend::Sqlite(s) => s.read(move |c| deliveries::queue_depth(c, now)).await,
            Backend::Postgres(p) => p.queue_depth(now).await,
        }
    }

    /// Deliveries as `hookd deliveries` lists them.
    pub async fn list_deliveries(&self, f: DeliveryFilter) -> Result<Vec<DeliveryRow>> {
        match self {
            Backend::Sqlite(s) => s.read(move |c| deliveries::list(c, &f)).await,
            Backend::Postgres(p) => p.list_deliveries(f).await,
        }
    }

    /// Every attempt of one event's deliveries, oldest first.
    pub async fn attempts_for_event(&self, event: i64) -> Result<Vec<AttemptRow>> {
        match self {
            Backend::Sqlite(s) => {
                s.read(move |c| deliveries::attempts_for_event(c, event))
                    .await
            }
            Backend::Postgres(p) => p.attempts_for_event(event).await,
        }
    }

    /// Records a refused request, keeping the newest `keep`.
    pub async fn insert_rejected(&self, r: NewRejection, keep: usize) -> Result<()> {
        match self {
            Backend::Sqlite(s) => s.write(move |c| rejected::insert(c, &r, keep)).await,
            Backend::Postgres(p) => p.insert_rejected(r, keep).await,
        }
    }

    /// The newest refused requests, of one source or all.
    pub async fn list_rejected(
        &self,
        source: Option<String>,
        limit: usize,
    ) -> Result<Vec<RejectedRow>> {
        match self {
            Backend::Sqlite(s) => {
                s.read(move |c| rejected::list(c, source.as_deref(), limit))
                    .await
            }
            Backend::Postgres(p) => p.list_rejected(source, limit).await,
        }
    }

    /// Deletes up to `batch` finished events received before `before`
    /// (their dedup keys with them). Returns how many went.
    pub async fn prune_events(&self, before: i64, batch: usize) -> Result<u64> {
        match self {
            Backend::Sqlite(s) => {
                s.write(move |c| events::prune(c, before, batch).map(|n| n as u64))
                    .await
            }
            Backend::Postgres(p) => p.prune_events(before, batch).await,
        }
    }

    /// True when the store can commit right now (for `/readyz`).
    pub async fn healthy(&self) -> bool {
        match self {
            Backend::Sqlite(s) => s.healthy().await,
            Backend::Postgres(p) => p.healthy().await,
        }
    }
}
