//! The `stream` runner against real long-lived handler processes: acks and
//! nacks, out-of-order answers, the in-flight limit, crashes and restarts,
//! garbage output, ack timeouts and shutdown.

mod dispatch_support;

use std::path::Path;
use std::time::{Duration, Instant};

use dispatch_support::{assert_dies, clean_env, python, read_pid, wait_for_file, write_script};
use futures_util::future::join_all;
use hookd::dispatch::stream::{StreamHandle, StreamOutcome, StreamSpec};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

/// Reads NDJSON lines from stdin; `answer(event)` returns the ack to print
/// or None. Used by most handlers below.
const PRELUDE: &str = r#"
import json, os, signal, sys
def emit(obj):
    sys.stdout.write((obj if isinstance(obj, str) else json.dumps(obj)) + "\n")
    sys.stdout.flush()
def events():
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        yield json.loads(line)
"#;

fn spec(dir: &Path, handler: &str) -> StreamSpec {
    let script = write_script(dir, "handler.py", &format!("{PRELUDE}\n{handler}"));
    StreamSpec {
        name: "test-handler".into(),
        command: python(&script),
        working_dir: dir.to_path_buf(),
        env: clean_env(),
        ack_timeout: Duration::from_secs(20),
        max_in_flight: 4,
        restart_initial: Duration::from_millis(10),
        restart_max: Duration::from_secs(1),
        kill_grace: Duration::from_secs(1),
    }
}

fn envelope(id: i64) -> Vec<u8> {
    format!(r#"{{"id":{id},"source":"test","payload":{{"n":{id}}}}}"#).into_bytes()
}

async fn deliver_all(
    handle: &StreamHandle,
    ids: impl IntoIterator<Item = i64>,
) -> Vec<StreamOutcome> {
    join_all(ids.into_iter().map(|id| handle.deliver(id, envelope(id)))).await
}

/// Shut the handler down and wait (bounded) until it has fully stopped.
async fn stop(handle: &StreamHandle, shutdown: &CancellationToken) {
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), handle.stopped())
        .await
        .expect("the stream handler did not stop");
}

