//! hookd against adnanh/webhook, end to end: signed GitHub-style pushes in,
//! one `/bin/true` run per event out, both daemons measured in the same run.
//!
//! For each daemon: wrk (1 thread, 16 connections, `HOOKD_BENCH_SECS`,
//! default 5 s) posts a fixed body with its `X-Hub-Signature-256`
//! (HMAC-SHA256 over the body, computed here once: GitHub signs only the
//! body, so the signature is the same for every request) and a unique
//! `X-GitHub-Delivery` per request (a Lua counter; see `WRK_LUA`). The clock
//! runs from just before wrk starts until every accepted request's handler
//! run is recorded:
//!
//! * hookd (the release binary, a process of its own): each accepted event
//!   has a delivery in SQLite, and the run is over when every delivery has
//!   succeeded (each attempt is a row in `attempts`);
//! * adnanh/webhook 2.8.0 (Debian's `webhook`; installed with apt-get when
//!   missing), with a `payload-hmac-sha256` trigger rule on the same header
//!   and `/bin/true`. It stores nothing, so "recorded" is its `-verbose` log
//!   line `finished handling` (one per run, after waiting for the command).
//!   The baseline runs the command inside the request
//!   (`include-command-output-in-response`), so an answer means a run. By
//!   default webhook answers 200 *before* it runs the command, in a
//!   goroutine per request: its ack rate is then not its run rate, a
//!   backlog runs all at once, and past the open-files limit those runs
//!   fail to start (logged as "error occurred" and as finished, never
//!   retried). That mode is the last row, its failed runs counted and left
//!   out of its rate.
//!
//! Alongside: a spawn loop (`/bin/true` in `concurrency` threads, no HTTP,
//! no store) through `std::process::Command`, which on Linux/glibc spawns
//! with `posix_spawn`, i.e. `clone3(CLONE_VM|CLONE_VFORK)`, the same
//! primitive Go's `os/exec` uses. Rounds alternate the order of the
//! daemons; figures are ratios to webhook in the same round.
//!
//!   cargo bench --bench webhook
//!   HOOKD_BENCH_ROUNDS=3 HOOKD_BENCH_SECS=5 HOOKD_BENCH_CONC=4,16 cargo bench --bench webhook

use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{clock_hz, env_num, thread_cpu_of};

const SECRET: &str = "bench-secret";
const BODY: &str = r#"{"ref":"refs/heads/main","repository":{"full_name":"octo/repo"},"pusher":{"name":"bench"},"commits":[]}"#;
/// Longest a daemon may take to finish its backlog after wrk ends.
const DRAIN_LIMIT: Duration = Duration::from_secs(300);
/// How often completion is checked: cheap reads, so they take no real
/// share of the two cores the daemons are measured on.
const CHECK_EVERY: Duration = Duration::from_millis(20);

/// Sets the fixed body and signature once; each request gets its own
/// delivery id (`<nonce>-<thread>-<counter>`), so every push is a new event.
const WRK_LUA: &str = r#"
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  nonce, path, counter = args[1], args[2], 0
  wrk.method = "POST"
  wrk.body = args[3]
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-GitHub-Event"] = "push"
  wrk.headers["X-Hub-Signature-256"] = "sha256=" .. args[4]
end
function request()
  counter = counter + 1
  wrk.headers["X-GitHub-Delivery"] = nonce .. "-" .. tid .. "-" .. counter
  return wrk.format(nil, path)
end
"#;

/// One daemon's run: what the load generator saw and what it cost.
struct Measured {
    /// Requests answered 2xx (wrk's count).
    acked: u64,
    /// Handler runs recorded, failed ones included.
    runs: u64,
    /// Runs that failed (webhook: could not start; see `Webhook::failed`).
    failed: u64,
    wrk_secs: f64,
    /// From the first request until the last run was recorded.
    end_to_end_secs: f64,
    /// CPU µs per run: the daemon itself, and its (reaped) children.
    cpu_own_us: f64,
    cpu_children_us: f64,
    /// wrk's CPU µs per run (it shares the two cores while it runs).
    cpu_wrk_us: f64,
    /// Share of the machine's CPU time left idle during the run.
    idle: f64,
    /// The daemon's CPU µs per run by thread name (hookd's are named).
    by_thread: Vec<(String, f64)>,
}

