//! The store verbs of the real `hookd` binary on a PostgreSQL store
//! (`[store] url = "env:…"`): they migrate an empty database, print what
//! they print on SQLite for the same data, and replay, prune and tail as
//! they do there. The data is seeded through the store interface. Each
//! test has its own database on the throwaway cluster (tests/pg_support),
//! or is skipped with one line.

mod pg_support;
mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::channel;
use std::time::Duration;

use hookd::store::deliveries::{AttemptRecord, DeliveryFilter, Next};
use hookd::store::events::{EventFilter, Ingested, NewEvent};
use hookd::store::pg::{PgOptions, PgStore};
use hookd::store::rejected::NewRejection;
use hookd::store::{Backend, Store, StoreOptions};
use support::{base_config, bin, generic_source};

/// The environment variable the configs name the URL by.
const URL_VAR: &str = "HOOKD_TEST_PG_URL";

/// Handlers `h` (every event) and `other` (calls only), and a source.
fn body() -> String {
    format!(
        "{}[[handler]]\nname = \"h\"\nevents = [\"message.*\", \"call.*\"]\ncommand = [\"/bin/true\"]\n\n[[handler]]\nname = \"other\"\nevents = [\"call.*\"]\ncommand = [\"/bin/true\"]\n\n",
        generic_source("s", "k")
    )
}

