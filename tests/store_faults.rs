//! Store faults under a running daemon: a full disk (a file-size limit on
//! the real binary, and a full tmpfs where mounting is allowed) and a
//! database locked by another process. Each must answer 503 with
//! Retry-After — never a 2xx for an event that is not committed — and
//! recover by itself once the fault is gone.

mod ingest_support;
mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ingest_support::{PATIENCE, Reply, post, start_daemon_in};
use support::*;

fn event(id: &str, pad: usize) -> Vec<u8> {
    format!(r#"{{"id":"{id}","type":"t","pad":"{}"}}"#, "x".repeat(pad)).into_bytes()
}

async fn send(c: &reqwest::Client, url: &str, body: &[u8]) -> Reply {
    let sig = format!("sha256={}", hmac_hex("k", body));
    post(c, url, &vec![("X-Sig".into(), sig)], body).await
}

fn assert_503(r: &Reply, what: &str) {
    assert_eq!(r.status, 503, "{what}: {:?}", r.json);
    let retry = r
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    assert!(
        retry.is_some_and(|s| s >= 1),
        "{what}: Retry-After {retry:?}"
    );
}

/// Files the answer to `id`: a 200 must say accepted, anything else must
/// be a proper 503.
fn sort_answer(id: String, r: &Reply, acked: &mut Vec<String>, refused: &mut Vec<String>) {
    if r.status == 200 {
        assert_eq!(r.word(), "accepted", "{id}");
        acked.push(id);
    } else {
        assert_503(r, &id);
        refused.push(id);
    }
}

/// Every id answered 200 is committed in `db`, and none answered 503 is.
fn assert_stored_as_answered(db: &Path, acked: &[String], refused: &[String]) {
    let stored = stored_ids(db);
    for id in acked {
        assert!(
            stored.contains(id),
            "{id} was answered 200 but is not stored"
        );
    }
    for id in refused {
        assert!(!stored.contains(id), "{id} was answered 503 but is stored");
    }
}

/// Sends the events `ids` (padded with `pad` bytes) one by one; each must
/// be accepted (after a fault: stored now, not taken for a duplicate).
async fn send_accepted(
    c: &reqwest::Client,
    url: &str,
    ids: impl IntoIterator<Item = String>,
    pad: usize,
) {
    for id in ids {
        let r = send(c, url, &event(&id, pad)).await;
        assert_eq!(
            (r.status, r.word()),
            (200, "accepted"),
            "{id}: {:?}",
            r.json
        );
    }
}

/// The real binary with one generic source `s` (secret `k`).
struct Spawned {
    dir: tempfile::TempDir,
    p: Proc,
    /// Its database.
    db: PathBuf,
    c: reqwest::Client,
    /// The source's push URL.
    url: String,
}

/// Spawns the binary and stores `first`, so the database exists.
async fn spawn_with(first: &str) -> Spawned {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &generic_source("s", "k"));
    let p = Proc::spawn(&cfg, &[]);
    let db = dir.path().join("state/hookd.db");
    let c = reqwest::Client::new();
    let url = p.url("/hooks/s");
    let r = send(&c, &url, &event(first, 10)).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    Spawned { dir, p, db, c, url }
}

