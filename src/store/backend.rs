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

use super::cursors::{self, Advance, Cursor};
use super::deliveries::{
    self, AttemptRecord, AttemptRow, Claimed, DeliveryFilter, DeliveryRow, Next, Record, Recovered,
};
use super::events::{self, Ingested, NewEvent};
use super::pg::{PgStore, PoolFigures};
use super::pull_status::{self, Counts, State};
use super::rejected::{self, NewRejection, RejectedRow};
use super::{Pending, Result, Store};

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

    /// The SQLite store, when that is the backend.
    pub fn sqlite(&self) -> Option<&Store> {
        match self {
            Backend::Sqlite(s) => Some(s),
            Backend::Postgres(_) => None,
        }
    }

    /// The pool's figures, on PostgreSQL.
    pub fn pool_figures(&self) -> Option<PoolFigures> {
        match self {
            Backend::Sqlite(_) => None,
            Backend::Postgres(p) => Some(p.pool_figures()),
        }
    }

    // The dispatcher.

    /// At start: what the last stop left running. On SQLite, runs the
    /// start log says were started count as interrupted and the rest go
    /// back as they were; on PostgreSQL, runs whose lease ran out (this
    /// replica's last life, or any other replica's) count as interrupted.
    pub async fn recover(
        &self,
        now: i64,
        started: Option<impl Fn(i64, i64) -> bool + Send + 'static>,
    ) -> Result<Recovered> {
        match self {
            Backend::Sqlite(s) => {
                s.write(move |c| deliveries::recover_running(c, now, started.as_ref()))
                    .await
            }
            Backend::Postgres(p) => Ok(Recovered {
                interrupted: p.take_over_expired(now).await? as usize,
                handed_back: 0,
            }),
        }
    }

    /// Handlers (of `names`) with a delivery due at `now`.
    pub async fn handlers_with_due_work(
        &self,
        names: Vec<String>,
        now: i64,
    ) -> Result<Vec<String>> {
        match self {
            Backend::Sqlite(s) => {
                s.read(move |c| deliveries::handlers_with_due_work(c, &names, now))
                    .await
            }
            Backend::Postgres(p) => p.handlers_with_due_work(&names, now).await,
        }
    }

    /// Like [`Backend::claim`], for a slot that holds what it claims ahead
    /// of running it (`ahead`).
    pub async fn claim_for_slot(
        &self,
        handler: String,
        now: i64,
        limit: usize,
        ahead: bool,
    ) -> Result<Vec<Claimed>> {
        match self {
            Backend::Sqlite(s) => {
                s.write(move |c| deliveries::claim(c, &handler, now, limit, ahead))
                    .await
            }
            Backend::Postgres(p) => p.claim(&handler, now, limit).await,
        }
    }

    /// Records an attempt and makes the slot's next claims in one
    /// transaction. On SQLite the commit may wait for company
    /// ([`Store::write_lazy`]).
    pub async fn record(&self, r: Record) -> Result<Vec<Claimed>> {
        match self {
            Backend::Sqlite(s) => s.write_lazy(move |c| deliveries::record(c, &r)).await,
            Backend::Postgres(p) => p.record(&r).await,
        }
    }

    /// [`Backend::record`] without waiting: for an exec slot's thread,
    /// which takes the answer in later. Call from a thread of the runtime.
    pub fn record_patient(&self, r: Record) -> Result<Pending<Vec<Claimed>>> {
        match self {
            Backend::Sqlite(s) => s.send_patient(move |c| deliveries::record(c, &r)),
            Backend::Postgres(p) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let p = p.clone();
                tokio::runtime::Handle::current().spawn(async move {
                    let _ = tx.send(p.record(&r).await);
                });
                Ok(rx)
            }
        }
    }

    /// [`Backend::record`] from a blocking thread of the runtime.
    pub fn record_blocking(&self, r: Record) -> Result<Vec<Claimed>> {
        match self {
            Backend::Sqlite(s) => s.write_blocking(move |c| deliveries::record(c, &r)),
            Backend::Postgres(p) => tokio::runtime::Handle::current().block_on(p.record(&r)),
        }
    }

    /// [`Backend::unclaim`] from a blocking thread of the runtime.
    pub fn unclaim_blocking(&self, ids: Vec<i64>) -> Result<()> {
        match self {
            Backend::Sqlite(s) => s.write_blocking(move |c| deliveries::unclaim(c, &ids)),
            Backend::Postgres(p) => tokio::runtime::Handle::current()
                .block_on(p.unclaim(ids))
                .map(drop),
        }
    }

    /// Commits what the SQLite writer holds back for company now (each
    /// PostgreSQL write commits at once).
    pub fn commit_soon(&self) {
        if let Backend::Sqlite(s) = self {
            s.commit_soon();
        }
    }

    /// The earliest time a queued delivery falls due after `now`.
    pub async fn next_due_after(&self, now: i64) -> Result<Option<i64>> {
        match self {
            Backend::Sqlite(s) => s.read(move |c| deliveries::next_due_after(c, now)).await,
            Backend::Postgres(p) => p.next_due_after(now).await,
        }
    }

    /// Handlers not in `configured` with deliveries waiting, and how many.
    pub async fn waiting_for_unknown(
        &self,
        configured: Vec<String>,
        cap: i64,
    ) -> Result<Vec<(String, i64)>> {
        match self {
            Backend::Sqlite(s) => {
                s.read(move |c| deliveries::waiting_for_unknown(c, &configured, cap))
                    .await
            }
            Backend::Postgres(p) => p.waiting_for_unknown(&configured, cap).await,
        }
    }

    // Pull sources.

    /// The stored position of `source`.
    pub async fn cursor(&self, source: &str) -> Result<Option<Cursor>> {
        match self {
            Backend::Sqlite(s) => {
                let n = source.to_string();
                s.read(move |c| cursors::get(c, &n)).await
            }
            Backend::Postgres(p) => p.cursor(source).await,
        }
    }

    /// Stores a pulled batch, moves `source`'s position and counts the
    /// batch, in one transaction. Outcomes in input order.
    pub async fn pull_commit(
        &self,
        source: String,
        events: Vec<NewEvent>,
        advance: Advance,
        counts: Counts,
        now: i64,
    ) -> Result<Vec<Ingested>> {
        match self {
            Backend::Sqlite(s) => {
                s.write(move |c| {
                    let mut results = Vec::with_capacity(events.len());
                    for e in &events {
                        results.push(events::insert(c, e)?);
                    }
                    cursors::advance(c, &source, &advance, now)?;
                    pull_status::count(c, &source, &counts, now)?;
                    Ok(results)
                })
                .await
            }
            Backend::Postgres(p) => {
                p.pull_commit(&source, &events, &advance, &counts, now)
                    .await
            }
        }
    }

    /// Sets a pull source's state, with its error if any.
    pub async fn pull_state(
        &self,
        source: String,
        mode: &'static str,
        state: State,
        error: Option<String>,
        now: i64,
    ) -> Result<()> {
        match self {
            Backend::Sqlite(s) => {
                s.write(move |c| match &error {
                    Some(e) => pull_status::set_error(c, &source, mode, state, e, now),
                    None => pull_status::set_state(c, &source, mode, state, now),
                })
                .await
            }
            Backend::Postgres(p) => {
                p.pull_state(&source, mode, state, error.as_deref(), now)
                    .await
            }
        }
    }

    /// Adds to a pull source's counters.
    pub async fn pull_count(&self, source: String, counts: Counts, now: i64) -> Result<()> {
        match self {
            Backend::Sqlite(s) => {
                s.write(move |c| pull_status::count(c, &source, &counts, now))
                    .await
            }
            Backend::Postgres(p) => p.pull_count(&source, &counts, now).await,
        }
    }

    /// Forgets the status of sources not in `names`.
    pub async fn pull_retain(&self, names: Vec<String>) -> Result<()> {
        match self {
            Backend::Sqlite(s) => s
                .write(move |c| pull_status::retain(c, &names))
                .await
                .map(drop),
            Backend::Postgres(p) => p.pull_retain(&names).await.map(drop),
        }
    }

    /// Waits until this replica may run pull source `source`: at once on
    /// SQLite (one process); on PostgreSQL, once it holds the source's
    /// lock (see `pg::owner`). None when `stop` fired first. The token
    /// returned fires when ownership is lost (the database session ended).
    pub async fn own_source(
        &self,
        source: &str,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Option<tokio_util::sync::CancellationToken> {
        match self {
            Backend::Sqlite(_) => Some(tokio_util::sync::CancellationToken::new()),
            Backend::Postgres(p) => p.own_source(source, stop).await,
        }
    }

    /// Gives up pull source `source` (it stopped here).
    pub async fn release_source(&self, source: &str) {
        if let Backend::Postgres(p) = self {
            p.release_source(source).await;
        }
    }

    /// At stop: SQLite folds its WAL into the database (false when a
    /// reader kept it busy); PostgreSQL has nothing to do.
    pub async fn checkpoint_at_stop(&self) -> Result<bool> {
        match self {
            Backend::Sqlite(s) => s.checkpoint_at_stop().await,
            Backend::Postgres(_) => Ok(true),
        }
    }
}

impl From<Store> for Backend {
    fn from(s: Store) -> Backend {
        Backend::Sqlite(s)
    }
}
