//! The store interface's operator side: what `hookd events`, `deliveries`,
//! `replay`, `rejected`, `prune`, `tail`, the pull status and the web
//! console read and change, on either backend.
//!
//! Like [`super::backend`], each method is one operation: the SQLite arm
//! runs the function the CLI runs on its own connection, the PostgreSQL arm
//! its own SQL ([`super::pg::query`], [`super::pg::replay`]). What replay
//! does to a delivery is [`super::replay`], shared by both.

use super::deliveries::{self, EndedAttempt};
use super::events::{self, EventDetail, EventFilter, EventRow};
use super::pg::settled::Settled;
use super::pull_status::{self, PullStatus};
use super::rejected::{self, RejectedRow};
use super::replay::Requeued;
use super::{Backend, Result};

impl Backend {
    /// Events matching `f`, newest first (`hookd events list`, the console).
    pub async fn list_events(&self, f: EventFilter) -> Result<Vec<EventRow>> {
        match self {
            Backend::Sqlite(s) => s.read(move |c| events::list(c, &f)).await,
            Backend::Postgres(p) => p.list_events(f).await,
        }
    }

    /// Events matching `f` with an id above `after`, oldest first (`hookd tail`).
    pub async fn events_after(&self, f: EventFilter, after: i64) -> Result<Vec<EventRow>> {
        match self {
            Backend::Sqlite(s) => s.read(move |c| events::after(c, &f, after)).await,
            Backend::Postgres(p) => p.events_after(f, after).await,
        }
    }

    /// One event with its headers and body (`hookd events show`).
    pub async fn event(&self, id: i64) -> Result<Option<EventDetail>> {
        match self {
            Backend::Sqlite(s) => s.read(move |c| events::get(c, id)).await,
            Backend::Postgres(p) => p.event(id).await,
        }
    }

    /// The newest event's id, 0 when there is none.
    pub async fn newest_event_id(&self) -> Result<i64> {
        match self {
            Backend::Sqlite(s) => s.read(events::newest_id).await,
            Backend::Postgres(p) => p.newest_event_id().await,
        }
    }

    /// The newest attempt's id, 0 when there is none.
    pub async fn newest_attempt_id(&self) -> Result<i64> {
        match self {
            Backend::Sqlite(s) => s.read(deliveries::newest_attempt_id).await,
            Backend::Postgres(p) => p.newest_attempt_id().await,
        }
    }

    /// Attempts with an id above `after`, oldest first, of one source and
    /// of types matching a glob when given (`hookd tail --deliveries`).
    pub async fn attempts_after(
        &self,
        after: i64,
        source: Option<String>,
        type_glob: Option<String>,
        limit: usize,
    ) -> Result<Vec<EndedAttempt>> {
        match self {
            Backend::Sqlite(s) => {
                s.read(move |c| {
                    let only = (source.as_deref(), type_glob.as_deref());
                    deliveries::attempts_after(c, after, only, limit)
                })
                .await
            }
            Backend::Postgres(p) => p.attempts_after(after, source, type_glob, limit).await,
        }
    }

    /// (event, handler) pairs whose delivery is in `status`, of one handler
    /// when given (`hookd replay --status`, the console's "replay dead").
    pub async fn pairs_with_status(
        &self,
        status: &str,
        handler: Option<String>,
    ) -> Result<Vec<(i64, String)>> {
        match self {
            Backend::Sqlite(s) => {
                let status = status.to_string();
                s.read(move |c| deliveries::pairs_with_status(c, &status, handler.as_deref()))
                    .await
            }
            Backend::Postgres(p) => p.pairs_with_status(status, handler).await,
        }
    }

    /// Replays `pairs` in one transaction (see [`super::replay`]);
    /// outcomes in input order.
    pub async fn requeue(&self, pairs: Vec<(i64, String)>, now: i64) -> Result<Vec<Requeued>> {
        match self {
            Backend::Sqlite(s) => {
                s.write(move |c| {
                    pairs
                        .iter()
                        .map(|(event, handler)| deliveries::requeue(c, *event, handler, now))
                        .collect()
                })
                .await
            }
            Backend::Postgres(p) => p.requeue(pairs, now).await,
        }
    }

    /// Events received before `before` that prune keeps (unfinished work).
    pub async fn unfinished_before(&self, before: i64) -> Result<i64> {
        match self {
            Backend::Sqlite(s) => s.read(move |c| events::unfinished_before(c, before)).await,
            Backend::Postgres(p) => p.unfinished_before(before).await,
        }
    }

    /// The newest refused requests, ids below `before` when given (the
    /// console's pages).
    pub async fn rejected_page(
        &self,
        source: Option<String>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<RejectedRow>> {
        match self {
            Backend::Sqlite(s) => {
                s.read(move |c| rejected::page(c, source.as_deref(), before, limit))
                    .await
            }
            Backend::Postgres(p) => p.rejected_page(source, before, limit).await,
        }
    }

    /// Every pull source's recorded status with its position.
    pub async fn pull_statuses(&self) -> Result<Vec<PullStatus>> {
        match self {
            Backend::Sqlite(s) => s.read(pull_status::list).await,
            Backend::Postgres(p) => p.pull_statuses().await,
        }
    }

    /// The id of `s`'s table up to which rows are final: every row with a
    /// smaller id that will ever be visible is visible now (see
    /// [`super::pg::settled`]). On SQLite, whose one writer commits in id
    /// order, every id is.
    pub async fn settled(&self, s: &mut Settled) -> Result<i64> {
        match self {
            Backend::Sqlite(_) => Ok(i64::MAX),
            Backend::Postgres(p) => p.settled(s).await,
        }
    }
}
