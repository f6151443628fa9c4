//! The single writer thread and its group commit.
//!
//! Jobs arrive on a bounded queue. The thread takes one, then every job
//! already waiting (up to `max_batch`), runs each inside its own savepoint
//! of one `BEGIN IMMEDIATE … COMMIT`, and only after the commit returns
//! tells each caller its result. So N concurrent pushes cost one fsync, and
//! nobody hears "ok" for a change that is not on disk. If the commit fails,
//! every job of the batch hears the error.
//!
//! Before each batch the writer checks that the database file it has open
//! is still the one at its path: if the state directory was removed or
//! replaced, SQLite would happily write into an unlinked file.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::{StoreError, StoreOptions};

/// A unit of work: run against the open transaction, then hear the commit.
trait Job: Send {
    /// How long the job may wait for company before its commit (zero:
    /// commit as soon as possible; see [`gather`]).
    fn patience(&self) -> Duration;
    fn run(self: Box<Self>, conn: &Connection) -> Box<dyn Deliver>;
    fn abort(self: Box<Self>, err: StoreError);
}

/// A job's result, held until the batch's commit is known.
trait Deliver: Send {
    fn deliver(self: Box<Self>, commit: Result<(), StoreError>);
}

struct ClosureJob<F, R> {
    f: F,
    patience: Duration,
    reply: oneshot::Sender<Result<R, StoreError>>,
}

struct Held<R> {
    result: Result<R, StoreError>,
    reply: oneshot::Sender<Result<R, StoreError>>,
}

impl<F, R> Job for ClosureJob<F, R>
where
    F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    R: Send + 'static,
{
    fn patience(&self) -> Duration {
        self.patience
    }
    fn run(self: Box<Self>, conn: &Connection) -> Box<dyn Deliver> {
        let result = in_savepoint(conn, self.f);
        Box::new(Held {
            result,
            reply: self.reply,
        })
    }
    fn abort(self: Box<Self>, err: StoreError) {
        let _ = self.reply.send(Err(err));
    }
}

impl<R: Send> Deliver for Held<R> {
    fn deliver(self: Box<Self>, commit: Result<(), StoreError>) {
        let out = match commit {
            Ok(()) => self.result,
            Err(e) => Err(e),
        };
        let _ = self.reply.send(out);
    }
}

/// Runs `f` so that its failure undoes only its own changes.
fn in_savepoint<R>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    match f(conn) {
        Ok(r) => {
            conn.prepare_cached("RELEASE job")?.execute([])?;
            Ok(r)
        }
        Err(e) => {
            conn.execute_batch("ROLLBACK TO job; RELEASE job")?;
            Err(e)
        }
    }
}

/// Counters for metrics and the benchmark.
#[derive(Clone, Copy, Debug, Default)]
pub struct WriterStats {
    pub commits: u64,
    pub jobs: u64,
    pub failed_commits: u64,
    pub queued: u64,
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    jobs: AtomicU64,
    failed_commits: AtomicU64,
    queued: AtomicU64,
}

/// The result of a queued write, once its transaction has committed.
pub type Pending<R> = oneshot::Receiver<Result<R, StoreError>>;

pub(super) struct Writer {
    tx: SyncSender<Box<dyn Job>>,
    counters: Arc<Counters>,
}

impl Writer {
    pub fn start(
        conn: Connection,
        path: PathBuf,
        opts: StoreOptions,
        tail_due: Arc<AtomicBool>,
    ) -> Result<Writer, String> {
        let identity = file_identity(&path)
            .ok_or_else(|| format!("cannot stat the database {}", path.display()))?;
        let (tx, rx) = sync_channel::<Box<dyn Job>>(opts.queue.max(1));
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let max_batch = opts.max_batch.max(1);
        std::thread::Builder::new()
            .name("hookd-writer".into())
            .spawn(move || run(conn, path, identity, rx, max_batch, c, tail_due))
            .map_err(|e| format!("cannot start the writer thread: {e}"))?;
        Ok(Writer { tx, counters })
    }

    pub async fn submit<R, F>(&self, patience: Duration, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        self.enqueue(patience, f)?
            .await
            .unwrap_or(Err(StoreError::Closed))
    }

    /// Queues `f` and returns where its result will arrive, without waiting.
    pub fn enqueue<R, F>(&self, patience: Duration, f: F) -> Result<Pending<R>, StoreError>
    where
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        match self
            .tx
            .try_send(Box::new(ClosureJob { f, patience, reply }))
        {
            Ok(()) => {
                self.counters.queued.fetch_add(1, Ordering::Relaxed);
                Ok(rx)
            }
            Err(TrySendError::Full(_)) => Err(StoreError::Overloaded),
            Err(TrySendError::Disconnected(_)) => Err(StoreError::Closed),
        }
    }

    pub fn stats(&self) -> WriterStats {
        let c = &self.counters;
        WriterStats {
            commits: c.commits.load(Ordering::Relaxed),
            jobs: c.jobs.load(Ordering::Relaxed),
            failed_commits: c.failed_commits.load(Ordering::Relaxed),
            queued: c.queued.load(Ordering::Relaxed),
        }
    }
}

