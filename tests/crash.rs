//! Crash harness: nothing acknowledged is lost, nothing runs twice by
//! mistake, whatever moment the daemon is killed at.
//!
//! Each round starts the real binary, drives concurrent signed pushes with
//! unique ids, and SIGKILLs the daemon at a random moment — while requests
//! are being committed in a batch and while handlers run. Pushes that got
//! no answer are sent again in the next round, as a provider would. After
//! the last round a final run takes the remaining pushes and drains the
//! queue; then:
//!
//! - every event that got a 2xx is stored (lost = 0);
//! - no `(source, event_id)` is stored twice (duplicates = 0);
//! - every stored event has a delivery per handler and each delivery is
//!   terminal (stranded = 0) — here `succeeded`, as the handlers never fail;
//! - every handler ran at least once per event, and more than once only
//!   where an interrupted run shows in the attempts table (attempt > 1 after
//!   an `interrupted` attempt); no attempt number ever ran twice.
//!
//! Two handlers take every event: an exec handler and a stream handler.
//! Both log `event_id attempt` per invocation to a file.
//!
//! PostgreSQL mode: three replicas on one database take the pushes (each
//! worker sends to one of them) and each round SIGKILLs one replica at
//! random, restarted in the next round; the same accounting follows. A
//! killed replica's runs are taken over by the others once its lease ran
//! out, each counted as interrupted.
//!
//! Short by default (4 rounds) so CI stays fast. The long form:
//! `HOOKD_CRASH_ROUNDS=20 cargo test --test crash`;
//! `HOOKD_CRASH_SEED=N` replays a seed. The counts are printed either way.

mod dispatch_support;
mod pg_support;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dispatch_support::{python, sh, write_script};
use support::{Proc, all_settled, generic_source, hmac_hex, state_db};

const KEY: &str = "crash-secret";
const DEFAULT_ROUNDS: usize = 4;
const WORKERS: usize = 6;
/// Events each worker sends per round at most (keeps the backlog bounded).
const PER_WORKER: usize = 80;
/// The kill comes this long after READY, at most (uniformly random).
const MAX_KILL_DELAY_MS: u64 = 1200;
const HANDLERS: [&str; 2] = ["exec", "stream"];

/// What the pushers learned: ids answered 2xx, ids still unanswered.
#[derive(Default)]
struct Ledger {
    pushed: BTreeSet<String>,
    acked: BTreeSet<String>,
    unacked: BTreeSet<String>,
    /// Retries answered "duplicate": stored by a commit whose answer the
    /// kill cut off.
    committed_unanswered: usize,
}

impl Ledger {
    fn record(&mut self, id: String, answer: Answer) {
        self.pushed.insert(id.clone());
        match answer {
            Answer::Accepted => {}
            Answer::Duplicate => self.committed_unanswered += 1,
            Answer::Failed => return,
        }
        self.acked.insert(id);
    }
}

#[derive(Debug, Default)]
struct Counts {
    rounds: usize,
    pushed: usize,
    acked: usize,
    committed_unanswered: usize,
    stored: usize,
    lost: usize,
    duplicates: usize,
    stranded: usize,
    dead: usize,
    reruns: usize,
    interrupted: usize,
    violations: Vec<String>,
}

