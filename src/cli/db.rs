//! How the store verbs (`events`, `deliveries`, `replay`, `rejected`,
//! `prune`, `tail`, the pull status) reach the store, on either backend.
//!
//! SQLite is opened directly, as before: a read-only connection for the
//! verbs that only read (which refuse to create a database where the
//! daemon never ran), a migrated read-write one for those that change it.
//! PostgreSQL is reached through the store interface ([`Backend`]) with a
//! light handle ([`PgStore::open_client`]: no ingest, no leases), which
//! migrates an empty database, so a verb works before any daemon ran. Both
//! answer the same operations with the same rows, so a verb prints the
//! same on both. The verbs run their work on [`Db::run`], one thread.

use std::future::Future;

use anyhow::{Context, bail};
use rusqlite::Connection;

use crate::config::{Config, StoreConfig};
use crate::store::deliveries::{self, AttemptRow, DeliveryFilter, DeliveryRow, EndedAttempt};
use crate::store::events::{self, EventDetail, EventFilter, EventRow};
use crate::store::pg::PgStore;
use crate::store::pg::settled::Settled;
use crate::store::pull_status::{self, PullStatus};
use crate::store::rejected::{self, RejectedRow};
use crate::store::replay::Requeued;
use crate::store::{Backend, Result};

/// A verb's handle on the store, with the runtime its work runs on.
pub struct Db {
    rt: tokio::runtime::Runtime,
    store: Kind,
}

enum Kind {
    Sqlite(Connection),
    Postgres(Backend),
}

