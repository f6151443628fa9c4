//! Ingest benchmark: signed pushes into hookd vs a bare axum endpoint.
//!
//! Both servers run in this process on loopback, each on its own 2-thread
//! runtime; the load generator has its own runtime and keeps C connections
//! busy (HTTP/1.1 keep-alive, one request in flight per connection) with
//! pre-signed requests carrying unique ids. hookd runs with its real config
//! path: HMAC verification, extraction, SQLite with `synchronous=FULL` and
//! group commit. The bare endpoint only reads the body and answers 200.
//! Reported: requests/s of each, and hookd as a fraction of the baseline;
//! then what bounds hookd: writes and WAL pages per commit, the writer's time per commit
//! (running the writes, and `COMMIT` with its fsync) and how busy it was,
//! and the disk's own fdatasync time for one commit's worth of frames; and
//! the CPU each side spent per answered request, by thread (hookd's
//! runtime threads do HTTP, verification and extraction; its writer and
//! checkpointer threads the store).
//!
//! The open loop (`HOOKD_BENCH_MODE=open`) sends at fixed rates whatever
//! the answers, as a provider's fleet does, and reports the ack latency
//! from each request's scheduled time (so queueing is not hidden), at each
//! rate for hookd and the bare endpoint, and the highest rate at which
//! hookd's p99 stays under 50 ms.
//!
//!   cargo bench --bench ingest                 # 16 connections, 5 s per target
//!   HOOKD_BENCH_SECS=10 HOOKD_BENCH_CONNS=64 HOOKD_BENCH_ROUNDS=3 cargo bench --bench ingest
//!   HOOKD_BENCH_MODE=open cargo bench --bench ingest   # 2k, 5k, 10k, 20k/s, then higher while p99 < 50 ms
//!   HOOKD_BENCH_MODE=open HOOKD_BENCH_RATES=1000,3000 cargo bench --bench ingest
//!
//! Then, when the machine has PostgreSQL (`HOOKD_BENCH_PG=0` skips it):
//! the PostgreSQL store with one and two replicas against the SQLite node
//! and the bare endpoint, same run, at the configured and 64 connections.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

mod common;
#[path = "../tests/pg_support/mod.rs"]
mod pg_support;
use common::{add_cpu, config, cpu_between, env_num, runtime, thread_cpu};

const SECRET: &str = "bench-secret";

fn sign(body: &[u8]) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    m.update(body);
    format!("sha256={}", hex::encode(m.finalize().into_bytes()))
}

