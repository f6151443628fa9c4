//! The `stream` runner: one long-lived process per handler, many events.
//!
//! Starting a process per event is too slow for some handlers, so a stream
//! handler is started once and fed envelopes as NDJSON on its stdin; it
//! answers each with one ack line on stdout. A `StreamHandle` hides that
//! conversation behind `deliver(id, envelope) -> StreamOutcome`, keeps at
//! most `max_in_flight` events unanswered, matches acks to callers by id (in
//! any order), and restarts the process with exponential backoff when it
//! dies; events that died with it resolve as `ProcessExited` so the caller
//! can retry them.
//!
//! Inside, one supervisor task owns the process: it writes queued events to
//! stdin, and per process a reader task resolves acks and a logger task
//! forwards stderr to `tracing`.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::{ChildStderr, ChildStdin, ChildStdout};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::child::{self, CappedLines, ProcessGroup};

/// Longest stdout line that is still parsed as an ack.
const MAX_ACK_LINE: usize = 64 * 1024;
/// Longest stderr line forwarded to the log.
const MAX_STDERR_LINE: usize = 4 * 1024;
/// How much of a stdout line that is not an ack appears in the log.
const GARBAGE_PREVIEW: usize = 200;
/// After the process is gone, how long its output readers may still run.
const PIPE_DRAIN_LIMIT: Duration = Duration::from_secs(2);
/// Shortest restart delay, whatever the configuration says.
const MIN_RESTART_DELAY: Duration = Duration::from_millis(1);

/// How to run one stream handler.
#[derive(Clone)]
pub struct StreamSpec {
    /// Handler name, for logs.
    pub name: String,
    /// argv; `argv[0]` without '/' is looked up in the PATH given in `env`.
    pub command: Vec<String>,
    pub working_dir: PathBuf,
    /// The complete environment of the process; nothing is inherited.
    pub env: Vec<(String, String)>,
    /// How long one event may wait for its ack, counted from the moment it
    /// got an in-flight slot.
    pub ack_timeout: Duration,
    /// Most events written and not yet answered (at least 1).
    pub max_in_flight: usize,
    /// First restart delay; doubled per consecutive crash up to
    /// `restart_max`, with jitter. A process that ran for `restart_max` or
    /// longer counts as healthy and resets the delay.
    pub restart_initial: Duration,
    pub restart_max: Duration,
    /// Time between SIGTERM and SIGKILL at shutdown.
    pub kill_grace: Duration,
}

impl std::fmt::Debug for StreamSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSpec")
            .field("name", &self.name)
            .field("command", &self.command)
            .field("working_dir", &self.working_dir)
            .field("env", &child::EnvNames(&self.env))
            .field("ack_timeout", &self.ack_timeout)
            .field("max_in_flight", &self.max_in_flight)
            .field("restart_initial", &self.restart_initial)
            .field("restart_max", &self.restart_max)
            .field("kill_grace", &self.kill_grace)
            .finish()
    }
}

/// How one delivery ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamOutcome {
    /// The handler acked with `"ok": true`.
    Ok,
    /// The handler acked with `"ok": false`; its error message.
    Nack(String),
    /// No ack within `ack_timeout`; the process keeps running.
    TimedOut,
    /// The process ended (or could not start) before answering; why.
    ProcessExited(String),
    /// Shutdown began before an answer.
    Cancelled,
}

/// A cheap, cloneable handle to one stream handler's process.
#[derive(Clone)]
pub struct StreamHandle {
    jobs: mpsc::UnboundedSender<Job>,
    slots: Arc<Semaphore>,
    shared: Arc<Shared>,
    ack_timeout: Duration,
    shutdown: CancellationToken,
    stopped: CancellationToken,
}

