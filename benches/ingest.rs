//! Ingest benchmark: signed pushes into hookd vs a bare axum endpoint.
//!
//! Both servers run in this process on loopback, each on its own 2-thread
//! runtime; the load generator has its own runtime and keeps C connections
//! busy (HTTP/1.1 keep-alive, one request in flight per connection) with
//! pre-signed requests carrying unique ids. hookd runs with its real config
//! path: HMAC verification, extraction, SQLite with `synchronous=FULL` and
//! group commit. The bare endpoint only reads the body and answers 200.
//! Reported: requests/s of each, and hookd as a fraction of the baseline;
//! then what bounds hookd: writes per commit, the writer's time per commit
//! (running the writes, and `COMMIT` with its fsync) and how busy it was,
//! and the disk's own fdatasync time for one commit's worth of frames.
//!
//!   cargo bench --bench ingest                 # 16 connections, 5 s per target
//!   HOOKD_BENCH_SECS=10 HOOKD_BENCH_CONNS=64 HOOKD_BENCH_ROUNDS=3 cargo bench --bench ingest

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

mod common;
use common::{config, env_num, runtime};

const SECRET: &str = "bench-secret";

fn sign(body: &[u8]) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    m.update(body);
    format!("sha256={}", hex::encode(m.finalize().into_bytes()))
}

/// Drives `conns` connections at `url` for `secs`; returns (ok, errors).
fn load(url: String, conns: usize, secs: u64, run_id: &str) -> (u64, u64) {
    let rt = runtime(2, "load");
    rt.block_on(async move {
        let ok = Arc::new(AtomicU64::new(0));
        let bad = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for c in 0..conns {
            let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(1).build_http();
            let (url, ok, bad, stop) = (url.clone(), ok.clone(), bad.clone(), stop.clone());
            let run_id = run_id.to_string();
            tasks.push(tokio::spawn(async move {
                let mut i: u64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let body = format!(
                        r#"{{"id":"{run_id}-{c}-{i}","type":"message.received","data":{{"text":"benchmark payload of a typical size, a few hundred bytes","from":"+15555550100","chat":"chat_1234567890"}}}}"#
                    );
                    let req = http::Request::post(&url)
                        .header("content-type", "application/json")
                        .header("x-sig", sign(body.as_bytes()))
                        .body(Full::new(Bytes::from(body)))
                        .unwrap();
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
    let cfg = config(
        dir,
        &format!(
            r#"[[source]]
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
    let warm = daemon.store.stats();
    let (mut bare_ok, mut bare_bad, mut bare_secs) = (0, 0, 0.0);
    let (mut ok, mut bad, mut elapsed) = (0, 0, 0.0);
    for round in 0..rounds {
        let started = Instant::now();
        let (o, b) = load(bare_url.clone(), conns, secs, &format!("bare{round}"));
        bare_secs += started.elapsed().as_secs_f64();
        (bare_ok, bare_bad) = (bare_ok + o, bare_bad + b);
        let started = Instant::now();
        let (o, b) = load(url.clone(), conns, secs, &format!("run{round}"));
        elapsed += started.elapsed().as_secs_f64();
        (ok, bad) = (ok + o, bad + b);
    }
    let end = daemon.store.stats();
    let mut wal = daemon.store.path().as_os_str().to_owned();
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
    let (commits, jobs) = (end.commits - warm.commits, end.jobs - warm.jobs);
    let per_commit = |d: Duration| d.as_secs_f64() * 1e6 / commits.max(1) as f64;
    let (run, commit) = (
        end.run_time - warm.run_time,
        end.commit_time - warm.commit_time,
    );
    println!(
        "  group commit       : {commits} commits for {jobs} writes ({:.1} writes per fsync)",
        jobs as f64 / commits.max(1) as f64
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
}