/// Lazy jobs that are company enough to commit at once.
const LAZY_ENOUGH: usize = 16;

/// Takes `first` and every job already waiting (up to `max_batch`). While
/// every job in the batch is patient, it also waits for more, until the
/// least patient one's time is up or [`LAZY_ENOUGH`] are together (as
/// PostgreSQL's `commit_delay`, for work nobody waits on); an eager job
/// ends the wait.
fn gather(rx: &Receiver<Box<dyn Job>>, first: Box<dyn Job>, max_batch: usize) -> Vec<Box<dyn Job>> {
    let mut deadline = Instant::now() + first.patience();
    let mut batch = vec![first];
    while batch.len() < max_batch {
        let next = match rx.try_recv() {
            Ok(j) => j,
            Err(_) => {
                let now = Instant::now();
                if batch.len() >= LAZY_ENOUGH || now >= deadline {
                    break;
                }
                match rx.recv_timeout(deadline - now) {
                    Ok(j) => j,
                    Err(_) => break,
                }
            }
        };
        deadline = deadline.min(Instant::now() + next.patience());
        batch.push(next);
    }
    batch
}

fn file_identity(path: &std::path::Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

fn run(
    conn: Connection,
    path: PathBuf,
    identity: (u64, u64),
    rx: Receiver<Box<dyn Job>>,
    max_batch: usize,
    counters: Arc<Counters>,
    tail_due: Arc<AtomicBool>,
) {
    while let Ok(first) = rx.recv() {
        let batch = gather(&rx, first, max_batch);
        let n = batch.len() as u64;
        counters.queued.fetch_sub(n, Ordering::Relaxed);
        counters.jobs.fetch_add(n, Ordering::Relaxed);
        if file_identity(&path) != Some(identity) {
            counters.failed_commits.fetch_add(1, Ordering::Relaxed);
            let err = StoreError::Unavailable(format!(
                "the database file {} was removed or replaced",
                path.display()
            ));
            batch.into_iter().for_each(|j| j.abort(err.clone()));
            continue;
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            counters.failed_commits.fetch_add(1, Ordering::Relaxed);
            let err = StoreError::from_sqlite(e);
            batch.into_iter().for_each(|j| j.abort(err.clone()));
            continue;
        }
        let mut held: Vec<Box<dyn Deliver>> = Vec::with_capacity(batch.len());
        let mut jobs = batch.into_iter();
        // SQLite rolls the whole transaction back by itself on some errors
        // (full disk, I/O). Then the open transaction is gone: a later
        // savepoint would start and commit on its own, and earlier jobs'
        // changes would be lost while they report success. Stop there.
        while !conn.is_autocommit() {
            let Some(job) = jobs.next() else { break };
            held.push(job.run(&conn));
        }
        let rolled_back =
            StoreError::Unavailable("the transaction was rolled back by SQLite".into());
        let commit = if conn.is_autocommit() {
            jobs.for_each(|j| j.abort(rolled_back.clone()));
            Err(rolled_back)
        } else {
            conn.execute_batch("COMMIT")
                .map_err(StoreError::from_sqlite)
        };
        if commit.is_err() {
            counters.failed_commits.fetch_add(1, Ordering::Relaxed);
            let _ = conn.execute_batch("ROLLBACK");
        } else {
            counters.commits.fetch_add(1, Ordering::Relaxed);
        }
        for h in held {
            h.deliver(commit.clone());
        }
        if tail_due.swap(false, Ordering::Relaxed)
            && let Err(e) = super::checkpoint::passive(&conn)
        {
            tracing::debug!("WAL checkpoint on the writer failed (will retry): {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINGER: Duration = Duration::from_millis(1);

    struct Fake(Duration);
    impl Job for Fake {
        fn patience(&self) -> Duration {
            self.0
        }
        fn run(self: Box<Self>, _: &Connection) -> Box<dyn Deliver> {
            unreachable!()
        }
        fn abort(self: Box<Self>, _: StoreError) {}
    }

    fn job(lazy: bool) -> Box<dyn Job> {
        Box::new(Fake(if lazy { LINGER } else { Duration::ZERO }))
    }

    #[test]
    fn lazy_jobs_wait_for_company_and_an_eager_one_ends_the_wait() {
        let (tx, rx) = sync_channel(64);
        let started = Instant::now();
        let alone = gather(&rx, job(true), 512);
        assert_eq!(alone.len(), 1);
        assert!(started.elapsed() >= LINGER, "a lone lazy job waits");

        // Lazy jobs already queued join the batch.
        for _ in 0..3 {
            tx.send(job(true)).unwrap();
        }
        assert_eq!(gather(&rx, job(true), 512).len(), 4);

        // Enough lazy company, or one eager job, commits at once.
        for _ in 0..LAZY_ENOUGH {
            tx.send(job(true)).unwrap();
        }
        tx.send(job(false)).unwrap();
        let batch = gather(&rx, job(true), 512);
        assert_eq!(batch.len(), LAZY_ENOUGH + 2);
        // The batch cap still holds.
        for _ in 0..5 {
            tx.send(job(false)).unwrap();
        }
        assert_eq!(gather(&rx, job(false), 3).len(), 3);
    }
}
