//! WAL checkpoints off the writer's path, and a WAL that stays bounded.
//!
//! With SQLite's automatic checkpoint, the commit that pushes the WAL over
//! its threshold also copies the WAL into the database and fsyncs it —
//! inside the group commit that pushes are waiting on. The writer turns the
//! automatic checkpoint off. Instead, each of its commits that leaves the
//! WAL at or over the threshold wakes this thread (SQLite's WAL hook says
//! how many frames the WAL holds), and the thread, on its own connection,
//! runs a PASSIVE checkpoint, which never blocks the writer or readers.
//!
//! A PASSIVE checkpoint alone never lets the WAL start over under steady
//! load: SQLite rewinds the WAL only when *every* frame has been copied,
//! and the writer appends new frames while the checkpoint runs. The WAL
//! then grows without end (half a gigabyte in a 5 s benchmark), and every
//! commit writes to freshly allocated blocks. So after its pass this
//! thread raises the tail flag; the writer, between two batches, copies
//! the few frames committed meanwhile, and its next transaction rewinds
//! the WAL. `journal_size_limit` then trims a WAL that a burst made large.
//!
//! Being woken by the commit rather than looking at the WAL on a timer
//! matters: the WAL's high-water mark is what the writer adds while the
//! checkpoint is on its way, and a 100 ms timer let a fast writer add tens
//! of megabytes. The thread stops with the writer's connection.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Duration;

use rusqlite::Connection;

/// How long a pass that readers kept from copying anything new waits
/// before the next, so a long reader does not turn every commit into a
/// pass. Short, because the writer goes on appending during the pause
/// after the reader has ended.
const BLOCKED_PAUSE: Duration = Duration::from_millis(10);

/// The writer's side of the checkpointer: wakes it and finishes its passes.
/// The thread stops when the last clone is dropped.
#[derive(Clone)]
pub(super) struct WalWatch {
    wake: SyncSender<()>,
    tail_due: Arc<AtomicBool>,
    threshold_frames: i64,
    /// WAL frames appended by the writer's commits so far (for the
    /// benchmark's account of what a commit writes).
    appended: Arc<std::sync::atomic::AtomicU64>,
}

/// Starts the thread; it checkpoints once the WAL holds `threshold` bytes.
pub(super) fn start(db: &Path, threshold: u64) -> Result<WalWatch, String> {
    let conn = super::connect(db, false)
        .map_err(|e| format!("cannot open {} for checkpoints: {e}", db.display()))?;
    let frame_bytes = conn
        .query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))
        .map_or(4096, |p| p + 24);
    let threshold_frames = i64::try_from(threshold).unwrap_or(i64::MAX) / frame_bytes;
    // One pending wake-up is enough: a pass copies everything committed.
    let (wake, woken) = sync_channel(1);
    let tail_due = Arc::new(AtomicBool::new(false));
    let flag = tail_due.clone();
    std::thread::Builder::new()
        .name("hookd-checkpoint".into())
        .spawn(move || run(&conn, &woken, &flag))
        .map_err(|e| format!("cannot start the checkpoint thread: {e}"))?;
    Ok(WalWatch {
        wake,
        tail_due,
        threshold_frames: threshold_frames.max(1),
        appended: Arc::default(),
    })
}

impl WalWatch {
    /// Makes each commit on `conn` that leaves the WAL at or over the
    /// threshold wake the checkpointer. Must come after the
    /// `wal_autocheckpoint` pragma, which replaces the hook.
    pub fn install(&self, conn: &mut Connection) -> rusqlite::Result<()> {
        let watch = self.clone();
        // The WAL's size in frames after the previous commit; smaller
        // after a commit means the WAL was rewound to its start.
        let before = std::sync::atomic::AtomicI64::new(0);
        conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, frames| {
            let frames = i64::from(frames);
            let last = before.swap(frames, Ordering::Relaxed);
            let added = if frames >= last {
                frames - last
            } else {
                frames
            };
            watch
                .appended
                .fetch_add(added.unsigned_abs(), Ordering::Relaxed);
            watch.committed(frames);
            Ok(())
        }))
    }

    /// WAL frames the writer's commits have appended so far.
    pub fn appended(&self) -> u64 {
        self.appended.load(Ordering::Relaxed)
    }

    /// Called from the WAL hook: cheap, it runs inside the commit.
    fn committed(&self, frames: i64) {
        if frames >= self.threshold_frames && !self.tail_due.load(Ordering::Relaxed) {
            // Full: a wake-up is already pending. Disconnected: the
            // thread is gone with its store; nothing is left to do.
            let _ = self.wake.try_send(());
        }
    }

    /// Between batches: copies the frames committed during the
    /// checkpointer's pass, so the next transaction rewinds the WAL. If it
    /// cannot finish, the next commit over the threshold starts over.
    pub fn finish_tail(&self, conn: &Connection) {
        if self.tail_due.swap(false, Ordering::Relaxed)
            && let Err(e) = passive(conn)
        {
            tracing::debug!("WAL checkpoint on the writer failed (will retry): {e}");
        }
    }
}

