//! Pull sources against a local provider (tests/pull_sim): SSE with drops,
//! keep-alives, silence, refusals and odd framing; backfill after a
//! reconnect and after a restart; polling with paging, errors and a
//! SIGKILL between pages (the real binary).

mod pull_sim;
mod support;

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use pull_sim::{KEY, PollAction, Sim, SseAction, WEBHOOK_ID, linkup_time, stored_seqs};
use support::*;

const LONG: Duration = Duration::from_secs(30);

/// A LinkUp hosted-mode source on the simulator; `extra` goes into the
/// source table (e.g. a webhook_id) before the sub-tables.
fn linkup(
    sim: &Sim,
    name: &str,
    mode: &str,
    key: &str,
    extra: &str,
    limit: u32,
    interval: &str,
) -> String {
    let sse = if mode == "sse" {
        "[source.sse]\nidle_timeout = \"10s\"\nbackoff = { initial = \"50ms\", max = \"300ms\" }\n"
    } else {
        ""
    };
    format!(
        r#"[[source]]
name = "{name}"
provider = "linkup"
mode = "{mode}"
api_key = "{key}"
api_base = "{}"
{extra}
{sse}[source.poll]
limit = {limit}
interval = "{interval}"
backoff = {{ initial = "50ms", max = "300ms" }}

"#,
        sim.url()
    )
}

/// A handler that appends each event's id to `<dir>/<name>.out`.
fn recording_handler(dir: &Path, name: &str) -> String {
    let h = id_recorder(dir, name);
    format!(
        "[[handler]]\nname = \"{name}\"\nevents = [\"*\"]\ncommand = [\"{}\"]\nbackoff = {{ initial = \"50ms\", max = \"200ms\" }}\n\n",
        h.display()
    )
}

