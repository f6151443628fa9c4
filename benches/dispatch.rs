//! Dispatch benchmarks, each with a baseline measured in the same run:
//!
//! 1. exec: N stored events to a `/bin/true` handler (every attempt
//!    recorded in SQLite) vs spawning `/bin/true` N times in a tight loop, no
//!    hookd — once one at a time (concurrency 1, the loop as written) and
//!    once with 4 at once on both sides (concurrency 4, 4 looping threads).
//!    Half the loop runs before hookd and half after. `Command` spawns
//!    through glibc's `posix_spawn`, i.e. `clone3(CLONE_VM|CLONE_VFORK)`,
//!    the cheapest spawn Linux offers and the one Go's `os/exec` uses (see
//!    docs/performance-exec.md; `benches/webhook.rs` compares with
//!    adnanh/webhook end to end).
//! 2. stream: N stored events through one python3 stream handler vs piping
//!    the same NDJSON through the same script directly.
//! 3. http: N stored events forwarded by an http handler to a local
//!    keep-alive server answering 200 vs a keep-alive client loop posting to
//!    the same server (`dispatch_http`).
//! 4. replicas: N stored events to `/bin/true` (concurrency 4 per
//!    replica) on the PostgreSQL store with one and with two replicas,
//!    next to the SQLite node and the spawn loop, same run (skipped
//!    without PostgreSQL; the server keeps `fsync` on).
//! 5. latency: signed pushes at a steady rate to a `/bin/true` exec handler;
//!    receipt → handler start (the attempt's recorded start, taken just
//!    before the spawn) p50/p99, next to the push ack latency of the same
//!    requests as the baseline.
//!
//!   cargo bench --bench dispatch
//!   HOOKD_BENCH_N=5000 HOOKD_BENCH_STREAM_N=200000 HOOKD_BENCH_RATE=1000 HOOKD_BENCH_SECS=10 cargo bench --bench dispatch
//!   HOOKD_BENCH_ONLY=exec HOOKD_BENCH_THREADS=1 cargo bench --bench dispatch   # and CPU per run by thread
//!   HOOKD_BENCH_ONLY=http HOOKD_BENCH_HTTP_N=20000 cargo bench --bench dispatch
//!   HOOKD_BENCH_ONLY=replicas HOOKD_BENCH_N=4000 cargo bench --bench dispatch

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookd::daemon::Daemon;
use hookd::store::events::{self, NewEvent};
use hookd::store::{Store, StoreOptions};

mod common;
mod dispatch_http;
#[path = "../tests/pg_support/mod.rs"]
mod pg_support;
use common::{clock_hz, env_num, runtime, thread_cpu};

fn config(dir: &Path, handler: &str) -> hookd::config::Config {
    let text = format!(
        "[daemon]\nstate_dir = \"{}\"\nmax_concurrency = 4\n[server]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"\"\n\
         [[source]]\nname = \"b\"\nprovider = \"generic\"\nsecret = \"k\"\nsignature = {{ scheme = \"hmac\", header = \"X-Sig\" }}\n\
         extract = {{ id = [\"json:/id\"], type = [\"json:/type\"] }}\n{handler}",
        dir.join("state").display()
    );
    hookd::config::parse(&text, &dir.join("b.toml")).unwrap()
}

