//! One handler process and everything it started, as a unit.
//!
//! Both runners (`exec`, through `supervise`, and `stream`) need the same
//! things: start an argv directly (no shell) with a clean environment in its
//! own process group, stop that whole group (SIGTERM, then SIGKILL after a
//! grace), and keep output within a cap. They live here so the two runners
//! cannot drift apart; `ProcessGroup` is the async form the stream runner
//! uses, `supervise` drives the same command from a blocking thread.
//!
//! The rule for the group: it lives exactly as long as its leader. When the
//! leader has exited, whatever it left running in the group is killed with
//! SIGKILL; otherwise a forgotten background job would hold the output pipes
//! open and the run would never finish.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::time::Instant;

/// How often `terminate` (and `supervise`) looks whether the group is empty
/// during the grace.
pub(super) const GROUP_POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Why a handler process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("the command is empty")]
    EmptyCommand,
    #[error("working directory {dir} is not usable: {source}")]
    WorkingDir { dir: PathBuf, source: io::Error },
    #[error(
        "`{program}` contains no '/' and the handler's environment has no PATH to look it up in"
    )]
    NoPath { program: String },
    #[error("`{program}` was not found as an executable file in PATH={path}")]
    NotInPath { program: String, path: String },
    #[error("`{program}`: {source}")]
    Exec { program: String, source: io::Error },
}

/// Shows only the names of an environment: handler environments carry
/// secrets, and specs end up in `{:?}` log lines.
pub struct EnvNames<'a>(pub &'a [(String, String)]);

impl std::fmt::Debug for EnvNames<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, _)| name))
            .finish()
    }
}

/// The three pipes of a freshly spawned handler.
pub struct Pipes {
    pub stdin: ChildStdin,
    pub stdout: ChildStdout,
    pub stderr: ChildStderr,
}

/// A running handler: the leader process and the group it leads.
///
/// Dropping it before the leader was reaped kills the whole group with
/// SIGKILL; tokio then reaps the leader in the background, so an abandoned
/// run leaves neither processes nor zombies behind.
pub struct ProcessGroup {
    child: Child,
    pgid: libc::pid_t,
    reaped: bool,
}

impl ProcessGroup {
    /// Start `argv` in `working_dir` with exactly `env`, as the leader of a
    /// new process group, with stdin, stdout and stderr piped.
    pub fn spawn(
        argv: &[String],
        working_dir: &Path,
        env: &[(String, String)],
    ) -> Result<(ProcessGroup, Pipes), SpawnError> {
        let mut child = Command::from(command(argv, working_dir, env)?)
            .spawn()
            .map_err(spawn_failed(argv, working_dir))?;
        let pipes = take_pipes(&mut child);
        let pgid = child.id().map_or(0, |pid| pid as libc::pid_t);
        let group = ProcessGroup {
            child,
            pgid,
            reaped: false,
        };
        Ok((group, pipes?))
    }

    /// The process group id (the leader's pid).
    pub fn pgid(&self) -> libc::pid_t {
        self.pgid
    }

    /// Send `signal` to every process of the group; a group that is already
    /// gone is not an error.
    pub fn signal(&self, signal: libc::c_int) {
        signal_group(self.pgid, signal);
    }

    /// Wait for the leader to exit and reap it, then kill what it left in
    /// the group. Cancel-safe: it can be raced in `select!` and called again.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        let status = self.child.wait().await?;
        self.sweep();
        Ok(status)
    }

    /// Stop the group: SIGTERM to all of it, then SIGKILL to all of it once
    /// `grace` has passed (earlier if the whole group is already gone).
    /// Returns the leader's exit status once it is reaped.
    pub async fn terminate(&mut self, grace: Duration) -> io::Result<ExitStatus> {
        if self.reaped {
            return self.child.wait().await;
        }
        let deadline = Instant::now() + grace;
        self.signal(libc::SIGTERM);
        if let Ok(status) = tokio::time::timeout_at(deadline, self.child.wait()).await {
            status?;
            self.reaped = true;
            wait_group_empty(self.pgid, deadline).await;
        }
        self.signal(libc::SIGKILL);
        let status = self.child.wait().await?;
        self.reaped = true;
        Ok(status)
    }

    /// After the leader was reaped: kill the rest of the group, once.
    fn sweep(&mut self) {
        if !self.reaped {
            self.reaped = true;
            self.signal(libc::SIGKILL);
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if !self.reaped {
            self.signal(libc::SIGKILL);
        }
    }
}

