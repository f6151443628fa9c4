//! The single writer thread and its group commit.
//!
//! Jobs arrive on a bounded queue (`job_queue`). The thread takes one, then
//! every job already waiting (up to `max_batch`), runs each inside its own
//! savepoint of one `BEGIN IMMEDIATE … COMMIT`, and only after the commit
//! returns tells each caller its result. So N concurrent pushes cost one
//! fsync, and nobody hears "ok" for a change that is not on disk. If the
//! commit fails, every job of the batch hears the error.
//!
//! Before each batch the writer checks that the database file it has open
//! is still the one at its path: if the state directory was removed or
//! replaced, SQLite would happily write into an unlinked file.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::checkpoint::WalWatch;
use super::job_queue::{JobQueue, Refused};
use super::{StoreError, StoreOptions};

/// A unit of work: run against the open transaction, then hear the commit.
trait Job: Send {
    fn run(self: Box<Self>, conn: &Connection) -> Box<dyn Deliver>;
    fn abort(self: Box<Self>, err: StoreError);
}

/// A job's result, held until the batch's commit is known.
trait Deliver: Send {
    fn deliver(self: Box<Self>, commit: Result<(), StoreError>);
}

struct ClosureJob<F, R> {
    f: F,
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
    /// Time spent running the jobs of batches, inside their transactions.
    pub run_time: Duration,
    /// Time spent in `COMMIT`: writing the WAL and waiting for its fsync.
    pub commit_time: Duration,
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    jobs: AtomicU64,
    failed_commits: AtomicU64,
    queued: AtomicU64,
    run_nanos: AtomicU64,
    commit_nanos: AtomicU64,
}

impl Counters {
    /// Adds the time since `from` to `counter`; returns now.
    fn time(counter: &AtomicU64, from: Instant) -> Instant {
        let now = Instant::now();
        let spent = u64::try_from((now - from).as_nanos()).unwrap_or(u64::MAX);
        counter.fetch_add(spent, Ordering::Relaxed);
        now
    }
}

/// The result of a queued write, once its transaction has committed.
pub type Pending<R> = oneshot::Receiver<Result<R, StoreError>>;

type Jobs = JobQueue<Box<dyn Job>>;

pub(super) struct Writer {
    queue: Arc<Jobs>,
    counters: Arc<Counters>,
}

impl Drop for Writer {
    /// The writer thread commits what is queued, then ends.
    fn drop(&mut self) {
        self.queue.close();
    }
}

/// Closes the queue when the writer thread ends, even by a panic, so that
/// callers hear the store is closed instead of waiting.
struct Abandon(Arc<Jobs>);

impl Drop for Abandon {
    fn drop(&mut self) {
        self.0.abandon();
    }
}

impl Writer {
    pub fn start(
        mut conn: Connection,
        path: PathBuf,
        opts: StoreOptions,
        wal: WalWatch,
    ) -> Result<Writer, String> {
        wal.install(&mut conn)
            .map_err(|e| format!("cannot watch the WAL of {}: {e}", path.display()))?;
        let identity = file_identity(&path)
            .ok_or_else(|| format!("cannot stat the database {}", path.display()))?;
        let queue = Arc::new(JobQueue::new(opts.queue));
        let counters = Arc::new(Counters::default());
        let (q, c) = (queue.clone(), counters.clone());
        let max_batch = opts.max_batch.max(1);
        std::thread::Builder::new()
            .name("hookd-writer".into())
            .spawn(move || run(conn, path, identity, &q, max_batch, c, &wal))
            .map_err(|e| format!("cannot start the writer thread: {e}"))?;
        Ok(Writer { queue, counters })
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
        // Counted first: the writer may take the job before push returns.
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        let job = Box::new(ClosureJob { f, reply });
        self.queue.push(job, patience).map(|_| rx).map_err(|e| {
            self.counters.queued.fetch_sub(1, Ordering::Relaxed);
            match e {
                Refused::Full => StoreError::Overloaded,
                Refused::Closed => StoreError::Closed,
            }
        })
    }

    /// Ends the wait for company of the writes queued so far.
    pub fn hurry(&self) {
        self.queue.hurry();
    }

    pub fn stats(&self) -> WriterStats {
        let c = &self.counters;
        WriterStats {
            commits: c.commits.load(Ordering::Relaxed),
            jobs: c.jobs.load(Ordering::Relaxed),
            failed_commits: c.failed_commits.load(Ordering::Relaxed),
            queued: c.queued.load(Ordering::Relaxed),
            run_time: Duration::from_nanos(c.run_nanos.load(Ordering::Relaxed)),
            commit_time: Duration::from_nanos(c.commit_nanos.load(Ordering::Relaxed)),
        }
    }
}

/// Lazy jobs that are company enough to commit at once, without waiting
/// out their patience (as PostgreSQL's `commit_delay` waits only for work
/// nobody waits on).
const LAZY_ENOUGH: usize = 16;

fn file_identity(path: &std::path::Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

fn run(
    conn: Connection,
    path: PathBuf,
    identity: (u64, u64),
    queue: &Arc<Jobs>,
    max_batch: usize,
    counters: Arc<Counters>,
    wal: &WalWatch,
) {
    let _abandon = Abandon(queue.clone());
    while let Some(batch) = queue.take(max_batch, LAZY_ENOUGH) {
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
        let began = Instant::now();
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
        let ran = Counters::time(&counters.run_nanos, began);
        let rolled_back =
            StoreError::Unavailable("the transaction was rolled back by SQLite".into());
        let commit = if conn.is_autocommit() {
            jobs.for_each(|j| j.abort(rolled_back.clone()));
            Err(rolled_back)
        } else {
            conn.execute_batch("COMMIT")
                .map_err(StoreError::from_sqlite)
        };
        Counters::time(&counters.commit_nanos, ran);
        if commit.is_err() {
            counters.failed_commits.fetch_add(1, Ordering::Relaxed);
            let _ = conn.execute_batch("ROLLBACK");
        } else {
            counters.commits.fetch_add(1, Ordering::Relaxed);
        }
        for h in held {
            h.deliver(commit.clone());
        }
        wal.finish_tail(&conn);
    }
}
