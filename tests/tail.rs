//! `hookd tail` against a running daemon: it prints what arrives after it
//! started (not what was there before), honours its filters, shows attempts
//! with `--deliveries`, and exits 0 on SIGINT and SIGTERM.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use support::*;

/// A running `hookd tail` with its stdout lines on a channel.
struct Tail {
    child: Child,
    lines: Receiver<String>,
}

impl Tail {
    /// Starts `hookd -c config tail ARGS` and waits until it has taken its
    /// starting point (its "following" line on stderr).
    fn start(config: &std::path::Path, args: &[&str]) -> Tail {
        let mut child = Command::new(bin())
            .args(["-c", config.to_str().unwrap(), "tail"])
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut first = String::new();
        err.read_line(&mut first).unwrap();
        assert!(first.contains("following"), "tail said {first:?}");
        let (tx, lines) = channel();
        let out = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for l in out.lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Tail { child, lines }
    }

    /// The next line (the limit is a safety net, not the synchronisation).
    fn next(&self) -> serde_json::Value {
        let l = self
            .lines
            .recv_timeout(Duration::from_secs(20))
            .expect("a line from hookd tail");
        serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}"))
    }

    fn stop(mut self, sig: i32) -> Option<i32> {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
        self.child.wait().unwrap().code()
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_new_events_and_attempts_with_filters_and_stops_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let fail = script(dir.path(), "fail.sh", "#!/bin/sh\necho nope >&2\nexit 3\n");
    // One run at a time: the ping's attempt ends before the order's starts.
    let body = format!(
        "{}[[handler]]\nname = \"h\"\ncommand = [\"{}\"]\nmax_attempts = 1\nconcurrency = 1\n\n",
        generic_source("s", "k"),
        fail.display()
    );
    let d = TestDaemon::start_in(dir, &body).await;
    let c = reqwest::Client::new();
    let url = d.url("/hooks/s");
    post_signed(&c, &url, "k", r#"{"id":"before","type":"order.paid"}"#).await;
    // Its attempt ends before the tails start, so neither shows it.
    all_settled(d.dir.path(), Duration::from_secs(20)).await;

    let all = Tail::start(&d.config_path, &["--json", "--deliveries"]);
    let orders = Tail::start(
        &d.config_path,
        &["--json", "--deliveries", "--type", "order.*"],
    );
    post_signed(&c, &url, "k", r#"{"id":"ping-1","type":"ping"}"#).await;
    post_signed(&c, &url, "k", r#"{"id":"o-2","type":"order.paid"}"#).await;

    // Everything new, in order; the event from before the start is not shown.
    let first = all.next();
    assert_eq!(
        (first["kind"].as_str(), first["event_id"].as_str()),
        (Some("event"), Some("ping-1"))
    );
    assert_eq!(first["source"], "s");
    assert!(first["received_at"].is_string() && first["status"].is_string());
    let mut seen = vec![first];
    while seen.iter().filter(|l| l["kind"] == "attempt").count() < 2 {
        seen.push(all.next());
    }
    assert!(seen.iter().all(|l| l["event_id"] != "before"), "{seen:?}");
    let attempt = seen
        .iter()
        .find(|l| l["kind"] == "attempt" && l["event_id"] == "o-2")
        .unwrap();
    assert_eq!(
        (
            attempt["handler"].as_str(),
            attempt["exit_code"].as_i64(),
            attempt["stderr"].as_str(),
            attempt["status"].as_str()
        ),
        (Some("h"), Some(3), Some("nope\n"), Some("dead"))
    );
    assert!(
        seen.iter()
            .any(|l| l["event_id"] == "o-2" && l["kind"] == "event")
    );

    // The type filter leaves the ping and its (earlier) attempt out.
    let (event, attempt) = (orders.next(), orders.next());
    assert_eq!(
        (event["kind"].as_str(), event["event_id"].as_str()),
        (Some("event"), Some("o-2"))
    );
    assert_eq!(
        (attempt["kind"].as_str(), attempt["event_id"].as_str()),
        (Some("attempt"), Some("o-2"))
    );

    assert_eq!(all.stop(libc::SIGINT), Some(0));
    assert_eq!(orders.stop(libc::SIGTERM), Some(0));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_starts_in_the_past_and_a_bad_status_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start_in(dir, &generic_source("s", "k")).await;
    let c = reqwest::Client::new();
    post_signed(&c, &d.url("/hooks/s"), "k", r#"{"id":"old","type":"t"}"#).await;
    let t = Tail::start(&d.config_path, &["--json", "--since", "1h"]);
    assert_eq!(t.next()["event_id"], "old");
    assert_eq!(t.stop(libc::SIGINT), Some(0));

    let out = Command::new(bin())
        .args([
            "-c",
            d.config_path.to_str().unwrap(),
            "tail",
            "--status",
            "nope",
        ])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--status \"nope\" is not one of"));
    d.stop().await;
}
