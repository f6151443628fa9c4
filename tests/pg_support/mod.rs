//! A throwaway PostgreSQL for tests: one cluster per test binary, one fresh
//! database per test.
//!
//! The cluster is made with the PostgreSQL binaries of the machine
//! (`initdb`, `pg_ctl`, `createdb`: on `PATH` or in
//! `/usr/lib/postgresql/*/bin`) in a temporary directory, listens on a free
//! port of 127.0.0.1 only, trusts local connections, and is stopped and
//! removed when the test binary exits, whether its tests passed or
//! panicked. `initdb` refuses to run as root, so as root the cluster runs
//! as the `postgres` system user. `pg_ctl -w` returns once the server
//! accepts connections: no sleeps.
//!
//! Tests run the cluster with `fsync=off` (nothing there needs to survive
//! a power cut); [`durable_database`] gives a database on a second cluster
//! with PostgreSQL's durable defaults, for benchmarks that compare against
//! SQLite's `synchronous=FULL`.
//!
//! Without PostgreSQL, [`database`] prints one line saying the PostgreSQL
//! tests are skipped and returns `None`; with `HOOKD_REQUIRE_PG=1` (CI) it
//! fails the test instead.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// A database of its own for one test.
pub struct TestDb {
    /// `postgres://postgres@127.0.0.1:PORT/NAME`
    pub url: String,
    pub name: String,
    /// The cluster's data directory.
    pub data: PathBuf,
}

impl TestDb {
    /// The server's main process, from its `postmaster.pid`.
    pub fn postmaster_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }
}

struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    /// Holds the directory; removed at exit after the server stopped.
    root: PathBuf,
    port: u16,
    as_postgres: bool,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
static DURABLE: OnceLock<Result<Cluster, String>> = OnceLock::new();
static TLS: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// How a cluster runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `fsync=off`: for tests.
    Fast,
    /// PostgreSQL's durable defaults: for benchmarks.
    Durable,
    /// `ssl=on` with tests/certs/server.pem, signed by tests/certs/ca.pem.
    Tls,
}
static STOPPED: Mutex<bool> = Mutex::new(false);
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

/// A fresh, empty database on the test cluster, or `None` (with one line
/// on stderr) when this machine has no PostgreSQL.
pub fn database() -> Option<TestDb> {
    database_on(CLUSTER.get_or_init(|| start(Kind::Fast)))
}

/// Like [`database`], on a cluster that also accepts TLS, with the
/// certificate of tests/certs (for 127.0.0.1 and localhost, signed by the
/// private CA tests/certs/ca.pem).
pub fn tls_database() -> Option<TestDb> {
    database_on(TLS.get_or_init(|| start(Kind::Tls)))
}

/// Like [`database`], on a cluster that flushes its WAL at every commit
/// (`fsync=on`, `synchronous_commit=on`: PostgreSQL's defaults).
pub fn durable_database() -> Option<TestDb> {
    database_on(DURABLE.get_or_init(|| start(Kind::Durable)))
}

/// `postgres --version` of the machine's PostgreSQL.
pub fn server_version() -> Option<String> {
    let out = Command::new(find_bin()?.join("postgres"))
        .arg("--version")
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn database_on(cluster: &Result<Cluster, String>) -> Option<TestDb> {
    let cluster = match cluster {
        Ok(c) => c,
        Err(why) => {
            skip_or_fail(why);
            return None;
        }
    };
    let n = NEXT_DB.fetch_add(1, Ordering::Relaxed);
    let name = format!("t{}_{n}", std::process::id());
    let out = cluster.run(
        "createdb",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &cluster.port.to_string(),
            "-U",
            "postgres",
            &name,
        ],
    );
    check(&out, "createdb");
    Some(TestDb {
        url: format!("postgres://postgres@127.0.0.1:{}/{name}", cluster.port),
        name,
        data: cluster.data.clone(),
    })
}

/// The one line that tells a reader the PostgreSQL tests did not run. It
/// is written to the real stderr (not the test's captured output), once.
fn skip_or_fail(why: &str) {
    if std::env::var_os("HOOKD_REQUIRE_PG").is_some_and(|v| v == "1") {
        panic!("HOOKD_REQUIRE_PG=1 but no test PostgreSQL: {why}");
    }
    static SAID: OnceLock<()> = OnceLock::new();
    SAID.get_or_init(|| {
        let _ = writeln!(
            std::io::stderr().lock(),
            "SKIPPING the PostgreSQL tests: {why} (install the postgresql package to run them)"
        );
    });
}

