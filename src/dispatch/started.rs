//! The start log: which deliveries claimed ahead were really started.
//!
//! An exec slot claims deliveries ahead of running them (see `queue`). When
//! the daemon dies, recovery must count an interrupted attempt for a run
//! that had started, and hand back untouched one that had not. Marking the
//! row in SQLite before each spawn would put a commit between every two
//! runs, so instead the slot appends the delivery's id to this file just
//! before the spawn: one `write(2)`, no fsync. The page cache keeps it
//! through a crash of the daemon. A power cut can lose it; a run that had
//! started is then run again at the same attempt number, and nothing is lost.
//!
//! An entry matters only until the run's attempt record commits. When the
//! file grows past a bound it is replaced (write, then rename) by one that
//! holds only the runs still unrecorded, and recovery empties it at start.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The file's name inside `state_dir`.
pub const FILE_NAME: &str = "started.log";
/// Past this size the file is rewritten with only the live entries.
const REWRITE_AT: u64 = 64 << 10;

pub struct StartLog {
    path: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    file: File,
    /// Bytes appended since the file was last emptied or rewritten.
    len: u64,
    /// Started runs whose attempt record has not committed yet.
    live: HashSet<i64>,
}

impl StartLog {
    /// Opens (creating, 0600) the log in `state_dir`, keeping what is in it
    /// for [`StartLog::started`].
    pub fn open(state_dir: &Path) -> io::Result<StartLog> {
        let path = state_dir.join(FILE_NAME);
        let file = append(&path)?;
        let len = file.metadata()?.len();
        Ok(StartLog {
            path,
            inner: Mutex::new(Inner {
                file,
                len,
                live: HashSet::new(),
            }),
        })
    }

    /// The deliveries the file says were started (recovery reads this
    /// before anything new is started). Only whole lines count: a last line
    /// without its newline (torn by a power cut) could be a prefix of an id.
    pub fn started(&self) -> io::Result<HashSet<i64>> {
        let text = std::fs::read(&self.path)?;
        let whole = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        Ok(text[..whole]
            .split(|b| *b == b'\n')
            .filter_map(|line| std::str::from_utf8(line).ok()?.parse().ok())
            .collect())
    }

    /// Empties the log once recovery has committed what it read.
    pub fn clear(&self) -> io::Result<()> {
        let mut inner = self.lock();
        inner.file.set_len(0)?;
        inner.len = 0;
        inner.live.clear();
        Ok(())
    }

    /// Records that `delivery` is about to start. Call it before the spawn.
    pub fn note(&self, delivery: i64) {
        let mut inner = self.lock();
        let line = format!("{delivery}\n");
        if let Err(e) = inner.file.write_all(line.as_bytes()) {
            tracing::warn!(
                "cannot write {}: {e}; a crash now would hand delivery {delivery} back without counting its attempt",
                self.path.display()
            );
            return;
        }
        inner.len += line.len() as u64;
        inner.live.insert(delivery);
        if inner.len > REWRITE_AT
            && let Err(e) = self.rewrite(&mut inner)
        {
            tracing::warn!("cannot compact {}: {e}", self.path.display());
        }
    }

    /// `delivery`'s attempt record has committed; its entry is no longer needed.
    pub fn forget(&self, delivery: i64) {
        self.lock().live.remove(&delivery);
    }

    /// Replaces the file by one with only the live entries. The rename is
    /// atomic: a crash leaves either file, and both hold every live entry.
    fn rewrite(&self, inner: &mut Inner) -> io::Result<()> {
        let tmp = self.path.with_extension("log.new");
        let text: String = inner.live.iter().map(|id| format!("{id}\n")).collect();
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        std::fs::rename(&tmp, &self.path)?;
        inner.file = append(&self.path)?;
        inner.len = text.len() as u64;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_was_noted_survives_a_reopen_until_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let log = StartLog::open(dir.path()).unwrap();
        log.note(7);
        log.note(42);
        drop(log);
        let log = StartLog::open(dir.path()).unwrap();
        assert_eq!(log.started().unwrap(), HashSet::from([7, 42]));
        log.clear().unwrap();
        assert!(log.started().unwrap().is_empty());
        log.note(5);
        assert_eq!(log.started().unwrap(), HashSet::from([5]));
        let meta = std::fs::metadata(dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
            0o600
        );
    }

    #[test]
    fn only_whole_lines_count() {
        let dir = tempfile::tempdir().unwrap();
        // "12" lost its newline (and maybe digits) in a power cut.
        std::fs::write(dir.path().join(FILE_NAME), "7\nx1\n42\n12").unwrap();
        let log = StartLog::open(dir.path()).unwrap();
        assert_eq!(log.started().unwrap(), HashSet::from([7, 42]));
    }

    #[test]
    fn the_file_stays_bounded_and_keeps_the_unrecorded_runs() {
        let dir = tempfile::tempdir().unwrap();
        let log = StartLog::open(dir.path()).unwrap();
        log.note(1);
        log.note(2);
        for id in 1_000_000..1_020_000 {
            log.note(id);
            log.forget(id);
        }
        let size = std::fs::metadata(dir.path().join(FILE_NAME)).unwrap().len();
        assert!(size <= REWRITE_AT + 16, "{size} bytes");
        let started = log.started().unwrap();
        assert!(
            started.contains(&1) && started.contains(&2),
            "live entries kept"
        );
        assert!(started.len() < 10_000, "{} entries", started.len());
    }
}
