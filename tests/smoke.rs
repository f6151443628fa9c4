//! The shortest end-to-end path: a signed push is stored, dispatched to a
//! handler, and a process-level daemon reports readiness and stops on SIGTERM.

mod support;

use std::time::Duration;
use support::*;

#[tokio::test]
async fn signed_push_is_stored_once_and_handled() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let h = script(
        dir.path(),
        "h.sh",
        &format!("#!/bin/sh\ncat >> {}\n", out.display()),
    );
    let body = format!(
        "{}[[handler]]\nname = \"h\"\ncommand = [\"{}\"]\n",
        generic_source("s", "k1"),
        h.display()
    );
    let d = TestDaemon::start_in(dir, &body).await;
    let c = reqwest::Client::new();
    let ev = r#"{"id":"e1","type":"t.x"}"#;
    let (st, v) = post_signed(&c, &d.url("/hooks/s"), "k1", ev).await;
    assert_eq!((st, v["status"].as_str()), (200, Some("accepted")));
    let (st, v) = post_signed(&c, &d.url("/hooks/s"), "k1", ev).await;
    assert_eq!((st, v["status"].as_str()), (200, Some("duplicate")));
    assert_eq!(d.count("SELECT COUNT(*) FROM events"), 1);
    let got = eventually(Duration::from_secs(10), || {
        std::fs::read_to_string(&out).ok().filter(|s| !s.is_empty())
    })
    .await;
    let env: serde_json::Value = serde_json::from_str(&got).unwrap();
    assert_eq!(env["event_id"], "e1");
    assert_eq!(env["payload"]["type"], "t.x");
    d.stop().await;
}

#[test]
fn process_reports_ready_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &generic_source("s", "k1"));
    let mut p = Proc::spawn(&cfg, &[]);
    assert!(p.addr.starts_with("127.0.0.1:"), "{}", p.addr);
    p.signal(libc::SIGTERM);
    p.wait_for("STOPPING=1");
    assert_eq!(p.wait(Duration::from_secs(20)), Some(0));
}
