//! What only the PostgreSQL store does: leases between replicas, waking
//! idle replicas with NOTIFY, migrations when replicas start together, and
//! TLS and URL handling. Each test runs on its own database of the
//! throwaway cluster (tests/pg_support), or is skipped with one line.

mod pg_support;

use std::time::Duration;

use hookd::store::deliveries::{AttemptRecord, Next};
use hookd::store::events::{Ingested, NewEvent};
use hookd::store::pg::{PgOptions, PgStore};

const LEASE: Duration = Duration::from_secs(30);
const LEASE_US: i64 = 30_000_000;

fn event(id: &str, handlers: &[&str]) -> NewEvent {
    NewEvent {
        source: "s".into(),
        provider: "generic".into(),
        event_id: id.into(),
        id_synthetic: false,
        event_type: "t".into(),
        type_raw: "t".into(),
        occurred_at: None,
        received_at: 1_000,
        headers_json: "[]".into(),
        body: bytes::Bytes::from_static(b"{}"),
        verified: "none".into(),
        handlers: handlers.iter().map(|s| s.to_string()).collect(),
    }
}

async fn replicas(url: &str) -> (PgStore, PgStore) {
    let opts = PgOptions {
        lease: LEASE,
        ..Default::default()
    };
    let (a, b) = tokio::join!(PgStore::open(url, opts.clone()), PgStore::open(url, opts));
    (a.unwrap(), b.unwrap())
}