/// Where `initdb` and `pg_ctl` are: `PATH` first, then Debian's layout.
fn find_bin() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>());
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"));
    on_path.chain(debian).find(|d| {
        ["initdb", "pg_ctl", "createdb"]
            .iter()
            .all(|b| d.join(b).is_file())
    })
}

fn start(kind: Kind) -> Result<Cluster, String> {
    let bin = find_bin().ok_or("initdb, pg_ctl and createdb were not found")?;
    let as_postgres = unsafe { libc::geteuid() } == 0;
    let root = tempfile::Builder::new()
        .prefix("hookd-pg-")
        .tempdir()
        .map_err(|e| format!("cannot make a temporary directory: {e}"))?
        .keep();
    let data = root.join("data");
    let cluster = Cluster {
        bin,
        data,
        root,
        port: free_port()?,
        as_postgres,
    };
    if as_postgres {
        chown_to_postgres(&cluster.root)?;
    }
    let init = cluster.run(
        "initdb",
        &[
            "-D",
            path_str(&cluster.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        ],
    );
    ok_or(&init, "initdb")?;
    let mut opts = format!(
        "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync={} -c max_connections=200",
        cluster.port,
        path_str(&cluster.root),
        if kind == Kind::Durable { "on" } else { "off" }
    );
    if kind == Kind::Tls {
        opts += &tls_files(&cluster)?;
    }
    let log = cluster.root.join("server.log");
    let started = cluster.run(
        "pg_ctl",
        &[
            "-D",
            path_str(&cluster.data),
            "-l",
            path_str(&log),
            "-o",
            &opts,
            "-w",
            "-t",
            "60",
            "start",
        ],
    );
    if let Err(e) = ok_or(&started, "pg_ctl start") {
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&cluster.root);
        return Err(format!("{e}\n{tail}"));
    }
    // SAFETY: registers a plain extern "C" function; it runs at exit.
    unsafe { libc::atexit(stop_at_exit) };
    Ok(cluster)
}

/// Stops the server (immediate: the data is thrown away) and removes it.
extern "C" fn stop_at_exit() {
    let Ok(mut stopped) = STOPPED.lock() else {
        return;
    };
    if std::mem::replace(&mut *stopped, true) {
        return;
    }
    for c in [CLUSTER.get(), DURABLE.get(), TLS.get()]
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = c.run(
            "pg_ctl",
            &["-D", path_str(&c.data), "-m", "immediate", "-w", "stop"],
        );
        let _ = std::fs::remove_dir_all(&c.root);
    }
}

impl Cluster {
    /// Runs one of the PostgreSQL programs, as `postgres` when we are root.
    fn run(&self, program: &str, args: &[&str]) -> Output {
        let exe = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args)
            .env_remove("PGDATA")
            .env_remove("PGHOST")
            .env_remove("PGPORT")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()))
    }
}

/// Puts the test certificate and key where the server can read them (the
/// key private to the server's user, as PostgreSQL demands); returns the
/// server options that use them.
fn tls_files(c: &Cluster) -> Result<String, String> {
    let certs = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/certs");
    let (cert, key) = (c.root.join("server.pem"), c.root.join("server.key"));
    for (from, to) in [("server.pem", &cert), ("server.key", &key)] {
        std::fs::copy(certs.join(from), to).map_err(|e| format!("cannot copy {from}: {e}"))?;
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| e.to_string())?;
    if c.as_postgres {
        for f in [&cert, &key] {
            chown_to_postgres(f)?;
        }
    }
    Ok(format!(
        " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
        path_str(&cert),
        path_str(&key)
    ))
}

fn ok_or(out: &Output, what: &str) -> Result<(), String> {
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

fn check(out: &Output, what: &str) {
    if let Err(e) = ok_or(out, what) {
        panic!("{e}");
    }
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("cannot find a free port: {e}"))?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

fn chown_to_postgres(dir: &Path) -> Result<(), String> {
    let out = Command::new("chown")
        .args(["postgres:", path_str(dir)])
        .output()
        .map_err(|e| format!("cannot run chown: {e}"))?;
    ok_or(&out, "chown to the postgres user")
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}