/// The event ids committed in the database at `db`.
fn stored_ids(db: &Path) -> BTreeSet<String> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c.prepare("SELECT event_id FROM events").unwrap();
    st.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Sets the soft RLIMIT_FSIZE of process `pid` (the hard limit stays
/// unlimited, so it can be raised again).
fn set_fsize_limit(pid: u32, soft: Option<u64>) {
    let lim = libc::rlimit {
        rlim_cur: soft.unwrap_or(libc::RLIM_INFINITY),
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: prlimit(2) on our own child with a valid rlimit.
    let rc = unsafe { libc::prlimit(pid as i32, libc::RLIMIT_FSIZE, &lim, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

#[tokio::test]
async fn file_size_limit_is_503_and_recovers_without_losing_an_ack() {
    let Spawned { dir, p, db, c, url } = spawn_with("warm").await;
    let wal = dir.path().join("state/hookd.db-wal");

    // No file may grow past its current size: the next WAL append fails
    // (EFBIG; hookd handles SIGXFSZ instead of dying of it).
    set_fsize_limit(p.child.id(), Some(size(&wal).max(size(&db))));
    let mut acked = vec!["warm".to_string()];
    let mut refused = Vec::new();
    for i in 0..50 {
        let id = format!("full-{i}");
        let r = send(&c, &url, &event(&id, 8000)).await;
        sort_answer(id, &r, &mut acked, &mut refused);
        if refused.len() >= 5 {
            break;
        }
    }
    assert!(refused.len() >= 5, "the limit never refused a write");
    eprintln!(
        "file-size limit: {} acked, {} refused",
        acked.len(),
        refused.len()
    );
    assert_stored_as_answered(&db, &acked, &refused);
    assert!(
        p.stderr().contains("503"),
        "a warning is logged: {}",
        p.stderr()
    );

    // Space returns: the same events are now accepted (not duplicates).
    set_fsize_limit(p.child.id(), None);
    send_accepted(&c, &url, refused.iter().cloned(), 8000).await;
    let stored = stored_ids(&db);
    assert_eq!(stored.len(), acked.len() + refused.len());
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait(PATIENCE), Some(0));
}

/// A tmpfs mounted over a directory for the length of a test.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` when this machine does not let the test mount (not root).
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("tmpfs")
            .arg(at)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the filesystem holding `dir` with one file; returns its path.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
    path
}

#[tokio::test]
async fn full_filesystem_is_503_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let Some(mount) = Tmpfs::mount(&state, "4m") else {
        eprintln!(
            "skipped: cannot mount a tmpfs here (needs root); the file-size limit test covers disk full"
        );
        return;
    };
    let d = start_daemon_in(dir, "", &generic_source("s", "k")).await;
    let c = reqwest::Client::new();
    let url = d.url("/hooks/s");
    let r = send(&c, &url, &event("before", 10)).await;
    assert_eq!(r.status, 200, "{:?}", r.json);

    let filler = fill(&state);
    for i in 0..3 {
        assert_503(
            &send(&c, &url, &event(&format!("full-{i}"), 8000)).await,
            "full",
        );
    }
    let db = state.join("hookd.db");
    assert_eq!(
        stored_ids(&db),
        BTreeSet::from(["before".to_string()]),
        "nothing refused is stored"
    );

    std::fs::remove_file(&filler).unwrap();
    send_accepted(&c, &url, (0..3).map(|i| format!("full-{i}")), 8000).await;
    assert_eq!(stored_ids(&db).len(), 4);
    d.stop().await;
    drop(mount);
}

#[tokio::test]
async fn database_locked_by_another_process_is_503_then_recovers() {
    let Spawned {
        dir: _dir,
        p,
        db,
        c,
        url,
    } = spawn_with("before").await;

    // Another process (this test) holds the write lock.
    let locker = rusqlite::Connection::open(&db).unwrap();
    locker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let (c, url) = (c.clone(), url.clone());
        tasks.spawn(async move { send(&c, &url, &event(&format!("locked-{i}"), 10)).await });
    }
    // Every request is answered (a bounded wait, not a hang), none with 2xx.
    for r in tasks.join_all().await {
        assert_503(&r, "locked");
    }
    locker.execute_batch("ROLLBACK").unwrap();
    assert_eq!(stored_ids(&db), BTreeSet::from(["before".to_string()]));

    // Released: the same events go in.
    send_accepted(&c, &url, (0..8).map(|i| format!("locked-{i}")), 10).await;
    assert_eq!(stored_ids(&db).len(), 9);
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait(PATIENCE), Some(0));
}

#[tokio::test]
async fn a_long_reader_does_not_block_ingest() {
    let Spawned {
        dir: _dir,
        p,
        db,
        c,
        url,
    } = spawn_with("before").await;

    // A reader (say `hookd events list` on a big table) holds a snapshot.
    let reader = rusqlite::Connection::open(&db).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let n: i64 = reader
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
    send_accepted(&c, &url, (0..5).map(|i| format!("while-reading-{i}")), 10).await;
    reader.execute_batch("COMMIT").unwrap();
    assert_eq!(stored_ids(&db).len(), 6);
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait(PATIENCE), Some(0));
}