impl Db {
    /// Opens the store `cfg` names; `write` for verbs that change it.
    pub fn open(cfg: &Config, write: bool) -> anyhow::Result<Db> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let store = match &cfg.store {
            StoreConfig::Sqlite => Kind::Sqlite(open_sqlite(cfg, write)?),
            StoreConfig::Postgres(pg) => {
                let url = std::str::from_utf8(pg.url.expose())
                    .with_context(|| format!("store.url: {} is not UTF-8 text", pg.url_ref))?;
                let opened = rt.block_on(PgStore::open_client(url, pg.ca_certs.clone()));
                let store = opened
                    .map_err(|e| anyhow::anyhow!("{e} (store.url in {})", cfg.file.display()))?;
                Kind::Postgres(Backend::Postgres(store))
            }
        };
        Ok(Db { rt, store })
    }

    /// Runs a verb's work to completion.
    pub fn run<T>(&self, work: impl Future<Output = T>) -> T {
        self.rt.block_on(work)
    }

    /// True on SQLite, where the daemon's start log tells held deliveries.
    pub fn is_sqlite(&self) -> bool {
        matches!(self.store, Kind::Sqlite(_))
    }

    pub async fn list_events(&self, f: &EventFilter) -> Result<Vec<EventRow>> {
        match &self.store {
            Kind::Sqlite(c) => events::list(c, f),
            Kind::Postgres(b) => b.list_events(f.clone()).await,
        }
    }

    pub async fn events_after(&self, f: &EventFilter, after: i64) -> Result<Vec<EventRow>> {
        match &self.store {
            Kind::Sqlite(c) => events::after(c, f, after),
            Kind::Postgres(b) => b.events_after(f.clone(), after).await,
        }
    }

    /// Ids of the events matching `f`, oldest first (for replay).
    pub async fn event_ids(&self, f: &EventFilter) -> Result<Vec<i64>> {
        match &self.store {
            Kind::Sqlite(c) => events::ids(c, f),
            Kind::Postgres(b) => {
                let rows = b.list_events(f.clone()).await?;
                Ok(rows.into_iter().rev().map(|r| r.id).collect())
            }
        }
    }

    pub async fn event(&self, id: i64) -> Result<Option<EventDetail>> {
        match &self.store {
            Kind::Sqlite(c) => events::get(c, id),
            Kind::Postgres(b) => b.event(id).await,
        }
    }

    pub async fn newest_event_id(&self) -> Result<i64> {
        match &self.store {
            Kind::Sqlite(c) => events::newest_id(c),
            Kind::Postgres(b) => b.newest_event_id().await,
        }
    }

    pub async fn newest_attempt_id(&self) -> Result<i64> {
        match &self.store {
            Kind::Sqlite(c) => deliveries::newest_attempt_id(c),
            Kind::Postgres(b) => b.newest_attempt_id().await,
        }
    }

    pub async fn attempts_after(
        &self,
        after: i64,
        (source, type_glob): (Option<&str>, Option<&str>),
        limit: usize,
    ) -> Result<Vec<EndedAttempt>> {
        match &self.store {
            Kind::Sqlite(c) => deliveries::attempts_after(c, after, (source, type_glob), limit),
            Kind::Postgres(b) => {
                let (source, glob) = (source.map(str::to_string), type_glob.map(str::to_string));
                b.attempts_after(after, source, glob, limit).await
            }
        }
    }

    pub async fn attempts_for_event(&self, event: i64) -> Result<Vec<AttemptRow>> {
        match &self.store {
            Kind::Sqlite(c) => deliveries::attempts_for_event(c, event),
            Kind::Postgres(b) => b.attempts_for_event(event).await,
        }
    }

    pub async fn list_deliveries(&self, f: DeliveryFilter) -> Result<Vec<DeliveryRow>> {
        match &self.store {
            Kind::Sqlite(c) => deliveries::list(c, &f),
            Kind::Postgres(b) => b.list_deliveries(f).await,
        }
    }

    pub async fn pairs_with_status(
        &self,
        status: &str,
        handler: Option<&str>,
    ) -> Result<Vec<(i64, String)>> {
        match &self.store {
            Kind::Sqlite(c) => deliveries::pairs_with_status(c, status, handler),
            Kind::Postgres(b) => {
                b.pairs_with_status(status, handler.map(str::to_string))
                    .await
            }
        }
    }

    /// Replays `pairs` in one transaction; outcomes in input order.
    pub async fn requeue(&self, pairs: &[(i64, String)], now: i64) -> Result<Vec<Requeued>> {
        match &self.store {
            Kind::Sqlite(c) => {
                let tx = c.unchecked_transaction()?;
                let out = pairs
                    .iter()
                    .map(|(event, handler)| deliveries::requeue(&tx, *event, handler, now))
                    .collect::<Result<Vec<_>>>()?;
                tx.commit()?;
                Ok(out)
            }
            Kind::Postgres(b) => b.requeue(pairs.to_vec(), now).await,
        }
    }

    /// Deletes up to `batch` finished events received before `before`.
    pub async fn prune_events(&self, before: i64, batch: usize) -> Result<u64> {
        match &self.store {
            Kind::Sqlite(c) => events::prune(c, before, batch).map(|n| n as u64),
            Kind::Postgres(b) => b.prune_events(before, batch).await,
        }
    }

    pub async fn unfinished_before(&self, before: i64) -> Result<i64> {
        match &self.store {
            Kind::Sqlite(c) => events::unfinished_before(c, before),
            Kind::Postgres(b) => b.unfinished_before(before).await,
        }
    }

    pub async fn list_rejected(
        &self,
        source: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RejectedRow>> {
        match &self.store {
            Kind::Sqlite(c) => rejected::list(c, source, limit),
            Kind::Postgres(b) => b.list_rejected(source.map(str::to_string), limit).await,
        }
    }

    /// The id of `s`'s table up to which rows are final (a tail reads no
    /// further); every id on SQLite.
    pub async fn settled(&self, s: &mut Settled) -> Result<i64> {
        match &self.store {
            Kind::Sqlite(_) => Ok(i64::MAX),
            Kind::Postgres(b) => b.settled(s).await,
        }
    }

    pub async fn pull_statuses(&self) -> Result<Vec<PullStatus>> {
        match &self.store {
            Kind::Sqlite(c) => pull_status::list(c),
            Kind::Postgres(b) => b.pull_statuses().await,
        }
    }
}

/// Opens the SQLite database of `cfg` for a CLI verb. Read-only verbs
/// refuse to create one where the daemon never ran.
pub fn open_sqlite(cfg: &Config, write: bool) -> anyhow::Result<Connection> {
    let path = cfg.database_path();
    if !path.exists() {
        if !write {
            bail!(
                "no database at {} yet (has `hookd run` been started with this config?)",
                path.display()
            );
        }
        return crate::store::open_direct(&cfg.daemon.state_dir).map_err(anyhow::Error::msg);
    }
    let conn = crate::store::connect(&path, !write)
        .with_context(|| format!("cannot open {}", path.display()))?;
    if write {
        // A newer schema from an upgraded daemon is refused here, not mangled.
        let mut conn = conn;
        crate::store::schema::migrate(&mut conn).map_err(anyhow::Error::msg)?;
        return Ok(conn);
    }
    Ok(conn)
}