/// The command that runs `argv` in `working_dir` with exactly `env`, as the
/// leader of a new process group, with stdin, stdout and stderr piped. The
/// program is resolved first (see [`resolve_program`]); the directory is
/// looked at only when the spawn fails (see [`spawn_failed`]), not on every
/// run.
///
/// Keep this command on std's `posix_spawn` path. With glibc ≥ 2.29 std
/// spawns it with `posix_spawn`, which clones with `CLONE_VM|CLONE_VFORK`
/// (as Go's `os/exec` does): the child borrows the daemon's memory until it
/// calls `execve`. std falls back to `fork` when a `pre_exec` closure,
/// uid/gid/groups or chroot is set, or when the environment has a PATH and
/// the program has no '/' (so [`resolve_program`] always returns a path
/// with one). `fork` copies the page tables of the whole daemon for every
/// run: measured on a 2-core VM, a process with 200 MiB touched spent
/// 1,940 µs of its own and 3,250 µs of the child's CPU per `/bin/true`
/// through `fork`, against 80 and 890 µs through this command (see
/// docs/performance-exec.md).
pub(super) fn command(
    argv: &[String],
    working_dir: &Path,
    env: &[(String, String)],
) -> Result<std::process::Command, SpawnError> {
    let (program, args) = argv.split_first().ok_or(SpawnError::EmptyCommand)?;
    let resolved = resolve_program(program, working_dir, env)
        .map_err(|e| check_working_dir(working_dir).err().unwrap_or(e))?;
    let mut cmd = std::process::Command::new(resolved);
    cmd.arg0(program)
        .args(args)
        .current_dir(working_dir)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    Ok(cmd)
}

/// Turns the error of spawning [`command`]`(argv, working_dir, …)` into
/// one naming the culprit: the working directory when it is missing or not
/// a directory, else the program.
pub(super) fn spawn_failed<'a>(
    argv: &'a [String],
    working_dir: &'a Path,
) -> impl FnOnce(io::Error) -> SpawnError + 'a {
    move |source| match check_working_dir(working_dir) {
        Err(bad_dir) => bad_dir,
        Ok(()) => SpawnError::Exec {
            program: argv.first().cloned().unwrap_or_default(),
            source,
        },
    }
}

/// `killpg`, ignoring "no such process group". Never signals group 0 or 1
/// (which would mean our own group or init's).
pub(super) fn signal_group(pgid: libc::pid_t, signal: libc::c_int) {
    if pgid <= 1 {
        return;
    }
    // SAFETY: killpg has no memory-safety preconditions.
    let rc = unsafe { libc::killpg(pgid, signal) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ESRCH) {
            tracing::warn!(
                pgid,
                signal,
                "could not signal the handler's process group: {err}"
            );
        }
    }
}

/// Whether any process (zombies included) is still in group `pgid`.
pub(super) fn group_alive(pgid: libc::pid_t) -> bool {
    // SAFETY: killpg with signal 0 only checks for existence.
    pgid > 1 && unsafe { libc::killpg(pgid, 0) } == 0
}

async fn wait_group_empty(pgid: libc::pid_t, deadline: Instant) {
    while group_alive(pgid) && Instant::now() < deadline {
        tokio::time::sleep(GROUP_POLL_INTERVAL.min(deadline - Instant::now())).await;
    }
}

fn take_pipes(child: &mut Child) -> Result<Pipes, SpawnError> {
    match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
        (Some(stdin), Some(stdout), Some(stderr)) => Ok(Pipes {
            stdin,
            stdout,
            stderr,
        }),
        _ => Err(SpawnError::Exec {
            program: "<handler>".into(),
            source: io::Error::other("the child's pipes were not set up"),
        }),
    }
}

