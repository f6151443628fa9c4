//! `hookd store copy`: a SQLite store seeded through the store's own code
//! paths is copied by the real binary into a database of the throwaway
//! PostgreSQL cluster (tests/pg_support), and every kind of row reads back
//! the same through the PostgreSQL store: events byte for byte, a dead
//! delivery still dead with its attempts, cursors, pull status, saved
//! secrets, refused requests. After the copy a copied event's duplicate is
//! a duplicate, new ids continue after the copied ones, and a delivery
//! that was running is taken over as interrupted. A second copy is refused
//! while the target holds anything, unless `--replace`.

mod pg_support;
mod support;

use std::path::Path;
use std::time::Duration;

use hookd::store::deliveries::{AttemptRecord, DeliveryFilter, Next};
use hookd::store::events::{Ingested, NewEvent};
use hookd::store::pg::{PgOptions, PgStore};
use hookd::store::rejected::NewRejection;
use hookd::store::subscriptions::Registration;
use hookd::store::{Backend, Store, StoreOptions, cursors, pull_status};

const URL_VAR: &str = "HOOKD_TEST_COPY_TO";
const NOW: i64 = 1_700_000_000_000_000;

fn event(id: &str, handlers: &[&str], body: &[u8]) -> NewEvent {
    NewEvent {
        source: "lu".into(),
        provider: "linkup".into(),
        event_id: id.into(),
        id_synthetic: id.ends_with("-syn"),
        event_type: "message_received".into(),
        type_raw: "message".into(),
        occurred_at: Some(NOW - 5_000_000),
        received_at: NOW,
        headers_json: r#"[["x-linkup-timestamp","1700000000"]]"#.into(),
        body: bytes::Bytes::copy_from_slice(body),
        verified: "linkup".into(),
        handlers: handlers.iter().map(|s| s.to_string()).collect(),
    }
}

fn failed(attempt: u32, next: &str) -> AttemptRecord {
    AttemptRecord {
        attempt,
        started_at: NOW + attempt as i64,
        duration_us: 1234,
        outcome: "exit".into(),
        exit_code: Some(3),
        stdout: format!("try {attempt}").into_bytes(),
        stderr: b"\xffnot utf-8".to_vec(),
        stdout_truncated: attempt == 2,
        summary: format!("exit 3 ({next})"),
        ..Default::default()
    }
}

struct Seeded {
    dead_event: i64,
    running_event: i64,
    last_event: i64,
}