impl StreamHandle {
    /// Start the handler's process at once and keep it running (restarting
    /// it when it dies) until `shutdown` fires or every handle is dropped.
    /// Must be called inside a tokio runtime.
    pub fn spawn(spec: StreamSpec, shutdown: CancellationToken) -> StreamHandle {
        let (jobs, queue) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::new(spec.name.clone()));
        let stopped = CancellationToken::new();
        let handle = StreamHandle {
            jobs,
            slots: Arc::new(Semaphore::new(spec.max_in_flight.max(1))),
            shared: shared.clone(),
            ack_timeout: spec.ack_timeout,
            shutdown: shutdown.clone(),
            stopped: stopped.clone(),
        };
        let supervisor = Supervisor {
            spec,
            shared,
            queue,
            shutdown,
        };
        tokio::spawn(async move {
            let _mark_stopped = stopped.drop_guard();
            supervisor.run().await;
        });
        handle
    }

    /// Hand one event to the process and wait for its ack. Waits for a free
    /// in-flight slot first; the ack timeout starts once it has one.
    pub async fn deliver(&self, id: i64, envelope_json: Vec<u8>) -> StreamOutcome {
        let _slot = tokio::select! {
            biased;
            () = self.shutdown.cancelled() => return StreamOutcome::Cancelled,
            slot = self.slots.acquire() => match slot {
                Ok(slot) => slot,
                Err(_) => return StreamOutcome::Cancelled,
            },
        };
        let (reply, answer) = oneshot::channel();
        let seq = self.shared.next_seq.fetch_add(1, Ordering::Relaxed);
        let job = Job {
            id,
            seq,
            line: ndjson_line(envelope_json),
            reply,
        };
        if self.jobs.send(job).is_err() {
            return StreamOutcome::Cancelled;
        }
        tokio::select! {
            biased;
            () = self.shutdown.cancelled() => StreamOutcome::Cancelled,
            answer = answer => answer.unwrap_or(StreamOutcome::Cancelled),
            () = tokio::time::sleep(self.ack_timeout) => {
                self.shared.forget(id, seq);
                StreamOutcome::TimedOut
            }
        }
    }

    /// How many times the process was started again after the first start.
    pub fn restarts(&self) -> u64 {
        self.shared.restarts.load(Ordering::Relaxed)
    }

    /// Resolves once the handler has fully stopped after shutdown: its
    /// process group is dead and reaped and its tasks have ended.
    pub async fn stopped(&self) {
        self.stopped.cancelled().await;
    }
}

/// One event on its way to the process.
struct Job {
    id: i64,
    /// Tells apart two deliveries of the same id.
    seq: u64,
    line: Vec<u8>,
    reply: oneshot::Sender<StreamOutcome>,
}

/// A delivery that was written to the process and awaits its ack.
struct Waiter {
    seq: u64,
    reply: oneshot::Sender<StreamOutcome>,
}

/// State shared by the handles, the supervisor and the ack reader.
struct Shared {
    name: String,
    /// Written and unanswered, by event id, oldest first.
    waiting: Mutex<HashMap<i64, VecDeque<Waiter>>>,
    restarts: AtomicU64,
    next_seq: AtomicU64,
}

impl Shared {
    fn new(name: String) -> Self {
        Shared {
            name,
            waiting: Mutex::new(HashMap::new()),
            restarts: AtomicU64::new(0),
            next_seq: AtomicU64::new(0),
        }
    }

    fn waiting(&self) -> MutexGuard<'_, HashMap<i64, VecDeque<Waiter>>> {
        // The map stays consistent even if a holder panicked.
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Register a delivery just before its line is written.
    fn expect(&self, id: i64, seq: u64, reply: oneshot::Sender<StreamOutcome>) {
        let waiter = Waiter { seq, reply };
        self.waiting().entry(id).or_default().push_back(waiter);
    }

    /// Answer the oldest delivery of `id`; false if none is waiting.
    fn resolve(&self, id: i64, outcome: StreamOutcome) -> bool {
        let mut waiting = self.waiting();
        let Some(queue) = waiting.get_mut(&id) else {
            return false;
        };
        let waiter = queue.pop_front();
        if queue.is_empty() {
            waiting.remove(&id);
        }
        drop(waiting);
        waiter.is_some_and(|waiter| waiter.reply.send(outcome).is_ok())
    }

    /// Drop a delivery whose caller gave up (timed out).
    fn forget(&self, id: i64, seq: u64) {
        let mut waiting = self.waiting();
        if let Some(queue) = waiting.get_mut(&id) {
            queue.retain(|waiter| waiter.seq != seq);
            if queue.is_empty() {
                waiting.remove(&id);
            }
        }
    }