fn rounds() -> usize {
    std::env::var("HOOKD_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_ROUNDS)
}

fn seed() -> u64 {
    std::env::var("HOOKD_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..))
}

/// Printed past the test harness's capture, so CI logs show the counts.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn config(dir: &Path) -> std::path::PathBuf {
    config_in(dir, dir, "")
}

/// The config at `at/receiver.toml` (state in `at/state`), with `store`
/// (a `[store]` table, or nothing for SQLite); handlers run in `work` and
/// log there, so replicas share their logs.
fn config_in(work: &Path, at: &Path, store: &str) -> std::path::PathBuf {
    let dir = work;
    let exec = sh(&write_script(
        dir,
        "exec.sh",
        "echo \"$HOOKD_EVENT_ID $HOOKD_ATTEMPT\" >> exec.log\n\
         case \"$HOOKD_EVENT_ID\" in *0) sleep 0.1 ;; esac\n",
    ));
    let stream = python(&write_script(
        dir,
        "stream.py",
        r#"
import json, sys
log = open("stream.log", "a")
for line in sys.stdin:
    ev = json.loads(line)
    log.write(f'{ev["event_id"]} {ev["attempt"]}\n')
    log.flush()
    print(json.dumps({"id": ev["id"], "ok": True}), flush=True)
"#,
    ));
    let handler = |name: &str, command: &[String], kind: &str| {
        format!(
            "[[handler]]\nname = \"{name}\"\nevents = [\"*\"]\ncommand = {}\nkind = \"{kind}\"\nworking_dir = \"{}\"\nconcurrency = 4\nmax_attempts = 1000\ntimeout = \"60s\"\nbackoff = {{ initial = \"10ms\", max = \"200ms\" }}\n\n",
            serde_json::to_string(command).unwrap(),
            work.display()
        )
    };
    let body = format!(
        "[daemon]\nstate_dir = \"{}\"\nshutdown_grace = \"10s\"\n\n[server]\nlisten = [\"127.0.0.1:0\"]\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n{store}{}{}{}",
        at.join("state").display(),
        generic_source("s", KEY),
        handler("exec", &exec, "exec"),
        handler("stream", &stream, "stream"),
    );
    std::fs::create_dir_all(at).unwrap();
    let path = at.join("receiver.toml");
    std::fs::write(&path, body).unwrap();
    path
}

/// How a push was answered.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answer {
    Accepted,
    /// 2xx for an event stored earlier: a retry of a push whose answer the
    /// kill cut off after its commit.
    Duplicate,
    Failed,
}

/// One signed push.
async fn push(c: &reqwest::Client, url: &str, id: &str) -> Answer {
    let body = format!(r#"{{"id":"{id}","type":"crash.test","n":1}}"#);
    let sent = c
        .post(url)
        .header(
            "X-Sig",
            format!("sha256={}", hmac_hex(KEY, body.as_bytes())),
        )
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    let Ok(r) = sent else {
        return Answer::Failed;
    };
    if !r.status().is_success() {
        return Answer::Failed;
    }
    let v: serde_json::Value = r.json().await.unwrap_or_default();
    match v["status"].as_str() {
        Some("duplicate") => Answer::Duplicate,
        _ => Answer::Accepted,
    }
}

/// Pushes `retries` first, then fresh ids, until `stop` or `PER_WORKER`
/// fresh ones were sent. Returns (id, acked) per push.
async fn worker(
    c: reqwest::Client,
    url: String,
    round: usize,
    w: usize,
    retries: Vec<String>,
    stop: Arc<AtomicBool>,
) -> Vec<(String, Answer)> {
    let mut out = Vec::new();
    let fresh = (0..PER_WORKER).map(|n| format!("r{round}-w{w}-{n}"));
    for id in retries.into_iter().chain(fresh) {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let answer = push(&c, &url, &id).await;
        out.push((id, answer));
    }
    out
}

/// One round: start, push concurrently, SIGKILL at a random moment.
async fn crash_round(
    c: &reqwest::Client,
    cfg: &Path,
    round: usize,
    rng: &mut fastrand::Rng,
    ledger: &mut Ledger,
) -> u64 {
    let p = Proc::spawn(cfg, &[]);
    let url = p.url("/hooks/s");
    pushes_until_kill(c, &[url], round, rng, ledger, move || p.kill()).await
}

/// Pushes concurrently (worker `w` to `urls[w % n]`), retries first, and
/// calls `kill` at a random moment; then settles the ledger. Returns the
/// delay of the kill.
async fn pushes_until_kill(
    c: &reqwest::Client,
    urls: &[String],
    round: usize,
    rng: &mut fastrand::Rng,
    ledger: &mut Ledger,
    kill: impl FnOnce(),
) -> u64 {
    let stop = Arc::new(AtomicBool::new(false));
    let retries: Vec<String> = std::mem::take(&mut ledger.unacked).into_iter().collect();
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let mine: Vec<String> = retries.iter().skip(w).step_by(WORKERS).cloned().collect();
        tasks.push(tokio::spawn(worker(
            c.clone(),
            urls[w % urls.len()].clone(),
            round,
            w,
            mine,
            stop.clone(),
        )));
    }
    // Not a synchronisation: the random moment of the crash.
    let delay = rng.u64(0..=MAX_KILL_DELAY_MS);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    // Pushes in flight now still meet the kill; no new ones start after it.
    stop.store(true, Ordering::Relaxed);
    kill();
    for t in tasks {
        for (id, answer) in t.await.unwrap() {
            ledger.record(id, answer);
        }
    }
    // Retries a worker did not get to are still owed.
    for id in retries {
        if !ledger.acked.contains(&id) {
            ledger.unacked.insert(id);
        }
    }
    let pending: Vec<String> = ledger.pushed.difference(&ledger.acked).cloned().collect();
    ledger.unacked.extend(pending);
    delay
}

