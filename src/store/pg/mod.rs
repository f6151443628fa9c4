//! The PostgreSQL store: several hookd replicas on one database.
//!
//! There is no single writer here: concurrency comes from a pool of
//! connections, and PostgreSQL's locks keep replicas apart. Ingest still
//! commits in groups: events queued while a commit is in flight go
//! together in the next transaction (`batch`), and each caller is
//! answered only after its own transaction committed. A delivery is run by
//! the replica that claimed it, under a lease this replica renews in the
//! background; a replica that stops renewing (killed, cut off) loses its
//! runs to another, which counts each as interrupted. Queued work is
//! announced with NOTIFY, so idle replicas wake at once; the caller's slow
//! poll is the safety net when a notification is lost.
//!
//! Dialect-specific SQL lives in the submodules; the delivery rules are
//! [`crate::store::rules`], shared with SQLite.

mod batch;
pub mod connect;
pub mod deliveries;
pub mod events;
mod light;
mod owner;
pub mod pull;
pub mod query;
pub mod rejected;
pub mod replay;
mod replica;
pub mod schema;
pub mod settled;
pub mod subscriptions;

pub use replica::PoolFigures;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Object, Pool};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::StoreError;
use crate::store::deliveries::{
    AttemptRecord, AttemptRow, Claimed, DeliveryFilter, DeliveryRow, Next,
};
use crate::store::events::{Ingested, NewEvent};
use crate::store::rejected::{NewRejection, RejectedRow};
use crate::timefmt;

/// How long opening waits for LISTEN to be in place.
const LISTEN_WAIT: Duration = Duration::from_secs(10);

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// How a replica uses its database.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// Connections in the pool.
    pub pool_size: usize,
    /// How long a claimed run stays this replica's without renewal.
    pub lease: Duration,
    /// Most events committed in one ingest transaction.
    pub max_batch: usize,
    /// Ingest transactions in flight at once.
    pub ingest_commits: usize,
    /// Certificate authorities trusted besides the system's.
    pub ca_certs: Arc<Vec<rustls::pki_types::CertificateDer<'static>>>,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            pool_size: 16,
            lease: Duration::from_secs(30),
            max_batch: 256,
            ingest_commits: 4,
            ca_certs: Arc::default(),
        }
    }
}

/// One replica's handle on the shared database. Cheap to clone; the
/// background tasks (lease renewal, LISTEN, ingest batching) stop when the
/// last clone is dropped.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// The server's address and credentials, for sessions outside the pool.
    cfg: tokio_postgres::Config,
    /// The session holding this replica's pull-source locks.
    owner: owner::Owner,
    /// This replica's name on its leases.
    name: String,
    opts: PgOptions,
    ingest: mpsc::Sender<batch::Job>,
    /// Woken when any replica queued work (NOTIFY).
    work: Arc<Notify>,
    stop: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A readable message for a PostgreSQL error: its SQLSTATE message and
/// detail when the server sent one, else the client's text (which never
/// includes the connection's password).
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(d) => format!("{} ({d})", db.message()),
            None => db.message().to_string(),
        },
        None => {
            use std::error::Error;
            match e.source() {
                Some(s) => format!("{e}: {s}"),
                None => e.to_string(),
            }
        }
    }
}

impl StoreError {
    /// Classifies a PostgreSQL error: a lost or refused connection, a
    /// server short of resources or shutting down, and a deadlock or
    /// serialization failure may pass (Unavailable); the rest are bugs
    /// (Failed).
    pub fn from_pg(e: &tokio_postgres::Error) -> StoreError {
        let transient = match e.code() {
            None => true,
            Some(code) => {
                let c = code.code();
                ["08", "53", "57", "40"]
                    .iter()
                    .any(|class| c.starts_with(class))
            }
        };
        if transient {
            StoreError::Unavailable(describe(e))
        } else {
            StoreError::Failed(describe(e))
        }
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::from_pg(&e)
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => StoreError::from_pg(&e),
            other => StoreError::Unavailable(format!("no PostgreSQL connection: {other}")),
        }
    }
}

/// A name for this replica's leases: host, process and a random part, so
/// a restarted process never mistakes its predecessor's leases for its own.
fn replica_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    format!("{host}:{}:{:08x}", std::process::id(), fastrand::u32(..))
}

impl PgStore {
    /// Connects, migrates (once across replicas) and starts the background
    /// tasks. `url` is the resolved `[store] url`.
    pub async fn open(url: &str, opts: PgOptions) -> Result<PgStore, String> {
        let (pool, cfg) = light::pool_migrated(url, opts.pool_size, &opts.ca_certs).await?;
        let target = connect::describe_target(&cfg);
        let stop = CancellationToken::new();
        let work = Arc::new(Notify::new());
        let ingest = batch::start(pool.clone(), &opts, stop.clone());
        let (ready, mut listening) = watch::channel(false);
        tokio::spawn(connect::listen(
            cfg.clone(),
            opts.ca_certs.clone(),
            work.clone(),
            ready,
            stop.clone(),
        ));
        // Work queued from here on wakes this replica; without LISTEN it
        // still runs, on its slow poll.
        let listen = tokio::time::timeout(LISTEN_WAIT, listening.wait_for(|on| *on));
        if !matches!(listen.await, Ok(Ok(_))) {
            tracing::warn!(
                "LISTEN on {target} is not in place yet; idle replicas wake on their slow poll"
            );
        }
        let store = PgStore {
            inner: Arc::new(Inner {
                pool,
                cfg,
                owner: owner::Owner::default(),
                name: replica_name(),
                opts,
                ingest,
                work,
                stop,
            }),
        };
        store.spawn_renewal();
        Ok(store)
    }

