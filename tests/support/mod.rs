//! Shared test support: start a real hookd, in-process or as a process.
//!
//! In-process (`TestDaemon::start`) is fast and gives direct access to the
//! store and metrics. As a process (`Proc::spawn`) it is the real binary:
//! needed for signals (SIGKILL, SIGTERM, SIGHUP). Readiness of the process
//! comes from its own sd_notify `READY=1` on a socket the test owns — no
//! sleeps, no port guessing (the `STATUS=` line names the bound address).
#![allow(dead_code)]

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hookd::daemon::{Daemon, StartOptions};
use tempfile::TempDir;

/// Config header: state in `dir`, ephemeral ports. Append sources/handlers.
pub fn base_config(dir: &Path) -> String {
    format!(
        "[daemon]\nstate_dir = \"{}\"\nshutdown_grace = \"5s\"\n\n[server]\nlisten = [\"127.0.0.1:0\"]\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n",
        dir.join("state").display()
    )
}

/// Writes `base_config + body` to `dir/receiver.toml` and returns its path.
pub fn write_config(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("receiver.toml");
    std::fs::write(&path, format!("{}{body}", base_config(dir))).unwrap();
    path
}

/// Writes an executable script into `dir` and returns its path.
pub fn script(dir: &Path, name: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// A daemon running inside the test process.
pub struct TestDaemon {
    pub dir: TempDir,
    pub config_path: PathBuf,
    pub daemon: Option<Daemon>,
    pub base: String,
    pub admin: Option<String>,
}

impl TestDaemon {
    pub async fn start(body: &str) -> TestDaemon {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, body).await
    }

    pub async fn start_in(dir: TempDir, body: &str) -> TestDaemon {
        let config_path = write_config(dir.path(), body);
        let cfg = hookd::config::load(&config_path)
            .unwrap_or_else(|e| panic!("test config invalid: {e}"));
        let daemon = Daemon::start(cfg, StartOptions::default()).await.unwrap();
        let base = format!("http://{}", daemon.push_addrs[0]);
        let admin = daemon.admin_addr.map(|a| format!("http://{a}"));
        TestDaemon {
            dir,
            config_path,
            daemon: Some(daemon),
            base,
            admin,
        }
    }

    pub fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().expect("running")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the daemon (graceful) and gives back its directory.
    pub async fn stop(mut self) -> TempDir {
        if let Some(d) = self.daemon.take() {
            d.shutdown().await;
        }
        self.dir
    }

    /// A direct read connection to the daemon's database.
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.dir.path().join("state/hookd.db")).unwrap()
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.db().query_row(sql, [], |r| r.get(0)).unwrap()
    }
}

/// Polls `f` until it returns Some, up to `limit` (a safety net for
/// conditions that have no signal of their own, never the assertion).
pub async fn eventually<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "condition not reached within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`eventually`] for a condition that must be awaited (a query to
/// another process's database, say).
pub async fn eventually_async<T, F: std::future::Future<Output = Option<T>>>(
    limit: Duration,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "condition not reached within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The real `hookd` binary, with a notify socket the test listens on.
pub struct Proc {
    pub child: Child,
    pub notify: UnixDatagram,
    pub notify_path: PathBuf,
    pub addr: String,
    pub stderr_path: PathBuf,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_hookd")
}

impl Proc {
    /// Starts `hookd -c config run` and waits for READY=1.
    pub fn spawn(config: &Path, extra_env: &[(&str, &str)]) -> Proc {
        let dir = config.parent().unwrap();
        let notify_path = dir.join(format!("notify-{}.sock", fastrand::u32(..)));
        let _ = std::fs::remove_file(&notify_path);
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        notify
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let stderr_path = dir.join(format!("stderr-{}.log", fastrand::u32(..)));
        let mut cmd = Command::new(bin());
        cmd.args(["-c", config.to_str().unwrap(), "run"])
            .env("NOTIFY_SOCKET", &notify_path)
            .env("RUST_BACKTRACE", "0")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let mut p = Proc {
            child,
            notify,
            notify_path,
            addr: String::new(),
            stderr_path,
        };
        let ready = p.wait_for("READY=1");
        p.addr = ready
            .lines()
            .find_map(|l| l.strip_prefix("STATUS=listening on "))
            .and_then(|s| s.split_whitespace().next())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no address in {ready:?}; stderr: {}", p.stderr()));
        p
    }

    /// Waits for a notify datagram containing `what`; returns the datagram.
    pub fn wait_for(&mut self, what: &str) -> String {
        let mut buf = vec![0u8; 4096];
        loop {
            match self.notify.recv(&mut buf) {
                Ok(n) => {
                    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                    if msg.lines().any(|l| l == what || l.starts_with(what)) {
                        return msg;
                    }
                }
                Err(e) => panic!("no {what} from hookd: {e}; stderr: {}", self.stderr()),
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// SIGKILL and reap.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for exit, up to `limit`; returns the exit code.
    pub fn wait(mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "hookd did not exit within {limit:?}; stderr: {}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.notify_path);
    }
}

/// An HMAC-SHA256 hex signature over `body`, as a generic `hmac` source wants.
pub fn hmac_hex(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(body);
    hex::encode(m.finalize().into_bytes())
}

/// A generic source using `hmac_hex` in `X-Sig: sha256=…`, ids from `/id`, types from `/type`.
pub fn generic_source(name: &str, secret: &str) -> String {
    format!(
        "[[source]]\nname = \"{name}\"\nprovider = \"generic\"\nsecret = \"{secret}\"\nsignature = {{ scheme = \"hmac\", header = \"X-Sig\", prefix = \"sha256=\" }}\nextract = {{ id = [\"json:/id\"], type = [\"json:/type\"] }}\n\n"
    )
}

/// POSTs a correctly signed event to a `generic_source`.
pub async fn post_signed(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let r = client
        .post(url)
        .header(
            "X-Sig",
            format!("sha256={}", hmac_hex(secret, body.as_bytes())),
        )
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// A read connection to the database of the daemon whose directory is
/// `dir`; it waits up to 10 s for the daemon's writer instead of failing
/// with "database is locked".
pub fn state_db(dir: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(dir.join("state/hookd.db")).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c
}

/// Waits up to `limit` until no delivery in the database of the daemon in
/// `dir` is pending, running or failed.
pub async fn all_settled(dir: &Path, limit: Duration) {
    eventually(limit, || {
        let open: i64 = state_db(dir)
            .query_row(
                "SELECT COUNT(*) FROM deliveries WHERE status IN ('pending', 'running', 'failed')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        (open == 0).then_some(())
    })
    .await
}

/// The lines of the file at `path` (none while it does not exist).
pub fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A handler script `<dir>/<name>.sh` that appends each event's id to
/// `<dir>/<name>.out`.
pub fn id_recorder(dir: &Path, name: &str) -> PathBuf {
    let out = dir.join(format!("{name}.out"));
    script(
        dir,
        &format!("{name}.sh"),
        &format!("#!/bin/sh\necho \"$HOOKD_EVENT_ID\" >> {}\n", out.display()),
    )
}