/// Sends every push still unanswered until it is answered 2xx, as a
/// provider retries; push `i` tries `urls[i]` first, then the next ones.
async fn push_unanswered(c: &reqwest::Client, urls: &[String], ledger: &mut Ledger) {
    for (i, id) in std::mem::take(&mut ledger.unacked).into_iter().enumerate() {
        let mut tries = 0;
        loop {
            let answer = push(c, &urls[(i + tries) % urls.len()], &id).await;
            ledger.record(id.clone(), answer);
            if answer != Answer::Failed {
                break;
            }
            tries += 1;
            assert!(tries < 50, "push {id} never answered 2xx");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The last start: every unanswered push is sent until answered, and the
/// queue drains; then a clean stop.
async fn final_run(c: &reqwest::Client, cfg: &Path, dir: &Path, ledger: &mut Ledger) {
    let mut p = Proc::spawn(cfg, &[]);
    push_unanswered(c, &[p.url("/hooks/s")], ledger).await;
    all_settled(dir, Duration::from_secs(600)).await;
    p.signal(libc::SIGTERM);
    p.wait_for("STOPPING=1");
    assert_eq!(p.wait(Duration::from_secs(60)), Some(0));
}

/// event_id → attempt numbers the handler logged, in order.
fn invocations(path: &Path) -> BTreeMap<String, Vec<i64>> {
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        let (id, attempt) = line
            .split_once(' ')
            .unwrap_or_else(|| panic!("bad log line {line:?}"));
        out.entry(id.to_string())
            .or_default()
            .push(attempt.parse().unwrap());
    }
    out
}

/// What the store holds at the end, whichever store it is.
#[derive(Default)]
struct Snapshot {
    /// event_id of every stored event of source `s`.
    stored: Vec<String>,
    /// (event_id, handler) → (status, attempts counter).
    deliveries: BTreeMap<(String, String), (String, i64)>,
    /// (event_id, handler) → (attempt, outcome), in the order recorded.
    attempts: BTreeMap<(String, String), Vec<(i64, String)>>,
}

const STORED_SQL: &str = "SELECT event_id FROM events WHERE source = 's'";
const DELIVERIES_SQL: &str =
    "SELECT e.event_id, d.handler, d.status, d.attempts::bigint FROM deliveries d
     JOIN events e ON e.id = d.event";
const ATTEMPTS_SQL: &str =
    "SELECT e.event_id, d.handler, a.attempt::bigint, a.outcome FROM attempts a
     JOIN deliveries d ON d.id = a.delivery JOIN events e ON e.id = d.event ORDER BY a.id";

fn snapshot_sqlite(dir: &Path) -> Snapshot {
    let c = state_db(dir);
    let mut s = Snapshot::default();
    let sql = |q: &str| q.replace("::bigint", "");
    s.stored = c
        .prepare(&sql(STORED_SQL))
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut stmt = c.prepare(&sql(DELIVERIES_SQL)).unwrap();
    for row in stmt
        .query_map([], |r| Ok(((r.get(0)?, r.get(1)?), (r.get(2)?, r.get(3)?))))
        .unwrap()
    {
        let (k, v) = row.unwrap();
        s.deliveries.insert(k, v);
    }
    let mut stmt = c.prepare(&sql(ATTEMPTS_SQL)).unwrap();
    for row in stmt
        .query_map([], |r| Ok(((r.get(0)?, r.get(1)?), (r.get(2)?, r.get(3)?))))
        .unwrap()
    {
        let (k, v) = row.unwrap();
        s.attempts.entry(k).or_default().push(v);
    }
    s
}

async fn snapshot_pg(url: &str) -> Snapshot {
    let (db, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut s = Snapshot {
        stored: db
            .query(STORED_SQL, &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect(),
        ..Snapshot::default()
    };
    for r in db.query(DELIVERIES_SQL, &[]).await.unwrap() {
        s.deliveries
            .insert((r.get(0), r.get(1)), (r.get(2), r.get(3)));
    }
    for r in db.query(ATTEMPTS_SQL, &[]).await.unwrap() {
        s.attempts
            .entry((r.get(0), r.get(1)))
            .or_default()
            .push((r.get(2), r.get(3)));
    }
    s
}

fn check(dir: &Path, snap: &Snapshot, ledger: &Ledger, rounds: usize) -> Counts {
    let mut n = Counts {
        rounds,
        pushed: ledger.pushed.len(),
        acked: ledger.acked.len(),
        committed_unanswered: ledger.committed_unanswered,
        ..Default::default()
    };
    let stored = &snap.stored;
    let unique: BTreeSet<&String> = stored.iter().collect();
    n.stored = unique.len();
    n.duplicates = stored.len() - unique.len();
    n.lost = ledger
        .acked
        .iter()
        .filter(|id| !unique.contains(id))
        .count();
    for id in &unique {
        if !ledger.pushed.contains(*id) {
            n.violations
                .push(format!("{id} is stored but was never pushed"));
        }
    }

    let (deliveries, rows) = (&snap.deliveries, &snap.attempts);

    for handler in HANDLERS {
        let logged = invocations(&dir.join(format!("{handler}.log")));
        for id in &unique {
            let key = ((*id).clone(), handler.to_string());
            let Some((status, counter)) = deliveries.get(&key) else {
                n.stranded += 1;
                n.violations.push(format!("{id}: no delivery to {handler}"));
                continue;
            };
            match status.as_str() {
                "succeeded" => {}
                "dead" => n.dead += 1,
                _ => {
                    n.stranded += 1;
                    n.violations
                        .push(format!("{id} → {handler}: left {status}"));
                }
            }
            let ran = logged.get(*id).cloned().unwrap_or_default();
            let attempts = rows.get(&key).cloned().unwrap_or_default();
            let interrupted: BTreeSet<i64> = attempts
                .iter()
                .filter(|(_, o)| o == "interrupted")
                .map(|(a, _)| *a)
                .collect();
            n.interrupted += interrupted.len();
            if ran.is_empty() {
                n.violations
                    .push(format!("{id} → {handler}: {status} but never invoked"));
                continue;
            }
            n.reruns += ran.len() - 1;
            let distinct: BTreeSet<i64> = ran.iter().copied().collect();
            if distinct.len() != ran.len() {
                n.violations
                    .push(format!("{id} → {handler}: an attempt ran twice: {ran:?}"));
            }
            if distinct.iter().any(|a| *a < 1 || a > counter) {
                n.violations.push(format!(
                    "{id} → {handler}: ran as attempts {ran:?}, counter is {counter}"
                ));
            }
            // Every invocation but the one that succeeded was cut short by
            // a kill, and is recorded as interrupted.
            let succeeded_at = attempts.iter().find(|(_, o)| o == "ok").map(|(a, _)| *a);
            for a in &distinct {
                if Some(*a) != succeeded_at && !interrupted.contains(a) {
                    n.violations.push(format!(
                        "{id} → {handler}: attempt {a} ran, yet is neither the success nor interrupted ({attempts:?})"
                    ));
                }
            }
            if ran.len() > 1 && *distinct.iter().max().unwrap() < 2 {
                n.violations
                    .push(format!("{id} → {handler}: re-run without attempt > 1"));
            }
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing_and_runs_nothing_twice() {
    let rounds = rounds();
    let seed = seed();
    report(&format!(
        "crash harness: {rounds} round(s), seed {seed} (HOOKD_CRASH_SEED to replay)"
    ));
    let mut rng = fastrand::Rng::with_seed(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cfg = config(dir);
    let mut ledger = Ledger::default();
    // One client for the whole run: building one costs more than a push.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    for round in 0..rounds {
        let delay = crash_round(&client, &cfg, round, &mut rng, &mut ledger).await;
        report(&format!(
            "  round {round}: killed {delay} ms after ready; pushed {}, acked {}, unanswered {}",
            ledger.pushed.len(),
            ledger.acked.len(),
            ledger.unacked.len()
        ));
    }
    final_run(&client, &cfg, dir, &mut ledger).await;
    let n = check(dir, &snapshot_sqlite(dir), &ledger, rounds);
    assert_accounted(&n);
}

/// Prints the counts and fails on anything lost, doubled or left over.
fn assert_accounted(n: &Counts) {
    report(&format!(
        "crash harness: rounds {} pushed {} acked {} (of which committed before the kill, answered on retry: {}) stored {} lost {} duplicates {} stranded {} dead {} re-runs {} interrupted-attempts {}",
        n.rounds,
        n.pushed,
        n.acked,
        n.committed_unanswered,
        n.stored,
        n.lost,
        n.duplicates,
        n.stranded,
        n.dead,
        n.reruns,
        n.interrupted
    ));
    for v in n.violations.iter().take(20) {
        report(&format!("  violation: {v}"));
    }
    assert!(
        n.acked > 0,
        "nothing was acknowledged; the harness tested nothing"
    );
    assert_eq!(n.lost, 0, "acknowledged events lost");
    assert_eq!(n.duplicates, 0, "events stored twice");
    assert_eq!(
        n.stranded, 0,
        "deliveries not terminal after the last start"
    );
    assert_eq!(n.dead, 0, "the handlers never fail; nothing may be dead");
    assert!(
        n.violations.is_empty(),
        "{} violation(s)",
        n.violations.len()
    );
}

const REPLICAS: usize = 3;
const PG_URL_VAR: &str = "HOOKD_CRASH_PG_URL";

fn spawn_replica(cfg: &Path, url: &str) -> Proc {
    Proc::spawn(cfg, &[(PG_URL_VAR, url)])
}

/// Waits until no delivery in the PostgreSQL store is open.
async fn pg_settled(url: &str, limit: Duration) {
    let (db, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    support::eventually_async(limit, || async {
        let open: i64 = db
            .query_one(
                "SELECT COUNT(*) FROM deliveries WHERE status IN ('pending', 'running', 'failed')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        (open == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_postgresql_sigkilled_at_random_lose_nothing_and_run_nothing_twice() {
    let Some(db) = pg_support::database() else {
        return;
    };
    let rounds = rounds();
    let seed = seed();
    report(&format!(
        "crash harness (PostgreSQL, {REPLICAS} replicas): {rounds} round(s), seed {seed} (HOOKD_CRASH_SEED to replay)"
    ));
    let mut rng = fastrand::Rng::with_seed(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = format!("[store]\nurl = \"env:{PG_URL_VAR}\"\nlease = \"3s\"\n\n");
    let cfgs: Vec<_> = (0..REPLICAS)
        .map(|n| config_in(dir, &dir.join(format!("r{n}")), &store))
        .collect();
    let mut procs: Vec<Option<Proc>> = cfgs.iter().map(|_| None).collect();
    let mut ledger = Ledger::default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    for round in 0..rounds {
        for (p, cfg) in procs.iter_mut().zip(&cfgs) {
            if p.is_none() {
                *p = Some(spawn_replica(cfg, &db.url));
            }
        }
        let urls: Vec<String> = procs.iter().flatten().map(|p| p.url("/hooks/s")).collect();
        let victim = rng.usize(0..REPLICAS);
        let killed = procs[victim].take().unwrap();
        let delay = pushes_until_kill(&client, &urls, round, &mut rng, &mut ledger, move || {
            killed.kill()
        })
        .await;
        report(&format!(
            "  round {round}: replica {victim} killed {delay} ms in; pushed {}, acked {}, unanswered {}",
            ledger.pushed.len(),
            ledger.acked.len(),
            ledger.unacked.len()
        ));
    }
    for (p, cfg) in procs.iter_mut().zip(&cfgs) {
        if p.is_none() {
            *p = Some(spawn_replica(cfg, &db.url));
        }
    }
    let urls: Vec<String> = procs.iter().flatten().map(|p| p.url("/hooks/s")).collect();
    push_unanswered(&client, &urls, &mut ledger).await;
    pg_settled(&db.url, Duration::from_secs(600)).await;
    for mut p in procs.into_iter().flatten() {
        p.signal(libc::SIGTERM);
        p.wait_for("STOPPING=1");
        assert_eq!(p.wait(Duration::from_secs(60)), Some(0));
    }
    let n = check(dir, &snapshot_pg(&db.url).await, &ledger, rounds);
    assert_accounted(&n);
}
