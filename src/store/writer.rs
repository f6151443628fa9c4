//! The single writer thread and its group commit.
//!
//! Jobs arrive on a bounded queue (`job_queue`). The thread takes one, then
//! every job already waiting (up to `max_batch`), runs them all in one
//! `BEGIN IMMEDIATE … COMMIT`, and only after the commit returns tells each
//! caller its result. So N concurrent pushes cost one fsync, and nobody
//! hears "ok" for a change that is not on disk. If the commit fails, every
//! job of the batch hears the error.
//!
//! A job that fails must undo only its own changes. Running each job in its
//! own savepoint would guarantee that, but the savepoint's journal copies
//! every page the job touches: a third of the writer's work per event. So
//! jobs run bare, and are required to be `Fn`: when one fails, the batch's
//! transaction is rolled back, begun again, and every job runs again in its
//! own savepoint.
//! Failures are rare (a constraint a caller broke, a full disk); the common
//! batch pays nothing for them. A job's closure must therefore touch only
//! the database: it may run twice, and only the last run's result counts.
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

/// A unit of work: run against the open transaction (once, or again after
/// a rollback), then hear the commit.
trait Job: Send {
    /// Runs the job bare; false when it failed (its result is kept).
    fn run(&mut self, conn: &Connection) -> bool;
    /// Runs the job in its own savepoint, so that a failure undoes only its
    /// own changes.
    fn run_guarded(&mut self, conn: &Connection);
    /// The result of the last run, to be delivered once the commit is known.
    fn hold(self: Box<Self>) -> Box<dyn Deliver>;
    fn abort(self: Box<Self>, err: StoreError);
}

/// A job's result, held until the batch's commit is known.
trait Deliver: Send {
    fn deliver(self: Box<Self>, commit: Result<(), StoreError>);
}

struct ClosureJob<F, R> {
    f: F,
    result: Option<Result<R, StoreError>>,
    reply: oneshot::Sender<Result<R, StoreError>>,
}

struct Held<R> {
    result: Result<R, StoreError>,
    reply: oneshot::Sender<Result<R, StoreError>>,
}

impl<F, R> Job for ClosureJob<F, R>
where
    F: Fn(&Connection) -> Result<R, StoreError> + Send + 'static,
    R: Send + 'static,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let result = (self.f)(conn);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }
    fn run_guarded(&mut self, conn: &Connection) {
        self.result = Some(in_savepoint(conn, &self.f));
    }
    fn hold(self: Box<Self>) -> Box<dyn Deliver> {
        let result = self
            .result
            .unwrap_or_else(|| Err(StoreError::Failed("the write was not run".into())));
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
    f: impl Fn(&Connection) -> Result<R, StoreError>,
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
    /// Batches run again job by job, each in its savepoint, because one of
    /// their jobs failed.
    pub reruns: u64,
    /// WAL frames (pages) the commits wrote.
    pub wal_frames: u64,
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
    reruns: AtomicU64,
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
    wal: WalWatch,
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
        let (q, c, w) = (queue.clone(), counters.clone(), wal.clone());
        let max_batch = opts.max_batch.max(1);
        std::thread::Builder::new()
            .name("hookd-writer".into())
            .spawn(move || run(conn, path, identity, &q, max_batch, c, &w))
            .map_err(|e| format!("cannot start the writer thread: {e}"))?;
        Ok(Writer {
            queue,
            counters,
            wal,
        })
    }

    pub async fn submit<R, F>(&self, patience: Duration, f: F) -> Result<R, StoreError>
    where
        F: Fn(&Connection) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        self.enqueue(patience, f)?
            .await
            .unwrap_or(Err(StoreError::Closed))
    }

    /// Queues `f` and returns where its result will arrive, without waiting.
    pub fn enqueue<R, F>(&self, patience: Duration, f: F) -> Result<Pending<R>, StoreError>
    where
        F: Fn(&Connection) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        // Counted first: the writer may take the job before push returns.
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        let job = Box::new(ClosureJob {
            f,
            result: None,
            reply,
        });
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
            reruns: c.reruns.load(Ordering::Relaxed),
            wal_frames: self.wal.appended(),
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
        let mut jobs = batch.into_iter();
        let (ran, committable) = run_batch(&conn, &mut jobs, &counters);
        let held: Vec<Box<dyn Deliver>> = ran.into_iter().map(|j| j.hold()).collect();
        let ran = Counters::time(&counters.run_nanos, began);
        let rolled_back =
            StoreError::Unavailable("the transaction was rolled back by SQLite".into());
        let commit = if conn.is_autocommit() || !committable {
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

/// Runs jobs from `jobs` in the open transaction until they are all run or
/// the transaction is gone; returns the jobs run, and false when the
/// transaction must not be committed (a failed job's changes could not be
/// rolled back).
///
/// Jobs run bare; if one fails, the whole transaction is rolled back and
/// begun again, and every job run so far runs again in its own savepoint,
/// and so do the rest of the batch. (A savepoint around the bare batch
/// would save the rollback of the others, but journals every page the
/// batch touches, on every batch: a tenth of the writer's work.)
fn run_batch(
    conn: &Connection,
    jobs: &mut impl Iterator<Item = Box<dyn Job>>,
    counters: &Counters,
) -> (Vec<Box<dyn Job>>, bool) {
    let mut ran: Vec<Box<dyn Job>> = Vec::new();
    // SQLite rolls the whole transaction back by itself on some errors
    // (full disk, I/O). Then the open transaction is gone: a later
    // statement would start and commit on its own, and earlier jobs'
    // changes would be lost while they report success. Stop there.
    while !conn.is_autocommit() {
        let Some(mut job) = jobs.next() else { break };
        let ok = job.run(conn);
        ran.push(job);
        if !ok {
            if conn.is_autocommit() || conn.execute_batch("ROLLBACK; BEGIN IMMEDIATE").is_err() {
                // The transaction is gone, or still holds the failed job's
                // changes: it is not committed, and every job run so far
                // hears that instead of its result.
                return (ran, false);
            }
            counters.reruns.fetch_add(1, Ordering::Relaxed);
            return (guarded(conn, ran, jobs), true);
        }
    }
    (ran, true)
}

/// Runs `again` (jobs whose earlier run was rolled back) and then `rest`,
/// each in its own savepoint, while the transaction is open.
fn guarded(
    conn: &Connection,
    again: Vec<Box<dyn Job>>,
    rest: &mut impl Iterator<Item = Box<dyn Job>>,
) -> Vec<Box<dyn Job>> {
    let mut ran = Vec::with_capacity(again.len());
    for mut job in again.into_iter().chain(rest.by_ref()) {
        // A job not run again keeps its rolled-back result, but the commit
        // fails then (the transaction is gone), and that is what it hears.
        if !conn.is_autocommit() {
            job.run_guarded(conn);
        }
        ran.push(job);
        if conn.is_autocommit() {
            break;
        }
    }
    ran
}