/// A request carrying a new event (`id` unique per run), signed.
fn event_request(url: &str, id: &str) -> http::Request<Full<Bytes>> {
    let body = format!(
        r#"{{"id":"{id}","type":"message.received","data":{{"text":"benchmark payload of a typical size, a few hundred bytes","from":"+15555550100","chat":"chat_1234567890"}}}}"#
    );
    http::Request::post(url)
        .header("content-type", "application/json")
        .header("x-sig", sign(body.as_bytes()))
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// Drives `conns` connections at `url` for `secs`; returns (ok, errors).
fn load(url: String, conns: usize, secs: u64, run_id: &str) -> (u64, u64) {
    load_spread(&[url], conns, secs, run_id)
}

/// [`load`] with connection `c` going to `urls[c % n]` (several replicas).
fn load_spread(urls: &[String], conns: usize, secs: u64, run_id: &str) -> (u64, u64) {
    let urls = urls.to_vec();
    let rt = runtime(2, "load");
    rt.block_on(async move {
        let ok = Arc::new(AtomicU64::new(0));
        let bad = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for c in 0..conns {
            let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(1)
                .build_http();
            let url = urls[c % urls.len()].clone();
            let (ok, bad, stop) = (ok.clone(), bad.clone(), stop.clone());
            let run_id = run_id.to_string();
            tasks.push(tokio::spawn(async move {
                let mut i: u64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let req = event_request(&url, &format!("{run_id}-{c}-{i}"));
                    match client.request(req).await {
                        Ok(r) if r.status() == 200 => {
                            let _ = r.into_body().collect().await;
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            bad.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs(secs)).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
        (ok.load(Ordering::Relaxed), bad.load(Ordering::Relaxed))
    })
}

fn bare_server(rt: &tokio::runtime::Runtime) -> SocketAddr {
    rt.block_on(async {
        let app = axum::Router::new().route(
            "/hooks/bench",
            axum::routing::post(|body: Bytes| async move {
                std::hint::black_box(body.len());
                "ok"
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        addr
    })
}

fn hookd_server(rt: &tokio::runtime::Runtime, dir: &std::path::Path) -> hookd::daemon::Daemon {
    hookd_on(rt, dir, "")
}

/// A hookd with `store` (a `[store]` table, or "" for SQLite in `dir`).
fn hookd_on(
    rt: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    store: &str,
) -> hookd::daemon::Daemon {
    let cfg = config(
        dir,
        &format!(
            r#"{store}[[source]]
name = "bench"
provider = "generic"
secret = "{SECRET}"
signature = {{ scheme = "hmac", header = "X-Sig", prefix = "sha256=" }}
extract = {{ id = ["json:/id"], type = ["json:/type"] }}
"#
        ),
    );
    rt.block_on(hookd::daemon::Daemon::start(cfg, Default::default()))
        .unwrap()
}

/// The median time to overwrite and fdatasync what one commit writes
/// (about 14 WAL frames of 4 KiB) in `dir`: the floor under every commit.
fn fsync_floor(dir: &std::path::Path) -> Duration {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::File::create(dir.join("fsync-probe")).unwrap();
    let block = vec![0x5au8; 14 * 4120];
    f.write_all(&block).unwrap();
    f.sync_all().unwrap();
    let mut took: Vec<Duration> = (0..300)
        .map(|_| {
            f.seek(SeekFrom::Start(0)).unwrap();
            f.write_all(&block).unwrap();
            let t = Instant::now();
            f.sync_data().unwrap();
            t.elapsed()
        })
        .collect();
    took.sort();
    took[took.len() / 2]
}

/// Ack latencies (µs) of an open-loop run, and its failed requests.
struct OpenRun {
    latencies: Vec<u64>,
    errors: u64,
}

impl OpenRun {
    /// The latency at quantile `q` (0-1), in ms.
    fn ms(&self, q: f64) -> f64 {
        let v = &self.latencies;
        if v.is_empty() {
            return f64::NAN;
        }
        v[((v.len() as f64 * q) as usize).min(v.len() - 1)] as f64 / 1000.0
    }

    fn line(&self) -> String {
        format!(
            "{:>7.2} {:>7.2} {:>7.2} ms {:>6} errors",
            self.ms(0.5),
            self.ms(0.99),
            self.ms(0.999),
            self.errors
        )
    }
}

/// Longest a request of the open loop may take before it counts as failed.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends `rate` requests/s for `secs` whatever the answers (new connections
/// open as needed), each timed from when it was due, not from when it was
/// sent, so a server that falls behind shows its queueing in the latency.
fn open_loop(url: String, rate: u64, secs: u64, run_id: &str) -> OpenRun {
    let rt = runtime(2, "load");
    let run_id = run_id.to_string();
    rt.block_on(async move {
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(usize::MAX)
            .build_http();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Option<u64>>();
        let total = rate * secs;
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut sent = 0u64;
        while sent < total {
            tick.tick().await;
            let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
            for n in sent..due {
                let at = start + Duration::from_secs_f64(n as f64 / rate as f64);
                let req = event_request(&url, &format!("{run_id}-{n}"));
                let (client, tx) = (client.clone(), tx.clone());
                tokio::spawn(async move {
                    let answered = tokio::time::timeout(OPEN_TIMEOUT, async {
                        let r = client.request(req).await.ok()?;
                        let ok = r.status() == 200;
                        r.into_body().collect().await.ok()?;
                        ok.then_some(())
                    })
                    .await;
                    let took = at.elapsed().as_micros() as u64;
                    let _ = tx.send(matches!(answered, Ok(Some(()))).then_some(took));
                });
            }
            sent = due;
        }
        drop(tx);
        let mut run = OpenRun {
            latencies: Vec::with_capacity(total as usize),
            errors: 0,
        };
        while let Some(r) = rx.recv().await {
            match r {
                Some(us) => run.latencies.push(us),
                None => run.errors += 1,
            }
        }
        run.latencies.sort_unstable();
        run
    })
}

/// The rates of the open loop: `HOOKD_BENCH_RATES`, else 2k-20k/s.
fn open_rates() -> Vec<u64> {
    std::env::var("HOOKD_BENCH_RATES")
        .ok()
        .map(|v| v.split(',').filter_map(|r| r.trim().parse().ok()).collect())
        .filter(|v: &Vec<u64>| !v.is_empty())
        .unwrap_or_else(|| vec![2_000, 5_000, 10_000, 20_000])
}

/// hookd's p99 budget in the open loop: providers time out at 5-30 s and
/// retry, but an answer this slow already means a queue is building.
const P99_BUDGET_MS: f64 = 50.0;

/// The open loop at each rate, hookd then the bare endpoint; after the
/// given rates, ×1.5 steps while hookd's p99 stays within budget.
fn open_mode(url: &str, bare_url: &str, secs: u64) {
    println!(
        "ingest benchmark, open loop: {secs} s per rate and target; latency from each request's scheduled time to its answer"
    );
    println!("  rate/s     hookd p50     p99   p99.9            |  bare p50     p99   p99.9");
    let mut rates = open_rates();
    // The first open-loop step at a high rate had a p99 of 24-125 ms at
    // 20k/s where the same rate right after stayed under 10 (a step at 2k/s
    // first: no such tail later), even after 8 s idle. The cause is not
    // isolated; it is not the rate's own tail, so that step is shown on its
    // own row and not counted.
    let settle = open_loop(url.to_string(), rates[0], secs, "settle");
    println!(
        "  {:>6}  {}  | (first step, not counted)",
        rates[0],
        settle.line()
    );
    let mut best = None;
    let mut i = 0;
    while i < rates.len() {
        let rate = rates[i];
        let h = open_loop(url.to_string(), rate, secs, &format!("open{rate}"));
        let b = open_loop(bare_url.to_string(), rate, secs, &format!("bare{rate}"));
        println!("  {rate:>6}  {}  | {}", h.line(), b.line());
        let within = h.errors == 0 && h.ms(0.99) < P99_BUDGET_MS;
        if within {
            best = Some(rate);
        }
        if i + 1 == rates.len() && within && rates.len() < 12 {
            rates.push(rate * 3 / 2);
        }
        i += 1;
    }
    match best {
        Some(r) => println!("  highest rate with hookd's p99 under {P99_BUDGET_MS} ms: {r}/s"),
        None => println!("  no rate kept hookd's p99 under {P99_BUDGET_MS} ms"),
    }
}

/// CPU per answered request, in µs, of the threads whose name starts with
/// `prefix`, as `total (name user+sys, …)`.
fn cpu_line(cpu: &BTreeMap<String, (f64, f64)>, prefix: &str, answered: u64) -> String {
    let per = |s: f64| s * 1e6 / answered.max(1) as f64;
    let mine: Vec<_> = cpu.iter().filter(|(k, _)| k.starts_with(prefix)).collect();
    let total: f64 = mine.iter().map(|(_, (u, s))| u + s).sum();
    let parts: Vec<String> = mine
        .iter()
        .map(|(k, (u, s))| format!("{k} {:.1}+{:.1}", per(*u), per(*s)))
        .collect();
    format!("{:.1} µs ({})", per(total), parts.join(", "))
}

fn main() {
    // `cargo bench` passes --bench; nothing to parse.
    let secs = env_num("HOOKD_BENCH_SECS", 5);
    let conns = env_num("HOOKD_BENCH_CONNS", 16) as usize;
    let dir = tempfile::tempdir().unwrap();

    let rounds = env_num("HOOKD_BENCH_ROUNDS", 2);
    let floor = fsync_floor(dir.path());
    let bare_rt = runtime(2, "bare");
    let bare = bare_server(&bare_rt);
    let hookd_rt = runtime(2, "hookd");
    let daemon = hookd_server(&hookd_rt, dir.path());
    let bare_url = format!("http://{bare}/hooks/bench");
    let url = format!("http://{}/hooks/bench", daemon.push_addrs[0]);
    // Warm-up both, then alternate the measured runs so a noisy neighbour
    // hurts both sides alike. Fresh ids each run: every request is a new event.
    load(bare_url.clone(), conns, 1, "warm-bare");
    load(url.clone(), conns, 1, "warmup");
    let warm = daemon.store.sqlite().expect("a SQLite store").stats();
    if std::env::var("HOOKD_BENCH_MODE").as_deref() == Ok("open") {
        open_mode(&url, &bare_url, secs);
        hookd_rt.block_on(daemon.shutdown());
        return;
    }
    let (mut bare_ok, mut bare_bad, mut bare_secs) = (0, 0, 0.0);
    let (mut ok, mut bad, mut elapsed) = (0, 0, 0.0);
    let (mut bare_cpu, mut hookd_cpu) = (BTreeMap::new(), BTreeMap::new());
    for round in 0..rounds {
        let (started, cpu) = (Instant::now(), thread_cpu());
        let (o, b) = load(bare_url.clone(), conns, secs, &format!("bare{round}"));
        bare_secs += started.elapsed().as_secs_f64();
        add_cpu(&mut bare_cpu, cpu_between(&cpu, &thread_cpu()));
        (bare_ok, bare_bad) = (bare_ok + o, bare_bad + b);
        let (started, cpu) = (Instant::now(), thread_cpu());
        let (o, b) = load(url.clone(), conns, secs, &format!("run{round}"));
        elapsed += started.elapsed().as_secs_f64();
        add_cpu(&mut hookd_cpu, cpu_between(&cpu, &thread_cpu()));
        (ok, bad) = (ok + o, bad + b);
    }
    let end = daemon.store.sqlite().expect("a SQLite store").stats();
    let mut wal = daemon
        .store
        .sqlite()
        .expect("a SQLite store")
        .path()
        .as_os_str()
        .to_owned();
    wal.push("-wal");
    let wal = std::fs::metadata(wal).map_or(0, |m| m.len());
    hookd_rt.block_on(daemon.shutdown());

    let (bare_rate, rate) = (bare_ok as f64 / bare_secs, ok as f64 / elapsed);
    println!(
        "ingest benchmark: {conns} connections, {rounds} x {secs} s per target (alternating), loopback, 2+2 runtime threads"
    );
    println!("  bare axum endpoint : {bare_rate:>10.0} req/s ({bare_bad} errors)");
    println!("  hookd (hmac+SQLite): {rate:>10.0} req/s ({bad} errors), synchronous=FULL");
    println!("  ratio hookd / bare : {:>10.2}", rate / bare_rate);
    // CPU (user+sys) per answered request, by thread; on two cores the
    // daemon shares them with the load generator.
    println!(
        "  CPU per request    : hookd {}",
        cpu_line(&hookd_cpu, "hookd", ok)
    );
    println!(
        "                       bare  {}",
        cpu_line(&bare_cpu, "bare", bare_ok)
    );
    let (commits, jobs) = (end.commits - warm.commits, end.jobs - warm.jobs);
    let per_commit = |d: Duration| d.as_secs_f64() * 1e6 / commits.max(1) as f64;
    let (run, commit) = (
        end.run_time - warm.run_time,
        end.commit_time - warm.commit_time,
    );
    let frames = end.wal_frames - warm.wal_frames;
    println!(
        "  group commit       : {commits} commits for {jobs} writes ({:.1} writes per fsync); {:.1} WAL pages per commit, {:.2} per write",
        jobs as f64 / commits.max(1) as f64,
        frames as f64 / commits.max(1) as f64,
        frames as f64 / jobs.max(1) as f64
    );
    // The writer is one thread: when it is busy most of the time, batches
    // (not HTTP) set the pace.
    println!(
        "  writer per commit  : {:.0} µs running the writes + {:.0} µs in COMMIT (WAL write, fsync); busy {:.0}% of the hookd runs",
        per_commit(run),
        per_commit(commit),
        (run + commit).as_secs_f64() / elapsed * 100.0
    );
    println!(
        "  disk               : {:.0} µs to overwrite and fdatasync 14 frames (median, idle machine)",
        floor.as_secs_f64() * 1e6
    );
    // Rewound in place, the WAL stays near its checkpoint size.
    println!(
        "  WAL file           : {:.1} MiB after the runs (checkpointed from {} MiB)",
        wal as f64 / f64::from(1 << 20),
        hookd::store::StoreOptions::default().checkpoint_at >> 20
    );
    if std::env::var("HOOKD_BENCH_PG").as_deref() != Ok("0") {
        postgres_rows(secs, rounds, conns);
    }
}

/// The PostgreSQL store against the SQLite node and the bare endpoint,
/// same run: one replica, and two replicas sharing the load (each
/// connection goes to one of them), at `conns` and 64 connections. Every
/// server runs in this process on its own 2-thread runtime, on the same
/// two cores as the load generator and the PostgreSQL server, so the rows
/// say what one machine does, not how a fleet of machines scales. Skipped
/// with one line without PostgreSQL (Debian `postgresql`), or with
/// `HOOKD_BENCH_PG=0`. The PostgreSQL server keeps its durable defaults
/// (`fsync`, `synchronous_commit`), as SQLite keeps `synchronous=FULL`.
fn postgres_rows(secs: u64, rounds: u64, conns: usize) {
    let Some(db) = pg_support::durable_database() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = format!("[store]\nurl = \"{}\"\n", db.url);
    let bare_rt = runtime(2, "bare");
    let bare = vec![format!("http://{}/hooks/bench", bare_server(&bare_rt))];
    let (sq_rt, a_rt, b_rt) = (runtime(2, "sqlite"), runtime(2, "pg-a"), runtime(2, "pg-b"));
    let sqlite = hookd_on(&sq_rt, &dir.path().join("sqlite"), "");
    let a = hookd_on(&a_rt, &dir.path().join("a"), &store);
    let b = hookd_on(&b_rt, &dir.path().join("b"), &store);
    let url = |d: &hookd::daemon::Daemon| format!("http://{}/hooks/bench", d.push_addrs[0]);
    let targets: [(&str, Vec<String>); 4] = [
        ("bare axum endpoint", bare),
        ("hookd, SQLite", vec![url(&sqlite)]),
        ("hookd, PostgreSQL x1", vec![url(&a)]),
        ("hookd, PostgreSQL x2", vec![url(&a), url(&b)]),
    ];
    let postmaster = db.postmaster_pid();
    println!();
    println!(
        "PostgreSQL rows: {rounds} x {secs} s per target (alternating), one local {} (fsync on, synchronous_commit on) on the same cores",
        pg_support::server_version().unwrap_or_else(|| "PostgreSQL".into())
    );
    for c in [conns, 64]
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
    {
        for (_, urls) in &targets {
            load_spread(urls, c, 1, "warm");
        }
        let mut figures = vec![(0u64, 0u64, 0.0f64, 0u64); targets.len()];
        for round in 0..rounds {
            for (i, (_, urls)) in targets.iter().enumerate() {
                let (started, pg_cpu) = (Instant::now(), postmaster.map(process_tree_ticks));
                let (o, e) = load_spread(urls, c, secs, &format!("pg{c}-{round}-{i}"));
                let f = &mut figures[i];
                f.0 += o;
                f.1 += e;
                f.2 += started.elapsed().as_secs_f64();
                if let (Some(pm), Some(before)) = (postmaster, pg_cpu) {
                    f.3 += process_tree_ticks(pm).saturating_sub(before);
                }
            }
        }
        let bare_rate = figures[0].0 as f64 / figures[0].2;
        println!("  {c} connections:");
        for ((name, _), (ok, bad, took, pg_ticks)) in targets.iter().zip(&figures) {
            let rate = *ok as f64 / took;
            let pg = if name.contains("PostgreSQL") {
                format!(
                    "; PostgreSQL server CPU {:.0} µs/request",
                    *pg_ticks as f64 * 1e6 / common::clock_hz() / (*ok).max(1) as f64
                )
            } else {
                String::new()
            };
            println!(
                "    {name:<22}: {rate:>8.0} req/s ({bad} errors), {:.2} of bare{pg}",
                rate / bare_rate
            );
        }
    }
    for (rt, d) in [(&sq_rt, sqlite), (&a_rt, a), (&b_rt, b)] {
        rt.block_on(d.shutdown());
    }
}

/// CPU ticks (user + system) of process `pid` and its children so far.
fn process_tree_ticks(pid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            // Fields after the command's closing parenthesis: state ppid … utime stime.
            let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let ppid: u32 = rest.get(1)?.parse().ok()?;
            (p == pid || ppid == pid)
                .then(|| {
                    Some(rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?)
                })
                .flatten()
        })
        .sum()
}