/// Event `i` of a preloaded run, routed to handler `h`.
fn bench_event(i: usize, h: &str) -> NewEvent {
    NewEvent {
        source: "b".into(),
        provider: "generic".into(),
        event_id: format!("e{i}"),
        id_synthetic: false,
        event_type: "t".into(),
        type_raw: "t".into(),
        occurred_at: None,
        received_at: hookd::timefmt::now_micros(),
        headers_json: "[]".into(),
        body: bytes::Bytes::from(format!(r#"{{"id":"e{i}","type":"t"}}"#)),
        verified: "bench".into(),
        handlers: vec![h.to_string()],
    }
}

/// Stores `n` events routed to handler `h` before the daemon starts.
fn preload(dir: &Path, n: usize, h: &str) {
    let rt = runtime(2, "preload");
    let store = Store::open(&dir.join("state"), StoreOptions::default()).unwrap();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for chunk in 0..n.div_ceil(1000) {
            let store = store.clone();
            let h = h.to_string();
            tasks.push(tokio::spawn(async move {
                store
                    .write(move |c| {
                        for i in chunk * 1000..((chunk + 1) * 1000).min(n) {
                            events::insert(c, &bench_event(i, &h))?;
                        }
                        Ok(())
                    })
                    .await
                    .unwrap()
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

fn succeeded(dir: &Path) -> i64 {
    let c = rusqlite::Connection::open(dir.join("state/hookd.db")).unwrap();
    c.query_row(
        "SELECT COUNT(*) FROM deliveries WHERE status = 'succeeded'",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

/// Whether any delivery is still open — answered from the partial indexes
/// in O(1), so polling it does not slow the daemon it measures.
fn open_work(c: &rusqlite::Connection) -> bool {
    c.query_row(
        "SELECT EXISTS (SELECT 1 FROM deliveries WHERE status IN ('pending', 'failed'))
             OR EXISTS (SELECT 1 FROM deliveries WHERE status = 'running')",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

/// Starts the daemon on preloaded work; returns seconds until all `n` succeeded.
fn drain(dir: &Path, handler: &str, n: usize) -> f64 {
    let rt = runtime(2, "hookd");
    let daemon = rt
        .block_on(Daemon::start(config(dir, handler), Default::default()))
        .unwrap();
    let t = Instant::now();
    let c = rusqlite::Connection::open(dir.join("state/hookd.db")).unwrap();
    while open_work(&c) {
        // Every 10 ms: adds under 1 % to a run of seconds, and the checks
        // (a read transaction each) no longer take a share of the two cores
        // the daemon is measured on (every 2 ms they took about 2 %).
        std::thread::sleep(Duration::from_millis(10));
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "dispatch did not finish"
        );
    }
    let secs = t.elapsed().as_secs_f64();
    if std::env::var_os("HOOKD_BENCH_THREADS").is_some() {
        eprintln!("  CPU µs per run by thread: {:?}", cpu_by_thread(n));
    }
    let st = daemon.store.sqlite().expect("a SQLite store").stats();
    rt.block_on(daemon.shutdown());
    assert_eq!(succeeded(dir), n as i64, "every delivery succeeded");
    println!(
        "  (store: {} writes in {} commits, {:.1} per commit)",
        st.jobs,
        st.commits,
        st.jobs as f64 / st.commits.max(1) as f64
    );
    secs
}

/// CPU µs per run (over `runs`) spent by each of this process's live
/// threads, user and system apart, grouped by thread name. Counted since
/// each thread started: the daemon's threads are its own, the main thread
/// also carries the preload and the baseline.
fn cpu_by_thread(runs: usize) -> std::collections::BTreeMap<String, u64> {
    let per_run = |t: u64| (t as f64 / clock_hz() * 1e6 / runs as f64).round() as u64;
    let mut per = std::collections::BTreeMap::new();
    for t in thread_cpu().into_values() {
        *per.entry(format!("{} user", t.name)).or_default() += per_run(t.user);
        *per.entry(format!("{} sys", t.name)).or_default() += per_run(t.sys);
    }
    per
}

/// hookd's exec runner without the queue or the store, as an exec slot
/// uses it: `threads` threads, `per` runs each.
fn runner_alone(threads: usize, per: usize) -> f64 {
    use hookd::dispatch::exec::ExecSpec;
    let spec = Arc::new(ExecSpec {
        command: vec!["/bin/true".into()],
        working_dir: std::env::temp_dir(),
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        timeout: Duration::from_secs(30),
        kill_grace: Duration::from_secs(5),
        output_cap: 64 << 10,
    });
    let t = Instant::now();
    let threads: Vec<_> = (0..threads)
        .map(|_| {
            let spec = spec.clone();
            std::thread::spawn(move || {
                let cancel = tokio_util::sync::CancellationToken::new();
                for _ in 0..per {
                    let out = hookd::dispatch::supervise::run(&spec, b"{}".to_vec(), &cancel);
                    assert!(out.succeeded());
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    t.elapsed().as_secs_f64()
}

/// The baseline: `threads` OS threads, each spawning `/bin/true` `per`
/// times in a tight loop and waiting for it.
fn spawn_loop(threads: usize, per: usize) -> f64 {
    let t = Instant::now();
    let threads: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                (0..per)
                    .for_each(|_| assert!(Command::new("/bin/true").status().unwrap().success()))
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    t.elapsed().as_secs_f64()
}

/// CPU seconds used so far by this process (all threads) and by its reaped children.
fn cpu_now() -> (f64, f64) {
    fn secs(who: libc::c_int) -> f64 {
        // SAFETY: getrusage fills the struct it is given.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut u) };
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(u.ru_utime) + tv(u.ru_stime)
    }
    (secs(libc::RUSAGE_SELF), secs(libc::RUSAGE_CHILDREN))
}

/// Runs `f`; returns its result and the CPU µs per run spent by this process and by the children.
fn cpu_per_run<T>(runs: usize, f: impl FnOnce() -> T) -> (T, f64, f64) {
    let (s0, c0) = cpu_now();
    let out = f();
    let (s1, c1) = cpu_now();
    let per = |d: f64| d * 1e6 / runs as f64;
    (out, per(s1 - s0), per(c1 - c0))
}

/// Exec dispatch at `conc`: the handler's `concurrency` and the baseline's
/// number of spawning threads are the same.
fn exec_bench(n: usize, conc: usize) {
    let dir = tempfile::tempdir().unwrap();
    preload(dir.path(), n, "t");
    let handler =
        format!("[[handler]]\nname = \"t\"\ncommand = [\"/bin/true\"]\nconcurrency = {conc}\n");
    // The baseline runs half before and half after hookd, so a machine that
    // speeds up or slows down during the run weighs on both sides alike.
    let per = n.div_ceil(conc);
    let halves = [per / 2, per - per / 2];
    let (before_s, before_cpu, before_kids) =
        cpu_per_run(halves[0] * conc, || spawn_loop(conc, halves[0]));
    let (hookd_s, hookd_cpu, hookd_kids) = cpu_per_run(n, || drain(dir.path(), &handler, n));
    let attempts: i64 = rusqlite::Connection::open(dir.path().join("state/hookd.db"))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM attempts", [], |r| r.get(0))
        .unwrap();
    let (after_s, after_cpu, after_kids) =
        cpu_per_run(halves[1] * conc, || spawn_loop(conc, halves[1]));
    let base_s = before_s + after_s;
    let weigh = |a: f64, b: f64| (a * halves[0] as f64 + b * halves[1] as f64) / per as f64;
    let (base_cpu, base_kids) = (weigh(before_cpu, after_cpu), weigh(before_kids, after_kids));
    let (runner_s, runner_cpu, runner_kids) = cpu_per_run(per * conc, || runner_alone(conc, per));
    let (h, b) = (n as f64 / hookd_s, (per * conc) as f64 / base_s);
    let cpu =
        |own: f64, kids: f64| format!("CPU per run: {own:.0} µs here, {kids:.0} µs in the child");
    println!("exec dispatch: {n} events to /bin/true, concurrency {conc}");
    println!(
        "  spawn loop (baseline): {b:>9.0} runs/s ({conc} thread(s)); {}",
        cpu(base_cpu, base_kids)
    );
    println!(
        "  runner alone, no store: {:>8.0} runs/s (pipes, process group, poll); {}",
        (per * conc) as f64 / runner_s,
        cpu(runner_cpu, runner_kids)
    );
    println!(
        "  hookd dispatch       : {h:>9.0} runs/s ({attempts} attempts recorded); {}",
        cpu(hookd_cpu, hookd_kids)
    );
    println!("  ratio                : {:>9.2}", h / b);
}

const STREAM_HANDLER: &str = r#"import sys, re
out = sys.stdout
pat = re.compile(rb'"id":(\d+)')
for line in sys.stdin.buffer:
    m = pat.search(line)
    out.write('{"id":%s,"ok":true}\n' % m.group(1).decode())
    out.flush()
"#;

fn stream_bench(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("ack.py");
    std::fs::write(&script, STREAM_HANDLER).unwrap();
    let python = which_python();
    preload(dir.path(), n, "s");
    let handler = format!(
        "[[handler]]\nname = \"s\"\nkind = \"stream\"\ncommand = [\"{python}\", \"{}\"]\nconcurrency = 512\n",
        script.display()
    );
    let hookd_s = drain(dir.path(), &handler, n);

    // Baseline: the same lines straight through the same script.
    let mut child = Command::new(&python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut input = Vec::new();
    for i in 0..n {
        writeln!(input, r#"{{"id":{i},"event_id":"e{i}","source":"b","type":"t","payload":{{"id":"e{i}","type":"t"}}}}"#).unwrap();
    }
    let t = Instant::now();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    child.wait().unwrap();
    let base_s = t.elapsed().as_secs_f64();
    let (h, b) = (n as f64 / hookd_s, n as f64 / base_s);
    println!("stream handler: {n} events through one python3 process, 512 in flight");
    println!("  raw pipe (baseline)  : {b:>9.0} events/s");
    println!("  hookd dispatch       : {h:>9.0} events/s (every ack recorded)");
    println!("  ratio                : {:>9.2}", h / b);
}

fn which_python() -> String {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn latency_bench(rate: u64, secs: u64) {
    use hmac::{Hmac, KeyInit, Mac};
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(2, "hookd");
    let cfg = config(
        dir.path(),
        "[[handler]]\nname = \"t\"\ncommand = [\"/bin/true\"]\nconcurrency = 4\n",
    );
    let daemon = rt.block_on(Daemon::start(cfg, Default::default())).unwrap();
    let url = format!("http://{}/hooks/b", daemon.push_addrs[0]);
    let n = (rate * secs) as usize;
    let acks: Vec<f64> = rt.block_on(async {
        let client = Arc::new(reqwest::Client::new());
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut tasks = Vec::with_capacity(n);
        for i in 0..n {
            tick.tick().await;
            let (client, url) = (client.clone(), url.clone());
            tasks.push(tokio::spawn(async move {
                let body = format!(r#"{{"id":"l{i}","type":"t"}}"#);
                let mut m = Hmac::<sha2::Sha256>::new_from_slice(b"k").unwrap();
                m.update(body.as_bytes());
                let sig = hex::encode(m.finalize().into_bytes());
                let t = Instant::now();
                let r = client
                    .post(&url)
                    .header("X-Sig", sig)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                t.elapsed().as_secs_f64() * 1000.0
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let t = Instant::now();
    while succeeded(dir.path()) < n as i64 && t.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    rt.block_on(daemon.shutdown());
    let c = rusqlite::Connection::open(dir.path().join("state/hookd.db")).unwrap();
    let mut stmt = c
        .prepare(
            "SELECT a.started_at - e.received_at FROM attempts a JOIN deliveries d ON d.id = a.delivery
             JOIN events e ON e.id = d.event WHERE a.attempt = 1",
        )
        .unwrap();
    let mut start: Vec<f64> = stmt
        .query_map([], |r| r.get::<_, i64>(0))
        .unwrap()
        .map(|v| v.unwrap() as f64 / 1000.0)
        .collect();
    let mut acks = acks;
    println!(
        "latency at {rate} events/s for {secs} s ({} events, exec /bin/true, concurrency 4)",
        start.len()
    );
    println!(
        "  push ack (baseline)  : p50 {:>6.2} ms  p99 {:>6.2} ms",
        percentile(&mut acks, 0.5),
        percentile(&mut acks, 0.99)
    );
    println!(
        "  receipt→handler start: p50 {:>6.2} ms  p99 {:>6.2} ms",
        percentile(&mut start, 0.5),
        percentile(&mut start, 0.99)
    );
}

/// `n` events routed to `h`, stored in the PostgreSQL database at `url`.
fn preload_pg(rt: &tokio::runtime::Runtime, url: &str, n: usize, h: &str) {
    rt.block_on(async {
        let store = hookd::store::pg::PgStore::open(url, Default::default())
            .await
            .unwrap();
        let events: Vec<NewEvent> = (0..n).map(|i| bench_event(i, h)).collect();
        for chunk in events.chunks(500) {
            store.insert_events(chunk.to_vec()).await.unwrap();
        }
    });
}

/// Starts `replicas` daemons on the PostgreSQL database at `url`, which
/// holds `n` deliveries; returns seconds until all succeeded.
fn drain_pg(url: &str, replicas: usize, handler: &str, n: usize) -> f64 {
    let dirs: Vec<_> = (0..replicas)
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    let rts: Vec<_> = (0..replicas)
        .map(|i| runtime(2, &format!("pg-{i}")))
        .collect();
    let probe = runtime(1, "probe");
    let db = probe.block_on(async {
        let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        c
    });
    let store = format!("[store]\nurl = \"{url}\"\n{handler}");
    let t = Instant::now();
    let daemons: Vec<Daemon> = rts
        .iter()
        .zip(&dirs)
        .map(|(rt, d)| {
            rt.block_on(Daemon::start(config(d.path(), &store), Default::default()))
                .unwrap()
        })
        .collect();
    let open = || -> bool {
        probe.block_on(async {
            db.query_one(
                "SELECT EXISTS (SELECT 1 FROM deliveries WHERE status IN ('pending', 'failed', 'running'))",
                &[],
            )
            .await
            .unwrap()
            .get(0)
        })
    };
    while open() {
        std::thread::sleep(Duration::from_millis(10));
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "dispatch did not finish"
        );
    }
    let secs = t.elapsed().as_secs_f64();
    for (rt, d) in rts.iter().zip(daemons) {
        rt.block_on(d.shutdown());
    }
    let done: i64 = probe.block_on(async {
        db.query_one("SELECT COUNT(*) FROM attempts WHERE outcome = 'ok'", &[])
            .await
            .unwrap()
            .get(0)
    });
    assert_eq!(done, n as i64, "every delivery ran once and was recorded");
    secs
}

fn replicas_bench(n: usize) {
    let conc = 4;
    let handler =
        format!("[[handler]]\nname = \"t\"\ncommand = [\"/bin/true\"]\nconcurrency = {conc}\n");
    let Some(one) = pg_support::durable_database() else {
        return;
    };
    let two = pg_support::durable_database().unwrap();
    let rt = runtime(2, "preload");
    preload_pg(&rt, &one.url, n, "t");
    preload_pg(&rt, &two.url, n, "t");
    let dir = tempfile::tempdir().unwrap();
    preload(dir.path(), n, "t");
    let per = n.div_ceil(conc);
    let base = (per * conc) as f64 / spawn_loop(conc, per);
    let sqlite = n as f64 / drain(dir.path(), &handler, n);
    let pg1 = n as f64 / drain_pg(&one.url, 1, &handler, n);
    let pg2 = n as f64 / drain_pg(&two.url, 2, &handler, n);
    println!(
        "dispatch on PostgreSQL: {n} stored events to /bin/true, concurrency {conc} per replica"
    );
    println!("  spawn loop (baseline): {base:>9.0} runs/s ({conc} threads)");
    println!(
        "  hookd, SQLite        : {sqlite:>9.0} runs/s, {:.2} of the loop",
        sqlite / base
    );
    println!(
        "  hookd, PostgreSQL x1 : {pg1:>9.0} runs/s, {:.2} of the loop",
        pg1 / base
    );
    println!(
        "  hookd, PostgreSQL x2 : {pg2:>9.0} runs/s, {:.2} of the loop",
        pg2 / base
    );
}

fn main() {
    let which = std::env::var("HOOKD_BENCH_ONLY").unwrap_or_default();
    let on = |name: &str| which.is_empty() || which == name;
    if on("exec") {
        let n = env_num("HOOKD_BENCH_N", 2000) as usize;
        exec_bench(n, 1);
        exec_bench(n, 4);
    }
    if on("stream") {
        stream_bench(env_num("HOOKD_BENCH_STREAM_N", 100_000) as usize);
    }
    if on("http") {
        let dir = tempfile::tempdir().unwrap();
        dispatch_http::http_bench(
            env_num("HOOKD_BENCH_HTTP_N", 10_000) as usize,
            4,
            dir.path(),
        );
    }
    if on("replicas") {
        replicas_bench(env_num("HOOKD_BENCH_N", 2000) as usize);
    }
    if on("latency") {
        latency_bench(
            env_num("HOOKD_BENCH_RATE", 1000),
            env_num("HOOKD_BENCH_SECS", 5),
        );
    }
}
