//! Dispatch at daemon level: the real daemon (in-process, or the binary
//! where signals matter) with small handler scripts written into a temp
//! dir. Routing, what a handler sees, retries and the dead state, timeouts
//! and floods, concurrency and fairness under the global cap, SIGKILL and
//! SIGTERM with work pending, replay, stream handlers, and the CLI views.
//!
//! Waiting is on the database (the durable outcome) or on files the
//! handlers write, through `eventually` with generous bounds; no assertion
//! depends on how fast the machine is.

mod dispatch_support;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use dispatch_support::{assert_dies, is_dead, python, read_pid, sh, write_script};
use rusqlite::OptionalExtension;
use serde_json::{Value, json};
use support::{
    Proc, TestDaemon, all_settled, base_config, bin, eventually, generic_source, lines,
    post_signed, state_db,
};

const KEY: &str = "k";
/// Safety net for conditions that have no signal of their own.
const LONG: Duration = Duration::from_secs(60);

// ------------------------------------------------------------ helpers ----

fn sources() -> String {
    format!("{}{}", generic_source("s", KEY), generic_source("t", KEY))
}

/// A `[[handler]]` block with fast retries; `extra` adds keys.
fn handler(name: &str, events: &[&str], command: &[String], extra: &str) -> String {
    format!(
        "[[handler]]\nname = \"{name}\"\nevents = {}\ncommand = {}\nbackoff = {{ initial = \"20ms\", max = \"100ms\" }}\n{extra}\n\n",
        serde_json::to_string(events).unwrap(),
        serde_json::to_string(command).unwrap(),
    )
}