impl Measured {
    fn ack_rate(&self) -> f64 {
        self.acked as f64 / self.wrk_secs
    }
    /// Successful runs per second, end to end.
    fn run_rate(&self) -> f64 {
        (self.runs - self.failed) as f64 / self.end_to_end_secs
    }
}

fn main() {
    ensure_installed(&[("webhook", "webhook"), ("wrk", "wrk")]);
    let rounds = env_num("HOOKD_BENCH_ROUNDS", 2);
    let secs = env_num("HOOKD_BENCH_SECS", 5);
    let concs: Vec<usize> = std::env::var("HOOKD_BENCH_CONC")
        .unwrap_or_else(|_| "4,16".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let lua = dir.path().join("github.lua");
    std::fs::write(&lua, WRK_LUA).unwrap();
    let sig = signature();
    println!(
        "hookd vs adnanh/webhook: wrk 1 thread, 16 connections, {secs} s per target; \
         /bin/true per event; {rounds} round(s), order alternating"
    );
    for round in 0..rounds {
        println!("round {}:", round + 1);
        let spawn = spawn_loop(4, 500);
        println!("  spawn loop, 4 threads (posix_spawn/vfork): {spawn:>6.0} runs/s");
        let mut targets: Vec<Target> = vec![Target::Webhook { inline: true }];
        targets.extend(concs.iter().map(|&c| Target::Hookd { concurrency: c }));
        targets.push(Target::Webhook { inline: false });
        if round % 2 == 1 {
            targets.reverse();
        }
        let mut results = Vec::new();
        for t in &targets {
            let work = dir.path().join(format!("r{round}-{}", t.slug()));
            std::fs::create_dir_all(&work).unwrap();
            let m = t.measure(&work, &lua, &sig, secs, &format!("r{round}{}", t.slug()));
            results.push((t, m));
        }
        report(&results);
    }
}

/// What is measured.
#[derive(Clone, Copy)]
enum Target {
    Webhook { inline: bool },
    Hookd { concurrency: usize },
}

impl Target {
    fn slug(&self) -> String {
        match self {
            Target::Webhook { inline: false } => "webhook".into(),
            Target::Webhook { inline: true } => "webhook-inline".into(),
            Target::Hookd { concurrency } => format!("hookd-c{concurrency}"),
        }
    }

    fn label(&self) -> String {
        match self {
            Target::Webhook { inline: false } => "adnanh/webhook, default".into(),
            Target::Webhook { inline: true } => "adnanh/webhook (baseline)".into(),
            Target::Hookd { concurrency } => format!("hookd, concurrency {concurrency}"),
        }
    }

    fn measure(&self, work: &Path, lua: &Path, sig: &str, secs: u64, nonce: &str) -> Measured {
        match *self {
            Target::Webhook { inline } => {
                let d = Webhook::start(work, inline);
                let mut m = load_and_drain(
                    d.addr,
                    "/hooks/bench",
                    lua,
                    sig,
                    secs,
                    nonce,
                    d.pid(),
                    || d.recorded(),
                );
                m.failed = d.failed();
                drop(d);
                m
            }
            Target::Hookd { concurrency } => {
                let d = Hookd::start(work, concurrency);
                let m = load_and_drain(
                    d.addr,
                    "/hooks/github",
                    lua,
                    sig,
                    secs,
                    nonce,
                    d.pid(),
                    || d.recorded(),
                );
                drop(d);
                m
            }
        }
    }
}

/// Runs wrk against `addr`, then waits until `recorded` reports every
/// accepted request's run recorded. `recorded` returns (accepted, runs
/// recorded, work still open).
#[allow(clippy::too_many_arguments)]
fn load_and_drain(
    addr: SocketAddr,
    path: &str,
    lua: &Path,
    sig: &str,
    secs: u64,
    nonce: &str,
    pid: u32,
    mut recorded: impl FnMut() -> (u64, u64, bool),
) -> Measured {
    let cpu0 = cpu_of(pid);
    let threads0 = cpu_by_thread(pid);
    let (wrk0, stat0) = (cpu_of_reaped_children(), machine_cpu());
    let t0 = Instant::now();
    let out = Command::new("wrk")
        .args(["-t1", "-c16", &format!("-d{secs}s"), "-s"])
        .arg(lua)
        .arg(format!("http://{addr}"))
        .args(["--", nonce, path, BODY, sig])
        .output()
        .expect("wrk runs");
    let wrk_secs = t0.elapsed().as_secs_f64();
    let wrk_cpu = cpu_of_reaped_children() - wrk0;
    let text = String::from_utf8_lossy(&out.stdout);
    let (total, non2xx) = parse_wrk(&text);
    let acked = total - non2xx;
    assert!(acked > 0, "no request was accepted:\n{text}");
    let (runs, end_to_end) = loop {
        let (accepted, runs, open) = recorded();
        if accepted >= acked && runs >= accepted && !open {
            break (runs, t0.elapsed());
        }
        assert!(t0.elapsed() < DRAIN_LIMIT, "runs were not all recorded");
        std::thread::sleep(CHECK_EVERY);
    };
    let cpu1 = cpu_of(pid);
    let stat1 = machine_cpu();
    let idle = (stat1.0 - stat0.0) / (stat1.1 - stat0.1).max(1.0);
    let per_run = |a: f64, b: f64| (b - a) * 1e6 / runs as f64;
    let mut by_thread: Vec<(String, f64)> = cpu_by_thread(pid)
        .into_iter()
        .map(|(name, t)| {
            let before = threads0.get(&name).copied().unwrap_or(0.0);
            (name, per_run(before, t))
        })
        .filter(|(_, us)| *us >= 1.0)
        .collect();
    by_thread.sort_by(|a, b| b.1.total_cmp(&a.1));
    Measured {
        acked,
        runs,
        failed: 0,
        wrk_secs,
        end_to_end_secs: end_to_end.as_secs_f64(),
        cpu_own_us: per_run(cpu0.0, cpu1.0),
        cpu_children_us: per_run(cpu0.1, cpu1.1),
        cpu_wrk_us: per_run(0.0, wrk_cpu),
        idle,
        by_thread,
    }
}

fn report(results: &[(&Target, Measured)]) {
    let baseline = results
        .iter()
        .find(|(t, _)| matches!(t, Target::Webhook { inline: true }))
        .map(|(_, m)| m.run_rate())
        .unwrap_or(f64::NAN);
    for (t, m) in results {
        println!(
            "  {:<28} acked {:>6.0} req/s; end to end {:>6.0} runs/s ({} runs ok, {} failed, in {:.2} s) \
             = {:.2}× webhook; CPU per run {:>4.0} µs daemon + {:>4.0} µs children",
            t.label(),
            m.ack_rate(),
            m.run_rate(),
            m.runs - m.failed,
            m.failed,
            m.end_to_end_secs,
            m.run_rate() / baseline,
            m.cpu_own_us,
            m.cpu_children_us
        );
        println!(
            "      wrk {:.0} µs per run; machine idle {:.0} % of the run",
            m.cpu_wrk_us,
            m.idle * 100.0
        );
        if std::env::var_os("HOOKD_BENCH_THREADS").is_some() {
            let parts: Vec<String> = m
                .by_thread
                .iter()
                .map(|(n, us)| format!("{n} {us:.0}"))
                .collect();
            println!(
                "      daemon CPU µs per run by thread: {}",
                parts.join(", ")
            );
        }
    }
}

/// wrk's total requests and non-2xx answers.
fn parse_wrk(text: &str) -> (u64, u64) {
    let num_before = |key: &str| {
        text.lines()
            .find(|l| l.contains(key))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
    };
    let total = num_before(" requests in ").unwrap_or(0);
    let non2xx = text
        .lines()
        .find(|l| l.contains("Non-2xx or 3xx responses:"))
        .and_then(|l| l.rsplit(':').next()?.trim().parse().ok())
        .unwrap_or(0);
    (total, non2xx)
}

/// The hex HMAC-SHA256 of `BODY` under `SECRET`, as GitHub signs it.
fn signature() -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    m.update(BODY.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// `threads` threads, each spawning `/bin/true` `per` times and waiting
/// for it; runs per second.
fn spawn_loop(threads: usize, per: usize) -> f64 {
    let t = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..per {
                    assert!(Command::new("/bin/true").status().unwrap().success());
                }
            })
        })
        .collect();
    handles.into_iter().for_each(|h| h.join().unwrap());
    (threads * per) as f64 / t.elapsed().as_secs_f64()
}