fn run(conn: &Connection, woken: &Receiver<()>, tail_due: &AtomicBool) {
    let mut last_copied = -1;
    while woken.recv().is_ok() {
        match passive(conn) {
            Ok((log, copied)) if log > 0 => {
                // Even a pass that copied everything hands the writer its
                // turn: the WAL rewinds only for a transaction that began
                // after the last frame was copied, and only the writer can
                // make sure that its next one does.
                tail_due.store(true, Ordering::Relaxed);
                if copied < log && copied == last_copied {
                    // Readers hold the rest; let them finish.
                    std::thread::sleep(BLOCKED_PAUSE);
                }
                last_copied = copied;
            }
            Ok(_) => {}
            Err(e) => tracing::debug!("WAL checkpoint failed (will retry): {e}"),
        }
        // Commits during the pass woke it again; what they added is the tail.
        while woken.try_recv().is_ok() {}
    }
}

/// Runs a PASSIVE checkpoint: (frames in the WAL, frames copied), or -1s
/// when the WAL is not in use.
pub(super) fn passive(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    })
}

/// Copies the whole WAL into the database and empties it, waiting for
/// readers (the connection's busy timeout). True when it completed.
pub(super) fn truncate(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        Ok(r.get::<_, i64>(0)? == 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(threshold_frames: i64) -> (WalWatch, Receiver<()>) {
        let (wake, woken) = sync_channel(1);
        let tail_due = Arc::new(AtomicBool::new(false));
        let w = WalWatch {
            wake,
            tail_due,
            threshold_frames,
            appended: Arc::default(),
        };
        (w, woken)
    }

    #[test]
    fn only_a_commit_over_the_threshold_wakes_and_only_while_no_tail_is_due() {
        let (w, woken) = watch(10);
        w.committed(9);
        assert!(woken.try_recv().is_err(), "under the threshold");
        w.committed(10);
        w.committed(50);
        assert!(woken.try_recv().is_ok(), "at the threshold");
        assert!(woken.try_recv().is_err(), "wake-ups coalesce into one");
        w.tail_due.store(true, Ordering::Relaxed);
        w.committed(50);
        assert!(woken.try_recv().is_err(), "the writer is finishing a pass");
    }

    /// The race the writer's turn is for: a transaction that began before
    /// the checkpointer's pass ended commits after it, so the WAL is never
    /// wholly copied when the next one begins, and it never rewinds.
    #[test]
    fn a_pass_hands_the_writer_its_turn_and_the_writers_next_transaction_rewinds() {
        let dir = tempfile::tempdir().unwrap();
        let db = super::super::prepare_state_dir(dir.path()).unwrap();
        let mut writer = super::super::connect(&db, false).unwrap();
        writer.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        let frames = Arc::new(std::sync::atomic::AtomicI64::new(0));
        let seen = frames.clone();
        writer
            .wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, n| {
                seen.store(i64::from(n), Ordering::Relaxed);
                Ok(())
            }))
            .unwrap();
        let frames = || frames.load(Ordering::Relaxed);
        let insert = |c: &Connection| {
            c.execute("INSERT INTO t VALUES (zeroblob(8192))", [])
                .unwrap();
        };
        writer.execute_batch("CREATE TABLE t (b BLOB)").unwrap();
        (0..50).for_each(|_| insert(&writer));
        let full = frames();

        writer.execute_batch("BEGIN IMMEDIATE").unwrap();
        insert(&writer);
        let (w, woken) = watch(1);
        // One wake-up, then the channel closes: `run` makes one pass and returns.
        w.wake.try_send(()).unwrap();
        let tail_due = w.tail_due.clone();
        drop(w);
        let checkpointer = super::super::connect(&db, false).unwrap();
        run(&checkpointer, &woken, &tail_due);
        writer.execute_batch("COMMIT").unwrap();
        assert!(tail_due.load(Ordering::Relaxed), "the pass hands over");
        insert(&writer);
        assert!(
            frames() > full,
            "without the writer's turn: {} frames",
            frames()
        );

        let (w, _woken) = watch(1);
        w.tail_due.store(true, Ordering::Relaxed);
        w.finish_tail(&writer);
        assert!(!w.tail_due.load(Ordering::Relaxed));
        insert(&writer);
        assert!(
            frames() < 10,
            "the WAL started over: {} frames, was {full}",
            frames()
        );
    }
}
