//! The `exec` runner: one process per event attempt.
//!
//! `run` starts the handler's argv, writes the event envelope to its stdin
//! while capturing stdout and stderr (all three at once, so no pipe can fill
//! up and deadlock), and waits for it under a timeout. It always returns an
//! outcome — a process that could not start, timed out or was cancelled is
//! a failed attempt, not an error — and it never returns while the handler's
//! process group is still alive. The work happens in `supervise`; this file
//! wraps it for async callers; what a run is and how it ended is in
//! `attempt`.

use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::supervise;

pub use super::attempt::{Captured, ExecSpec, ExitKind, RunOutcome};

/// Run one attempt of `spec` with `stdin` as its standard input.
///
/// When `cancel` fires, the handler's group gets SIGTERM, then SIGKILL after
/// `kill_grace`, and the outcome is `Cancelled`. The run itself happens on
/// the blocking pool (see `supervise` for why); should this future be
/// dropped, the run is cancelled the same way.
pub async fn run(spec: &ExecSpec, stdin: Vec<u8>, cancel: CancellationToken) -> RunOutcome {
    let spec = spec.clone();
    let token = cancel.child_token();
    let _cancel_if_dropped = token.clone().drop_guard();
    let started_at = SystemTime::now();
    let supervised = tokio::task::spawn_blocking(move || supervise::run(&spec, stdin, &token));
    match supervised.await {
        Ok(outcome) => outcome,
        Err(err) => RunOutcome {
            kind: ExitKind::SpawnFailed(format!("the thread running the handler failed: {err}")),
            started_at,
            duration: Duration::ZERO,
            stdout: Captured::default(),
            stderr: Captured::default(),
        },
    }
}