    /// Answer every waiting delivery with `outcome`.
    fn fail_all(&self, outcome: &StreamOutcome) {
        let drained: Vec<_> = self.waiting().drain().collect();
        for waiter in drained.into_iter().flat_map(|(_, queue)| queue) {
            let _ = waiter.reply.send(outcome.clone());
        }
    }
}

/// Why one process's session ended.
enum SessionEnd {
    /// The process ended; it should be restarted. The reason, for logs and
    /// for the deliveries that died with it.
    Died(String),
    /// Shutdown (or every handle dropped): do not restart.
    Shutdown,
}

/// Why feeding events to the process stopped.
enum Feed {
    Exited(std::io::Result<std::process::ExitStatus>),
    StdinClosed(std::io::Error),
    Shutdown,
}

/// Owns the process: starts, feeds, restarts and finally stops it.
struct Supervisor {
    spec: StreamSpec,
    shared: Arc<Shared>,
    queue: mpsc::UnboundedReceiver<Job>,
    shutdown: CancellationToken,
}

impl Supervisor {
    async fn run(mut self) {
        let mut backoff = Backoff::new(self.spec.restart_initial, self.spec.restart_max);
        loop {
            let up_since = Instant::now();
            let reason = match self.session().await {
                SessionEnd::Shutdown => break,
                SessionEnd::Died(reason) => reason,
            };
            if up_since.elapsed() >= self.spec.restart_max {
                backoff.reset();
            }
            let delay = backoff.next_delay();
            tracing::warn!(
                handler = %self.spec.name,
                "stream handler process ended ({reason}); restarting in {delay:?}"
            );
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.shutdown.cancelled() => break,
            }
            self.shared.restarts.fetch_add(1, Ordering::Relaxed);
        }
        self.shared.fail_all(&StreamOutcome::Cancelled);
        self.queue.close();
        while let Ok(job) = self.queue.try_recv() {
            let _ = job.reply.send(StreamOutcome::Cancelled);
        }
    }

    /// Run one process from start to death.
    async fn session(&mut self) -> SessionEnd {
        let spec = &self.spec;
        let (mut group, pipes) =
            match ProcessGroup::spawn(&spec.command, &spec.working_dir, &spec.env) {
                Ok(spawned) => spawned,
                Err(err) => return self.start_failed(&err.to_string()),
            };
        tracing::info!(handler = %spec.name, pid = group.pgid(), "stream handler process started");
        let reader = tokio::spawn(read_acks(pipes.stdout, self.shared.clone()));
        let logger = tokio::spawn(log_stderr(pipes.stderr, spec.name.clone()));

        let fed = self.feed(pipes.stdin, &mut group).await;
        let (status, end) = match fed {
            Feed::Exited(status) => (status, None),
            Feed::Shutdown => (self.stop(&mut group).await, Some(SessionEnd::Shutdown)),
            Feed::StdinClosed(err) => {
                tracing::warn!(handler = %self.spec.name, "stream handler closed its stdin ({err}); stopping it");
                (self.stop(&mut group).await, None)
            }
        };
        // Acks written just before the end still count.
        child::finish_task(reader, PIPE_DRAIN_LIMIT).await;
        child::finish_task(logger, PIPE_DRAIN_LIMIT).await;

        let reason = match status {
            Ok(status) => child::describe_status(status),
            Err(err) => format!("lost track of the process: {err}"),
        };
        match end {
            Some(end) => {
                self.shared.fail_all(&StreamOutcome::Cancelled);
                end
            }
            None => {
                self.shared
                    .fail_all(&StreamOutcome::ProcessExited(reason.clone()));
                SessionEnd::Died(reason)
            }
        }
    }

    /// The process could not start: fail what is queued now rather than
    /// letting it wait for a process that may never come.
    fn start_failed(&mut self, err: &str) -> SessionEnd {
        let reason = format!("could not start: {err}");
        while let Ok(job) = self.queue.try_recv() {
            let _ = job.reply.send(StreamOutcome::ProcessExited(reason.clone()));
        }
        SessionEnd::Died(reason)
    }

    /// Write queued events to the process until it exits, its stdin breaks
    /// or shutdown begins. Returning drops (closes) stdin.
    async fn feed(&mut self, mut stdin: ChildStdin, group: &mut ProcessGroup) -> Feed {
        loop {
            let job = tokio::select! {
                status = group.wait() => return Feed::Exited(status),
                () = self.shutdown.cancelled() => return Feed::Shutdown,
                job = self.queue.recv() => match job {
                    Some(job) => job,
                    None => return Feed::Shutdown,
                },
            };
            if job.reply.is_closed() {
                continue; // its caller timed out while it was queued
            }
            self.shared.expect(job.id, job.seq, job.reply);
            tokio::select! {
                written = write_line(&mut stdin, &job.line) => {
                    if let Err(err) = written {
                        return Feed::StdinClosed(err);
                    }
                }
                () = self.shutdown.cancelled() => return Feed::Shutdown,
            }
        }
    }

    async fn stop(&self, group: &mut ProcessGroup) -> std::io::Result<std::process::ExitStatus> {
        group.terminate(self.spec.kill_grace).await
    }
}