pub(super) fn check_working_dir(dir: &Path) -> Result<(), SpawnError> {
    let not_dir = || io::Error::new(io::ErrorKind::NotADirectory, "not a directory");
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(SpawnError::WorkingDir {
            dir: dir.to_path_buf(),
            source: not_dir(),
        }),
        Err(source) => Err(SpawnError::WorkingDir {
            dir: dir.to_path_buf(),
            source,
        }),
    }
}

/// Find the file to execute: a program containing '/' is taken as is
/// (relative to `working_dir`), anything else is looked up in the PATH of
/// the handler's own environment, never in the daemon's.
pub fn resolve_program(
    program: &str,
    working_dir: &Path,
    env: &[(String, String)],
) -> Result<PathBuf, SpawnError> {
    if program.contains('/') {
        return Ok(working_dir.join(program));
    }
    let path = env
        .iter()
        .rev()
        .find(|(key, _)| key == "PATH")
        .map(|(_, value)| value.as_str())
        .ok_or_else(|| SpawnError::NoPath {
            program: program.to_owned(),
        })?;
    path.split(':')
        .map(|dir| working_dir.join(if dir.is_empty() { "." } else { dir }))
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable_file(candidate))
        .ok_or_else(|| SpawnError::NotInPath {
            program: program.to_owned(),
            path: path.to_owned(),
        })
}

fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// A person's description of how a process ended: "exit 3" or
/// "killed by signal 9 (SIGKILL)".
pub fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(signal)) => describe_signal(signal),
        (None, None) => format!("ended with status {status}"),
    }
}

/// "killed by signal 15 (SIGTERM)".
pub fn describe_signal(signal: i32) -> String {
    match signal_name(signal) {
        Some(name) => format!("killed by signal {signal} ({name})"),
        None => format!("killed by signal {signal}"),
    }
}

/// The conventional name of a signal number, for the common ones.
pub fn signal_name(signal: i32) -> Option<&'static str> {
    let name = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => return None,
    };
    Some(name)
}

/// Output of one stream, kept up to a cap.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Captured {
    /// The first `cap` bytes (all of them when not truncated).
    pub bytes: Vec<u8>,
    /// More than `cap` bytes were written; the rest was read and discarded.
    pub truncated: bool,
    /// How many bytes the process wrote in total.
    pub total_len: u64,
}

impl Captured {
    pub(super) fn push(&mut self, chunk: &[u8], cap: usize) {
        let room = cap.saturating_sub(self.bytes.len());
        let keep = room.min(chunk.len());
        self.bytes.extend_from_slice(&chunk[..keep]);
        self.truncated |= keep < chunk.len();
        self.total_len += chunk.len() as u64;
    }
}

/// One line of output, cut at a maximum length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// The line without its '\n', at most the maximum length.
    pub bytes: Vec<u8>,
    /// The line was longer; the rest up to the newline was discarded.
    pub truncated: bool,
}

/// Splits a byte stream into lines without ever holding more than `max`
/// bytes of one line, so a process printing an endless line cannot make the
/// daemon's memory grow.
pub struct CappedLines<R> {
    reader: BufReader<R>,
    max: usize,
}

impl<R: AsyncRead + Unpin> CappedLines<R> {
    pub fn new(reader: R, max: usize) -> Self {
        CappedLines {
            reader: BufReader::new(reader),
            max,
        }
    }

    /// The next line, or `None` at the end of the stream. A last line
    /// without a newline is still returned.
    pub async fn next_line(&mut self) -> io::Result<Option<Line>> {
        let mut line = Line {
            bytes: Vec::new(),
            truncated: false,
        };
        let mut seen_any = false;
        loop {
            let buf = self.reader.fill_buf().await?;
            if buf.is_empty() {
                return Ok(seen_any.then_some(line));
            }
            seen_any = true;
            let newline = buf.iter().position(|&b| b == b'\n');
            let content = &buf[..newline.unwrap_or(buf.len())];
            let room = self.max.saturating_sub(line.bytes.len());
            let keep = room.min(content.len());
            line.bytes.extend_from_slice(&content[..keep]);
            line.truncated |= keep < content.len();
            let used = newline.map_or(buf.len(), |i| i + 1);
            self.reader.consume(used);
            if newline.is_some() {
                return Ok(Some(line));
            }
        }
    }
}