#[tokio::test]
async fn a_full_write_queue_is_503_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // A short header_timeout as well: a request waiting on the store is in
    // progress, and must not be cut off as an idle connection.
    let d = start_daemon_in(
        dir,
        "max_pending = 1\nheader_timeout = \"1s\"",
        &generic_source("s", "k"),
    )
    .await;
    let db = d.dir.path().join("state/hookd.db");
    let c = reqwest::Client::new();
    let url = d.url("/hooks/s");
    // Startup work (pruning, the dispatcher's recovery) may hold the one
    // slot for a moment; like a provider, retry on 503.
    send_retrying(&c, &url, "before").await;

    // The writer waits on a lock; its one-slot queue fills; the rest of the
    // requests are refused without waiting.
    let locker = rusqlite::Connection::open(&db).unwrap();
    locker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..12 {
        let (c, url) = (c.clone(), url.clone());
        tasks.spawn(async move { send(&c, &url, &event(&format!("q-{i}"), 10)).await });
    }
    let answers = tasks.join_all().await;
    locker.execute_batch("ROLLBACK").unwrap();
    for r in &answers {
        assert_503(r, "queue full or locked");
    }
    let overloaded = answers
        .iter()
        .filter(|r| r.headers.get("retry-after").is_some_and(|v| v == "1"))
        .count();
    assert!(overloaded >= 1, "no request was refused as overloaded");
    assert_eq!(stored_ids(&db).len(), 1);
    send_retrying(&c, &url, "q-0").await;
    d.stop().await;
}

/// Sends until accepted, as a provider retries on 503 (the one-slot queue
/// may be busy with the daemon's own writes for a moment).
async fn send_retrying(c: &reqwest::Client, url: &str, id: &str) {
    for _ in 0..100 {
        let r = send(c, url, &event(id, 10)).await;
        if r.status == 200 {
            assert_eq!(r.word(), "accepted", "{id}");
            return;
        }
        assert_503(&r, id);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{id}: the one-slot queue never had room");
}

#[tokio::test]
async fn concurrent_batches_hitting_the_limit_never_ack_a_lost_event() {
    let Spawned { dir, p, db, c, url } = spawn_with("warm").await;
    let wal = dir.path().join("state/hookd.db-wal");

    // Room for a few batches, then the limit falls in the middle of one.
    set_fsize_limit(p.child.id(), Some(size(&wal).max(size(&db)) + (96 << 10)));
    let (mut acked, mut refused) = (vec!["warm".to_string()], Vec::new());
    for wave in 0..20 {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..16 {
            let (c, url, id) = (c.clone(), url.clone(), format!("w{wave}-{i}"));
            tasks.spawn(async move {
                let r = send(&c, &url, &event(&id, 6000)).await;
                (id, r)
            });
        }
        for (id, r) in tasks.join_all().await {
            sort_answer(id, &r, &mut acked, &mut refused);
        }
        if !refused.is_empty() {
            break;
        }
    }
    assert!(!refused.is_empty(), "the limit never refused a write");
    eprintln!(
        "concurrent: {} acked, {} refused",
        acked.len(),
        refused.len()
    );
    assert_stored_as_answered(&db, &acked, &refused);
    set_fsize_limit(p.child.id(), None);
    send_accepted(&c, &url, refused.iter().cloned(), 6000).await;
    assert_eq!(stored_ids(&db).len(), acked.len() + refused.len());
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait(PATIENCE), Some(0));
}

/// Files marked immutable (`chattr +i`) for the length of a test: the way
/// root makes a file read-only even through descriptors already open
/// (chmod changes nothing for an open descriptor, nor for root).
struct Immutable(Vec<PathBuf>);

impl Immutable {
    /// `None` where the filesystem or the user cannot set the flag.
    fn set(files: &[PathBuf]) -> Option<Immutable> {
        let mut guard = Immutable(Vec::new());
        for f in files {
            let ok = std::process::Command::new("chattr")
                .arg("+i")
                .arg(f)
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return None; // the guard clears what was set
            }
            guard.0.push(f.clone());
        }
        Some(guard)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        for f in &self.0 {
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .arg(f)
                .status();
        }
    }
}

#[tokio::test]
async fn database_made_read_only_is_503_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let d = start_daemon_in(dir, "", &generic_source("s", "k")).await;
    let state = d.dir.path().join("state");
    let db = state.join("hookd.db");
    let c = reqwest::Client::new();
    let url = d.url("/hooks/s");
    assert_eq!(send(&c, &url, &event("before", 10)).await.status, 200);

    let files = [db.clone(), state.join("hookd.db-wal")];
    let Some(ro) = Immutable::set(&files) else {
        eprintln!("skipped: cannot mark files immutable here (needs root and ext4-like fs)");
        d.stop().await;
        return;
    };
    for i in 0..3 {
        assert_503(
            &send(&c, &url, &event(&format!("ro-{i}"), 10)).await,
            "read-only",
        );
    }
    drop(ro);
    assert_eq!(stored_ids(&db), BTreeSet::from(["before".to_string()]));
    send_accepted(&c, &url, (0..3).map(|i| format!("ro-{i}")), 10).await;
    assert_eq!(stored_ids(&db).len(), 4);
    d.stop().await;
}