async fn write_line(stdin: &mut ChildStdin, line: &[u8]) -> std::io::Result<()> {
    stdin.write_all(line).await?;
    stdin.flush().await
}

/// The envelope as one NDJSON line. Raw newlines can only be whitespace
/// between tokens in valid JSON (inside strings they must be escaped), so
/// turning them into spaces keeps the document's meaning.
fn ndjson_line(mut envelope: Vec<u8>) -> Vec<u8> {
    for byte in &mut envelope {
        if *byte == b'\n' || *byte == b'\r' {
            *byte = b' ';
        }
    }
    envelope.push(b'\n');
    envelope
}

/// Read the process's stdout: resolve acks, log and skip everything else.
async fn read_acks(stdout: ChildStdout, shared: Arc<Shared>) {
    let mut lines = CappedLines::new(stdout, MAX_ACK_LINE);
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => handle_stdout_line(&shared, &line.bytes),
            Ok(None) => break,
            Err(err) => {
                tracing::warn!(handler = %shared.name, "reading the stream handler's stdout failed: {err}");
                break;
            }
        }
    }
}

fn handle_stdout_line(shared: &Shared, line: &[u8]) {
    if line.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    match parse_ack(line) {
        Ok((id, outcome)) => {
            if !shared.resolve(id, outcome) {
                tracing::warn!(
                    handler = %shared.name,
                    "ack for event {id}, which is not waiting for one (timed out or answered twice); ignored"
                );
            }
        }
        Err(why) => tracing::warn!(
            handler = %shared.name,
            line = %preview(line, GARBAGE_PREVIEW),
            "ignoring a stdout line that is not an ack: {why}"
        ),
    }
}

/// One ack line as the handler writes it.
#[derive(serde::Deserialize)]
struct AckLine {
    id: AckId,
    ok: bool,
    #[serde(default)]
    error: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum AckId {
    Number(i64),
    Text(String),
}

/// `{"id": 5, "ok": true}` or `{"id": "5", "ok": false, "error": "…"}`.
fn parse_ack(line: &[u8]) -> Result<(i64, StreamOutcome), String> {
    let ack: AckLine = serde_json::from_slice(line).map_err(|err| err.to_string())?;
    let id = match ack.id {
        AckId::Number(id) => id,
        AckId::Text(text) => {
            parse_digits(&text).ok_or_else(|| format!("id {text:?} is not a string of digits"))?
        }
    };
    let outcome = if ack.ok {
        StreamOutcome::Ok
    } else {
        let error = ack
            .error
            .unwrap_or_else(|| "the handler gave no error message".to_owned());
        StreamOutcome::Nack(error)
    };
    Ok((id, outcome))
}

fn parse_digits(text: &str) -> Option<i64> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| text.parse().ok()).flatten()
}

