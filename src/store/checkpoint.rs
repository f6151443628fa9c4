//! WAL checkpoints off the writer's path.
//!
//! With SQLite's automatic checkpoint, the commit that pushes the WAL over
//! its threshold also copies the WAL into the database and fsyncs it —
//! inside the group commit that pushes are waiting on. The writer turns the
//! automatic checkpoint off and this thread, on its own connection, runs a
//! PASSIVE checkpoint (never blocks the writer or readers) whenever the WAL
//! has grown past a threshold. It stops when the store is dropped.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::Duration;

/// How often the WAL size is looked at.
const INTERVAL: Duration = Duration::from_millis(100);
/// WAL size that triggers a checkpoint (SQLite's default is 1000 pages ≈ 4 MiB).
const THRESHOLD: u64 = 4 << 20;

/// Keeps the thread alive; dropping it stops the thread.
pub(super) struct Checkpointer {
    _stop: Sender<()>,
}

impl Checkpointer {
    pub fn start(db: &Path) -> Result<Checkpointer, String> {
        let conn = super::connect(db, false)
            .map_err(|e| format!("cannot open {} for checkpoints: {e}", db.display()))?;
        let wal = wal_path(db);
        let (stop, rx) = channel();
        std::thread::Builder::new()
            .name("hookd-checkpoint".into())
            .spawn(move || run(&conn, &wal, &rx))
            .map_err(|e| format!("cannot start the checkpoint thread: {e}"))?;
        Ok(Checkpointer { _stop: stop })
    }
}

fn wal_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push("-wal");
    PathBuf::from(s)
}

fn run(conn: &rusqlite::Connection, wal: &Path, stop: &Receiver<()>) {
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(INTERVAL) {
        let size = std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0);
        if size < THRESHOLD {
            continue;
        }
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::debug!("WAL checkpoint failed (will retry): {e}");
        }
    }
}