/// Installs the Debian packages whose command is missing (the bench runs
/// as root on the development machines; elsewhere install them yourself).
fn ensure_installed(commands: &[(&str, &str)]) {
    let missing: Vec<&str> = commands
        .iter()
        .filter(|(cmd, _)| !on_path(cmd))
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return;
    }
    eprintln!("installing {missing:?} with apt-get");
    let ok = |c: &mut Command| c.status().is_ok_and(|s| s.success());
    let _ = ok(Command::new("apt-get").arg("update").arg("-qq"));
    assert!(
        ok(Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(&missing)),
        "apt-get install {missing:?} failed; install them and run again"
    );
}

fn on_path(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
}

/// Seconds of CPU used by `pid` itself and by the children it has reaped.
fn cpu_of(pid: u32) -> (f64, f64) {
    let hz = clock_hz();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the name in parentheses: utime, stime, cutime, cstime are fields 12–15.
    let f: Vec<f64> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    let get = |i: usize| f.get(i).copied().unwrap_or(0.0) / hz;
    (get(11) + get(12), get(13) + get(14))
}

/// CPU seconds (user + system) of each of `pid`'s live threads, summed by
/// thread name. A thread that ended takes its share with it, so this is a
/// picture of the long-lived threads, not a total.
fn cpu_by_thread(pid: u32) -> std::collections::HashMap<String, f64> {
    let mut out = std::collections::HashMap::new();
    for t in thread_cpu_of(&pid.to_string()).into_values() {
        *out.entry(t.name).or_default() += (t.user + t.sys) as f64 / clock_hz();
    }
    out
}

