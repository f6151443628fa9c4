//! What one exec attempt is and how it ended: [`ExecSpec`] in,
//! [`RunOutcome`] out, and the sentences an outcome is described with.
//!
//! Owns the data shared by the async wrapper (`exec`) and the blocking
//! supervisor (`supervise`); it runs nothing and must not import either of
//! them, so the two stay a tree: `exec` → `supervise` → `attempt`.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::child;

pub use super::child::Captured;

/// After the handler's group is dead, how long output readers may still run
/// before they are abandoned (only matters when something outside the group
/// inherited the pipes).
pub(super) const PIPE_DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// What to run for one attempt.
#[derive(Clone)]
pub struct ExecSpec {
    /// argv; `argv[0]` without '/' is looked up in the PATH given in `env`.
    pub command: Vec<String>,
    pub working_dir: PathBuf,
    /// The complete environment of the handler; nothing is inherited.
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    /// Time between SIGTERM and SIGKILL when the group has to be stopped.
    pub kill_grace: Duration,
    /// Bytes kept of stdout, and separately of stderr.
    pub output_cap: usize,
}

impl std::fmt::Debug for ExecSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecSpec")
            .field("command", &self.command)
            .field("working_dir", &self.working_dir)
            .field("env", &child::EnvNames(&self.env))
            .field("timeout", &self.timeout)
            .field("kill_grace", &self.kill_grace)
            .field("output_cap", &self.output_cap)
            .finish()
    }
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// The process exited by itself with this code.
    Exited(i32),
    /// The process was killed by this signal (not by us).
    Signaled(i32),
    /// It ran past the timeout and its group was stopped.
    TimedOut,
    /// It could not be started; a person-readable reason.
    SpawnFailed(String),
    /// The cancel token fired (shutdown) and its group was stopped.
    Cancelled,
}

/// The result of one attempt.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    pub kind: ExitKind,
    pub started_at: SystemTime,
    /// From the start until the process was reaped.
    pub duration: Duration,
    pub stdout: Captured,
    pub stderr: Captured,
}

impl RunOutcome {
    /// Exit code 0, and nothing else, is success.
    pub fn succeeded(&self) -> bool {
        self.kind == ExitKind::Exited(0)
    }

    /// "exit 3", "killed by signal 9 (SIGKILL)", "timed out after 30s",
    /// "could not start: …" or "cancelled at shutdown".
    ///
    /// A timeout is reported with the attempt's measured duration, which
    /// includes the time the handler took to die after SIGTERM.
    pub fn describe(&self) -> String {
        match &self.kind {
            ExitKind::Exited(code) => format!("exit {code}"),
            ExitKind::Signaled(signal) => child::describe_signal(*signal),
            ExitKind::TimedOut => format!("timed out after {}", format_duration(self.duration)),
            ExitKind::SpawnFailed(reason) => format!("could not start: {reason}"),
            ExitKind::Cancelled => "cancelled at shutdown".to_owned(),
        }
    }
}

/// The attempt outcome of a process that ended.
pub(super) fn exit_kind(status: std::process::ExitStatus) -> ExitKind {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitKind::Exited(code),
        (None, Some(signal)) => ExitKind::Signaled(signal),
        (None, None) => ExitKind::SpawnFailed(format!("unexpected exit status {status}")),
    }
}

/// "30s", "1.5s", "250ms".
fn format_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    let tenths = (d.as_millis() + 50) / 100;
    match tenths % 10 {
        0 => format!("{}s", tenths / 10),
        frac => format!("{}.{frac}s", tenths / 10),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(kind: ExitKind, duration: Duration) -> RunOutcome {
        RunOutcome {
            kind,
            started_at: SystemTime::UNIX_EPOCH,
            duration,
            stdout: Captured::default(),
            stderr: Captured::default(),
        }
    }

    #[test]
    fn describe_reads_like_a_sentence() {
        let d = Duration::from_millis(30_020);
        let cases = [
            (ExitKind::Exited(3), "exit 3"),
            (ExitKind::Signaled(9), "killed by signal 9 (SIGKILL)"),
            (ExitKind::TimedOut, "timed out after 30s"),
            (
                ExitKind::SpawnFailed("`x`: No such file or directory (os error 2)".into()),
                "could not start: `x`: No such file or directory (os error 2)",
            ),
            (ExitKind::Cancelled, "cancelled at shutdown"),
        ];
        for (kind, want) in cases {
            assert_eq!(outcome(kind, d).describe(), want);
        }
    }

    #[test]
    fn only_exit_zero_succeeds() {
        let d = Duration::ZERO;
        assert!(outcome(ExitKind::Exited(0), d).succeeded());
        assert!(!outcome(ExitKind::Exited(1), d).succeeded());
        assert!(!outcome(ExitKind::Signaled(15), d).succeeded());
        assert!(!outcome(ExitKind::TimedOut, d).succeeded());
    }

    #[test]
    fn durations_are_short_and_readable() {
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_millis(29_990)), "30s");
    }
}