/// Forward the process's stderr to the log, line by line.
async fn log_stderr(stderr: ChildStderr, name: String) {
    let mut lines = CappedLines::new(stderr, MAX_STDERR_LINE);
    while let Ok(Some(line)) = lines.next_line().await {
        let text = String::from_utf8_lossy(&line.bytes);
        let cut = if line.truncated { " […]" } else { "" };
        tracing::info!(handler = %name, "stderr: {text}{cut}");
    }
}

/// The first `max` bytes of `line`, lossily as text, marked if cut.
fn preview(line: &[u8], max: usize) -> String {
    let shown = String::from_utf8_lossy(&line[..line.len().min(max)]).into_owned();
    if line.len() > max {
        shown + "…"
    } else {
        shown
    }
}

/// Exponential restart delays with jitter.
struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.max(MIN_RESTART_DELAY);
        Backoff {
            initial,
            max: max.max(initial),
            failures: 0,
        }
    }

    fn reset(&mut self) {
        self.failures = 0;
    }

    /// `initial · 2^n` capped at `max`, then a random 50–100 % of that, so
    /// several crashing handlers do not restart in lockstep.
    fn next_delay(&mut self) -> Duration {
        let factor = 1u32.checked_shl(self.failures).unwrap_or(u32::MAX);
        let base = self.initial.saturating_mul(factor).min(self.max);
        self.failures = self.failures.saturating_add(1);
        base.mul_f64(0.5 + fastrand::f64() * 0.5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_parse_with_numeric_or_digit_string_ids() {
        assert_eq!(
            parse_ack(br#"{"id": 5, "ok": true}"#),
            Ok((5, StreamOutcome::Ok))
        );
        assert_eq!(
            parse_ack(br#"{"id": "12", "ok": false, "error": "bad"}"#),
            Ok((12, StreamOutcome::Nack("bad".into())))
        );
        let (_, nack) = parse_ack(br#"{"id": 1, "ok": false}"#).unwrap();
        assert_eq!(
            nack,
            StreamOutcome::Nack("the handler gave no error message".into())
        );
    }

    #[test]
    fn malformed_acks_are_rejected_with_a_reason() {
        for bad in [
            &br#"{"id": "1a", "ok": true}"#[..],
            br#"{"id": "", "ok": true}"#,
            br#"{"id": 1.5, "ok": true}"#,
            br#"{"ok": true}"#,
            br#"{"id": 1}"#,
            b"hello",
        ] {
            let got = parse_ack(bad);
            assert!(
                got.is_err(),
                "{:?} parsed as {got:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn spec_debug_hides_environment_values() {
        let spec = StreamSpec {
            name: "h".into(),
            command: vec!["h".into()],
            working_dir: "/".into(),
            env: vec![("API_TOKEN".into(), "s3cret".into())],
            ack_timeout: Duration::from_secs(1),
            max_in_flight: 1,
            restart_initial: Duration::from_secs(1),
            restart_max: Duration::from_secs(1),
            kill_grace: Duration::from_secs(1),
        };
        let shown = format!("{spec:?}");
        assert!(
            shown.contains("API_TOKEN") && !shown.contains("s3cret"),
            "{shown}"
        );
    }

    #[test]
    fn envelopes_become_single_lines() {
        assert_eq!(
            ndjson_line(b"{\n \"a\":\r\n1}".to_vec()),
            b"{  \"a\":  1}\n"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_max_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let bounds = [100, 200, 400, 800, 1000, 1000];
        for base in bounds {
            let d = b.next_delay().as_millis();
            assert!(
                d >= base / 2 && d <= base,
                "{d} not in [{}, {base}]",
                base / 2
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn waiters_resolve_oldest_first_and_can_be_forgotten() {
        let shared = Shared::new("t".into());
        let (tx1, mut rx1) = oneshot::channel();
        let (tx2, mut rx2) = oneshot::channel();
        shared.expect(7, 1, tx1);
        shared.expect(7, 2, tx2);
        shared.forget(7, 1);
        assert!(shared.resolve(7, StreamOutcome::Ok));
        assert!(rx1.try_recv().is_err());
        assert_eq!(rx2.try_recv(), Ok(StreamOutcome::Ok));
        assert!(!shared.resolve(7, StreamOutcome::Ok));
    }
}
