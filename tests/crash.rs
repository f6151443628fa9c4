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
//! Short by default (4 rounds) so CI stays fast. The long form:
//! `HOOKD_CRASH_ROUNDS=20 cargo test --test crash`;
//! `HOOKD_CRASH_SEED=N` replays a seed. The counts are printed either way.

mod dispatch_support;
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
            "[[handler]]\nname = \"{name}\"\nevents = [\"*\"]\ncommand = {}\nkind = \"{kind}\"\nconcurrency = 4\nmax_attempts = 1000\ntimeout = \"60s\"\nbackoff = {{ initial = \"10ms\", max = \"200ms\" }}\n\n",
            serde_json::to_string(command).unwrap()
        )
    };
    let body = format!(
        "[daemon]\nstate_dir = \"{}\"\nshutdown_grace = \"10s\"\n\n[server]\nlisten = [\"127.0.0.1:0\"]\n\n{}{}{}",
        dir.join("state").display(),
        generic_source("s", KEY),
        handler("exec", &exec, "exec"),
        handler("stream", &stream, "stream"),
    );
    let path = dir.join("receiver.toml");
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
    let stop = Arc::new(AtomicBool::new(false));
    let retries: Vec<String> = std::mem::take(&mut ledger.unacked).into_iter().collect();
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let mine: Vec<String> = retries.iter().skip(w).step_by(WORKERS).cloned().collect();
        tasks.push(tokio::spawn(worker(
            c.clone(),
            url.clone(),
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
    p.kill();
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

/// The last start: every unanswered push is sent until answered, and the
/// queue drains; then a clean stop.
async fn final_run(c: &reqwest::Client, cfg: &Path, dir: &Path, ledger: &mut Ledger) {
    let mut p = Proc::spawn(cfg, &[]);
    let url = p.url("/hooks/s");
    for id in std::mem::take(&mut ledger.unacked) {
        let mut tries = 0;
        loop {
            let answer = push(c, &url, &id).await;
            ledger.record(id.clone(), answer);
            if answer != Answer::Failed {
                break;
            }
            tries += 1;
            assert!(tries < 50, "push {id} never answered 2xx");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
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

fn check(dir: &Path, ledger: &Ledger, rounds: usize) -> Counts {
    let c = state_db(dir);
    let mut n = Counts {
        rounds,
        pushed: ledger.pushed.len(),
        acked: ledger.acked.len(),
        committed_unanswered: ledger.committed_unanswered,
        ..Default::default()
    };
    let stored: Vec<String> = c
        .prepare("SELECT event_id FROM events WHERE source = 's'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
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

    // (event_id, handler) → (status, attempts counter, attempt rows).
    let mut deliveries: BTreeMap<(String, String), (String, i64)> = BTreeMap::new();
    let mut stmt = c
        .prepare(
            "SELECT e.event_id, d.handler, d.status, d.attempts FROM deliveries d
             JOIN events e ON e.id = d.event",
        )
        .unwrap();
    for row in stmt
        .query_map([], |r| Ok(((r.get(0)?, r.get(1)?), (r.get(2)?, r.get(3)?))))
        .unwrap()
    {
        let (k, v) = row.unwrap();
        deliveries.insert(k, v);
    }
    let mut rows: BTreeMap<(String, String), Vec<(i64, String)>> = BTreeMap::new();
    let mut stmt = c
        .prepare(
            "SELECT e.event_id, d.handler, a.attempt, a.outcome FROM attempts a
             JOIN deliveries d ON d.id = a.delivery JOIN events e ON e.id = d.event ORDER BY a.id",
        )
        .unwrap();
    for row in stmt
        .query_map([], |r| Ok(((r.get(0)?, r.get(1)?), (r.get(2)?, r.get(3)?))))
        .unwrap()
    {
        let (k, v) = row.unwrap();
        rows.entry(k).or_default().push(v);
    }

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
    let n = check(dir, &ledger, rounds);
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
