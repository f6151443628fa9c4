//! Several real `hookd run` processes on one PostgreSQL: the promises of a
//! single node hold across replicas. The same event pushed to two replicas
//! at once is stored once; replicas draining one queue run each delivery
//! once; a replica SIGKILLed mid-handler loses its run to another, which
//! counts it as interrupted; a pull source runs on one replica and fails
//! over when that one dies; replicas starting together on an empty
//! database migrate it once.
//!
//! Each test has its own database on the throwaway cluster
//! (tests/pg_support) and skips with one line without PostgreSQL. The
//! database is looked at directly; waiting on it polls (there is no
//! signal for "another process committed"), never sleeps a fixed time.

mod pg_support;
mod pull_sim;
mod support;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pull_sim::Sim;
use support::{Proc, eventually_async, generic_source, post_signed, script};

const LONG: Duration = Duration::from_secs(60);
const SECRET: &str = "replica-secret";
const URL_VAR: &str = "HOOKD_TEST_PG_URL";

/// A replica's directory and config: its own state_dir, the shared store
/// (`env:` reference), a short lease so take-overs happen within a test.
fn replica_config(root: &Path, n: usize, body: &str) -> PathBuf {
    let dir = root.join(format!("r{n}"));
    std::fs::create_dir_all(&dir).unwrap();
    let store = format!("[store]\nurl = \"env:{URL_VAR}\"\nlease = \"2s\"\n\n");
    support::write_config(&dir, &format!("{store}{body}"))
}

fn start(config: &Path, url: &str) -> Proc {
    Proc::spawn(config, &[(URL_VAR, url)])
}

/// A raw connection for looking at the tables.
async fn raw(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

async fn count(db: &tokio_postgres::Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).await.unwrap().get(0)
}

/// A handler `h` for every event, running `command`.
fn handler(command: &Path, concurrency: usize) -> String {
    format!(
        "[[handler]]\nname = \"h\"\nevents = [\"*\"]\ncommand = [\"{}\"]\nconcurrency = {concurrency}\ntimeout = \"60s\"\nmax_attempts = 5\nbackoff = {{ initial = \"100ms\", max = \"1s\" }}\n\n",
        command.display()
    )
}

/// A handler script that appends "<event id> <tag>" to `out`.
fn recorder(dir: &Path, tag: &str, out: &Path) -> PathBuf {
    script(
        dir,
        &format!("rec-{tag}.sh"),
        &format!(
            "#!/bin/sh\necho \"$HOOKD_EVENT_ID {tag}\" >> {}\n",
            out.display()
        ),
    )
}

