//! The http row of the dispatch bench: N stored events forwarded by an
//! http handler to a local keep-alive server that answers 200 (every
//! attempt recorded in SQLite), against a plain keep-alive client loop
//! posting the same number of requests to the same server, with as many
//! requests in flight as the handler's `concurrency`. Half the loop runs
//! before hookd and half after, as in the exec row.

use std::path::Path;
use std::time::Instant;

use axum::Router;
use axum::routing::post;
use tokio_util::sync::CancellationToken;

use crate::common::runtime;

/// A 200 server on 127.0.0.1 on its own runtime thread; its base URL.
fn start_target(rt: &tokio::runtime::Runtime, stop: CancellationToken) -> String {
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = Router::new().route("/hook", post(|_: axum::body::Bytes| async { "ok" }));
        tokio::spawn(hookd::server::serve(
            listener,
            None,
            router,
            hookd::server::Limits::default(),
            stop,
        ));
        base
    })
}

/// `conc` tasks on one keep-alive client, `per` POSTs each; seconds taken.
fn client_loop(url: &str, conc: usize, per: usize) -> f64 {
    let rt = runtime(2, "bare");
    let client = reqwest::Client::new();
    let body = br#"{"id":1,"event_id":"e1","source":"b","provider":"generic","type":"t","occurred_at":null,"received_at":"2026-12-05T08:00:00.000000Z","attempt":1,"replay":false,"payload":{"id":"e1","type":"t"}}"#;
    rt.block_on(async {
        let t = Instant::now();
        let tasks: Vec<_> = (0..conc)
            .map(|_| {
                let (client, url) = (client.clone(), url.to_string());
                tokio::spawn(async move {
                    for _ in 0..per {
                        let r = client.post(&url).body(&body[..]).send().await.unwrap();
                        assert!(r.status().is_success());
                        r.bytes().await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        t.elapsed().as_secs_f64()
    })
}

/// Forwarding `n` events at `conc` requests in flight, hookd against the loop.
pub fn http_bench(n: usize, conc: usize, dir: &Path) {
    let target_rt = runtime(1, "target");
    let stop = CancellationToken::new();
    let url = format!("{}/hook", start_target(&target_rt, stop.clone()));
    crate::preload(dir, n, "w");
    let handler = format!(
        "[[handler]]\nname = \"w\"\nkind = \"http\"\nurl = \"{url}\"\nconcurrency = {conc}\n"
    );
    let per = n.div_ceil(conc);
    let halves = [per / 2, per - per / 2];
    let before = client_loop(&url, conc, halves[0]);
    let hookd_s = crate::drain(dir, &handler, n);
    let after = client_loop(&url, conc, halves[1]);
    let attempts: i64 = rusqlite::Connection::open(dir.join("state/hookd.db"))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM attempts", [], |r| r.get(0))
        .unwrap();
    stop.cancel();
    let (h, b) = (n as f64 / hookd_s, (per * conc) as f64 / (before + after));
    println!(
        "http dispatch: {n} events POSTed to a local keep-alive server answering 200, {conc} in flight"
    );
    println!("  client loop (baseline): {b:>8.0} requests/s ({conc} tasks, one keep-alive client)");
    println!("  hookd dispatch       : {h:>9.0} events/s ({attempts} attempts recorded)");
    println!("  ratio                : {:>9.2}", h / b);
}