#[tokio::test]
async fn acks_and_nacks_reach_their_callers() {
    let dir = TempDir::new().unwrap();
    let handler = r#"
for ev in events():
    i = ev["id"]
    if i % 2 == 0:
        emit({"id": str(i) if i % 4 == 0 else i, "ok": True})
    else:
        emit({"id": i, "ok": False, "error": f"odd id {i}"})
"#;
    let shutdown = CancellationToken::new();
    let handle = StreamHandle::spawn(spec(dir.path(), handler), shutdown.clone());
    let got = deliver_all(&handle, 1..=8).await;
    let want: Vec<_> = (1..=8)
        .map(|i| match i % 2 {
            0 => StreamOutcome::Ok,
            _ => StreamOutcome::Nack(format!("odd id {i}")),
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(handle.restarts(), 0);
    stop(&handle, &shutdown).await;
}

#[tokio::test]
async fn out_of_order_acks_resolve_the_right_callers() {
    let dir = TempDir::new().unwrap();
    let handler = r#"
batch = []
for ev in events():
    batch.append(ev["id"])
    if len(batch) == 3:
        for i in reversed(batch):
            emit({"id": i, "ok": False, "error": f"answer for {i}"})
        batch = []
"#;
    let shutdown = CancellationToken::new();
    let mut spec = spec(dir.path(), handler);
    spec.max_in_flight = 3;
    let handle = StreamHandle::spawn(spec, shutdown.clone());
    for batch in [[10, 11, 12], [20, 21, 22]] {
        let got = deliver_all(&handle, batch).await;
        let want: Vec<_> = batch
            .iter()
            .map(|i| StreamOutcome::Nack(format!("answer for {i}")))
            .collect();
        assert_eq!(got, want);
    }
    stop(&handle, &shutdown).await;
}

#[tokio::test]
async fn in_flight_limit_is_respected() {
    let dir = TempDir::new().unwrap();
    // Collects every line that arrives within 200 ms of the previous one
    // before answering, and records the most it ever held unanswered.
    let handler = r#"
import select
buf, pending, most = b"", [], 0
while True:
    ready, _, _ = select.select([0], [], [], 0.2 if pending else None)
    if ready:
        chunk = os.read(0, 65536)
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        pending += [json.loads(l)["id"] for l in lines if l.strip()]
        most = max(most, len(pending))
        continue
    with open("max.txt", "w") as f:
        f.write(f"{most}\n")
    for i in pending:
        emit({"id": i, "ok": True})
    pending = []
"#;
    let shutdown = CancellationToken::new();
    let mut spec = spec(dir.path(), handler);
    spec.max_in_flight = 2;
    let handle = StreamHandle::spawn(spec, shutdown.clone());
    let got = deliver_all(&handle, 1..=8).await;
    assert!(got.iter().all(|o| *o == StreamOutcome::Ok), "{got:?}");
    let most = wait_for_file(&dir.path().join("max.txt")).await;
    assert_eq!(
        most.trim(),
        "2",
        "most unanswered lines seen by the handler"
    );
    stop(&handle, &shutdown).await;
}

#[tokio::test]
async fn crash_fails_in_flight_events_and_the_process_restarts() {
    let dir = TempDir::new().unwrap();
    // First run: read two events, answer none, crash. Later runs: ack all.
    let handler = r#"
first_run = not os.path.exists("started-once")
open("started-once", "a").close()
seen = 0
for ev in events():
    seen += 1
    if first_run:
        if seen == 2:
            sys.exit(1)
        continue
    emit({"id": ev["id"], "ok": True})
"#;
    let shutdown = CancellationToken::new();
    let handle = StreamHandle::spawn(spec(dir.path(), handler), shutdown.clone());
    let crashed = StreamOutcome::ProcessExited("exit 1".into());
    assert_eq!(
        deliver_all(&handle, [1, 2]).await,
        [crashed.clone(), crashed]
    );
    assert_eq!(
        deliver_all(&handle, [3, 4]).await,
        [StreamOutcome::Ok, StreamOutcome::Ok]
    );
    assert_eq!(handle.restarts(), 1);
    stop(&handle, &shutdown).await;
}

#[tokio::test]
async fn garbage_on_stdout_is_ignored() {
    let dir = TempDir::new().unwrap();
    let handler = r#"
for ev in events():
    emit("this is not json")
    emit({"hello": "world"})
    emit({"id": 999999, "ok": True})
    emit({"id": "12abc", "ok": True})
    emit({"id": ev["id"]})
    emit("x" * 200000)
    emit("")
    sys.stderr.write("a diagnostic line\n" + "y" * 100000 + "\n")
    sys.stderr.flush()
    emit({"id": ev["id"], "ok": True})
"#;
    let shutdown = CancellationToken::new();
    let handle = StreamHandle::spawn(spec(dir.path(), handler), shutdown.clone());
    assert_eq!(
        deliver_all(&handle, [1, 2]).await,
        [StreamOutcome::Ok, StreamOutcome::Ok]
    );
    assert_eq!(handle.restarts(), 0);
    stop(&handle, &shutdown).await;
}

#[tokio::test]
async fn missing_ack_times_out_and_the_process_keeps_running() {
    let dir = TempDir::new().unwrap();
    // Never answers 1 in time: answers it late, just before answering 2.
    let handler = r#"
for ev in events():
    if ev["id"] == 2:
        emit({"id": 1, "ok": True})
        emit({"id": 2, "ok": True})
"#;
    let shutdown = CancellationToken::new();
    let mut spec = spec(dir.path(), handler);
    spec.ack_timeout = Duration::from_millis(300);
    let handle = StreamHandle::spawn(spec, shutdown.clone());
    let started = Instant::now();
    assert_eq!(
        handle.deliver(1, envelope(1)).await,
        StreamOutcome::TimedOut
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(handle.deliver(2, envelope(2)).await, StreamOutcome::Ok);
    assert_eq!(handle.restarts(), 0);
    stop(&handle, &shutdown).await;
}

#[tokio::test]
async fn shutdown_cancels_pending_deliveries_and_kills_the_process() {
    let dir = TempDir::new().unwrap();
    // Ignores SIGTERM, so only the SIGKILL after the grace ends it.
    let handler = r#"
signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open("pid.txt", "w") as f:
    f.write(f"{os.getpid()}\n")
for ev in events():
    with open("got.txt", "w") as f:
        f.write(f"{ev['id']}\n")
while True:
    signal.pause()
"#;
    let shutdown = CancellationToken::new();
    let mut spec = spec(dir.path(), handler);
    spec.kill_grace = Duration::from_millis(300);
    let handle = StreamHandle::spawn(spec, shutdown.clone());
    let pending = tokio::spawn({
        let handle = handle.clone();
        async move { handle.deliver(1, envelope(1)).await }
    });
    let pid = read_pid(&dir.path().join("pid.txt")).await;
    wait_for_file(&dir.path().join("got.txt")).await;

    let stopping = Instant::now();
    stop(&handle, &shutdown).await;
    assert!(
        stopping.elapsed() >= Duration::from_millis(300),
        "SIGKILL came before the grace"
    );
    assert_eq!(pending.await.unwrap(), StreamOutcome::Cancelled);
    assert_dies(pid).await;
    assert_eq!(
        handle.deliver(2, envelope(2)).await,
        StreamOutcome::Cancelled
    );
}

#[tokio::test]
async fn dropping_every_handle_stops_the_process() {
    let dir = TempDir::new().unwrap();
    let handler = r#"
with open("pid.txt", "w") as f:
    f.write(f"{os.getpid()}\n")
for ev in events():
    emit({"id": ev["id"], "ok": True})
"#;
    let handle = StreamHandle::spawn(spec(dir.path(), handler), CancellationToken::new());
    let pid = read_pid(&dir.path().join("pid.txt")).await;
    drop(handle);
    assert_dies(pid).await;
}

#[tokio::test]
async fn process_gets_exactly_the_given_environment() {
    let dir = TempDir::new().unwrap();
    // /proc/self/environ is what exec gave the process, before python's
    // own locale adjustments.
    let handler = r#"
env = open("/proc/self/environ", "rb").read().split(b"\0")
with open("env.txt", "wb") as f:
    f.write(b"".join(v + b"\n" for v in env if v))
    f.write(b"cwd=" + os.getcwd().encode() + b"\n")
for ev in events():
    emit({"id": ev["id"], "ok": True})
"#;
    let shutdown = CancellationToken::new();
    let spec = spec(dir.path(), handler);
    let handle = StreamHandle::spawn(spec.clone(), shutdown.clone());
    let text = wait_for_file(&dir.path().join("env.txt")).await;
    let mut got: Vec<&str> = text.lines().collect();
    let cwd = format!("cwd={}", dir.path().display());
    let mut want: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    want.push(cwd);
    got.sort();
    want.sort();
    assert_eq!(got, want);
    stop(&handle, &shutdown).await;
}

#[tokio::test]
async fn unstartable_handler_fails_deliveries_readably() {
    let dir = TempDir::new().unwrap();
    let shutdown = CancellationToken::new();
    let mut spec = spec(dir.path(), "");
    spec.command = vec!["/nonexistent/stream-handler".into()];
    let handle = StreamHandle::spawn(spec, shutdown.clone());
    let got = handle.deliver(1, envelope(1)).await;
    let want =
        "could not start: `/nonexistent/stream-handler`: No such file or directory (os error 2)";
    assert_eq!(got, StreamOutcome::ProcessExited(want.into()));
    stop(&handle, &shutdown).await;
}
