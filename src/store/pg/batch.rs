//! Ingest on PostgreSQL in groups: events that arrive while a commit is
//! in flight are committed together in the next transaction.
//!
//! A few transactions run at once (`ingest_commits`); each takes every
//! event waiting when it starts (up to `max_batch`). Each caller is
//! answered after the transaction holding its event committed. If a batch
//! fails as a whole (say one event the server refuses, or a deadlock), its
//! events are tried again one transaction each, so one bad event costs
//! only itself.

use std::sync::Arc;

use deadpool_postgres::{Object, Pool, Transaction};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{PgOptions, Result, connect, events};
use crate::store::StoreError;
use crate::store::events::{Ingested, NewEvent};

pub struct Job {
    event: NewEvent,
    reply: oneshot::Sender<Result<Ingested>>,
}

/// Starts the batching task; events go in through the returned sender.
pub fn start(pool: Pool, opts: &PgOptions, stop: CancellationToken) -> mpsc::Sender<Job> {
    let (tx, rx) = mpsc::channel(opts.max_batch * opts.ingest_commits.max(1) * 4);
    tokio::spawn(run(
        pool,
        rx,
        opts.max_batch.max(1),
        opts.ingest_commits.max(1),
        stop,
    ));
    tx
}

/// Queues one event and waits for its commit.
pub async fn submit(queue: &mpsc::Sender<Job>, event: NewEvent) -> Result<Ingested> {
    let (reply, answer) = oneshot::channel();
    queue.try_send(Job { event, reply }).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => StoreError::Overloaded,
        mpsc::error::TrySendError::Closed(_) => StoreError::Closed,
    })?;
    answer.await.unwrap_or(Err(StoreError::Closed))
}

async fn run(
    pool: Pool,
    mut rx: mpsc::Receiver<Job>,
    max_batch: usize,
    commits: usize,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(commits));
    loop {
        // Take a commit slot first: while all are busy, events gather.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let first = tokio::select! {
            j = rx.recv() => j,
            _ = stop.cancelled() => None,
        };
        let Some(first) = first else { return };
        let mut jobs = vec![first];
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            commit(&pool, jobs).await;
            drop(slot);
        });
    }
}

/// Commits `jobs` in one transaction and answers each; on failure, one
/// transaction per event.
async fn commit(pool: &Pool, jobs: Vec<Job>) {
    let mut conn = match pool.get().await {
        Ok(c) => c,
        Err(e) => {
            let e = StoreError::from(e);
            for j in jobs {
                let _ = j.reply.send(Err(e.clone()));
            }
            return;
        }
    };
    let (events, replies): (Vec<NewEvent>, Vec<_>) =
        jobs.into_iter().map(|j| (j.event, j.reply)).unzip();
    if events.len() > 1
        && let Ok(results) = insert_all(&mut conn, &events).await
    {
        for (reply, r) in replies.into_iter().zip(results) {
            let _ = reply.send(Ok(r));
        }
        return;
    }
    for (event, reply) in events.into_iter().zip(replies) {
        let r = insert_all(&mut conn, std::slice::from_ref(&event))
            .await
            .map(|mut v| v.remove(0));
        let _ = reply.send(r);
    }
}

/// Inserts `events` in one transaction (in key order), announces the new
/// deliveries, commits, and returns the outcomes in input order.
pub async fn insert_all(conn: &mut Object, events: &[NewEvent]) -> Result<Vec<Ingested>> {
    let tx = conn.transaction().await?;
    let out = insert_within(&tx, events).await?;
    tx.commit().await?;
    Ok(out)
}

/// Inserts `events` inside `tx` (in key order, so concurrent batches take
/// their unique-key locks in one order and cannot deadlock) and, when any
/// delivery was queued, announces it for when `tx` commits. Outcomes in
/// input order.
pub async fn insert_within(tx: &Transaction<'_>, events: &[NewEvent]) -> Result<Vec<Ingested>> {
    let mut out: Vec<Option<Ingested>> = vec![None; events.len()];
    let mut queued = false;
    for i in events::key_order(events) {
        let r = events::insert(tx, &events[i]).await?;
        queued |= matches!(r, Ingested::Accepted { deliveries, .. } if deliveries > 0);
        out[i] = Some(r);
    }
    if queued {
        // Delivered to listeners only when the transaction commits.
        tx.execute("SELECT pg_notify($1, '')", &[&connect::WORK_CHANNEL])
            .await?;
    }
    Ok(out
        .into_iter()
        .map(|r| r.expect("every event inserted"))
        .collect())
}