fn count(db: &rusqlite::Connection, sql: &str) -> i64 {
    db.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// (state, last_error, reconnects) of a pull source.
fn status(db: &rusqlite::Connection, source: &str) -> Option<(String, Option<String>, i64)> {
    db.query_row(
        "SELECT state, last_error, reconnects FROM pull_status WHERE source = ?1",
        [source],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .ok()
}

/// (cursor, position_at, last_event_id) of a source.
fn cursor(
    db: &rusqlite::Connection,
    source: &str,
) -> (Option<String>, Option<i64>, Option<String>) {
    db.query_row(
        "SELECT cursor, position_at, last_event_id FROM cursors WHERE source = ?1",
        [source],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .unwrap_or((None, None, None))
}

async fn wait_events(dir: &Path, source: &str, n: i64) {
    let db = state_db(dir);
    let sql = format!("SELECT COUNT(*) FROM events WHERE source = '{source}'");
    eventually(LONG, || (count(&db, &sql) >= n).then_some(())).await;
    assert_eq!(count(&db, &sql), n, "no more than {n} events stored");
}

#[tokio::test]
async fn sse_events_are_stored_and_dispatched_once_across_reconnects() {
    let sim = Sim::start().await;
    sim.push(3);
    // On reconnect the server re-sends the Last-Event-ID's own event.
    sim.replay_inclusive(true);
    let dir = tempfile::tempdir().unwrap();
    let handler = recording_handler(dir.path(), "rec");
    let td = TestDaemon::start_in(
        dir,
        &format!("{}{handler}", pull_sim::generic_sse(&sim, "10s")),
    )
    .await;
    let dir = td.dir.path().to_path_buf();
    wait_events(&dir, "feed", 3).await;
    sim.drop_streams();
    eventually(LONG, || (sim.connections() >= 2).then_some(())).await;
    sim.push(2);
    wait_events(&dir, "feed", 5).await;
    let db = td.db();
    assert_eq!(stored_seqs(&db, "feed"), [1, 2, 3, 4, 5]);
    let reqs = sim.requests("/stream");
    assert_eq!(reqs[0].last_event_id, None);
    assert_eq!(reqs[1].last_event_id.as_deref(), Some("3"));
    assert!(
        reqs.iter().all(|r| r.authorized),
        "Authorization: Bearer sent"
    );
    assert_eq!(
        count(&db, "SELECT SUM(duplicates) FROM events"),
        1,
        "the replayed event was a duplicate"
    );
    assert_eq!(cursor(&db, "feed").2.as_deref(), Some("5"));
    let out = dir.join("rec.out");
    eventually(LONG, || (lines(&out).len() >= 5).then_some(())).await;
    let got = lines(&out);
    assert_eq!(got.len(), 5, "each event dispatched once: {got:?}");
    assert_eq!(got.iter().collect::<HashSet<_>>().len(), 5);
    td.stop().await;
}

#[tokio::test]
async fn sse_drop_mid_event_stores_no_half_event_and_resumes() {
    let sim = Sim::start().await;
    sim.push(4);
    sim.script_sse([
        // Events 1, 2, then event 3 cut between its two data lines.
        SseAction::DropMid {
            after: 2,
            partial: b"id: 3\nevent: message\ndata: {\"id\":\"evt-3\",\n".to_vec(),
        },
        // Event 3, then event 4 cut inside its first data line.
        SseAction::DropMid {
            after: 1,
            partial: b"id: 4\nevent: message\ndata: {\"id\":\"evt-4\",\"ty".to_vec(),
        },
    ]);
    let td = TestDaemon::start(&pull_sim::generic_sse(&sim, "10s")).await;
    let dir = td.dir.path().to_path_buf();
    wait_events(&dir, "feed", 4).await;
    let db = td.db();
    assert_eq!(stored_seqs(&db, "feed"), [1, 2, 3, 4]);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM rejected"),
        0,
        "no half event reached extraction"
    );
    let ids: Vec<Option<String>> = sim
        .requests("/stream")
        .into_iter()
        .map(|r| r.last_event_id)
        .collect();
    assert_eq!(ids, [None, Some("2".into()), Some("3".into())]);
    let (_, err, reconnects) = status(&db, "feed").unwrap();
    assert_eq!(reconnects, 2);
    assert!(
        err.unwrap_or_default().contains("middle of an event"),
        "the reason names the cut"
    );
    td.stop().await;
}

#[tokio::test]
async fn sse_backfill_recovers_events_sent_while_disconnected_and_while_stopped() {
    let sim = Sim::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The webhook id comes from the registration `hookd register` stored.
    {
        let db = hookd::store::open_direct(&dir.path().join("state")).unwrap();
        hookd::store::subscriptions::save(
            &db,
            &hookd::store::subscriptions::Registration {
                source: "lu".into(),
                provider: "linkup".into(),
                remote_id: Some(WEBHOOK_ID.into()),
                secret: None,
                info: serde_json::json!({"mode": "hosted"}),
                updated_at: 1,
            },
        )
        .unwrap();
    }
    let body = linkup(&sim, "lu", "sse", KEY, "", 50, "1h");
    let td = TestDaemon::start_in(dir, &body).await;
    let dir = td.dir.path().to_path_buf();
    eventually(LONG, || (!sim.requests("/stream").is_empty()).then_some(())).await;
    // The first connection's backfill asks for everything LinkUp keeps
    // (nothing yet; the answer is fixed when the request is recorded).
    let first = eventually(LONG, || {
        Some(sim.requests("/events")).filter(|r| !r.is_empty())
    })
    .await;
    assert_eq!(first[0].query.get("since"), None);
    // The stream only carries events emitted while connected.
    sim.push(2);
    wait_events(&dir, "lu", 2).await;
    sim.push_hidden(3);
    sim.drop_streams();
    wait_events(&dir, "lu", 5).await;
    let db = td.db();
    assert_eq!(stored_seqs(&db, "lu"), [1, 2, 3, 4, 5]);
    let polls = sim.requests("/events");
    let t2 = sim.events()[1].created_at;
    assert_eq!(
        polls[1].query.get("since").map(String::as_str),
        Some(hookd::timefmt::format_micros(t2 - 2_000_000).as_str()),
        "backfill starts at the last stored time, less the overlap"
    );
    assert_eq!(
        count(&db, "SELECT SUM(duplicates) FROM events"),
        2,
        "events read by both stream and backfill share one id"
    );
    // The stream still works after the backfill.
    sim.push(1);
    wait_events(&dir, "lu", 6).await;

    // Events emitted while hookd is down come back by backfill at start.
    let dir_handle = td.stop().await;
    sim.push_hidden(2);
    let td = TestDaemon::start_in(dir_handle, &body).await;
    wait_events(&dir, "lu", 8).await;
    assert_eq!(stored_seqs(&td.db(), "lu"), [1, 2, 3, 4, 5, 6, 7, 8]);
    let (_, position, _) = cursor(&td.db(), "lu");
    assert_eq!(position, Some(sim.events()[7].created_at));
    td.stop().await;
}

#[tokio::test]
async fn sse_keepalive_comments_keep_the_stream_and_silence_reconnects() {
    let sim = Sim::start().await;
    sim.keepalive(Some(Duration::from_millis(100)));
    sim.push(1);
    let td = TestDaemon::start(&pull_sim::generic_sse(&sim, "600ms")).await;
    let dir = td.dir.path().to_path_buf();
    wait_events(&dir, "feed", 1).await;
    // Comments for well over twice the idle timeout: still one connection.
    eventually(LONG, || (sim.keepalives() >= 15).then_some(())).await;
    assert_eq!(sim.connections(), 1, "keep-alive comments count as life");
    sim.silence(true);
    eventually(LONG, || (sim.connections() >= 2).then_some(())).await;
    let db = td.db();
    eventually(LONG, || {
        status(&db, "feed").filter(|s| s.2 >= 1 && s.1.is_some())
    })
    .await;
    let (_, err, _) = status(&db, "feed").unwrap();
    assert!(err.unwrap().contains("no bytes for 600ms"));
    // Back to normal: the new connection resumes and takes new events.
    sim.silence(false);
    sim.push(1);
    wait_events(&dir, "feed", 2).await;
    let metrics = reqwest::get(format!("{}/metrics", td.admin.as_ref().unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("hookd_pull_reconnects_total{source=\"feed\"}"),
        "{metrics}"
    );
    td.stop().await;
}

#[tokio::test]
async fn unauthorized_stops_sse_and_poll_sources_with_a_clear_error() {
    let sim = Sim::start().await;
    let id = format!("webhook_id = \"{WEBHOOK_ID}\"");
    let body = format!(
        "{}{}",
        linkup(&sim, "lu-sse", "sse", "wrong-key", &id, 50, "1h"),
        linkup(&sim, "lu-poll", "poll", "wrong-key", &id, 50, "100ms"),
    );
    let td = TestDaemon::start(&body).await;
    let db = td.db();
    for name in ["lu-sse", "lu-poll"] {
        let (state, err, _) =
            eventually(LONG, || status(&db, name).filter(|s| s.0 == "stopped")).await;
        assert_eq!(state, "stopped");
        let err = err.unwrap();
        assert!(
            err.contains("401 Unauthorized")
                && err.contains("INVALID_API_KEY")
                && err.contains("api_key"),
            "{err}"
        );
        assert!(!err.contains("wrong-key"), "the key is never shown: {err}");
    }
    // Stopped means stopped: one attempt each, no retry loop.
    assert_eq!(sim.requests("/stream").len(), 1);
    assert_eq!(sim.requests("/events").len(), 1);
    // And the operator's health check says so.
    let ready = reqwest::get(format!("{}/readyz", td.admin.as_ref().unwrap()))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let text = ready.text().await.unwrap();
    assert!(
        text.contains("source lu-sse stopped") && text.contains("source lu-poll stopped"),
        "{text}"
    );
    assert!(!text.contains("wrong-key"), "{text}");
    td.stop().await;
}

#[tokio::test]
async fn sse_bom_and_crlf_split_across_chunks() {
    let sim = Sim::start().await;
    let chunks: Vec<Vec<u8>> = vec![
        vec![0xEF],
        [&[0xBB, 0xBF][..], b"id: 1\r"].concat(),
        b"\nevent: message\r\ndata: {\"id\":\"evt-1\",\"type\":\"t\",\r".to_vec(),
        b"\ndata: \"n\":1}\r\n\r".to_vec(),
        b"\n: comment\r\r".to_vec(),
        b"id: 2\r\nevent: message\r\ndata: {\"id\":\"evt-2\",\"type\":\"t\",\"n\":2}\n\n".to_vec(),
    ];
    sim.script_sse([SseAction::Raw {
        chunks,
        then_close: false,
    }]);
    let td = TestDaemon::start(&pull_sim::generic_sse(&sim, "10s")).await;
    wait_events(td.dir.path(), "feed", 2).await;
    let db = td.db();
    assert_eq!(stored_seqs(&db, "feed"), [1, 2]);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM rejected"), 0);
    assert_eq!(cursor(&db, "feed").2.as_deref(), Some("2"));
    assert_eq!(sim.connections(), 1);
    // Any CLI reads the recorded status, the daemon running or not.
    let out = std::process::Command::new(bin())
        .args([
            "-c",
            td.config_path.to_str().unwrap(),
            "subscriptions",
            "feed",
            "--json",
        ])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["source"], "feed");
    assert_eq!(line["pull"]["state"], "connected");
    assert_eq!(line["pull"]["connected"], true);
    assert_eq!(line["pull"]["events"], 2);
    assert_eq!(line["pull"]["last_event_id"], "2");
    let table = std::process::Command::new(bin())
        .args(["-c", td.config_path.to_str().unwrap(), "subscriptions"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("PULL SOURCE") && text.contains("connected"),
        "{text}"
    );
    td.stop().await;
}

#[tokio::test]
async fn poll_pages_until_empty_in_order_rereading_ties() {
    let sim = Sim::start().await;
    let base = hookd::timefmt::now_micros() - 3_600_000_000;
    let mut times: Vec<i64> = (1..=13).map(|i| base + i * 10_000_000).collect();
    // Events 3 and 4 share a timestamp across the first page boundary.
    times[3] = times[2];
    sim.push_times(&times, true);
    let id = format!("webhook_id = \"{WEBHOOK_ID}\"");
    let td = TestDaemon::start(&linkup(&sim, "lu", "poll", KEY, &id, 3, "1h")).await;
    wait_events(td.dir.path(), "lu", 13).await;
    let db = td.db();
    eventually(LONG, || status(&db, "lu").filter(|s| s.0 == "idle")).await;
    assert_eq!(stored_seqs(&db, "lu"), (1..=13).collect::<Vec<_>>());
    let reqs = sim.requests("/events");
    assert_eq!(
        reqs.len(),
        7,
        "pages of 3 re-reading one, then a short page"
    );
    assert!(
        reqs.iter()
            .all(|r| r.query.get("limit").map(String::as_str) == Some("3"))
    );
    assert_eq!(
        reqs[0].query.get("since"),
        None,
        "first poll: everything kept"
    );
    assert_eq!(
        reqs[1].query.get("since").map(String::as_str),
        Some(hookd::timefmt::format_micros(times[2] - 1).as_str()),
        "within a cycle, a page starts just before its predecessor's newest item (no overlap)"
    );
    let (cur, position, _) = cursor(&db, "lu");
    assert_eq!(cur, Some(linkup_time(times[12])));
    assert_eq!(position, Some(times[12]));
    td.stop().await;
}

#[tokio::test]
async fn poll_errors_are_retried_without_moving_the_cursor() {
    let sim = Sim::start().await;
    sim.push(3);
    sim.script_poll([
        PollAction::Normal,
        PollAction::Status {
            code: 500,
            retry_after: None,
        },
        PollAction::Status {
            code: 429,
            retry_after: Some("1".into()),
        },
        PollAction::Garbage,
    ]);
    let id = format!("webhook_id = \"{WEBHOOK_ID}\"");
    let td = TestDaemon::start(&linkup(&sim, "lu", "poll", KEY, &id, 50, "100ms")).await;
    let dir = td.dir.path().to_path_buf();
    wait_events(&dir, "lu", 3).await;
    let t3 = sim.events()[2].created_at;
    let db = td.db();
    // All three failures answered, then a good poll.
    eventually(LONG, || (sim.requests("/events").len() >= 5).then_some(())).await;
    assert_eq!(cursor(&db, "lu").1, Some(t3), "the cursor stayed put");
    sim.push(2);
    wait_events(&dir, "lu", 5).await;
    let reqs = sim.requests("/events");
    let since_t3 = hookd::timefmt::format_micros(t3 - 2_000_000);
    for r in &reqs[1..5] {
        assert_eq!(
            r.query.get("since").map(String::as_str),
            Some(since_t3.as_str()),
            "each retry asks from the same cursor"
        );
    }
    assert_eq!(stored_seqs(&db, "lu"), [1, 2, 3, 4, 5]);
    assert_eq!(cursor(&db, "lu").1, Some(sim.events()[4].created_at));
    let polls: i64 = db
        .query_row(
            "SELECT polls FROM pull_status WHERE source = 'lu'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(polls >= 5, "{polls}");
    td.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_sigkill_between_pages_loses_nothing_and_dispatches_nothing_twice() {
    let sim = Sim::start().await;
    let base = hookd::timefmt::now_micros() - 3_600_000_000;
    let times: Vec<i64> = (1..=9).map(|i| base + i * 10_000_000).collect();
    sim.push_times(&times, true);
    // Page 1 is answered; page 2 is held until hookd has been killed.
    sim.script_poll([PollAction::Normal, PollAction::Hold]);
    let dir = tempfile::tempdir().unwrap();
    let id = format!("webhook_id = \"{WEBHOOK_ID}\"");
    let cfg = write_config(
        dir.path(),
        &format!(
            "{}{}",
            linkup(&sim, "lu", "poll", KEY, &id, 3, "1h"),
            recording_handler(dir.path(), "rec")
        ),
    );
    let out = dir.path().join("rec.out");
    let p = Proc::spawn(&cfg, &[]);
    eventually(LONG, || (sim.held() == 1).then_some(())).await;
    // Page 1 committed and its handlers done: now between pages.
    let db = state_db(dir.path());
    eventually(LONG, || {
        (count(
            &db,
            "SELECT COUNT(*) FROM deliveries WHERE status = 'succeeded'",
        ) == 3)
            .then_some(())
    })
    .await;
    assert_eq!(lines(&out).len(), 3);
    p.kill();
    sim.release_held();
    let p = Proc::spawn(&cfg, &[]);
    eventually(LONG, || {
        (count(
            &db,
            "SELECT COUNT(*) FROM deliveries WHERE status = 'succeeded'",
        ) == 9)
            .then_some(())
    })
    .await;
    assert_eq!(stored_seqs(&db, "lu"), (1..=9).collect::<Vec<_>>());
    let reqs = sim.requests("/events");
    assert_eq!(
        reqs[2].query.get("since").map(String::as_str),
        Some(hookd::timefmt::format_micros(times[2] - 2_000_000).as_str()),
        "after the restart, polling resumes from page 1's committed cursor"
    );
    let got = lines(&out);
    assert_eq!(got.len(), 9, "every event dispatched exactly once: {got:?}");
    assert_eq!(got.iter().collect::<HashSet<_>>().len(), 9);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM deliveries"), 9);
    p.kill();
}

#[tokio::test]
async fn reload_starts_and_stops_pull_sources() {
    let sim = Sim::start().await;
    sim.push(2);
    let td = TestDaemon::start(&generic_source("push", "k")).await;
    let daemon = td.daemon();
    assert!(daemon.pull.names().await.is_empty());
    let id = format!("webhook_id = \"{WEBHOOK_ID}\"");
    let with_pull = format!(
        "{}{}{}",
        base_config(td.dir.path()),
        generic_source("push", "k"),
        linkup(&sim, "lu", "poll", KEY, &id, 50, "1h")
    );
    let cfg = hookd::config::parse(&with_pull, &td.config_path).unwrap();
    daemon.reload(cfg).await.unwrap();
    assert_eq!(daemon.pull.names().await, ["lu"]);
    wait_events(td.dir.path(), "lu", 2).await;
    let without = format!(
        "{}{}",
        base_config(td.dir.path()),
        generic_source("push", "k")
    );
    let cfg = hookd::config::parse(&without, &td.config_path).unwrap();
    daemon.reload(cfg).await.unwrap();
    assert!(daemon.pull.names().await.is_empty());
    assert_eq!(status(&td.db(), "lu"), None, "its status row is gone");
    td.stop().await;
}

#[tokio::test]
async fn a_source_without_webhook_id_waits_and_starts_once_registered() {
    let sim = Sim::start().await;
    let td = TestDaemon::start(&linkup(&sim, "lu", "sse", KEY, "", 50, "1h")).await;
    let db = td.db();
    let (_, err, _) = eventually(LONG, || {
        status(&db, "lu").filter(|s| s.0 == "waiting_for_id")
    })
    .await;
    assert!(err.unwrap().contains("hookd register lu"));
    assert!(sim.requests("/stream").is_empty());
    // As `hookd register` (or register = "auto") would store it.
    td.daemon()
        .store
        .sqlite()
        .expect("a SQLite store")
        .write(|c| {
            hookd::store::subscriptions::save(
                c,
                &hookd::store::subscriptions::Registration {
                    source: "lu".into(),
                    provider: "linkup".into(),
                    remote_id: Some(WEBHOOK_ID.into()),
                    secret: None,
                    info: serde_json::json!({}),
                    updated_at: 1,
                },
            )
        })
        .await
        .unwrap();
    td.daemon().pull.registered().notify();
    eventually(LONG, || (!sim.requests("/stream").is_empty()).then_some(())).await;
    sim.push(1);
    wait_events(td.dir.path(), "lu", 1).await;
    td.stop().await;
}