/// argv running an sh script written to `dir/name.sh`.
fn sh_script(dir: &Path, name: &str, body: &str) -> Vec<String> {
    sh(&write_script(dir, &format!("{name}.sh"), body))
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// POSTs a signed event to `source`; returns its stored id.
async fn send(c: &reqwest::Client, base: &str, source: &str, body: Value) -> i64 {
    let (status, answer) =
        post_signed(c, &format!("{base}/hooks/{source}"), KEY, &body.to_string()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "accepted", "{answer}");
    answer["id"].as_i64().unwrap()
}

fn event(id: &str, ty: &str) -> Value {
    json!({"id": id, "type": ty, "data": {"text": "héllo", "n": 1}})
}

/// (status, attempts, replay) of the delivery of event `event_id` to `handler`.
fn delivery(dir: &Path, event_id: &str, handler: &str) -> Option<(String, i64, bool)> {
    state_db(dir)
        .query_row(
            "SELECT d.status, d.attempts, d.replay FROM deliveries d JOIN events e ON e.id = d.event
             WHERE e.event_id = ?1 AND d.handler = ?2",
            [event_id, handler],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .unwrap()
}

/// Waits until the delivery reaches `status`; returns its attempt count.
async fn settled(dir: &Path, event_id: &str, handler: &str, status: &str) -> i64 {
    eventually(LONG, || {
        delivery(dir, event_id, handler)
            .filter(|(s, _, _)| s == status)
            .map(|(_, n, _)| n)
    })
    .await
}

#[derive(Debug)]
struct Attempt {
    attempt: i64,
    replay: bool,
    outcome: String,
    exit_code: Option<i64>,
    signal: Option<i64>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    stdout_truncated: bool,
    stderr_truncated: bool,
}

fn attempts(dir: &Path, event_id: &str, handler: &str) -> Vec<Attempt> {
    let c = state_db(dir);
    let mut stmt = c
        .prepare(
            "SELECT a.attempt, a.replay, a.outcome, a.exit_code, a.signal, a.stdout, a.stderr,
                    a.stdout_truncated, a.stderr_truncated
             FROM attempts a JOIN deliveries d ON d.id = a.delivery JOIN events e ON e.id = d.event
             WHERE e.event_id = ?1 AND d.handler = ?2 ORDER BY a.id",
        )
        .unwrap();
    stmt.query_map([event_id, handler], |r| {
        Ok(Attempt {
            attempt: r.get(0)?,
            replay: r.get(1)?,
            outcome: r.get(2)?,
            exit_code: r.get(3)?,
            signal: r.get(4)?,
            stdout: r.get::<_, Option<Vec<u8>>>(5)?.unwrap_or_default(),
            stderr: r.get::<_, Option<Vec<u8>>>(6)?.unwrap_or_default(),
            stdout_truncated: r.get(7)?,
            stderr_truncated: r.get(8)?,
        })
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

fn outcomes(a: &[Attempt]) -> Vec<(i64, &str)> {
    a.iter().map(|a| (a.attempt, a.outcome.as_str())).collect()
}

/// Runs a `hookd` CLI verb; returns (exit code, stdout, stderr).
async fn hookd(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(bin())
        .arg("-c")
        .arg(config)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A CLI verb that must succeed; its stdout.
async fn hookd_ok(config: &Path, args: &[&str]) -> String {
    let (code, out, err) = hookd(config, args).await;
    assert_eq!(code, 0, "hookd {args:?} failed: {err}");
    out
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Waits until `path` has at least `n` lines; returns them.
async fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    eventually(LONG, || {
        let l = lines(path);
        (l.len() >= n).then_some(l)
    })
    .await
}

async fn wait_exists(path: PathBuf) {
    eventually(LONG, || path.exists().then_some(())).await
}

/// Writes `base_config + body`, with `[daemon]` tuned by `daemon_keys`.
fn config_with(dir: &Path, daemon_keys: &str, body: &str) -> PathBuf {
    let base = base_config(dir).replacen("[daemon]\n", &format!("[daemon]\n{daemon_keys}"), 1);
    let path = dir.join("receiver.toml");
    std::fs::write(&path, format!("{base}{body}")).unwrap();
    path
}

// -------------------------------------------------------------- tests ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_type_glob_and_source_and_shows_events_without_a_handler() {
    let cfg = format!(
        "{}{}{}{}",
        sources(),
        handler("msg", &["message.*"], &argv(&["true"]), ""),
        handler(
            "paid",
            &["order.paid"],
            &argv(&["true"]),
            "sources = [\"s\"]"
        ),
        handler("from_t", &["*"], &argv(&["true"]), "sources = [\"t\"]"),
    );
    let d = TestDaemon::start(&cfg).await;
    let c = reqwest::Client::new();
    let sent = [
        ("s", "m1", "message.received"),
        ("s", "p1", "order.paid"),
        ("t", "p2", "order.paid"),
        ("t", "m2", "message.sent"),
        ("s", "u1", "user.created"),
        ("s", "m3", "messages"),
    ];
    for (src, id, ty) in sent {
        send(&c, &d.base, src, event(id, ty)).await;
    }
    let dir = d.dir.path().to_path_buf();
    all_settled(&dir, LONG).await;

    let routed: BTreeSet<(String, String, String)> = state_db(&dir)
        .prepare("SELECT e.event_id, d.handler, d.status FROM deliveries d JOIN events e ON e.id = d.event")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let want: BTreeSet<(String, String, String)> = [
        ("m1", "msg"),
        ("p1", "paid"),
        ("p2", "from_t"),
        ("m2", "msg"),
        ("m2", "from_t"),
    ]
    .iter()
    .map(|(e, h)| (e.to_string(), h.to_string(), "succeeded".to_string()))
    .collect();
    assert_eq!(routed, want);

    let listed = json_lines(&hookd_ok(&d.config_path, &["events", "list", "--json"]).await);
    let status: BTreeMap<String, String> = listed
        .iter()
        .map(|v| {
            (
                v["event_id"].as_str().unwrap().to_string(),
                v["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(status.len(), 6, "every event is stored, routed or not");
    for (id, want) in [
        ("m1", "succeeded"),
        ("p1", "succeeded"),
        ("p2", "succeeded"),
        ("m2", "succeeded"),
        ("u1", "unrouted"),
        ("m3", "unrouted"),
    ] {
        assert_eq!(status[id], want, "{id}");
    }
    let unrouted = json_lines(
        &hookd_ok(
            &d.config_path,
            &["events", "list", "--status", "unrouted", "--json"],
        )
        .await,
    );
    let ids: BTreeSet<&str> = unrouted
        .iter()
        .map(|v| v["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, BTreeSet::from(["u1", "m3"]));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_sees_the_envelope_on_stdin_and_exactly_its_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("secret.txt"), "from-a-file\n").unwrap();
    std::fs::create_dir(dir.join("creds")).unwrap();
    std::fs::write(dir.join("creds/token"), "from-a-credential").unwrap();
    let env_keys = "env = { PLAIN = \"a literal = value\", FROM_ENV = \"env:HOOKD_TEST_HANDLER_SECRET\", FROM_FILE = \"file:secret.txt\", FROM_CRED = \"credential:token\" }";
    let cfg = config_with(
        dir,
        "",
        &format!(
            "{}{}{}",
            generic_source("s", KEY),
            handler("env", &["*"], &argv(&["env"]), env_keys),
            handler("cat", &["*"], &argv(&["cat"]), ""),
        ),
    );
    let home = dir.display().to_string();
    let p = Proc::spawn(
        &cfg,
        &[
            ("HOOKD_TEST_HANDLER_SECRET", "from-the-environment"),
            ("CREDENTIALS_DIRECTORY", dir.join("creds").to_str().unwrap()),
            ("HOME", &home),
            ("LANG", "hookd-test-lang"),
            ("HOOKD_TEST_MUST_NOT_LEAK", "leaked"),
        ],
    );
    let c = reqwest::Client::new();
    let body = event("evt-env-1", "message.received");
    let id = send(&c, &format!("http://{}", p.addr), "s", body.clone()).await;
    settled(dir, "evt-env-1", "env", "succeeded").await;
    settled(dir, "evt-env-1", "cat", "succeeded").await;

    let envelope: Value = serde_json::from_slice(&attempts(dir, "evt-env-1", "cat")[0].stdout)
        .expect("the envelope is one JSON object");
    let keys: BTreeSet<&str> = envelope
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "id",
            "event_id",
            "source",
            "provider",
            "type",
            "occurred_at",
            "received_at",
            "attempt",
            "replay",
            "payload"
        ])
    );
    assert_eq!(envelope["id"], id);
    assert_eq!(envelope["event_id"], "evt-env-1");
    assert_eq!(envelope["source"], "s");
    assert_eq!(envelope["provider"], "generic");
    assert_eq!(envelope["type"], "message.received");
    assert_eq!(envelope["attempt"], 1);
    assert_eq!(envelope["replay"], false);
    assert_eq!(envelope["payload"], body);

    let env_out = String::from_utf8(attempts(dir, "evt-env-1", "env")[0].stdout.clone()).unwrap();
    let seen: BTreeMap<String, String> = env_out
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    let delivery_id: i64 = state_db(dir)
        .query_row("SELECT id FROM deliveries WHERE handler = 'env'", [], |r| {
            r.get(0)
        })
        .unwrap();
    let want: BTreeMap<String, String> = [
        ("PATH", std::env::var("PATH").unwrap()),
        ("HOME", home.clone()),
        ("LANG", "hookd-test-lang".into()),
        ("PLAIN", "a literal = value".into()),
        ("FROM_ENV", "from-the-environment".into()),
        ("FROM_FILE", "from-a-file".into()),
        ("FROM_CRED", "from-a-credential".into()),
        ("HOOKD_EVENT_ID", "evt-env-1".into()),
        ("HOOKD_EVENT_TYPE", "message.received".into()),
        ("HOOKD_SOURCE", "s".into()),
        ("HOOKD_ATTEMPT", "1".into()),
        ("HOOKD_DELIVERY_ID", delivery_id.to_string()),
        (
            "HOOKD_RECEIVED_AT",
            envelope["received_at"].as_str().unwrap().to_string(),
        ),
        ("HOOKD_REPLAY", "0".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(seen, want, "exactly PATH, HOME, LANG, env and HOOKD_*");
    drop(p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_twice_then_succeeding_takes_three_attempts_and_always_failing_goes_dead() {
    let tmp = tempfile::tempdir().unwrap();
    let flaky = sh_script(
        tmp.path(),
        "flaky",
        "echo \"attempt $HOOKD_ATTEMPT\"\n[ \"$HOOKD_ATTEMPT\" -ge 3 ] || { echo 'not yet' >&2; exit 7; }\n",
    );
    let broken = sh_script(tmp.path(), "broken", "echo broken >&2\nexit 1\n");
    let cfg = format!(
        "{}{}{}",
        sources(),
        handler("flaky", &["*"], &flaky, "max_attempts = 5"),
        handler("broken", &["*"], &broken, "max_attempts = 3"),
    );
    let d = TestDaemon::start_in(tmp, &cfg).await;
    let dir = d.dir.path().to_path_buf();
    send(&reqwest::Client::new(), &d.base, "s", event("e1", "t")).await;

    assert_eq!(settled(&dir, "e1", "flaky", "succeeded").await, 3);
    let a = attempts(&dir, "e1", "flaky");
    assert_eq!(outcomes(&a), [(1, "exit"), (2, "exit"), (3, "ok")]);
    assert_eq!(
        a.iter().map(|a| a.exit_code).collect::<Vec<_>>(),
        [Some(7), Some(7), Some(0)]
    );
    assert_eq!(a[0].stderr, b"not yet\n");
    assert_eq!(a[2].stdout, b"attempt 3\n");

    assert_eq!(settled(&dir, "e1", "broken", "dead").await, 3);
    let a = attempts(&dir, "e1", "broken");
    assert_eq!(outcomes(&a), [(1, "exit"), (2, "exit"), (3, "exit")]);
    let last_error: String = state_db(&dir)
        .query_row(
            "SELECT last_error FROM deliveries WHERE handler = 'broken'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(last_error, "exit 1");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_handler_is_killed_at_its_timeout_with_its_children() {
    let tmp = tempfile::tempdir().unwrap();
    let hang = sh_script(
        tmp.path(),
        "hang",
        "echo $$ > leader-$HOOKD_ATTEMPT.pid\nsleep 1000 &\necho $! > child-$HOOKD_ATTEMPT.pid\nwait\n",
    );
    let cfg = format!(
        "{}{}{}",
        sources(),
        handler(
            "hang",
            &["hang"],
            &hang,
            "timeout = \"300ms\"\nmax_attempts = 2"
        ),
        handler("ok", &["fine"], &argv(&["true"]), ""),
    );
    let d = TestDaemon::start_in(tmp, &cfg).await;
    let dir = d.dir.path().to_path_buf();
    let c = reqwest::Client::new();
    send(&c, &d.base, "s", event("h1", "hang")).await;
    assert_eq!(settled(&dir, "h1", "hang", "dead").await, 2);
    assert_eq!(
        outcomes(&attempts(&dir, "h1", "hang")),
        [(1, "timeout"), (2, "timeout")]
    );
    for attempt in [1, 2] {
        let leader = read_pid(&dir.join(format!("leader-{attempt}.pid"))).await;
        let child = read_pid(&dir.join(format!("child-{attempt}.pid"))).await;
        assert_dies(leader).await;
        assert_dies(child).await;
    }
    // The daemon keeps serving meanwhile.
    send(&c, &d.base, "s", event("f1", "fine")).await;
    settled(&dir, "f1", "ok", "succeeded").await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_printing_megabytes_is_capped_without_deadlock() {
    let tmp = tempfile::tempdir().unwrap();
    let flood = sh_script(
        tmp.path(),
        "flood",
        "(head -c 8388608 /dev/zero | tr '\\0' e) >&2 &\nhead -c 8388608 /dev/zero | tr '\\0' o\nwait\n",
    );
    let cfg = format!(
        "{}{}",
        sources(),
        handler("flood", &["*"], &flood, "timeout = \"120s\""),
    );
    let d = TestDaemon::start_in(tmp, &cfg).await;
    let dir = d.dir.path().to_path_buf();
    let id = send(&reqwest::Client::new(), &d.base, "s", event("big", "t")).await;
    assert_eq!(settled(&dir, "big", "flood", "succeeded").await, 1);
    let a = &attempts(&dir, "big", "flood")[0];
    assert_eq!(a.outcome, "ok");
    assert_eq!(a.stdout.len(), 64 * 1024);
    assert_eq!(a.stderr.len(), 64 * 1024);
    assert!(a.stdout.iter().all(|&b| b == b'o'));
    assert!(a.stderr.iter().all(|&b| b == b'e'));
    assert!(a.stdout_truncated && a.stderr_truncated);
    let shown = hookd_ok(&d.config_path, &["events", "show", &id.to_string()]).await;
    assert!(shown.contains("stdout (truncated):"), "{shown}");
    assert!(shown.contains("stderr (truncated):"), "{shown}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_faults_are_failed_attempts_and_the_daemon_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let segv = sh_script(tmp.path(), "segv", "kill -SEGV $$\n");
    let killed = sh_script(tmp.path(), "killed", "kill -KILL $$\n");
    let cfg = format!(
        "{}{}{}{}{}",
        sources(),
        handler("segv", &["fault"], &segv, "max_attempts = 2"),
        handler("killed", &["fault"], &killed, "max_attempts = 2"),
        handler(
            "missing",
            &["fault"],
            &argv(&["/nonexistent/handler"]),
            "max_attempts = 2"
        ),
        handler("ok", &["fine"], &argv(&["true"]), ""),
    );
    let d = TestDaemon::start_in(tmp, &cfg).await;
    let dir = d.dir.path().to_path_buf();
    let c = reqwest::Client::new();
    send(&c, &d.base, "s", event("x1", "fault")).await;
    for (h, outcome, signal) in [
        ("segv", "signal", Some(libc::SIGSEGV as i64)),
        ("killed", "signal", Some(libc::SIGKILL as i64)),
        ("missing", "spawn_error", None),
    ] {
        assert_eq!(settled(&dir, "x1", h, "dead").await, 2, "{h}");
        let a = attempts(&dir, "x1", h);
        assert_eq!(outcomes(&a), [(1, outcome), (2, outcome)], "{h}");
        assert_eq!(a[0].signal, signal, "{h}");
    }
    send(&c, &d.base, "s", event("f1", "fine")).await;
    settled(&dir, "f1", "ok", "succeeded").await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_handler_concurrency_is_respected() {
    let tmp = tempfile::tempdir().unwrap();
    // Each run counts the runs alive with it (a lower bound of the true
    // number, never more).
    let par = sh_script(
        tmp.path(),
        "par",
        "mkdir -p running\ntouch running/$HOOKD_EVENT_ID\nls running | wc -l >> counts.log\nsleep 0.4\nrm running/$HOOKD_EVENT_ID\n",
    );
    let cfg = format!(
        "{}{}",
        sources(),
        handler("par", &["*"], &par, "concurrency = 2"),
    );
    let d = TestDaemon::start_in(tmp, &cfg).await;
    let dir = d.dir.path().to_path_buf();
    let c = reqwest::Client::new();
    for i in 0..8 {
        send(&c, &d.base, "s", event(&format!("c{i}"), "t")).await;
    }
    all_settled(&dir, LONG).await;
    let counts: Vec<usize> = lines(&dir.join("counts.log"))
        .iter()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(counts.len(), 8);
    assert_eq!(counts.iter().max(), Some(&2), "{counts:?}");
    d.stop().await;
}

/// Deliveries of a slow handler are shared out among its slots one run at a
/// time: a slot whose run ended does not claim the next ones ahead, where a
/// slot that came free could not take them. While both runs wait on their
/// gates, the handler has exactly its two runs claimed, every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_handlers_queue_is_shared_out_among_its_slots() {
    let tmp = tempfile::tempdir().unwrap();
    // Each run waits for its gate, then takes 50 ms more: a slow handler
    // whatever the test's own pace.
    let gated = sh_script(
        tmp.path(),
        "gated",
        "echo \"$HOOKD_EVENT_ID\" >> order.log\nwhile [ ! -e \"go-$HOOKD_EVENT_ID\" ]; do sleep 0.01; done\nsleep 0.05\n",
    );
    let cfg = format!(
        "{}{}",
        sources(),
        handler(
            "gated",
            &["*"],
            &gated,
            "concurrency = 2\ntimeout = \"20s\""
        ),
    );
    let d = TestDaemon::start_in(tmp, &cfg).await;
    let dir = d.dir.path().to_path_buf();
    let c = reqwest::Client::new();
    for i in 0..6 {
        send(&c, &d.base, "s", event(&format!("g{i}"), "t")).await;
    }
    let order = dir.join("order.log");
    let claimed = || -> i64 {
        state_db(&dir)
            .query_row(
                "SELECT COUNT(*) FROM deliveries WHERE handler = 'gated' AND status = 'running'",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    for pair in 0..3 {
        let started = wait_lines(&order, 2 * pair + 2).await;
        assert_eq!(claimed(), 2, "runs started: {started:?}");
        for id in &started[2 * pair..] {
            std::fs::write(dir.join(format!("go-{id}")), "").unwrap();
        }
    }
    all_settled(&dir, LONG).await;
    assert_eq!(lines(&order).len(), 6, "one run each");
    d.stop().await;
}

/// A daemon dropped without its shutdown (a test that panicked, a program
/// embedding hookd) kills its handler runs, so its runtime can be dropped:
/// the runtime waits for its blocking threads, and an exec slot lives on
/// one, blocked in its run. (Without this, a failing assertion in a test
/// with a long handler run hung instead of failing.)
#[test]
fn a_daemon_dropped_without_shutdown_kills_its_runs_and_frees_its_runtime() {
    let tmp = tempfile::tempdir().unwrap();
    let long = sh_script(tmp.path(), "long", "echo $$ > pid\nexec sleep 300\n");
    let cfg = format!(
        "{}{}",
        sources(),
        handler("long", &["*"], &long, "timeout = \"300s\"")
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (mut d, pid) = rt.block_on(async {
        let d = TestDaemon::start_in(tmp, &cfg).await;
        send(&reqwest::Client::new(), &d.base, "s", event("e1", "t")).await;
        let pid = read_pid(&d.dir.path().join("pid")).await;
        (d, pid)
    });
    assert!(!is_dead(pid), "the handler runs");
    drop(d.daemon.take());
    let (done, stopped) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(rt);
        let _ = done.send(());
    });
    // A safety net, not a speed check: the kill takes at most its grace.
    assert!(
        stopped.recv_timeout(LONG).is_ok(),
        "dropping the runtime waited on the handler run"
    );
    assert!(is_dead(pid), "the handler run was killed");
}

/// A slow handler whose concurrency fills the global cap must not keep the
/// cap to itself: when one of its runs ends while another handler has work
/// waiting, that slot goes to the other handler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_handler_does_not_starve_another_under_the_global_cap() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let slow = sh_script(
        &dir,
        "slow",
        "echo \"$HOOKD_EVENT_ID\" >> order.log\nwhile [ ! -e \"go-$HOOKD_EVENT_ID\" ] && [ ! -e go-all ]; do sleep 0.02; done\n",
    );
    let fast = sh_script(&dir, "fast", "echo \"$HOOKD_EVENT_ID\" >> order.log\n");
    let body = format!(
        "{}{}{}",
        generic_source("s", KEY),
        handler(
            "slow",
            &["slow"],
            &slow,
            "concurrency = 4\ntimeout = \"300s\""
        ),
        handler("fast", &["fast"], &fast, "concurrency = 1"),
    );
    config_with(&dir, "max_concurrency = 2\n", &body);
    let cfg = hookd::config::load(&dir.join("receiver.toml")).unwrap();
    let daemon = hookd::daemon::Daemon::start(cfg, Default::default())
        .await
        .unwrap();
    let base = format!("http://{}", daemon.push_addrs[0]);
    let c = reqwest::Client::new();
    for i in 1..=6 {
        send(&c, &base, "s", event(&format!("a{i}"), "slow")).await;
    }
    let order = dir.join("order.log");
    let running = wait_lines(&order, 2).await;
    send(&c, &base, "s", event("b1", "fast")).await;
    // Both global slots are held by `slow`. Free one.
    std::fs::write(dir.join(format!("go-{}", running[0])), "").unwrap();
    let next = eventually(LONG, || lines(&order).get(2).cloned()).await;
    assert_eq!(
        next,
        "b1",
        "the freed slot went to the slow handler's backlog: {:?}",
        lines(&order)
    );
    std::fs::write(dir.join("go-all"), "").unwrap();
    all_settled(&dir, LONG).await;
    assert_eq!(lines(&order).len(), 7);
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_work_pending_loses_nothing_and_retries_the_interrupted_run() {
    // e00 holds the only slot until every event is stored, so finishing it
    // claims e01 to start and more ahead. e02 starts and hangs: the crash
    // interrupts one run while deliveries wait, claimed but not started.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let h = sh_script(
        dir,
        "queue",
        "echo \"$HOOKD_EVENT_ID $HOOKD_ATTEMPT\" >> runs.log\n\
         if [ \"$HOOKD_EVENT_ID\" = e00 ]; then\n  while [ ! -e go ]; do sleep 0.05; done\nfi\n\
         if [ \"$HOOKD_EVENT_ID\" = e02 ] && [ \"$HOOKD_ATTEMPT\" = 1 ]; then\n\
           echo $$ > stuck.pid\n  while :; do sleep 1; done\nfi\n",
    );
    let cfg = config_with(
        dir,
        "",
        &format!(
            "{}{}",
            generic_source("s", KEY),
            handler("queue", &["*"], &h, "concurrency = 1"),
        ),
    );
    let p = Proc::spawn(&cfg, &[]);
    let c = reqwest::Client::new();
    let base = format!("http://{}", p.addr);
    for i in 0..20 {
        send(&c, &base, "s", event(&format!("e{i:02}"), "t")).await;
    }
    std::fs::write(dir.join("go"), "").unwrap();
    let stuck = read_pid(&dir.join("stuck.pid")).await;
    // Once e01's record has committed, e02 runs and the slot holds more
    // deliveries claimed ahead (how many is the dispatcher's business).
    let held: i64 = eventually(LONG, || {
        let (succeeded, running): (i64, i64) = state_db(dir)
            .query_row(
                "SELECT SUM(status = 'succeeded'), SUM(status = 'running') FROM deliveries",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        (succeeded == 2 && running >= 3).then_some(running - 1)
    })
    .await;
    assert!(held >= 2, "{held} held");
    p.kill();
    // The orphaned handler is ours to clean up (the daemon died with -9).
    // SAFETY: killpg on the group our test handler leads.
    unsafe { libc::killpg(stuck, libc::SIGKILL) };
    assert_dies(stuck).await;
    // The CLI tells the run that started from those only held.
    let rows = json_lines(&hookd_ok(&cfg, &["deliveries", "--status", "running", "--json"]).await);
    let started: Vec<&str> = rows
        .iter()
        .filter(|r| r["held"] == false)
        .map(|r| r["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(started, ["e02"], "{rows:?}");
    assert_eq!(rows.len() as i64, held + 1, "{rows:?}");
    let table = hookd_ok(&cfg, &["deliveries", "--status", "running"]).await;
    assert_eq!(
        table.matches("running (held)").count() as i64,
        held,
        "{table}"
    );

    let p = Proc::spawn(&cfg, &[]);
    all_settled(dir, LONG).await;
    let done: i64 = state_db(dir)
        .query_row(
            "SELECT COUNT(*) FROM deliveries WHERE status = 'succeeded'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(done, 20, "every event delivered after the restart");
    let a = attempts(dir, "e02", "queue");
    assert_eq!(outcomes(&a), [(1, "interrupted"), (2, "ok")]);
    let runs = lines(&dir.join("runs.log"));
    assert_eq!(runs.iter().filter(|l| l.starts_with("e02 ")).count(), 2);
    assert!(runs.contains(&"e02 2".to_string()));
    for i in (0..20).filter(|i| *i != 2) {
        let id = format!("e{i:02}");
        let seen: Vec<_> = runs.iter().filter(|l| l.starts_with(&id)).collect();
        assert_eq!(seen, [&format!("{id} 1")], "run once, at attempt 1");
        let a = attempts(dir, &id, "queue");
        assert_eq!(
            outcomes(&a),
            [(1, "ok")],
            "{id}: no attempt counted for a run that never started"
        );
    }
    drop(p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_by_id_by_filter_and_of_dead_deliveries_while_running_and_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let rec = sh_script(
        tmp.path(),
        "rec",
        "echo \"$HOOKD_EVENT_ID $HOOKD_ATTEMPT $HOOKD_REPLAY\" >> rec.log\n",
    );
    let picky = sh_script(
        tmp.path(),
        "picky",
        "echo \"$HOOKD_EVENT_ID $HOOKD_ATTEMPT $HOOKD_REPLAY\" >> picky.log\n[ -e allow ] || exit 3\n",
    );
    let cfg = format!(
        "{}{}{}",
        sources(),
        handler("rec", &["*"], &rec, ""),
        handler("picky", &["order.*"], &picky, "max_attempts = 2"),
    );
    let d = TestDaemon::start_in(tmp, &cfg).await;
    let dir = d.dir.path().to_path_buf();
    let c = reqwest::Client::new();
    let a1 = send(&c, &d.base, "s", event("a1", "message.x")).await;
    send(&c, &d.base, "s", event("a2", "order.x")).await;
    send(&c, &d.base, "s", event("a3", "order.y")).await;
    all_settled(&dir, LONG).await;
    assert_eq!(delivery(&dir, "a2", "picky").unwrap().0, "dead");
    assert_eq!(delivery(&dir, "a3", "picky").unwrap().0, "dead");
    let rec_log = dir.join("rec.log");
    let replays = |who: &str| {
        lines(&rec_log)
            .iter()
            .filter(|l| *l == &format!("{who} 1 1"))
            .count()
    };

    // By id, daemon running: picked up without a restart.
    hookd_ok(&d.config_path, &["replay", &a1.to_string()]).await;
    eventually(LONG, || (replays("a1") == 1).then_some(())).await;
    settled(&dir, "a1", "rec", "succeeded").await;
    assert_eq!(
        delivery(&dir, "a1", "rec").unwrap(),
        ("succeeded".into(), 1, true)
    );
    let a = attempts(&dir, "a1", "rec");
    assert_eq!((a.len(), a[1].replay, a[1].attempt), (2, true, 1));

    // By filter, one handler only.
    hookd_ok(
        &d.config_path,
        &["replay", "--type", "order.*", "--handler", "rec"],
    )
    .await;
    eventually(LONG, || {
        (replays("a2") == 1 && replays("a3") == 1).then_some(())
    })
    .await;
    all_settled(&dir, LONG).await;
    assert_eq!(replays("a1"), 1, "outside the filter");
    assert_eq!(
        lines(&dir.join("picky.log")).len(),
        4,
        "other handler untouched"
    );

    // Dead deliveries: a dry run changes nothing, then the real one.
    let dry = hookd_ok(&d.config_path, &["replay", "--status", "dead", "--dry-run"]).await;
    assert!(dry.contains("2 run(s) would be queued"), "{dry}");
    assert_eq!(delivery(&dir, "a2", "picky").unwrap().0, "dead");
    std::fs::write(dir.join("allow"), "").unwrap();
    hookd_ok(&d.config_path, &["replay", "--status", "dead"]).await;
    for id in ["a2", "a3"] {
        assert_eq!(settled(&dir, id, "picky", "succeeded").await, 1);
        assert!(lines(&dir.join("picky.log")).contains(&format!("{id} 1 1")));
        let last = attempts(&dir, id, "picky").pop().unwrap();
        assert_eq!((last.outcome.as_str(), last.replay), ("ok", true));
    }

    // Daemon stopped: queued now, run at the next start.
    let config_path = d.config_path.clone();
    let tmp = d.stop().await;
    hookd_ok(&config_path, &["replay", &a1.to_string()]).await;
    assert_eq!(
        delivery(&dir, "a1", "rec").unwrap(),
        ("pending".into(), 0, true)
    );
    assert_eq!(replays("a1"), 1);
    let d = TestDaemon::start_in(tmp, &cfg).await;
    eventually(LONG, || (replays("a1") == 2).then_some(())).await;
    settled(&dir, "a1", "rec", "succeeded").await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_handler_acks_nacks_and_is_restarted_after_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let script = write_script(
        tmp.path(),
        "stream.py",
        r#"
import json, os, sys
for line in sys.stdin:
    ev = json.loads(line)
    p = ev["payload"]
    with open("stream.log", "a") as f:
        f.write(f'{os.getpid()} {ev["event_id"]} {ev["attempt"]}\n')
    if p.get("crash") and not os.path.exists("crashed"):
        open("crashed", "w").close()
        os._exit(3)
    if p.get("nack") and ev["attempt"] < 2:
        print(json.dumps({"id": ev["id"], "ok": False, "error": "try again"}), flush=True)
        continue
    print(json.dumps({"id": ev["id"], "ok": True}), flush=True)
"#,
    );
    let cfg = format!(
        "{}{}",
        sources(),
        handler(
            "st",
            &["*"],
            &python(&script),
            "kind = \"stream\"\nconcurrency = 4\nmax_attempts = 5\ntimeout = \"60s\""
        ),
    );
    let d = TestDaemon::start_in(tmp, &cfg).await;
    let dir = d.dir.path().to_path_buf();
    let c = reqwest::Client::new();
    send(&c, &d.base, "s", event("ok1", "t")).await;
    send(&c, &d.base, "s", event("ok2", "t")).await;
    send(
        &c,
        &d.base,
        "s",
        json!({"id": "nack1", "type": "t", "nack": true}),
    )
    .await;
    assert_eq!(settled(&dir, "ok1", "st", "succeeded").await, 1);
    assert_eq!(settled(&dir, "ok2", "st", "succeeded").await, 1);
    assert_eq!(settled(&dir, "nack1", "st", "succeeded").await, 2);
    assert_eq!(
        outcomes(&attempts(&dir, "nack1", "st")),
        [(1, "nack"), (2, "ok")]
    );

    send(
        &c,
        &d.base,
        "s",
        json!({"id": "crash1", "type": "t", "crash": true}),
    )
    .await;
    assert_eq!(settled(&dir, "crash1", "st", "succeeded").await, 2);
    assert_eq!(
        outcomes(&attempts(&dir, "crash1", "st")),
        [(1, "exit"), (2, "ok")]
    );
    send(&c, &d.base, "s", event("ok3", "t")).await;
    settled(&dir, "ok3", "st", "succeeded").await;
    let pid_of = |id: &str| -> BTreeSet<String> {
        lines(&dir.join("stream.log"))
            .iter()
            .filter(|l| l.split(' ').nth(1) == Some(id))
            .map(|l| l.split(' ').next().unwrap().to_string())
            .collect()
    };
    let first = pid_of("ok1");
    assert_eq!(first, pid_of("nack1"), "one process for many events");
    let crashed = pid_of("crash1");
    assert_eq!(crashed.len(), 2, "crash1 ran in two processes: {crashed:?}");
    assert!(crashed.is_superset(&first));
    let after = pid_of("ok3");
    assert!(
        after.is_subset(&crashed) && after != first,
        "restarted process"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_running_handler_finish_and_leaves_the_rest_pending() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let finish = sh_script(
        dir,
        "finish",
        "touch started-$HOOKD_EVENT_ID\nwhile [ ! -e release ]; do sleep 0.02; done\n",
    );
    let stuck = sh_script(
        dir,
        "stuck",
        "[ -e release ] && exit 0\ntouch started-$HOOKD_EVENT_ID\nsleep 1000\n",
    );
    // A stream handler that holds its answer unless released.
    let held = python(&write_script(
        dir,
        "held.py",
        r#"
import json, os, sys
for line in sys.stdin:
    ev = json.loads(line)
    if os.path.exists("release"):
        print(json.dumps({"id": ev["id"], "ok": True}), flush=True)
    else:
        open("started-" + ev["event_id"], "w").close()
"#,
    ));
    let body = format!(
        "{}{}{}{}",
        generic_source("s", KEY),
        handler(
            "held",
            &["held"],
            &held,
            "kind = \"stream\"\ntimeout = \"300s\""
        ),
        handler("finish", &["finish"], &finish, "timeout = \"300s\""),
        handler(
            "stuck",
            &["stuck"],
            &stuck,
            "concurrency = 1\ntimeout = \"300s\""
        ),
    );
    let cfg = config_with(dir, "", &body);
    let mut p = Proc::spawn(&cfg, &[]);
    let c = reqwest::Client::new();
    let base = format!("http://{}", p.addr);
    send(&c, &base, "s", event("f1", "finish")).await;
    for id in ["s1", "s2", "s3"] {
        send(&c, &base, "s", event(id, "stuck")).await;
    }
    send(&c, &base, "s", event("q1", "held")).await;
    for id in ["f1", "s1", "q1"] {
        wait_exists(dir.join(format!("started-{id}"))).await;
    }
    p.signal(libc::SIGTERM);
    p.wait_for("STOPPING=1");
    std::fs::write(dir.join("release"), "").unwrap();
    assert_eq!(p.wait(LONG), Some(0));

    assert_eq!(delivery(dir, "f1", "finish").unwrap().0, "succeeded");
    assert_eq!(
        delivery(dir, "s1", "stuck").unwrap(),
        ("pending".into(), 1, false),
        "handed back, not failed or dead"
    );
    assert_eq!(
        outcomes(&attempts(dir, "s1", "stuck")),
        [(1, "interrupted")]
    );
    for id in ["s2", "s3"] {
        assert_eq!(
            delivery(dir, id, "stuck").unwrap(),
            ("pending".into(), 0, false)
        );
    }
    assert_eq!(
        delivery(dir, "q1", "held").unwrap(),
        ("pending".into(), 1, false),
        "an unanswered stream event is handed back too"
    );

    let p = Proc::spawn(&cfg, &[]);
    all_settled(dir, LONG).await;
    for id in ["s1", "s2", "s3"] {
        assert_eq!(delivery(dir, id, "stuck").unwrap().0, "succeeded", "{id}");
    }
    assert_eq!(
        outcomes(&attempts(dir, "s1", "stuck")),
        [(1, "interrupted"), (2, "ok")]
    );
    assert_eq!(
        outcomes(&attempts(dir, "q1", "held")),
        [(1, "interrupted"), (2, "ok")]
    );
    drop(p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_show_lists_attempts_and_deliveries_json_filters() {
    let tmp = tempfile::tempdir().unwrap();
    let talky = sh_script(
        tmp.path(),
        "talky",
        "echo \"out $HOOKD_ATTEMPT\"\necho \"err $HOOKD_ATTEMPT\" >&2\n[ \"$HOOKD_ATTEMPT\" -ge 2 ] || exit 4\n",
    );
    let cfg = format!(
        "{}{}{}{}",
        sources(),
        handler("talky", &["t"], &talky, ""),
        handler("quiet", &["other"], &argv(&["true"]), ""),
        handler("never", &["other"], &argv(&["false"]), "max_attempts = 1"),
    );
    let d = TestDaemon::start_in(tmp, &cfg).await;
    let dir = d.dir.path().to_path_buf();
    let c = reqwest::Client::new();
    let x1 = send(&c, &d.base, "s", event("x1", "t")).await;
    let y1 = send(&c, &d.base, "t", event("y1", "other")).await;
    all_settled(&dir, LONG).await;

    let shown = hookd_ok(&d.config_path, &["events", "show", &x1.to_string()]).await;
    for want in [
        "talky: succeeded after 2 attempt(s)",
        "attempt 1 of talky: exit (exit 4)",
        "attempt 2 of talky: ok (exit 0)",
        "      out 1",
        "      err 1",
        "      out 2",
        " ms\n",
    ] {
        assert!(shown.contains(want), "{want:?} not in:\n{shown}");
    }
    let v: Value = serde_json::from_str(
        &hookd_ok(
            &d.config_path,
            &["events", "show", &x1.to_string(), "--json"],
        )
        .await,
    )
    .unwrap();
    let a = v["attempts"].as_array().unwrap();
    assert_eq!(a.len(), 2);
    assert_eq!(
        (a[0]["exit_code"].clone(), a[1]["exit_code"].clone()),
        (json!(4), json!(0))
    );
    assert_eq!(a[0]["stdout"], "out 1\n");
    assert_eq!(a[0]["stderr"], "err 1\n");
    assert!(a.iter().all(|a| a["duration_ms"].as_f64().unwrap() > 0.0));

    let all = json_lines(&hookd_ok(&d.config_path, &["deliveries", "--json"]).await);
    assert_eq!(all.len(), 3);
    for row in &all {
        for field in [
            "id",
            "event",
            "event_id",
            "source",
            "handler",
            "status",
            "attempts",
            "next_attempt_at",
        ] {
            assert!(row.get(field).is_some(), "{field} missing in {row}");
        }
    }
    let by_handler = json_lines(
        &hookd_ok(
            &d.config_path,
            &["deliveries", "--handler", "talky", "--json"],
        )
        .await,
    );
    assert_eq!(by_handler.len(), 1);
    assert_eq!(by_handler[0]["event"], x1);
    assert_eq!(by_handler[0]["event_id"], "x1");
    assert_eq!(by_handler[0]["source"], "s");
    assert_eq!(by_handler[0]["status"], "succeeded");
    assert_eq!(by_handler[0]["attempts"], 2);
    let dead = json_lines(
        &hookd_ok(
            &d.config_path,
            &["deliveries", "--status", "dead", "--json"],
        )
        .await,
    );
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0]["handler"].as_str(), dead[0]["event"].as_i64()),
        (Some("never"), Some(y1))
    );
    let ok = json_lines(
        &hookd_ok(
            &d.config_path,
            &["deliveries", "--status", "succeeded", "--json"],
        )
        .await,
    );
    assert_eq!(ok.len(), 2);
    let recent =
        json_lines(&hookd_ok(&d.config_path, &["deliveries", "--since", "1h", "--json"]).await);
    assert_eq!(recent.len(), 3);
    let future = hookd::timefmt::format_micros(hookd::timefmt::now_micros() + 3_600_000_000);
    let none = json_lines(
        &hookd_ok(
            &d.config_path,
            &["deliveries", "--since", &future, "--json"],
        )
        .await,
    );
    assert!(none.is_empty(), "{none:?}");
    let (code, _, err) = hookd(&d.config_path, &["deliveries", "--status", "bogus"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("bogus"), "{err}");
    d.stop().await;
}
