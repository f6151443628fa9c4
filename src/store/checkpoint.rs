//! WAL checkpoints off the writer's path, and a WAL that stays bounded.
//!
//! With SQLite's automatic checkpoint, the commit that pushes the WAL over
//! its threshold also copies the WAL into the database and fsyncs it —
//! inside the group commit that pushes are waiting on. The writer turns the
//! automatic checkpoint off and this thread, on its own connection, runs a
//! PASSIVE checkpoint (never blocks the writer or readers) whenever the WAL
//! has grown past a threshold.
//!
//! A PASSIVE checkpoint alone never lets the WAL start over under steady
//! load: SQLite rewinds the WAL only when *every* frame has been copied,
//! and the writer appends new frames while the checkpoint runs. The WAL
//! then grows without end (half a gigabyte in a 5 s benchmark), and every
//! commit writes to freshly allocated blocks. So after its pass this thread
//! raises [`Checkpointer::tail_due`]; the writer, between two batches, copies
//! the few frames committed meanwhile, and its next transaction rewinds the
//! WAL. `journal_size_limit` then trims a WAL that a burst made large.
//! The thread stops when the store is dropped.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::Duration;

/// How often the WAL size is looked at.
const INTERVAL: Duration = Duration::from_millis(100);
/// WAL frames that make the rest worth copying on the writer's thread.
const TAIL_MIN_FRAMES: i64 = 256;

/// Keeps the thread alive; dropping it stops the thread.
pub(super) struct Checkpointer {
    _stop: Sender<()>,
    tail_due: Arc<AtomicBool>,
}

impl Checkpointer {
    /// Starts the thread; it checkpoints once the WAL file reaches `threshold` bytes.
    pub fn start(db: &Path, threshold: u64) -> Result<Checkpointer, String> {
        let conn = super::connect(db, false)
            .map_err(|e| format!("cannot open {} for checkpoints: {e}", db.display()))?;
        let wal = wal_path(db);
        let (stop, rx) = channel();
        let tail_due = Arc::new(AtomicBool::new(false));
        let flag = tail_due.clone();
        std::thread::Builder::new()
            .name("hookd-checkpoint".into())
            .spawn(move || run(&conn, &wal, threshold, &flag, &rx))
            .map_err(|e| format!("cannot start the checkpoint thread: {e}"))?;
        Ok(Checkpointer {
            _stop: stop,
            tail_due,
        })
    }

    /// Set when the writer should finish the checkpoint so the WAL can rewind.
    pub fn tail_due(&self) -> Arc<AtomicBool> {
        self.tail_due.clone()
    }
}

fn wal_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push("-wal");
    PathBuf::from(s)
}

fn run(
    conn: &rusqlite::Connection,
    wal: &Path,
    threshold: u64,
    tail_due: &AtomicBool,
    stop: &Receiver<()>,
) {
    let frame_bytes = conn
        .query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))
        .map_or(4096, |p| p + 24);
    let mut wait = INTERVAL;
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(wait) {
        wait = INTERVAL;
        let size = std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0);
        if size < threshold {
            continue;
        }
        // The pass copies what was committed when it started; the writer
        // has added frames since, so it finishes the job. A WAL that filled
        // up within one interval is looked at again soon, so that it rewinds
        // before `journal_size_limit` makes SQLite cut it back (and
        // allocate it afresh).
        match passive(conn) {
            Ok((log, _)) if log >= TAIL_MIN_FRAMES => {
                tail_due.store(true, Ordering::Relaxed);
                if (log * frame_bytes) as u64 >= threshold {
                    wait = INTERVAL / 10;
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!("WAL checkpoint failed (will retry): {e}"),
        }
    }
}

/// Runs a PASSIVE checkpoint: (frames in the WAL, frames copied), or -1s
/// when the WAL is not in use.
pub(super) fn passive(conn: &rusqlite::Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    })
}

/// Copies the whole WAL into the database and empties it, waiting for
/// readers (the connection's busy timeout). True when it completed.
pub(super) fn truncate(conn: &rusqlite::Connection) -> rusqlite::Result<bool> {
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        Ok(r.get::<_, i64>(0)? == 0)
    })
}