/// A raw connection for looking at the tables.
async fn raw(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

fn ok(attempt: u32) -> AttemptRecord {
    AttemptRecord {
        attempt,
        outcome: "ok".into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_is_taken_over_as_an_interrupted_attempt() {
    let Some(db) = pg_support::database() else {
        return;
    };
    let (a, b) = replicas(&db.url).await;
    let Ingested::Accepted { id: ev, .. } = a.insert_event(event("e1", &["h"])).await.unwrap()
    else {
        panic!()
    };
    let now = hookd::timefmt::now_micros();
    let held = a.claim("h", now, 1).await.unwrap().remove(0);
    assert_eq!(
        b.take_over_expired(now + LEASE_US / 2).await.unwrap(),
        0,
        "a lease in force is left alone"
    );
    let later = now + 10 * LEASE_US;
    assert_eq!(b.take_over_expired(later).await.unwrap(), 1);
    assert!(
        !a.finish(held.delivery, ok(1), Next::Succeeded, later)
            .await
            .unwrap(),
        "the late result of a lost run is dropped"
    );
    let again = b.claim("h", later, 1).await.unwrap().remove(0);
    assert_eq!((again.delivery, again.attempt), (held.delivery, 2));
    assert!(
        b.finish(again.delivery, ok(2), Next::Succeeded, later + 1)
            .await
            .unwrap()
    );
    let attempts = b.attempts_for_event(ev).await.unwrap();
    let outcomes: Vec<(u32, &str)> = attempts
        .iter()
        .map(|a| (a.attempt, a.outcome.as_str()))
        .collect();
    assert_eq!(outcomes, [(1, "interrupted"), (2, "ok")]);
}

/// A replica whose run was taken over (it stalled past its lease) and that
/// claimed the same delivery again cannot record the old run's result on
/// the new claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_result_does_not_land_on_a_later_claim_of_the_same_replica() {
    let Some(db) = pg_support::database() else {
        return;
    };
    let (a, b) = replicas(&db.url).await;
    a.insert_event(event("e1", &["h"])).await.unwrap();
    let now = hookd::timefmt::now_micros();
    let first = a.claim("h", now, 1).await.unwrap().remove(0);
    let later = now + 10 * LEASE_US;
    assert_eq!(b.take_over_expired(later).await.unwrap(), 1);
    let second = a.claim("h", later, 1).await.unwrap().remove(0);
    assert_eq!((second.delivery, second.attempt), (first.delivery, 2));
    assert!(
        !a.finish(first.delivery, ok(1), Next::Succeeded, later)
            .await
            .unwrap(),
        "attempt 1's result is stale"
    );
    assert!(
        a.finish(second.delivery, ok(2), Next::Succeeded, later)
            .await
            .unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_lease_is_not_taken_over() {
    let Some(db) = pg_support::database() else {
        return;
    };
    let (a, b) = replicas(&db.url).await;
    a.insert_event(event("e1", &["h"])).await.unwrap();
    a.insert_event(event("e2", &["h"])).await.unwrap();
    let now = hookd::timefmt::now_micros();
    assert_eq!(a.claim("h", now, 1).await.unwrap().len(), 1);
    assert_eq!(b.claim("h", now, 1).await.unwrap().len(), 1);
    assert_eq!(
        a.renew(now + LEASE_US).await.unwrap(),
        1,
        "a renews its own lease only"
    );
    assert_eq!(
        b.take_over_expired(now + LEASE_US * 3 / 2).await.unwrap(),
        1,
        "b's own run, not renewed, is taken over; a's is not"
    );
    assert_eq!(b.take_over_expired(now + LEASE_US * 3).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_stops_loses_its_runs_to_another() {
    let Some(db) = pg_support::database() else {
        return;
    };
    let (a, b) = replicas(&db.url).await;
    a.insert_event(event("e1", &["h"])).await.unwrap();
    let now = hookd::timefmt::now_micros();
    a.claim("h", now, 1).await.unwrap();
    drop(a);
    let later = now + 2 * LEASE_US;
    assert_eq!(b.take_over_expired(later).await.unwrap(), 1);
    assert_eq!(b.claim("h", later, 5).await.unwrap()[0].attempt, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_work_wakes_an_idle_replica() {
    let Some(db) = pg_support::database() else {
        return;
    };
    let (a, b) = replicas(&db.url).await;
    let wake = b.work_notify();
    let woken = wake.notified();
    tokio::pin!(woken);
    woken.as_mut().enable();
    a.insert_event(event("unrouted", &[])).await.unwrap();
    a.insert_event(event("e1", &["h"])).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), woken)
        .await
        .expect("the NOTIFY of a's commit woke b");
    assert_eq!(
        b.claim("h", hookd::timefmt::now_micros(), 5)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_migrate_once() {
    let Some(db) = pg_support::database() else {
        return;
    };
    let opens = (0..4).map(|_| {
        let url = db.url.clone();
        tokio::spawn(async move { PgStore::open(&url, PgOptions::default()).await })
    });
    for o in opens.collect::<Vec<_>>() {
        o.await.unwrap().unwrap();
    }
    let c = raw(&db.url).await;
    let rows = c
        .query("SELECT version FROM hookd_schema", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, i32>(0), hookd::store::pg::schema::VERSION);
    c.execute("UPDATE hookd_schema SET version = version + 1", &[])
        .await
        .unwrap();
    let newer = PgStore::open(&db.url, PgOptions::default()).await;
    let err = newer.err().expect("a newer schema is refused");
    assert!(err.contains("newer than this hookd"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_require_refuses_a_server_without_tls_and_hides_the_password() {
    let Some(db) = pg_support::database() else {
        return;
    };
    // The test cluster has no TLS. The password is wrong too, but the
    // TLS refusal comes first.
    let url = db.url.replacen("postgres@", "postgres:hunter2@", 1) + "?sslmode=require";
    let err = PgStore::open(&url, PgOptions::default())
        .await
        .err()
        .expect("require without TLS fails");
    assert!(err.contains("TLS") || err.contains("tls"), "{err}");
    assert!(err.contains(&db.name), "names the database: {err}");
    assert!(!err.contains("hunter2"), "{err}");
}

/// The private CA of tests/certs, as `store.ca_file` gives it.
fn test_ca() -> std::sync::Arc<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    let ca = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/certs/ca.pem");
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(ca)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    std::sync::Arc::new(certs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_require_talks_tls_to_a_server_whose_ca_is_given_and_refuses_one_unknown() {
    let Some(db) = pg_support::tls_database() else {
        return;
    };
    let url = format!("{}?sslmode=require", db.url);
    // The server's certificate is signed by a CA the system does not know.
    let unknown = PgStore::open(&url, PgOptions::default())
        .await
        .err()
        .expect("an unknown CA is refused");
    assert!(
        unknown.contains("certificate") || unknown.contains("Certificate"),
        "{unknown}"
    );
    let opts = PgOptions {
        ca_certs: test_ca(),
        ..Default::default()
    };
    let store = PgStore::open(&url, opts)
        .await
        .expect("trusted with ca_file");
    let stored = store.insert_event(event("over-tls", &[])).await.unwrap();
    assert!(matches!(stored, Ingested::Accepted { .. }), "{stored:?}");
    // Seen from the server: this database's connections are encrypted.
    let c = raw(&db.url).await;
    let (tls, plain): (i64, i64) = {
        let r = c
            .query_one(
                "SELECT COUNT(*) FILTER (WHERE s.ssl), COUNT(*) FILTER (WHERE NOT s.ssl)
                 FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
                 WHERE a.datname = $1 AND a.pid <> pg_backend_pid()",
                &[&db.name],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert!(tls >= 1, "the store's connections use TLS");
    assert_eq!(plain, 0, "none in the clear");
    drop(store);
}

#[tokio::test]
async fn bad_urls_are_explained_without_the_password() {
    for (url, want) in [
        ("mysql://u:hunter2@h/db", "postgres:// URL"),
        (
            "postgres://u:hunter2@h/db?sslmode=bogus",
            "not a usable PostgreSQL URL",
        ),
        ("postgres://:hunter2@/db", "names no"),
    ] {
        let err = PgStore::open(url, PgOptions::default())
            .await
            .err()
            .unwrap_or_else(|| panic!("{url} accepted"));
        assert!(err.contains(want), "{url}: {err}");
        assert!(!err.contains("hunter2"), "{url}: {err}");
    }
}

/// `hookd` with `[store] url` in its config: `check` shows the database
/// (never the password), and `run` and the store verbs name the database
/// they cannot reach. Needs no cluster: nothing answers on port 1.
#[test]
fn verbs_name_the_postgres_store_they_cannot_reach() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("db-url"),
        "postgres://hookd:hunter2@127.0.0.1:1/events\n",
    )
    .unwrap();
    let config = dir.path().join("receiver.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nstate_dir = \"{}\"\n\n[store]\nurl = \"file:db-url\"\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let hookd = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_hookd"))
            .arg("-c")
            .arg(&config)
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .env("RUST_LIB_BACKTRACE", "0")
            .output()
            .unwrap()
    };
    let check = hookd(&["check"]);
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{check:?}");
    assert!(
        out.contains("PostgreSQL, database events on 127.0.0.1:1"),
        "{out}"
    );
    assert!(!out.contains("hunter2"), "{out}");
    // The daemon and the store verbs run on PostgreSQL: here they find no server.
    for verb in [&["run"][..], &["events", "list"], &["deliveries"]] {
        let r = hookd(verb);
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(1), "{verb:?}: {err}");
        assert!(
            err.contains("cannot connect to database events on 127.0.0.1:1"),
            "{verb:?}: {err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
    }
    assert!(
        !dir.path().join("state").join("hookd.db").exists(),
        "no SQLite database was made behind the operator's back"
    );
}

/// PostgreSQL text cannot hold NUL. An event the server refuses fails
/// alone: the others committed with it in a batch are retried one by one
/// and stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_server_refuses_fails_alone() {
    let Some(db) = pg_support::database() else {
        return;
    };
    let (a, _) = replicas(&db.url).await;
    let pushes = (0..12).map(|i| {
        let a = a.clone();
        let id = if i == 5 {
            "bad\0id".to_string()
        } else {
            format!("e{i}")
        };
        tokio::spawn(async move { a.insert_event(event(&id, &["h"])).await })
    });
    let mut results = Vec::new();
    for p in pushes.collect::<Vec<_>>() {
        results.push(p.await.unwrap());
    }
    for (i, r) in results.iter().enumerate() {
        if i == 5 {
            assert!(
                matches!(r, Err(hookd::store::StoreError::Failed(_))),
                "{r:?}"
            );
        } else {
            assert!(matches!(r, Ok(Ingested::Accepted { .. })), "{i}: {r:?}");
        }
    }
    let c = raw(&db.url).await;
    let n: i64 = c
        .query_one("SELECT COUNT(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 11);
}

/// A database that does not answer is reported at start, naming it, and
/// quickly: nothing waits forever on a connection.
#[tokio::test]
async fn an_unreachable_database_is_reported_at_start() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://hookd:hunter2@127.0.0.1:{port}/events?sslmode=disable");
    let started = std::time::Instant::now();
    let err = PgStore::open(&url, PgOptions::default())
        .await
        .err()
        .expect("nothing listens there");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.contains(&format!(
            "cannot connect to database events on 127.0.0.1:{port}"
        )),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}