fn event(id: &str) -> String {
    format!(r#"{{"id":"{id}","type":"t"}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_pushed_to_two_replicas_at_once_is_stored_once() {
    let Some(db) = pg_support::database() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let body = generic_source("s", SECRET);
    let a = start(&replica_config(root.path(), 1, &body), &db.url);
    let b = start(&replica_config(root.path(), 2, &body), &db.url);
    let client = reqwest::Client::new();
    let (ua, ub) = (a.url("/hooks/s"), b.url("/hooks/s"));
    let n = 40;
    for i in 0..n {
        let e = event(&format!("e{i}"));
        let ((sa, ja), (sb, jb)) = tokio::join!(
            post_signed(&client, &ua, SECRET, &e),
            post_signed(&client, &ub, SECRET, &e),
        );
        assert_eq!((sa, sb), (200, 200), "{ja} {jb}");
        let mut answers = [ja["status"].as_str(), jb["status"].as_str()];
        answers.sort();
        assert_eq!(
            answers,
            [Some("accepted"), Some("duplicate")],
            "event {i}: {ja} {jb}"
        );
        assert_eq!(ja["id"], jb["id"], "both answers name the stored row");
    }
    let pg = raw(&db.url).await;
    assert_eq!(count(&pg, "SELECT COUNT(*) FROM events").await, n);
    assert_eq!(
        count(&pg, "SELECT SUM(duplicates)::bigint FROM events").await,
        n
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_drain_one_queue_running_each_delivery_once() {
    let Some(db) = pg_support::database() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("runs.out");
    let procs: Vec<Proc> = (1..=3)
        .map(|n| {
            let rec = recorder(root.path(), &format!("r{n}"), &out);
            let body = format!("{}{}", generic_source("s", SECRET), handler(&rec, 2));
            start(&replica_config(root.path(), n, &body), &db.url)
        })
        .collect();
    let client = reqwest::Client::new();
    let n = 240;
    for i in 0..n {
        let p = &procs[i % procs.len()];
        let (status, j) = post_signed(
            &client,
            &p.url("/hooks/s"),
            SECRET,
            &event(&format!("e{i}")),
        )
        .await;
        assert_eq!((status, j["status"].as_str()), (200, Some("accepted")));
    }
    let pg = raw(&db.url).await;
    eventually_async(LONG, || async {
        let done = count(
            &pg,
            "SELECT COUNT(*) FROM deliveries WHERE status = 'succeeded'",
        )
        .await;
        (done == n as i64).then_some(())
    })
    .await;
    let runs = support::lines(&out);
    let ids: Vec<&str> = runs.iter().map(|l| l.split(' ').next().unwrap()).collect();
    let distinct: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), n, "each delivery ran exactly once");
    assert_eq!(distinct.len(), n);
    let mut by_replica: HashMap<&str, usize> = HashMap::new();
    for l in &runs {
        *by_replica.entry(l.split(' ').nth(1).unwrap()).or_default() += 1;
    }
    assert!(
        by_replica.len() >= 2,
        "the work was shared between replicas: {by_replica:?}"
    );
    assert_eq!(
        count(&pg, "SELECT COUNT(*) FROM attempts WHERE outcome = 'ok'").await,
        n as i64,
        "every run is recorded once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_handler_loses_its_run_to_another() {
    let Some(db) = pg_support::database() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let started = root.path().join("started");
    let done = root.path().join("done.out");
    // Replica 1's handler says it started, then hangs; replica 2's finishes.
    let hang = script(
        root.path(),
        "hang.sh",
        &format!(
            "#!/bin/sh\necho $$ > {}\nexec sleep 300\n",
            started.display()
        ),
    );
    let finish = recorder(root.path(), "r2", &done);
    let a = start(
        &replica_config(
            root.path(),
            1,
            &format!("{}{}", generic_source("s", SECRET), handler(&hang, 1)),
        ),
        &db.url,
    );
    let client = reqwest::Client::new();
    let (status, _) = post_signed(&client, &a.url("/hooks/s"), SECRET, &event("k1")).await;
    assert_eq!(status, 200);
    let pid: i32 = eventually_async(LONG, || async {
        std::fs::read_to_string(&started)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    })
    .await;
    let b = start(
        &replica_config(
            root.path(),
            2,
            &format!("{}{}", generic_source("s", SECRET), handler(&finish, 1)),
        ),
        &db.url,
    );
    a.kill();
    // The orphaned handler is not the point of the test.
    // SAFETY: kill(2) on the handler process this test's child started.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let lines = eventually_async(LONG, || async {
        let l = support::lines(&done);
        (!l.is_empty()).then_some(l)
    })
    .await;
    assert_eq!(lines, vec!["k1 r2".to_string()]);
    let pg = raw(&db.url).await;
    let rows = eventually_async(LONG, || async {
        let rows = pg
            .query(
                "SELECT a.attempt, a.outcome FROM attempts a
                 JOIN deliveries d ON d.id = a.delivery ORDER BY a.attempt",
                &[],
            )
            .await
            .unwrap();
        (rows.len() == 2).then_some(rows)
    })
    .await;
    let got: Vec<(i32, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got,
        vec![(1, "interrupted".to_string()), (2, "ok".to_string())],
        "the killed run counts as an interrupted attempt; stderr of the survivor: {}",
        b.stderr()
    );
    assert_eq!(
        count(
            &pg,
            "SELECT COUNT(*) FROM deliveries WHERE status = 'succeeded'"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_source_runs_on_one_replica_and_fails_over() {
    let Some(db) = pg_support::database() else {
        return;
    };
    let sim = Sim::start().await;
    let root = tempfile::tempdir().unwrap();
    let body = pull_sim::generic_sse(&sim, "30s");
    let a = start(&replica_config(root.path(), 1, &body), &db.url);
    let pg = raw(&db.url).await;
    let stored = |n: i64| {
        let pg = &pg;
        move || async move {
            (count(pg, "SELECT COUNT(*) FROM events WHERE source = 'feed'").await >= n)
                .then_some(())
        }
    };
    sim.push(5);
    eventually_async(LONG, stored(5)).await;
    let b = start(&replica_config(root.path(), 2, &body), &db.url);
    eventually_async(LONG, || async {
        b.stderr().contains("standing by").then_some(())
    })
    .await;
    assert_eq!(sim.connections(), 1, "only the owner holds the stream");
    sim.push(5);
    eventually_async(LONG, stored(10)).await;
    a.kill();
    eventually_async(LONG, || async {
        b.stderr()
            .contains("took the pull source over")
            .then_some(())
    })
    .await;
    sim.push(5);
    eventually_async(LONG, stored(15)).await;
    assert_eq!(
        count(&pg, "SELECT COUNT(*) FROM events WHERE source = 'feed'").await,
        15,
        "nothing stored twice"
    );
    let ids: HashSet<String> = pg
        .query("SELECT event_id FROM events WHERE source = 'feed'", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids.len(), 15);
    let resumed = sim.requests("/stream");
    assert_eq!(
        resumed.last().and_then(|r| r.last_event_id.clone()),
        Some("10".to_string()),
        "the new owner resumed from the stored position"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_on_an_empty_database_migrate_it_once() {
    let Some(db) = pg_support::database() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let configs: Vec<PathBuf> = (1..=3)
        .map(|n| replica_config(root.path(), n, &generic_source("s", SECRET)))
        .collect();
    let url = db.url.clone();
    let procs: Vec<Proc> = std::thread::scope(|s| {
        let handles: Vec<_> = configs
            .iter()
            .map(|c| {
                let url = url.clone();
                s.spawn(move || start(c, &url))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let migrated = procs
        .iter()
        .filter(|p| p.stderr().contains("migrated database"))
        .count();
    assert_eq!(migrated, 1, "exactly one replica migrated");
    let client = reqwest::Client::new();
    for (i, p) in procs.iter().enumerate() {
        let (status, j) = post_signed(
            &client,
            &p.url("/hooks/s"),
            SECRET,
            &event(&format!("m{i}")),
        )
        .await;
        assert_eq!((status, j["status"].as_str()), (200, Some("accepted")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_reports_its_database_and_pool_on_the_admin_listener() {
    let Some(db) = pg_support::database() else {
        return;
    };
    let body = format!(
        "[store]\nurl = \"{}\"\npool_size = 4\n\n{}",
        db.url,
        generic_source("s", SECRET)
    );
    let td = support::TestDaemon::start(&body).await;
    let admin = td.admin.clone().expect("an admin listener");
    let client = reqwest::Client::new();
    let (status, _) = post_signed(&client, &td.url("/hooks/s"), SECRET, &event("p1")).await;
    assert_eq!(status, 200);
    let ready = client.get(format!("{admin}/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200, "the database answers");
    let metrics = client
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| -> i64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
            .trim()
            .parse()
            .unwrap()
    };
    let open = value("hookd_store_pool_connections");
    assert!((1..=4).contains(&open), "{open} connections open");
    assert!(value("hookd_store_pool_idle") <= open);
    assert_eq!(value("hookd_store_pool_waiting"), 0);
    td.stop().await;
}
