//! Durable state: one SQLite database in the state directory.
//!
//! All writes go through a single writer thread (`writer`) that commits
//! concurrent requests together (group commit), so many pushes share one
//! fsync and each is answered only after its own transaction committed.
//! Reads use their own connections (WAL lets them run beside the writer).
//! The CLI opens the same database directly; SQLite's locking makes that
//! safe while the daemon runs.

mod backend;
mod backend_query;
mod backend_subscriptions;
mod checkpoint;
pub mod copy;
pub mod cursors;
pub mod deliveries;
pub mod events;
mod job_queue;
pub mod pg;
pub mod pull_status;
pub mod rejected;
pub mod replay;
pub mod rules;
pub mod schema;
pub mod subscriptions;
mod writer;

use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

pub use backend::Backend;
pub use backend_subscriptions::RegistrationLock;
pub use writer::{Pending, WriterStats};

/// How long [`Store::write_lazy`] may hold a write for company.
const LINGER: Duration = Duration::from_millis(1);
/// How long [`Store::send_patient`] may hold a write for company.
pub const PATIENT: Duration = Duration::from_millis(4);

/// Why the store could not do what was asked. Every variant means "not
/// committed": the HTTP layer answers 503 for all of them.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("the store is overloaded (write queue full)")]
    Overloaded,
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("the store is shut down")]
    Closed,
    #[error("database error: {0}")]
    Failed(String),
}

impl StoreError {
    /// Classifies a SQLite error: I/O, full disk, read-only and lock errors
    /// are conditions that may pass (Unavailable); the rest are bugs or
    /// corruption (Failed).
    pub fn from_sqlite(e: rusqlite::Error) -> StoreError {
        use rusqlite::ErrorCode::*;
        match e.sqlite_error_code() {
            Some(
                DiskFull
                | SystemIoFailure
                | ReadOnly
                | CannotOpen
                | DatabaseBusy
                | DatabaseLocked
                | FileLockingProtocolFailed,
            ) => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Failed(e.to_string()),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::from_sqlite(e)
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Options for opening the daemon's store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Jobs that may wait for the writer before new ones are refused.
    pub queue: usize,
    /// Most jobs committed in one transaction.
    pub max_batch: usize,
    /// WAL size (bytes) past which it is copied into the database. The WAL
    /// is trimmed back to 4 times this when it rewinds.
    pub checkpoint_at: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            queue: 4096,
            max_batch: 512,
            checkpoint_at: 16 << 20,
        }
    }
}

/// The daemon's handle on the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: writer::Writer,
    readers: Mutex<Vec<Connection>>,
}

/// Creates the state directory (0700) and the database file (0600) if needed.
pub fn prepare_state_dir(state_dir: &Path) -> Result<PathBuf, String> {
    make_state_dir(state_dir)?;
    let db = state_dir.join("hookd.db");
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&db)
        .map_err(|e| format!("cannot create the database {}: {e}", db.display()))?;
    Ok(db)
}

/// Creates the state directory (0700) if missing, and tightens one we own.
pub fn make_state_dir(state_dir: &Path) -> Result<(), String> {
    if !state_dir.exists() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .map_err(|e| {
                format!(
                    "cannot create the state directory {}: {e}",
                    state_dir.display()
                )
            })?;
    }
    let meta = std::fs::metadata(state_dir).map_err(|e| {
        format!(
            "cannot use the state directory {}: {e}",
            state_dir.display()
        )
    })?;
    // Tighten a directory we own; leave one managed by someone else alone.
    if meta.mode() & 0o077 != 0 && meta.uid() == effective_uid() {
        let _ = std::fs::set_permissions(state_dir, std::fs::Permissions::from_mode(0o700));
    }
    Ok(())
}

/// The effective uid (the owner of our own /proc entry).
fn effective_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

/// Opens a connection with hookd's settings: WAL, synchronous=FULL, foreign keys.
pub fn connect(path: &Path, read_only: bool) -> Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "foreign_keys", true)?;
    stable_plans(&conn)?;
    if !read_only {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // Statement journals (and the savepoints of a batch run again after
        // a failed write) stay in memory instead of temporary files.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
    }
    Ok(conn)
}