/// CPU seconds of this process's reaped children (wrk, here).
fn cpu_of_reaped_children() -> f64 {
    // SAFETY: rusage is plain data (all zeroes is valid); getrusage fills it.
    let u = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut u);
        u
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// (idle, total) jiffies of all CPUs, from /proc/stat.
fn machine_cpu() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    // user nice system idle iowait irq softirq steal: idle and iowait are idle.
    let idle = f.get(3).unwrap_or(&0.0) + f.get(4).unwrap_or(&0.0);
    (idle, f.iter().take(8).sum())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts connections on `addr` (webhook has no
/// other readiness signal).
fn wait_listening(addr: SocketAddr, child: &mut Child) {
    let t = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the daemon exited at start"
        );
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{addr} never listened"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// SIGTERM, then reap. Called from the daemons' `Drop`, so a bench that
/// panics mid-run leaves no daemon behind.
fn stop(child: &mut Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    // SAFETY: kill has no memory-safety preconditions; the pid is our
    // child's, not yet reaped, so it cannot have been reused.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let _ = child.wait();
}

/// adnanh/webhook with one hook, its log in a file we count runs in.
struct Webhook {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    /// Bytes of the log read so far, and the counts in them (200s,
    /// runs finished, runs failed).
    seen: std::cell::Cell<(u64, u64, u64, u64)>,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

impl Webhook {
    fn start(dir: &Path, inline: bool) -> Webhook {
        let hooks = dir.join("hooks.json");
        let hook = serde_json::json!([{
            "id": "bench",
            "execute-command": "/bin/true",
            "command-working-directory": dir,
            "include-command-output-in-response": inline,
            "trigger-rule": {"match": {
                "type": "payload-hmac-sha256",
                "secret": SECRET,
                "parameter": {"source": "header", "name": "X-Hub-Signature-256"}
            }}
        }]);
        std::fs::write(&hooks, hook.to_string()).unwrap();
        let port = free_port();
        let log = dir.join("webhook.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("webhook")
            .arg("-hooks")
            .arg(&hooks)
            .args(["-ip", "127.0.0.1", "-port", &port.to_string(), "-verbose"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("webhook starts");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut w = Webhook {
            child,
            addr,
            log,
            seen: Default::default(),
        };
        wait_listening(addr, &mut w.child);
        w
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// (requests answered 200, runs finished, false): read from the new
    /// part of the log only, so checking stays cheap as the log grows.
    fn recorded(&self) -> (u64, u64, bool) {
        let (mut offset, mut acked, mut runs, mut failed) = self.seen.get();
        let mut f = std::fs::File::open(&self.log).unwrap();
        f.seek(SeekFrom::Start(offset)).unwrap();
        let mut new = String::new();
        f.read_to_string(&mut new).unwrap();
        // Only whole lines; a partial last line is read again next time.
        let whole = new.rfind('\n').map_or(0, |i| i + 1);
        for line in new[..whole].lines() {
            acked += u64::from(line.contains("] 200 | "));
            runs += u64::from(line.contains("] finished handling "));
            // webhook logs "finished handling" for a command that failed
            // (or never started) too.
            failed += u64::from(line.contains("] error occurred: "));
        }
        offset += whole as u64;
        self.seen.set((offset, acked, runs, failed));
        (acked, runs, false)
    }

    /// Runs that webhook logged as failed: it starts a goroutine per
    /// request, so a backlog runs all at once, and past the open-files
    /// limit `pipe2` fails ("too many open files"); such a run is logged as
    /// finished too, and is not retried.
    fn failed(&self) -> u64 {
        self.seen.get().3
    }
}

/// hookd's release binary with a GitHub-style source and one exec handler.
struct Hookd {
    child: Child,
    addr: SocketAddr,
    db: PathBuf,
}

impl Drop for Hookd {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

impl Hookd {
    fn start(dir: &Path, concurrency: usize) -> Hookd {
        let port = free_port();
        let config = dir.join("receiver.toml");
        std::fs::write(
            &config,
            format!(
                r#"[daemon]
state_dir = "{state}"
shutdown_grace = "5s"
max_concurrency = {concurrency}
[server]
listen = ["127.0.0.1:{port}"]
[admin]
listen = ""
[[source]]
name = "github"
provider = "generic"
secret = "{SECRET}"
signature = {{ scheme = "hmac", header = "X-Hub-Signature-256", prefix = "sha256=", encoding = "hex", signed = "{{body}}" }}
extract = {{ id = ["header:X-GitHub-Delivery"], type = ["header:X-GitHub-Event"] }}
[[handler]]
name = "true"
command = ["/bin/true"]
working_dir = "{dir}"
concurrency = {concurrency}
"#,
                state = dir.join("state").display(),
                dir = dir.display(),
            ),
        )
        .unwrap();
        let notify = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&notify).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_hookd"))
            .arg("-c")
            .arg(&config)
            .arg("run")
            .env("NOTIFY_SOCKET", &notify)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("hookd starts");
        let h = Hookd {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            db: dir.join("state/hookd.db"),
        };
        let mut buf = [0u8; 4096];
        loop {
            let n = sock.recv(&mut buf).expect("hookd says READY=1");
            if String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == "READY=1")
            {
                break;
            }
        }
        h
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// (events stored, attempts recorded, deliveries still open).
    fn recorded(&self) -> (u64, u64, bool) {
        let c = rusqlite::Connection::open_with_flags(
            &self.db,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let q = |sql: &str| -> i64 { c.query_row(sql, [], |r| r.get(0)).unwrap() };
        let open = q(
            "SELECT EXISTS (SELECT 1 FROM deliveries WHERE status IN ('pending', 'failed'))
                      OR EXISTS (SELECT 1 FROM deliveries WHERE status = 'running')",
        );
        if open != 0 {
            return (0, 0, true);
        }
        let events = q("SELECT COUNT(*) FROM events") as u64;
        let ok = q("SELECT COUNT(*) FROM deliveries WHERE status = 'succeeded'") as u64;
        let attempts = q("SELECT COUNT(*) FROM attempts") as u64;
        assert_eq!(ok, events, "every event's run succeeded");
        (events, attempts, false)
    }
}