/// A config in `dir` on SQLite, or on PostgreSQL (the URL from [`URL_VAR`]).
fn config(dir: &Path, postgres: bool, extra: &str) -> PathBuf {
    let store = if postgres {
        format!("[store]\nurl = \"env:{URL_VAR}\"\n\n")
    } else {
        String::new()
    };
    let path = dir.join("receiver.toml");
    let text = format!("{}{store}{}{extra}", base_config(dir), body());
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `hookd -c config ARGS` to completion.
fn hookd(config: &Path, url: &str, args: &[&str]) -> Output {
    Command::new(bin())
        .args(["-c", config.to_str().unwrap()])
        .args(args)
        .env(URL_VAR, url)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

/// Runs `hookd` and returns its stdout, failing the test on a non-zero exit.
fn stdout_of(config: &Path, url: &str, args: &[&str]) -> String {
    let out = hookd(config, url, args);
    assert!(
        out.status.success(),
        "hookd {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn event(id: &str, ty: &str, handlers: &[&str]) -> NewEvent {
    NewEvent {
        source: "s".into(),
        provider: "generic".into(),
        event_id: id.into(),
        id_synthetic: false,
        event_type: ty.into(),
        type_raw: ty.into(),
        occurred_at: Some(500),
        received_at: 1_000,
        headers_json: r#"[["content-type","application/json"]]"#.into(),
        body: bytes::Bytes::from(format!(r#"{{"id":"{id}","type":"{ty}"}}"#)),
        verified: "hmac".into(),
        handlers: handlers.iter().map(|s| s.to_string()).collect(),
    }
}

/// The same story on any backend, at fixed times: event 1 (`e1`) died in
/// `h` after printing to stderr, event 2 (`e2`) succeeded in `h` and waits
/// for `other`, event 3 (`e3`) and 4 (`e4`) were routed nowhere; one
/// request was refused.
async fn seed(s: &Backend) {
    let events = vec![
        event("e1", "message.sent", &["h"]),
        event("e2", "call.ended", &["h", "other"]),
        event("e3", "message.read", &[]),
        event("e4", "ping", &[]),
    ];
    for e in events {
        assert!(matches!(
            s.insert_event(e).await.unwrap(),
            Ingested::Accepted { .. }
        ));
    }
    let runs = s.claim("h", 2_000, 10).await.unwrap();
    let died = AttemptRecord {
        attempt: 1,
        started_at: 2_000,
        duration_us: 1_500,
        outcome: "exit".into(),
        exit_code: Some(3),
        stderr: b"boom\n".to_vec(),
        summary: "exit 3".into(),
        ..Default::default()
    };
    let ok = AttemptRecord {
        attempt: 1,
        started_at: 2_000,
        duration_us: 700,
        outcome: "ok".into(),
        stdout: b"done\n".to_vec(),
        ..Default::default()
    };
    assert!(
        s.finish(runs[0].delivery, died, Next::Dead, 3_000)
            .await
            .unwrap()
    );
    assert!(
        s.finish(runs[1].delivery, ok, Next::Succeeded, 3_000)
            .await
            .unwrap()
    );
    let refused = NewRejection {
        source: Some("s".into()),
        path: "/hooks/s".into(),
        status: 401,
        reason: "no signature matches".into(),
        code: "bad_signature".into(),
        received_at: 4_000,
        remote: Some("127.0.0.1".into()),
        headers: vec![],
        body: b"{\"forged\":true}".to_vec(),
    };
    s.insert_rejected(refused, 100).await.unwrap();
}

/// A replica on the test database, seeded.
async fn seeded_pg(url: &str) -> Backend {
    let pg = Backend::Postgres(PgStore::open(url, PgOptions::default()).await.unwrap());
    seed(&pg).await;
    pg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verb_before_any_daemon_migrates_an_empty_database() {
    let Some(db) = pg_support::database() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), true, "");
    let out = hookd(&cfg, &db.url, &["events", "list"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "(none)");
    assert!(
        !dir.path().join("state/hookd.db").exists(),
        "no SQLite database is made beside a PostgreSQL store"
    );
    // The schema is in place: a replica opening it now finds nothing to do.
    let pg = Backend::Postgres(PgStore::open(&db.url, PgOptions::default()).await.unwrap());
    assert!(
        pg.list_events(EventFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(stdout_of(&cfg, &db.url, &["rejected", "--json"]), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_does_not_answer_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), true, "");
    // A port nothing listens on: reserved, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://hookd@127.0.0.1:{port}/nowhere");
    let out = hookd(&cfg, &url, &["deliveries"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "cannot connect to database nowhere on 127.0.0.1:{port}"
        )) && err.contains("store.url"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_verbs_print_the_same_on_both_backends() {
    let Some(db) = pg_support::database() else {
        return;
    };
    let (lite_dir, pg_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let lite = Store::open(&lite_dir.path().join("state"), StoreOptions::default()).unwrap();
    seed(&Backend::Sqlite(lite)).await;
    seeded_pg(&db.url).await;
    let (lite_cfg, pg_cfg) = (
        config(lite_dir.path(), false, ""),
        config(pg_dir.path(), true, ""),
    );
    let verbs: [(&[&str], &str); 12] = [
        (&["events", "list"], "call.ended"),
        (&["events", "list", "--json"], "\"event_id\":\"e4\""),
        (&["events", "list", "--type", "call.*"], "e2"),
        (&["events", "list", "--status", "dead"], "e1"),
        (&["events", "show", "1"], "boom"),
        (&["events", "show", "2", "--json"], "done"),
        (&["deliveries"], "exit 3"),
        (
            &["deliveries", "--status", "dead", "--json"],
            "\"handler\":\"h\"",
        ),
        (&["rejected"], "no signature matches"),
        (&["rejected", "--json"], "\"status\":401"),
        (
            &["replay", "--status", "dead", "--dry-run"],
            "would replay event 1 to h",
        ),
        (
            &["replay", "3", "2", "--dry-run"],
            "would replay event 2 to other",
        ),
    ];
    for (args, shows) in verbs {
        let on_pg = stdout_of(&pg_cfg, &db.url, args);
        assert!(
            on_pg.contains(shows),
            "hookd {args:?} on PostgreSQL:\n{on_pg}"
        );
        assert_eq!(
            on_pg,
            stdout_of(&lite_cfg, &db.url, args),
            "hookd {args:?} prints the same on SQLite"
        );
    }
    let json = stdout_of(
        &pg_cfg,
        &db.url,
        &["events", "list", "--json", "--limit", "1"],
    );
    let newest: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(
        (newest["id"].as_i64(), newest["status"].as_str()),
        (Some(4), Some("unrouted"))
    );
}

/// The deliveries of event `event` as (handler, status, attempts, replay).
async fn runs_of(s: &Backend, event: i64) -> Vec<(String, String, u32, bool)> {
    let f = DeliveryFilter {
        event: Some(event),
        ..Default::default()
    };
    let mut rows = s.list_deliveries(f).await.unwrap();
    rows.sort_by(|a, b| a.handler.cmp(&b.handler));
    rows.into_iter()
        .map(|r| (r.handler, r.status, r.attempts, r.replay))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_and_prune_change_the_postgresql_store() {
    let Some(db) = pg_support::database() else {
        return;
    };
    let pg = seeded_pg(&db.url).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), true, "");

    let refused = hookd(&cfg, &db.url, &["replay"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("replaying everything is not a default")
    );

    let out = stdout_of(&cfg, &db.url, &["replay", "--status", "dead"]);
    assert_eq!(out, "queued 1 run(s) for replay\n");
    let pending = |h: &str| (h.to_string(), "pending".to_string(), 0, true);
    assert_eq!(
        runs_of(&pg, 1).await,
        [pending("h")],
        "dead, now queued again"
    );

    let out = stdout_of(&cfg, &db.url, &["replay", "3", "--handler", "h"]);
    assert_eq!(out, "queued 1 run(s) for replay\n");
    assert_eq!(runs_of(&pg, 3).await, [pending("h")], "a new delivery");
    let e3 = pg.event(3).await.unwrap().unwrap();
    assert_eq!(e3.row.status, "pending", "no longer unrouted");
    let dry = stdout_of(
        &cfg,
        &db.url,
        &["replay", "--type", "message.*", "--dry-run"],
    );
    assert!(dry.ends_with("2 run(s) would be queued\n"), "{dry}");

    // Everything was received in 1970: only `e4` has no unfinished work.
    let out = stdout_of(&cfg, &db.url, &["prune", "--older-than", "1s"]);
    assert_eq!(
        out,
        "pruned 1 event(s) older than 1s\nkept 3 older event(s) whose deliveries are not finished\n"
    );
    let left: Vec<String> = pg
        .list_events(EventFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.event_id)
        .collect();
    assert_eq!(left, ["e3", "e2", "e1"]);
}

/// Returns once another session of the test database (the tail) has read
/// the events table after this call began, as `pg_stat_activity` shows.
async fn tail_read_events_since(url: &str) {
    let (observer, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let since: String = observer
        .query_one("SELECT clock_timestamp()::text", &[])
        .await
        .unwrap()
        .get(0);
    let read = "SELECT COUNT(*) FROM pg_stat_activity
        WHERE datname = current_database() AND pid <> pg_backend_pid()
          AND query LIKE '%FROM events e%' AND state_change > $1::text::timestamptz";
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let n: i64 = observer.query_one(read, &[&since]).await.unwrap().get(0);
        if n > 0 {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the tail never read");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_follows_what_is_stored_after_it_started() {
    let Some(db) = pg_support::database() else {
        return;
    };
    let pg = seeded_pg(&db.url).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), true, "");
    let mut child = Command::new(bin())
        .args([
            "-c",
            cfg.to_str().unwrap(),
            "tail",
            "--json",
            "--type",
            "call.*",
        ])
        .env(URL_VAR, &db.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The "following" line comes once the tail has taken its starting point.
    let mut first = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("following"), "tail said {first:?}");
    let (tx, lines) = channel();
    let out = BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for l in out.lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    pg.insert_event(event("skipped", "message.sent", &[]))
        .await
        .unwrap();
    pg.insert_event(event("new", "call.started", &[]))
        .await
        .unwrap();
    // The limit is a safety net, not the synchronisation.
    let line = lines.recv_timeout(Duration::from_secs(20)).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (v["kind"].as_str(), v["event_id"].as_str()),
        (Some("event"), Some("new")),
        "only what came after it started, of the type asked: {line}"
    );

    // A row numbered first but committed last is printed, in id order.
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client.batch_execute("BEGIN").await.unwrap();
    client
        .batch_execute(
            "INSERT INTO events (source, provider, event_id, type, type_raw, received_at,
                                 headers, body, verified)
             VALUES ('s', 'generic', 'late', 'call.late', 'call.late', 1, '[]', '', 'none')",
        )
        .await
        .unwrap();
    pg.insert_event(event("early", "call.early", &[]))
        .await
        .unwrap();
    tail_read_events_since(&db.url).await;
    client.batch_execute("COMMIT").await.unwrap();
    let order: Vec<String> = (0..2)
        .map(|_| {
            let line = lines
                .recv_timeout(Duration::from_secs(20))
                .expect("both rows printed, the one committed late too");
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            v["event_id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(order, ["late", "early"]);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(lines.try_recv().is_err(), "nothing else was printed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_sources_recorded_status_is_read_from_postgresql() {
    let Some(db) = pg_support::database() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let feed = "[[source]]\nname = \"feed\"\nprovider = \"generic\"\nmode = \"sse\"\napi_key = \"test-key\"\nextract = { id = [\"json:/id\"], type = [\"json:/type\"] }\n[source.sse]\nurl = \"http://127.0.0.1:9/stream\"\n\n";
    let cfg = config(dir.path(), true, feed);
    let before = stdout_of(&cfg, &db.url, &["subscriptions", "feed", "--json"]);
    let line: serde_json::Value = serde_json::from_str(before.trim()).unwrap();
    assert_eq!(
        line["pull"],
        serde_json::Value::Null,
        "not started: {before}"
    );
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(
            "INSERT INTO pull_status (source, mode, state, state_since, events, last_error, updated_at)
             VALUES ('feed', 'sse', 'backoff', 1000, 7, '502 Bad Gateway', 1000);
             INSERT INTO cursors (source, last_event_id, updated_at) VALUES ('feed', 'ev-7', 1000);",
        )
        .await
        .unwrap();
    let after = stdout_of(&cfg, &db.url, &["subscriptions", "feed", "--json"]);
    let line: serde_json::Value = serde_json::from_str(after.trim()).unwrap();
    let pull = &line["pull"];
    assert_eq!(
        (
            pull["state"].as_str(),
            pull["events"].as_i64(),
            pull["last_event_id"].as_str(),
            pull["last_error"].as_str(),
            pull["connected"].as_bool()
        ),
        (
            Some("backoff"),
            Some(7),
            Some("ev-7"),
            Some("502 Bad Gateway"),
            Some(false)
        ),
        "{after}"
    );
}