/// A SQLite store with one of everything: a dead delivery with two
/// attempts, a succeeded and a pending one, one left running (the daemon
/// was killed), an event with no handler, a refused request, a cursor, a
/// pull status and a saved registration with a provider-issued secret.
async fn seed(s: &Backend, store: &Store) -> Seeded {
    let ids: Vec<i64> = s
        .insert_events(vec![
            event("a", &["h"], b"{\"n\":1}"),
            event("b", &["h", "g"], b"\x00\x01 binary body \xff"),
            event("c", &["g"], b"{}"),
            event("d-syn", &[], b"{\"n\":4}"),
        ])
        .await
        .unwrap()
        .into_iter()
        .map(|i| match i {
            Ingested::Accepted { id, .. } => id,
            other => panic!("{other:?}"),
        })
        .collect();
    let (a, b, c) = (ids[0], ids[1], ids[2]);
    // h: a fails, b succeeds; then a fails again and is dead.
    let claimed = s.claim("h", NOW, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    for cl in &claimed {
        let (rec, next) = if cl.event == a {
            (failed(1, "retry"), Next::RetryAt(NOW + 10))
        } else {
            (
                AttemptRecord {
                    attempt: 1,
                    outcome: "ok".into(),
                    exit_code: Some(0),
                    ..Default::default()
                },
                Next::Succeeded,
            )
        };
        assert!(s.finish(cl.delivery, rec, next, NOW + 1).await.unwrap());
    }
    let again = s.claim("h", NOW + 20, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert!(
        s.finish(again[0].delivery, failed(2, "dead"), Next::Dead, NOW + 21)
            .await
            .unwrap()
    );
    // g: b's stays pending, c's is left running.
    let g = s.claim("g", NOW + 30, 10).await.unwrap();
    let (keep, back): (Vec<_>, Vec<_>) = g.into_iter().partition(|cl| cl.event == c);
    assert_eq!(keep.len(), 1);
    s.unclaim(back.iter().map(|cl| cl.delivery).collect())
        .await
        .unwrap();
    assert_eq!(back[0].event, b);

    s.insert_rejected(
        NewRejection {
            source: Some("lu".into()),
            path: "/hooks/lu".into(),
            status: 401,
            reason: "signature mismatch".into(),
            code: "bad_signature".into(),
            received_at: NOW + 40,
            remote: Some("127.0.0.1:5555".into()),
            headers: vec![("x-linkup-signature".into(), "v1=00".into())],
            body: b"{\"forged\":true}".to_vec(),
        },
        100,
    )
    .await
    .unwrap();
    store
        .write(|c| {
            cursors::advance(
                c,
                "lu",
                &cursors::Advance {
                    cursor: Some("2026-12-05T10:00:00.000Z".into()),
                    position_at: Some(NOW - 1),
                    last_event_id: Some("evt-9".into()),
                },
                NOW + 50,
            )?;
            pull_status::set_error(
                c,
                "lu",
                "poll",
                pull_status::State::Backoff,
                "503 from LinkUp",
                NOW + 51,
            )?;
            pull_status::count(
                c,
                "lu",
                &pull_status::Counts {
                    events: 3,
                    polls: 7,
                    reconnects: 1,
                    last_event_at: Some(NOW),
                },
                NOW + 52,
            )
        })
        .await
        .unwrap();
    s.save_registration(Registration {
        source: "lu".into(),
        provider: "linkup".into(),
        remote_id: Some("6789abc".into()),
        secret: Some(b"issued-once-secret".to_vec()),
        info: serde_json::json!({"url": "https://hooks.example.com/hooks/lu"}),
        updated_at: NOW + 60,
    })
    .await
    .unwrap();
    Seeded {
        dead_event: a,
        running_event: c,
        last_event: ids[3],
    }
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn copy(cfg: &Path, url: &str, extra: &[&str]) -> Out {
    let out = assert_cmd::Command::new(support::bin())
        .arg("-c")
        .arg(cfg)
        .args(["store", "copy", "--to", &format!("env:{URL_VAR}")])
        .args(extra)
        .env(URL_VAR, url)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// An event's columns, in two halves (tuples compare up to 12).
type EventRow = (
    (i64, String, String, String, bool, String, String),
    (Option<i64>, i64, String, Vec<u8>, String, i64, i64),
);

const EVENT_COLS: &str = "id, source, provider, event_id, id_synthetic, type, type_raw, occurred_at, received_at, headers, body, verified, routed, duplicates";

async fn sqlite_events(store: &Store) -> Vec<EventRow> {
    store
        .read(|c| {
            let mut st = c.prepare(&format!("SELECT {EVENT_COLS} FROM events ORDER BY id"))?;
            let rows = st
                .query_map([], |r| {
                    Ok((
                        (
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            r.get(6)?,
                        ),
                        (
                            r.get(7)?,
                            r.get(8)?,
                            r.get(9)?,
                            r.get(10)?,
                            r.get(11)?,
                            r.get(12)?,
                            r.get(13)?,
                        ),
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
        .unwrap()
}

async fn pg_events(pg: &tokio_postgres::Client) -> Vec<EventRow> {
    pg.query(&format!("SELECT {EVENT_COLS} FROM events ORDER BY id"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                (
                    r.get(0),
                    r.get(1),
                    r.get(2),
                    r.get(3),
                    r.get(4),
                    r.get(5),
                    r.get(6),
                ),
                (
                    r.get(7),
                    r.get(8),
                    r.get(9),
                    r.get(10),
                    r.get(11),
                    r.get::<_, i32>(12) as i64,
                    r.get::<_, i32>(13) as i64,
                ),
            )
        })
        .collect()
}

/// Cursor and pull status columns as text, for comparing both stores.
const POSITION_SQL: &str =
    "SELECT c.source, c.cursor, c.updated_at, c.position_at, c.last_event_id,
        p.mode, p.state, p.state_since, p.last_event_at, p.events, p.reconnects, p.polls,
        p.last_error, p.last_error_at, p.updated_at
    FROM cursors c JOIN pull_status p ON p.source = c.source ORDER BY c.source";

async fn sqlite_positions(store: &Store) -> Vec<Vec<Option<String>>> {
    store
        .read(|c| {
            let mut st = c.prepare(POSITION_SQL)?;
            let rows = st
                .query_map([], |r| {
                    (0..15)
                        .map(|i| {
                            Ok(match r.get_ref(i)? {
                                rusqlite::types::ValueRef::Null => None,
                                rusqlite::types::ValueRef::Integer(n) => Some(n.to_string()),
                                v => Some(v.as_str()?.to_string()),
                            })
                        })
                        .collect::<rusqlite::Result<Vec<_>>>()
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
        .unwrap()
}

async fn pg_positions(pg: &tokio_postgres::Client) -> Vec<Vec<Option<String>>> {
    // The simple protocol answers every column as text.
    let rows = pg.simple_query(POSITION_SQL).await.unwrap();
    rows.into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                (0..15)
                    .map(|i| r.get(i).map(str::to_string))
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .collect()
}

async fn raw(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_survives_the_copy_and_the_target_must_be_empty() {
    let Some(db) = pg_support::database() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = support::write_config(dir.path(), "");
    let store = Store::open(&dir.path().join("state"), StoreOptions::default()).unwrap();
    let sqlite = Backend::Sqlite(store.clone());
    let seeded = seed(&sqlite, &store).await;

    let out = copy(&cfg, &db.url, &[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    for line in [
        "4 events",
        "4 deliveries",
        "3 attempts",
        "1 refused request",
        "1 pull cursor",
        "1 pull status",
        "1 saved registration",
    ] {
        assert!(out.stdout.contains(line), "{line:?} in {}", out.stdout);
    }

    let pg = Backend::Postgres(PgStore::open(&db.url, PgOptions::default()).await.unwrap());
    let raw = raw(&db.url).await;

    assert_eq!(pg_events(&raw).await, sqlite_events(&store).await);
    let all = DeliveryFilter::default();
    let (from, to) = (
        sqlite.list_deliveries(all.clone()).await.unwrap(),
        pg.list_deliveries(all).await.unwrap(),
    );
    assert_eq!(to, from);
    let dead: Vec<_> = to.iter().filter(|d| d.status == "dead").collect();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].event, dead[0].attempts), (seeded.dead_event, 2));
    let json = |v: Vec<hookd::store::deliveries::AttemptRow>| serde_json::to_value(v).unwrap();
    let attempts = pg.attempts_for_event(seeded.dead_event).await.unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(
        json(attempts),
        json(sqlite.attempts_for_event(seeded.dead_event).await.unwrap())
    );
    assert_eq!(
        pg.list_rejected(None, 10).await.unwrap(),
        sqlite.list_rejected(None, 10).await.unwrap()
    );
    assert_eq!(
        pg.registration("lu").await.unwrap(),
        sqlite.registration("lu").await.unwrap()
    );
    assert_eq!(
        pg.issued_secrets().await.unwrap()["lu"],
        vec![b"issued-once-secret".to_vec()]
    );
    let positions = sqlite_positions(&store).await;
    assert_eq!(positions.len(), 1);
    assert_eq!(pg_positions(&raw).await, positions);

    // The copied dedup keys hold, and new ids follow the copied ones.
    let dup = pg.insert_event(event("a", &["h"], b"{}")).await.unwrap();
    assert_eq!(
        dup,
        Ingested::Duplicate {
            id: seeded.dead_event
        }
    );
    // (Without the sequences moved, this would collide with copied id 1.)
    match pg.insert_event(event("e", &["h"], b"{}")).await.unwrap() {
        Ingested::Accepted { id, .. } => assert!(id > seeded.last_event, "new id {id}"),
        other => panic!("{other:?}"),
    }
    // The delivery that was running on SQLite is taken over at once (its
    // interrupted attempt gets a new attempt id past the copied ones).
    assert_eq!(pg.take_over_expired(NOW + 100).await.unwrap(), 1);
    let interrupted = pg.attempts_for_event(seeded.running_event).await.unwrap();
    assert_eq!(interrupted.len(), 1);

    // A second copy finds the target in use and changes nothing.
    let again = copy(&cfg, &db.url, &[]);
    assert_eq!(again.code, 1, "{}{}", again.stdout, again.stderr);
    assert_eq!(again.stderr.lines().count(), 1, "{}", again.stderr);
    assert!(
        again.stderr.contains("is not empty (it holds 5 events"),
        "{}",
        again.stderr
    );
    assert!(again.stderr.contains("--replace"), "{}", again.stderr);
    assert_eq!(pg_events(&raw).await.len(), 5);

    // --replace starts the target over from the SQLite store.
    let replaced = copy(&cfg, &db.url, &["--replace"]);
    assert_eq!(replaced.code, 0, "{}{}", replaced.stdout, replaced.stderr);
    assert_eq!(pg_events(&raw).await, sqlite_events(&store).await);
}

#[test]
fn without_a_sqlite_store_or_a_target_it_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = support::write_config(dir.path(), "");
    let out = copy(&cfg, "postgres://hookd@127.0.0.1:1/hooks", &[]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("no SQLite store at"), "{}", out.stderr);

    let out = assert_cmd::Command::new(support::bin())
        .arg("-c")
        .arg(&cfg)
        .args(["store", "copy"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("pass --to postgres://"), "{stderr}");
}

/// A daemon still writing to the SQLite store while the copy runs: the copy
/// is refused and the PostgreSQL transaction rolled back. The writer here
/// commits in a loop from before the copy starts until it ended, so some
/// commit falls inside the copy's read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_written_during_the_copy_is_refused_and_nothing_is_copied() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let Some(db) = pg_support::database() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = support::write_config(dir.path(), "");
    let store = Store::open(&dir.path().join("state"), StoreOptions::default()).unwrap();
    let events: Vec<NewEvent> = (0..3000)
        .map(|i| event(&format!("e{i}"), &["h"], &[b'x'; 512]))
        .collect();
    Backend::Sqlite(store.clone())
        .insert_events(events)
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let commits = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, commits) = (stop.clone(), commits.clone());
        let path = store.path().to_path_buf();
        std::thread::spawn(move || {
            let c = hookd::store::connect(&path, false).unwrap();
            let mut n = 0i64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                c.execute(
                    "INSERT INTO cursors (source, cursor, updated_at) VALUES ('live', ?1, ?1)
                     ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor",
                    [n],
                )
                .unwrap();
                commits.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let before = commits.load(Ordering::Relaxed);
    let url = db.url.clone();
    let cfg2 = cfg.clone();
    let out = tokio::task::spawn_blocking(move || copy(&cfg2, &url, &[]))
        .await
        .unwrap();
    let during = commits.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(during > 0, "the writer never committed during the copy");

    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("changed while it was being copied (is `hookd run` still running on it?)"),
        "{}",
        out.stderr
    );
    let raw = raw(&db.url).await;
    let n: i64 = raw
        .query_one("SELECT COUNT(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "the copy was rolled back");
}
