//! SSE ingest benchmark: a local server streams N events into hookd, and
//! the same stream into a bare client, and the two rates are compared.
//!
//! The server (its own 1-thread runtime) sends N events, pre-framed in
//! 64 KiB chunks, as fast as the client reads, then holds the stream open.
//! hookd runs a generic `mode = "sse"` source with its real path: the
//! eventsource-client parser over the reqwest transport, extraction, and
//! SQLite with `synchronous=FULL`, each event committed with the
//! Last-Event-ID. The clock stops when the N-th event is committed. The
//! baseline is the same parser over the same transport, discarding events.
//!
//!   cargo bench --bench sse                       # 200 000 events
//!   HOOKD_BENCH_EVENTS=500000 cargo bench --bench sse

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use eventsource_client::{self as es, Client as _};
use futures_util::StreamExt;

mod common;
use common::{config, env_num, runtime};

/// Events `from..=to`, framed and cut into chunks of about 64 KiB.
fn frames(from: u64, to: u64) -> Vec<Bytes> {
    let mut chunks = Vec::new();
    let mut cur = String::with_capacity(70 << 10);
    for n in from..=to {
        cur.push_str(&format!(
            "id: {n}\nevent: message\ndata: {{\"id\":\"evt-{n}\",\"type\":\"bench.event\",\"n\":{n},\"text\":\"a typical small payload\"}}\n\n"
        ));
        if cur.len() >= 64 << 10 {
            chunks.push(Bytes::from(std::mem::take(&mut cur)));
        }
    }
    if !cur.is_empty() {
        chunks.push(Bytes::from(cur));
    }
    chunks
}

/// Serves `/stream`: events after the Last-Event-ID up to `n`, then silence.
fn server(rt: &tokio::runtime::Runtime, n: u64) -> SocketAddr {
    let fresh = std::sync::Arc::new(frames(1, n));
    rt.block_on(async move {
        let app = axum::Router::new().route(
            "/stream",
            axum::routing::get(move |h: http::HeaderMap| {
                let fresh = fresh.clone();
                async move {
                    let last = h
                        .get("last-event-id")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok());
                    let chunks: Vec<Bytes> = match last {
                        None => fresh.as_ref().clone(),
                        Some(l) if l >= n => Vec::new(),
                        Some(l) => frames(l + 1, n),
                    };
                    let body = futures_util::stream::iter(chunks)
                        .map(Ok::<_, Infallible>)
                        .chain(futures_util::stream::pending());
                    http::Response::builder()
                        .header("content-type", "text/event-stream")
                        .body(axum::body::Body::from_stream(body))
                        .unwrap()
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        addr
    })
}

/// The same stream through the same transport and parser, events discarded.
fn baseline(addr: SocketAddr, n: u64) -> f64 {
    let rt = runtime(2, "baseline");
    rt.block_on(async move {
        let http = hookd::source::pull::http_client().unwrap();
        let transport = hookd::source::transport::ReqwestTransport::new(
            http,
            hookd::source::transport::Activity::new(),
            1 << 20,
        );
        let client = es::ClientBuilder::for_url(&format!("http://{addr}/stream"))
            .unwrap()
            .reconnect(es::ReconnectOptions::reconnect(false).build())
            .build_with_transport(transport);
        let started = Instant::now();
        let mut stream = client.stream();
        let mut seen = 0u64;
        while seen < n {
            match stream.next().await {
                Some(Ok(es::SSE::Event(e))) => {
                    std::hint::black_box(e.data.len());
                    seen += 1;
                }
                Some(Ok(_)) => {}
                other => panic!("baseline stream ended early: {other:?}"),
            }
        }
        n as f64 / started.elapsed().as_secs_f64()
    })
}

/// hookd storing the stream; returns events/s and the writer's commits.
fn hookd_run(addr: SocketAddr, n: u64, dir: &std::path::Path) -> (f64, u64, u64) {
    let rt = runtime(2, "hookd");
    let cfg = config(
        dir,
        &format!(
            r#"[[source]]
name = "bench"
provider = "generic"
mode = "sse"
extract = {{ id = ["json:/id"], type = ["json:/type"] }}
[source.sse]
url = "http://{addr}/stream"
idle_timeout = "60s"
"#
        ),
    );
    rt.block_on(async move {
        let started = Instant::now();
        let daemon = hookd::daemon::Daemon::start(cfg, Default::default())
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(600);
        while daemon.metrics.accepted_all.get() < n {
            assert!(
                Instant::now() < deadline,
                "hookd did not store {n} events in time"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let rate = n as f64 / started.elapsed().as_secs_f64();
        let stats = daemon.store.sqlite().expect("a SQLite store").stats();
        daemon.shutdown().await;
        (rate, stats.commits, stats.jobs)
    })
}

fn main() {
    let n = env_num("HOOKD_BENCH_EVENTS", 200_000);
    let server_rt = runtime(1, "sse-server");
    let addr = server(&server_rt, n);
    // Warm the server and the loopback path once.
    baseline(addr, n.min(10_000));
    let base = baseline(addr, n);
    let dir = tempfile::tempdir().unwrap();
    let (rate, commits, jobs) = hookd_run(addr, n, dir.path());
    println!("SSE ingest benchmark: {n} events from a loopback server, 2 client runtime threads");
    println!("  bare client (parse, discard): {base:>10.0} events/s");
    println!("  hookd (parse, extract, store): {rate:>9.0} events/s stored, synchronous=FULL");
    println!("  ratio hookd / bare           : {:>10.2}", rate / base);
    println!(
        "  group commit                 : {commits} commits for {jobs} writes ({:.0} events per commit)",
        n as f64 / commits.max(1) as f64
    );
}