/// Wait for a helper task (an output reader) to finish by itself for at most
/// `limit`, then abort it. Used after the group is dead: the pipes normally
/// reach end-of-file at once, unless something outside the group kept them.
pub async fn finish_task<T>(task: tokio::task::JoinHandle<T>, limit: Duration) -> Option<T> {
    let abort = task.abort_handle();
    match tokio::time::timeout(limit, task).await {
        Ok(joined) => joined.ok(),
        Err(_) => {
            abort.abort();
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_with_path(path: &str) -> Vec<(String, String)> {
        vec![("PATH".into(), path.into())]
    }

    #[test]
    fn captured_keeps_the_cap_and_counts_everything() {
        let mut c = Captured::default();
        c.push(b"hello", 8);
        c.push(b"world", 8);
        c.push(b"!", 8);
        assert_eq!(c.bytes, b"hellowor");
        assert!(c.truncated);
        assert_eq!(c.total_len, 11);
    }

    #[test]
    fn captured_exactly_at_the_cap_is_not_truncated() {
        let mut c = Captured::default();
        c.push(b"1234", 4);
        assert_eq!(c.bytes, b"1234");
        assert!(!c.truncated);
    }

    #[test]
    fn program_with_slash_is_taken_relative_to_working_dir() {
        let got = resolve_program("./run.sh", Path::new("/srv/h"), &[]).unwrap();
        assert_eq!(got, Path::new("/srv/h/./run.sh"));
        let got = resolve_program("/bin/true", Path::new("/srv/h"), &[]).unwrap();
        assert_eq!(got, Path::new("/bin/true"));
    }

    #[test]
    fn program_is_looked_up_in_the_given_path_only() {
        let got = resolve_program("sh", Path::new("/"), &env_with_path("/nonexistent:/bin"));
        assert_eq!(got.unwrap(), Path::new("/bin/sh"));
        let err =
            resolve_program("sh", Path::new("/"), &env_with_path("/nonexistent")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`sh` was not found as an executable file in PATH=/nonexistent"
        );
        let err = resolve_program("sh", Path::new("/"), &[]).unwrap_err();
        assert!(err.to_string().contains("no PATH"), "{err}");
    }

    /// A program without '/' would make std fork instead of posix_spawn
    /// (see `command`), so every resolved program has one.
    #[test]
    fn resolved_programs_always_contain_a_slash() {
        let bin = env_with_path(":bin:/nonexistent:/bin");
        for (program, dir, env) in [
            ("sh", "/", &bin),
            ("sh", ".", &env_with_path("/bin")),
            ("./x", ".", &bin),
            ("/bin/true", "relative/dir", &bin),
        ] {
            let got = resolve_program(program, Path::new(dir), env).unwrap();
            let text = got.to_str().unwrap();
            assert!(text.contains('/'), "{program} in {dir} resolved to {text}");
        }
    }

    #[test]
    fn signals_have_names() {
        assert_eq!(describe_signal(9), "killed by signal 9 (SIGKILL)");
        assert_eq!(describe_signal(15), "killed by signal 15 (SIGTERM)");
        assert_eq!(describe_signal(64), "killed by signal 64");
    }

    #[tokio::test]
    async fn capped_lines_cut_long_lines_and_keep_the_last_one() {
        let input: &[u8] = b"short\nthis line is long\n\nlast";
        let mut lines = CappedLines::new(input, 6);
        let mut got = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            got.push((String::from_utf8(line.bytes).unwrap(), line.truncated));
        }
        let want = [
            ("short", false),
            ("this l", true),
            ("", false),
            ("last", false),
        ];
        let want: Vec<_> = want.iter().map(|(s, t)| (s.to_string(), *t)).collect();
        assert_eq!(got, want);
    }
}