/// Turns on SQLite's query planner stability guarantee. Without it, a
/// statement compared against a partial index's `WHERE` is compiled again
/// whenever a parameter gets a new value: the dispatcher's per-delivery
/// lookup was re-prepared on every claim.
pub(crate) fn stable_plans(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .map(drop)
}

/// Opens (creating and migrating) the database in `state_dir`, for the CLI
/// verbs that read or edit it directly.
pub fn open_direct(state_dir: &Path) -> Result<Connection, String> {
    let path = prepare_state_dir(state_dir)?;
    let mut conn =
        connect(&path, false).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    schema::migrate(&mut conn)?;
    Ok(conn)
}

impl Store {
    /// Opens the database, applies migrations and starts the writer thread.
    pub fn open(state_dir: &Path, opts: StoreOptions) -> Result<Store, String> {
        let path = prepare_state_dir(state_dir)?;
        let mut conn =
            connect(&path, false).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        schema::migrate(&mut conn)?;
        let limit = opts.checkpoint_at.saturating_mul(4).min(i64::MAX as u64) as i64;
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .and_then(|()| conn.pragma_update(None, "journal_size_limit", limit))
            .map_err(|e| format!("cannot configure {}: {e}", path.display()))?;
        let wal = checkpoint::start(&path, opts.checkpoint_at)?;
        let writer = writer::Writer::start(conn, path.clone(), opts, wal)?;
        Ok(Store {
            inner: Arc::new(Inner {
                path,
                writer,
                readers: Mutex::new(Vec::new()),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` inside the next group-committed transaction and returns its
    /// result once the transaction is durable. An `Err` from `f` rolls back
    /// only `f`'s own changes. `f` may run more than once (when another
    /// write of its batch fails, see the writer), so it must only touch
    /// the database. Fails at once with `Overloaded` when the queue is full.
    pub async fn write<R, F>(&self, f: F) -> Result<R>
    where
        F: Fn(&Connection) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        self.inner.writer.submit(Duration::ZERO, f).await
    }

    /// Like [`Store::write`], for work whose caller is not waiting on the
    /// latency (a stream handler's attempt record): the writer may hold it
    /// up to a millisecond so that several share one commit and its fsync.
    pub async fn write_lazy<R, F>(&self, f: F) -> Result<R>
    where
        F: Fn(&Connection) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        self.inner.writer.submit(LINGER, f).await
    }

    /// For a caller on a blocking thread that does not need the result
    /// soon (an exec slot's attempt record): queues `f` and returns at once.
    /// The writer may hold it up to [`PATIENT`] for company, or until
    /// [`Store::commit_soon`]; the result arrives on the returned receiver
    /// (`try_recv` to look, `blocking_recv` to wait).
    pub fn send_patient<R, F>(&self, f: F) -> Result<Pending<R>>
    where
        F: Fn(&Connection) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        self.inner.writer.enqueue(PATIENT, f)
    }

    /// Ends the wait of the patient and lazy writes queued so far (and of
    /// the batch the writer holds for company). For a caller about to block
    /// on one of them.
    pub fn commit_soon(&self) {
        self.inner.writer.hurry();
    }

    /// Like [`Store::write`], waiting on the calling (blocking) thread.
    pub fn write_blocking<R, F>(&self, f: F) -> Result<R>
    where
        F: Fn(&Connection) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        self.inner
            .writer
            .enqueue(Duration::ZERO, f)?
            .blocking_recv()
            .unwrap_or(Err(StoreError::Closed))
    }

    /// At a clean stop, once nothing writes any more: moves everything in
    /// the WAL into the database file and empties the WAL, so the file
    /// alone holds every committed event (a copy of `hookd.db` is a
    /// backup). A reader that keeps the WAL busy past the busy timeout
    /// leaves it for SQLite to replay at the next open; nothing is lost.
    pub async fn checkpoint_at_stop(&self) -> Result<bool> {
        let path = self.inner.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = connect(&path, false)?;
            Ok(checkpoint::truncate(&conn)?)
        })
        .await
        .map_err(|e| StoreError::Failed(format!("checkpoint task failed: {e}")))?
    }

    /// Runs `f` on a read connection on the blocking pool.
    pub async fn read<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.read_blocking(f))
            .await
            .map_err(|e| StoreError::Failed(format!("read task failed: {e}")))?
    }

    /// Like [`Store::read`], on the calling thread.
    pub fn read_blocking<R>(&self, f: impl FnOnce(&Connection) -> Result<R>) -> Result<R> {
        let pooled = self
            .inner
            .readers
            .lock()
            .map(|mut v| v.pop())
            .unwrap_or(None);
        let conn = match pooled {
            Some(c) => c,
            None => connect(&self.inner.path, true)?,
        };
        let out = f(&conn);
        if let Ok(mut v) = self.inner.readers.lock()
            && v.len() < 4
        {
            v.push(conn);
        }
        out
    }

    pub fn stats(&self) -> WriterStats {
        self.inner.writer.stats()
    }

    /// True when the writer can commit right now (for `/readyz`).
    pub async fn healthy(&self) -> bool {
        self.write(|c| {
            c.execute_batch("SELECT 1")?;
            Ok(())
        })
        .await
        .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn creates_private_files_and_commits() {
        let dir = tempfile::tempdir().unwrap();
        let sd = dir.path().join("state");
        let store = Store::open(&sd, StoreOptions::default()).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&sd), 0o700);
        assert_eq!(mode(&sd.join("hookd.db")), 0o600);
        let n = store
            .write(|c| {
                c.execute(
                    "INSERT INTO cursors (source, cursor, updated_at) VALUES ('a', 'x', 1)",
                    [],
                )?;
                Ok(c.changes())
            })
            .await
            .unwrap();
        assert_eq!(n, 1);
        let got: String = store
            .read(|c| {
                Ok(
                    c.query_row("SELECT cursor FROM cursors WHERE source='a'", [], |r| {
                        r.get(0)
                    })?,
                )
            })
            .await
            .unwrap();
        assert_eq!(got, "x");
        for f in ["hookd.db-wal", "hookd.db-shm"] {
            let p = sd.join(f);
            if p.exists() {
                assert_eq!(mode(&p), 0o600, "{f}");
            }
        }
    }

    #[tokio::test]
    async fn a_failing_job_rolls_back_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let ok = store.write(|c| {
            c.execute(
                "INSERT INTO cursors (source, cursor, updated_at) VALUES ('ok', '1', 1)",
                [],
            )?;
            Ok(())
        });
        let bad = store.write(|c| {
            c.execute(
                "INSERT INTO cursors (source, cursor, updated_at) VALUES ('bad', '1', 1)",
                [],
            )?;
            Err::<(), _>(StoreError::Failed("no".into()))
        });
        let (a, b) = tokio::join!(ok, bad);
        assert!(a.is_ok() && b.is_err());
        let n: i64 = store
            .read(|c| Ok(c.query_row("SELECT COUNT(*) FROM cursors", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(n, 1);
    }

    /// Jobs of one batch run bare; when one fails, the batch is run again
    /// job by job, so the others' changes count once and the failed job's
    /// not at all.
    #[tokio::test]
    async fn a_failing_job_in_a_batch_runs_the_others_again_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        store
            .write(|c| Ok(c.execute_batch("CREATE TABLE n (k TEXT PRIMARY KEY, v INTEGER)")?))
            .await
            .unwrap();
        // The first job holds the writer until the others are queued, so
        // they are taken as one batch.
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let wait = std::sync::Mutex::new(wait);
        let s = store.clone();
        let gate = tokio::spawn(async move {
            s.write(move |_| {
                let _ = wait.lock().unwrap().recv();
                Ok(())
            })
            .await
        });
        let taken = store.stats().jobs + 1;
        while store.stats().jobs < taken {
            tokio::task::yield_now().await;
        }
        let bump = |k: &'static str| {
            let s = store.clone();
            tokio::spawn(async move {
                s.write(move |c| {
                    c.execute(
                        "INSERT INTO n VALUES (?1, 1) ON CONFLICT (k) DO UPDATE SET v = v + 1",
                        [k],
                    )?;
                    Ok(())
                })
                .await
            })
        };
        let before = bump("before");
        let s = store.clone();
        let bad = tokio::spawn(async move {
            s.write(|c| {
                c.execute("INSERT INTO n VALUES ('bad', 1)", [])?;
                Err::<(), _>(StoreError::Failed("no".into()))
            })
            .await
        });
        let after = bump("after");
        while store.stats().queued < 3 {
            tokio::task::yield_now().await;
        }
        go.send(()).unwrap();
        let (g, b, x, a) = (
            gate.await.unwrap(),
            before.await.unwrap(),
            bad.await.unwrap(),
            after.await.unwrap(),
        );
        assert!(g.is_ok() && b.is_ok() && a.is_ok(), "{g:?} {b:?} {a:?}");
        assert!(matches!(x, Err(StoreError::Failed(_))), "{x:?}");
        assert_eq!(store.stats().reruns, 1, "the batch was run again");
        let rows: Vec<(String, i64)> = store
            .read(|c| {
                let mut s = c.prepare("SELECT k, v FROM n ORDER BY k")?;
                let rows = s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await
            .unwrap();
        assert_eq!(rows, [("after".into(), 1), ("before".into(), 1)]);
    }

    /// A store that checkpoints from `checkpoint_at` bytes of WAL, with a
    /// `blobs` table to fill it, and a way to read the WAL's size.
    async fn blob_store(dir: &Path, checkpoint_at: u64) -> (Store, impl Fn() -> u64) {
        let opts = StoreOptions {
            checkpoint_at,
            ..Default::default()
        };
        let store = Store::open(dir, opts).unwrap();
        store
            .write(|c| Ok(c.execute_batch("CREATE TABLE blobs (b BLOB)")?))
            .await
            .unwrap();
        let wal = dir.join("hookd.db-wal");
        (store, move || std::fs::metadata(&wal).unwrap().len())
    }

    /// Under steady writes the WAL must rewind: before the writer finished
    /// the checkpoints, it grew by everything ever written. It must also
    /// rewind soon after passing its threshold: while a 100 ms timer woke
    /// the checkpointer, this WAL reached 8-16 MB on an idle machine and
    /// 29 MB under CI; woken by the commit, 0.7-3.2 MB.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn steady_writes_keep_the_wal_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let (store, wal) = blob_store(dir.path(), 256 << 10).await;
        let blob = vec![7u8; 16 << 10];
        let total: usize = 48 << 20;
        let writers = (0..8).map(|_| {
            let (store, blob) = (store.clone(), blob.clone());
            tokio::spawn(async move {
                for _ in 0..total / blob.len() / 8 {
                    let b = blob.clone();
                    store
                        .write(move |c| Ok(c.execute("INSERT INTO blobs VALUES (?1)", [&b])?))
                        .await
                        .unwrap();
                }
            })
        });
        for w in writers.collect::<Vec<_>>() {
            w.await.unwrap();
        }
        let wal = wal();
        assert!(
            wal < total as u64 / 4,
            "the WAL is {wal} bytes after {total} bytes written"
        );
    }

    /// A reader that holds its snapshot keeps the WAL from rewinding; once
    /// it ends, the next checkpoint rewinds the WAL and trims it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_rewinds_once_a_long_reader_ends() {
        let dir = tempfile::tempdir().unwrap();
        let (store, wal) = blob_store(dir.path(), 64 << 10).await;
        let write_mib = |mib: usize| {
            let store = store.clone();
            async move {
                for _ in 0..mib * 64 {
                    store
                        .write(|c| Ok(c.execute("INSERT INTO blobs VALUES (zeroblob(16384))", [])?))
                        .await
                        .unwrap();
                }
            }
        };
        let reader = connect(store.path(), true).unwrap();
        reader
            .execute_batch("BEGIN; SELECT COUNT(*) FROM blobs;")
            .unwrap();
        write_mib(4).await;
        let held = wal();
        assert!(held > 4 << 20, "the reader holds the WAL at {held} bytes");
        reader.execute_batch("COMMIT").unwrap();
        // Not a timing test (steady_writes_keep_the_wal_bounded is): the
        // WAL must start over at some point, not stay stuck at its size.
        let mut written = 0;
        while wal() >= held / 2 && written < 64 {
            write_mib(1).await;
            written += 1;
        }
        let after = wal();
        assert!(
            after < held / 2,
            "the WAL is {after} bytes after {written} MiB more, {held} while the reader held it"
        );
    }

    #[tokio::test]
    async fn removed_database_is_unavailable_not_success() {
        let dir = tempfile::tempdir().unwrap();
        let sd = dir.path().join("state");
        let store = Store::open(&sd, StoreOptions::default()).unwrap();
        std::fs::remove_dir_all(&sd).unwrap();
        let r = store.write(|c| Ok(c.execute_batch("SELECT 1")?)).await;
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    }
}