    /// This replica's name on the leases it holds.
    pub fn owner(&self) -> &str {
        &self.inner.name
    }

    /// Notified when any replica queued work.
    pub fn work_notify(&self) -> Arc<Notify> {
        self.inner.work.clone()
    }

    fn lease_until(&self, now: i64) -> i64 {
        now + self.inner.opts.lease.as_micros() as i64
    }

    async fn conn(&self) -> Result<Object> {
        Ok(self.inner.pool.get().await?)
    }

    /// Renews this replica's leases a third of a lease apart, until dropped.
    fn spawn_renewal(&self) {
        let weak = Arc::downgrade(&self.inner);
        let stop = self.inner.stop.clone();
        let every = self.inner.opts.lease / 3;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.cancelled() => return,
                }
                let Some(inner) = weak.upgrade() else { return };
                let store = PgStore { inner };
                if let Err(e) = store.renew(timefmt::now_micros()).await {
                    tracing::warn!("cannot renew the leases of running deliveries: {e}");
                }
            }
        });
    }

    /// Stores one event (or counts a duplicate); answers after its commit.
    pub async fn insert_event(&self, e: NewEvent) -> Result<Ingested> {
        batch::submit(&self.inner.ingest, e).await
    }

    /// Stores several events in one transaction, results in input order.
    pub async fn insert_events(&self, events: Vec<NewEvent>) -> Result<Vec<Ingested>> {
        let mut conn = self.conn().await?;
        batch::insert_all(&mut conn, &events).await
    }

    pub async fn claim(&self, handler: &str, now: i64, limit: usize) -> Result<Vec<Claimed>> {
        let conn = self.conn().await?;
        deliveries::claim(
            &conn,
            handler,
            now,
            limit,
            self.owner(),
            self.lease_until(now),
        )
        .await
    }

    /// Extends every lease this replica holds. Returns how many.
    pub async fn renew(&self, now: i64) -> Result<u64> {
        let conn = self.conn().await?;
        deliveries::renew(&conn, self.owner(), self.lease_until(now)).await
    }

    pub async fn finish(
        &self,
        delivery: i64,
        a: AttemptRecord,
        next: Next,
        now: i64,
    ) -> Result<bool> {
        let conn = self.conn().await?;
        deliveries::finish(&conn, self.owner(), delivery, &a, next, now).await
    }

    /// Hands back claims that never ran; other replicas are told, as the
    /// deliveries are due again at once.
    pub async fn unclaim(&self, ids: Vec<i64>) -> Result<u64> {
        let conn = self.conn().await?;
        let n = deliveries::unclaim(&conn, self.owner(), &ids).await?;
        if n > 0 {
            conn.execute("SELECT pg_notify($1, '')", &[&connect::WORK_CHANNEL])
                .await?;
        }
        Ok(n)
    }

    pub async fn take_over_expired(&self, now: i64) -> Result<u64> {
        let conn = self.conn().await?;
        deliveries::take_over_expired(&conn, now).await
    }

    pub async fn next_due(&self) -> Result<Option<i64>> {
        let conn = self.conn().await?;
        deliveries::next_due(&conn).await
    }

    pub async fn queue_depth(&self, now: i64) -> Result<(i64, i64)> {
        let conn = self.conn().await?;
        deliveries::queue_depth(&conn, now).await
    }

    pub async fn list_deliveries(&self, f: DeliveryFilter) -> Result<Vec<DeliveryRow>> {
        let conn = self.conn().await?;
        deliveries::list(&conn, &f).await
    }

    pub async fn attempts_for_event(&self, event: i64) -> Result<Vec<AttemptRow>> {
        let conn = self.conn().await?;
        deliveries::attempts_for_event(&conn, event).await
    }

    pub async fn insert_rejected(&self, r: NewRejection, keep: usize) -> Result<()> {
        let conn = self.conn().await?;
        rejected::insert(&conn, &r, keep).await
    }

    pub async fn list_rejected(
        &self,
        source: Option<String>,
        limit: usize,
    ) -> Result<Vec<RejectedRow>> {
        let conn = self.conn().await?;
        rejected::list(&conn, source.as_deref(), limit).await
    }

    pub async fn prune_events(&self, before: i64, batch: usize) -> Result<u64> {
        let conn = self.conn().await?;
        events::prune(&conn, before, batch).await
    }

    /// True when a connection answers (for `/readyz`).
    pub async fn healthy(&self) -> bool {
        match self.conn().await {
            Ok(c) => c.simple_query("SELECT 1").await.is_ok(),
            Err(_) => false,
        }
    }
}

fn pool_error(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => describe(e),
        other => other.to_string(),
    }
}
