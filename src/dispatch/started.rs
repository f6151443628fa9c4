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
//! An entry names the delivery and the time of its claim: a delivery that
//! ran, failed and was claimed ahead again (or replayed) has the same id,
//! and its old entry must not make recovery count a run it held but never
//! started. `hookd deliveries` reads the file too, to tell a held delivery
//! from a running one.
//!
//! An entry matters only until the run's attempt record commits. When the
//! file grows past a bound it is replaced (write, then rename) by one that
//! holds only the runs still unrecorded, and recovery empties it at start.

use std::collections::{HashMap, HashSet};
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
    /// Started runs whose attempt record has not committed yet: delivery
    /// and claim time.
    live: HashMap<i64, i64>,
}

/// What the file holds: the runs that were started.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Starts {
    /// Delivery and the time of the claim it was started under.
    runs: HashSet<(i64, i64)>,
    /// Entries written before claims were told apart (the delivery id
    /// alone): such a delivery counts as started whatever its claim.
    any_claim: HashSet<i64>,
}

impl Starts {
    /// Whether `delivery`, claimed at `claimed_at`, was started.
    pub fn contains(&self, delivery: i64, claimed_at: i64) -> bool {
        self.runs.contains(&(delivery, claimed_at)) || self.any_claim.contains(&delivery)
    }

    /// Reads the file; only whole lines count: a last line without its
    /// newline (torn by a power cut) could be a prefix of an entry.
    fn parse(text: &[u8]) -> Starts {
        let whole = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let mut starts = Starts::default();
        for line in text[..whole].split(|b| *b == b'\n') {
            let Ok(line) = std::str::from_utf8(line) else {
                continue;
            };
            let mut fields = line.split(' ').map(str::parse::<i64>);
            match (fields.next(), fields.next(), fields.next()) {
                (Some(Ok(id)), Some(Ok(at)), None) => {
                    starts.runs.insert((id, at));
                }
                (Some(Ok(id)), None, None) => {
                    starts.any_claim.insert(id);
                }
                _ => {}
            }
        }
        starts
    }
}

/// Reads the start log in `state_dir` without creating it: nothing there
/// means nothing was started.
pub fn read(state_dir: &Path) -> io::Result<Starts> {
    match std::fs::read(state_dir.join(FILE_NAME)) {
        Ok(text) => Ok(Starts::parse(&text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Starts::default()),
        Err(e) => Err(e),
    }
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
                live: HashMap::new(),
            }),
        })
    }

    /// The runs the file says were started (recovery reads this before
    /// anything new is started).
    pub fn started(&self) -> io::Result<Starts> {
        Ok(Starts::parse(&std::fs::read(&self.path)?))
    }

    /// Empties the log once recovery has committed what it read.
    pub fn clear(&self) -> io::Result<()> {
        let mut inner = self.lock();
        inner.file.set_len(0)?;
        inner.len = 0;
        inner.live.clear();
        Ok(())
    }

    /// Records that `delivery`, claimed at `claimed_at`, is about to
    /// start. Call it before the spawn.
    pub fn note(&self, delivery: i64, claimed_at: i64) {
        let mut inner = self.lock();
        let line = format!("{delivery} {claimed_at}\n");
        if let Err(e) = inner.file.write_all(line.as_bytes()) {
            tracing::warn!(
                "cannot write {}: {e}; a crash now would hand delivery {delivery} back without counting its attempt",
                self.path.display()
            );
            return;
        }
        inner.len += line.len() as u64;
        inner.live.insert(delivery, claimed_at);
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
        let text: String = inner
            .live
            .iter()
            .map(|(id, at)| format!("{id} {at}\n"))
            .collect();
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

    fn starts(runs: &[(i64, i64)]) -> Starts {
        Starts {
            runs: runs.iter().copied().collect(),
            any_claim: HashSet::new(),
        }
    }

    #[test]
    fn what_was_noted_survives_a_reopen_until_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let log = StartLog::open(dir.path()).unwrap();
        log.note(7, 100);
        log.note(42, 100);
        drop(log);
        let log = StartLog::open(dir.path()).unwrap();
        assert_eq!(log.started().unwrap(), starts(&[(7, 100), (42, 100)]));
        assert_eq!(read(dir.path()).unwrap(), log.started().unwrap());
        log.clear().unwrap();
        assert_eq!(log.started().unwrap(), Starts::default());
        log.note(5, 200);
        assert_eq!(log.started().unwrap(), starts(&[(5, 200)]));
        let meta = std::fs::metadata(dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
            0o600
        );
    }

    #[test]
    fn a_run_counts_as_started_only_under_the_claim_it_was_started_under() {
        let dir = tempfile::tempdir().unwrap();
        let log = StartLog::open(dir.path()).unwrap();
        log.note(7, 100);
        log.forget(7);
        let s = log.started().unwrap();
        assert!(s.contains(7, 100));
        assert!(
            !s.contains(7, 300),
            "claimed again at 300, held, never started"
        );
        assert!(!s.contains(8, 100));
    }

    #[test]
    fn only_whole_lines_count_and_an_old_entry_matches_any_claim() {
        let dir = tempfile::tempdir().unwrap();
        // "12 5" lost its newline (and maybe digits) in a power cut; "9" is
        // an entry from before claims were told apart.
        std::fs::write(dir.path().join(FILE_NAME), "7 1\nx1\n42 2\n9\n1 2 3\n12 5").unwrap();
        let s = read(dir.path()).unwrap();
        assert!(s.contains(7, 1) && s.contains(42, 2) && s.contains(9, 12345));
        assert!(!s.contains(12, 5) && !s.contains(1, 2));
    }

    #[test]
    fn a_missing_file_reads_as_nothing_started() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), Starts::default());
        assert!(
            !dir.path().join(FILE_NAME).exists(),
            "reading creates nothing"
        );
    }

    #[test]
    fn the_file_stays_bounded_and_keeps_the_unrecorded_runs() {
        let dir = tempfile::tempdir().unwrap();
        let log = StartLog::open(dir.path()).unwrap();
        log.note(1, 10);
        log.note(2, 20);
        for id in 1_000_000..1_020_000 {
            log.note(id, id);
            log.forget(id);
        }
        let size = std::fs::metadata(dir.path().join(FILE_NAME)).unwrap().len();
        assert!(size <= REWRITE_AT + 32, "{size} bytes");
        let started = log.started().unwrap();
        assert!(
            started.contains(1, 10) && started.contains(2, 20),
            "live entries kept"
        );
        assert!(
            started.runs.len() < 10_000,
            "{} entries",
            started.runs.len()
        );
    }
}
