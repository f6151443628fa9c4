//! One exec run, supervised from a blocking thread with `poll(2)`.
//!
//! Spawning a handler is most of what exec dispatch costs, and the daemon
//! shares the machine with its handlers: every microsecond spent here is
//! taken from the runs. Driving a run through the async reactor cost about
//! 115 µs of CPU per run (non-blocking mode set on three pipes, a pidfd,
//! eight epoll registrations and their wake-ups); the same work done by one
//! thread that blocks in `poll` on the two output pipes costs about 70 µs.
//! So exec slots call [`run`] on a thread of their own (`exec::run` wraps it
//! for async callers), and this file does the rest: spawn, feed stdin,
//! capture stdout and stderr (always both at once, so no pipe fills up and
//! deadlocks), wait, and stop the group on timeout or cancellation. A pidfd
//! is opened only for a leader that closed its outputs and lives on.
//!
//! The group rule is the one of `child`: the group lives as long as its
//! leader; what the leader leaves behind is killed with SIGKILL.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, ExitStatus};
use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;

use super::attempt::{self, ExecSpec, ExitKind, PIPE_DRAIN_LIMIT, RunOutcome};
use super::child::{self, Captured, SpawnError};

/// How often a waiting run looks at its cancel token.
const CANCEL_CHECK: Duration = Duration::from_millis(100);
/// How often the group is checked for leftovers during the grace, and the
/// leader for its exit where the kernel has no pidfd.
const GROUP_POLL: Duration = child::GROUP_POLL_INTERVAL;
/// Input up to this size is written at once: a pipe always has room for it.
const PIPE_BUF: usize = libc::PIPE_BUF;
/// Bytes read per `read` call.
const CHUNK: usize = 16 << 10;

/// Runs one attempt of `spec`, blocking the calling thread until the
/// handler's group is gone.
pub fn run(spec: &ExecSpec, stdin: Vec<u8>, cancel: &CancellationToken) -> RunOutcome {
    let started_at = SystemTime::now();
    let clock = Instant::now();
    let outcome = |kind, duration, stdout, stderr| RunOutcome {
        kind,
        started_at,
        duration,
        stdout,
        stderr,
    };
    if cancel.is_cancelled() {
        let none = Captured::default;
        return outcome(ExitKind::Cancelled, clock.elapsed(), none(), none());
    }
    let mut run = match Run::spawn(spec, stdin) {
        Ok(run) => run,
        Err(err) => {
            let none = Captured::default;
            return outcome(
                ExitKind::SpawnFailed(err.to_string()),
                clock.elapsed(),
                none(),
                none(),
            );
        }
    };
    let (kind, reaped_after) = run.supervise(spec, cancel, clock);
    run.drain();
    let [stdout, stderr] = std::mem::take(&mut run.captured);
    outcome(kind, reaped_after, stdout, stderr)
}

/// A spawned handler with its pipes.
struct Run {
    child: Child,
    pgid: libc::pid_t,
    /// Opened only when needed (see `leader_done`).
    pidfd: Option<OwnedFd>,
    /// The last `poll` saw the pidfd readable.
    leader_ready: bool,
    stdin: Option<ChildStdin>,
    input: Vec<u8>,
    fed: usize,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    captured: [Captured; 2],
    cap: usize,
    /// The leader's end, once reaped (an error only if something else reaped it).
    status: Option<Result<ExitStatus, String>>,
}

/// The decision to stop the group: why, and when SIGKILL follows SIGTERM.
struct Stop {
    why: ExitKind,
    kill_at: Instant,
    killed: bool,
}

impl Run {
    fn spawn(spec: &ExecSpec, input: Vec<u8>) -> Result<Run, SpawnError> {
        let mut child = child::command(&spec.command, &spec.working_dir, &spec.env)?
            .spawn()
            .map_err(child::spawn_failed(&spec.command, &spec.working_dir))?;
        let pgid = child.id() as libc::pid_t;
        let mut run = Run {
            pidfd: None,
            leader_ready: false,
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            child,
            pgid,
            input,
            fed: 0,
            captured: Default::default(),
            cap: spec.output_cap,
            status: None,
        };
        run.start_feeding();
        Ok(run)
    }

    /// Writes small input at once (a pipe always holds `PIPE_BUF` bytes);
    /// larger input is fed as the handler reads it, non-blocking.
    fn start_feeding(&mut self) {
        if self.input.len() <= PIPE_BUF {
            if let Some(mut stdin) = self.stdin.take() {
                write_ignoring_epipe(&mut stdin, &self.input);
            }
            self.fed = self.input.len();
        } else if let Some(stdin) = &self.stdin
            && set_nonblocking(stdin.as_fd()).is_err()
        {
            // Blocking writes could deadlock against a full stdout; give up on input.
            self.stdin = None;
        }
    }

    /// Waits for the leader, enforcing the timeout and the cancel token.
    /// Returns how the run ended and the time until the leader was reaped.
    fn supervise(
        &mut self,
        spec: &ExecSpec,
        cancel: &CancellationToken,
        clock: Instant,
    ) -> (ExitKind, Duration) {
        let deadline = clock + spec.timeout;
        let mut stop: Option<Stop> = None;
        loop {
            let now = Instant::now();
            if stop.is_none() {
                let why = if now >= deadline {
                    Some(ExitKind::TimedOut)
                } else if cancel.is_cancelled() {
                    Some(ExitKind::Cancelled)
                } else {
                    None
                };
                if let Some(why) = why {
                    child::signal_group(self.pgid, libc::SIGTERM);
                    let kill_at = now + spec.kill_grace;
                    stop = Some(Stop {
                        why,
                        kill_at,
                        killed: false,
                    });
                }
            }
            if let Some(s) = &mut stop
                && !s.killed
                && now >= s.kill_at
            {
                child::signal_group(self.pgid, libc::SIGKILL);
                s.killed = true;
            }
            let wake = match &stop {
                None => deadline.min(now + CANCEL_CHECK),
                Some(s) if !s.killed => s.kill_at,
                Some(_) => now + GROUP_POLL,
            };
            let progressed = self.wait_some(wake);
            if self.leader_done(progressed) {
                let reaped_after = clock.elapsed();
                let Some(s) = stop else {
                    child::signal_group(self.pgid, libc::SIGKILL);
                    return (self.exit_kind(), reaped_after);
                };
                self.let_group_go(s.kill_at);
                return (s.why, reaped_after);
            }
        }
    }

    /// How the leader ended, as an attempt outcome.
    fn exit_kind(&self) -> ExitKind {
        match &self.status {
            Some(Ok(status)) => attempt::exit_kind(*status),
            Some(Err(err)) => {
                ExitKind::SpawnFailed(format!("lost track of the handler process: {err}"))
            }
            None => ExitKind::SpawnFailed("the handler was never reaped".into()),
        }
    }

    /// After a stopped leader: the rest of the group has until `kill_at`.
    fn let_group_go(&mut self, kill_at: Instant) {
        while child::group_alive(self.pgid) && Instant::now() < kill_at {
            self.wait_some(Instant::now() + GROUP_POLL);
        }
        child::signal_group(self.pgid, libc::SIGKILL);
    }

    /// Reads what the pipes hold once the group is gone, for a bounded time
    /// (only something outside the group can still hold them open).
    fn drain(&mut self) {
        let until = Instant::now() + PIPE_DRAIN_LIMIT;
        self.stdin = None;
        while (self.stdout.is_some() || self.stderr.is_some()) && Instant::now() < until {
            self.wait_some(until);
        }
        if self.stdout.is_some() || self.stderr.is_some() {
            tracing::warn!(
                "handler output pipes still open {PIPE_DRAIN_LIMIT:?} after its process group \
                 ended; something outside the group kept them; output may be incomplete"
            );
        }
    }

    /// Whether the leader has ended, looked at only when it may have: a
    /// quiet `poll`, closed outputs or a readable pidfd. The pidfd is opened
    /// only for a leader that closed its outputs and lives on; until then a
    /// leader whose group still holds the pipes is seen at the next quiet
    /// `poll` (at most `CANCEL_CHECK`).
    fn leader_done(&mut self, progressed: bool) -> bool {
        let outputs_closed = self.stdout.is_none() && self.stderr.is_none();
        if progressed && !outputs_closed && !self.leader_ready {
            return false;
        }
        if self.reap() {
            return true;
        }
        if outputs_closed {
            // The pipes close a moment before the exit is reapable.
            for _ in 0..3 {
                std::thread::yield_now();
                if self.reap() {
                    return true;
                }
            }
            if self.pidfd.is_none() {
                self.pidfd = pidfd_open(self.pgid);
            }
        }
        false
    }

    /// Whether the leader has been reaped (now or before).
    fn reap(&mut self) -> bool {
        if self.status.is_none() {
            match self.child.try_wait() {
                Ok(status) => self.status = status.map(Ok),
                // Only if something else reaped our child.
                Err(err) => self.status = Some(Err(err.to_string())),
            }
        }
        self.status.is_some()
    }

    /// One `poll` on everything open, until something happens or `until`;
    /// then moves the data that is ready. False when nothing happened.
    fn wait_some(&mut self, until: Instant) -> bool {
        let feeding = self.fed < self.input.len();
        let mut fds = Vec::with_capacity(4);
        let mut push = |fd: Option<BorrowedFd<'_>>, events| {
            if let Some(fd) = fd {
                fds.push(libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events,
                    revents: 0,
                });
            }
        };
        push(self.stdout.as_ref().map(AsFd::as_fd), libc::POLLIN);
        push(self.stderr.as_ref().map(AsFd::as_fd), libc::POLLIN);
        let watch_leader = self.status.is_none();
        push(
            self.pidfd
                .as_ref()
                .filter(|_| watch_leader)
                .map(AsFd::as_fd),
            libc::POLLIN,
        );
        push(
            self.stdin.as_ref().filter(|_| feeding).map(AsFd::as_fd),
            libc::POLLOUT,
        );
        let mut left = until.saturating_duration_since(Instant::now());
        let outputs_closed = self.stdout.is_none() && self.stderr.is_none();
        if watch_leader && self.pidfd.is_none() && outputs_closed {
            // No pidfd (kernel before 5.3): look at the leader now and then.
            left = left.min(GROUP_POLL);
        }
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: `fds` is a valid array of pollfd of the given length.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        self.leader_ready = false;
        if ready <= 0 {
            return false;
        }
        let ready = |fd: i32| {
            fds.iter()
                .find(|p| p.fd == fd)
                .is_some_and(|p| p.revents != 0)
        };
        let (out_fd, err_fd) = (raw(&self.stdout), raw(&self.stderr));
        let in_fd = raw(&self.stdin);
        self.leader_ready = watch_leader && ready(raw(&self.pidfd));
        if ready(out_fd) {
            read_into(&mut self.stdout, &mut self.captured[0], self.cap);
        }
        if ready(err_fd) {
            read_into(&mut self.stderr, &mut self.captured[1], self.cap);
        }
        if feeding && ready(in_fd) {
            self.feed();
        }
        true
    }

    fn feed(&mut self) {
        let Some(stdin) = &mut self.stdin else {
            return;
        };
        let rest = &self.input[self.fed..];
        match stdin.write(rest) {
            Ok(n) => self.fed += n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => {
                stdin_failed(&err);
                self.fed = self.input.len();
            }
        }
        if self.fed == self.input.len() {
            // Closing stdin is how the handler learns the envelope is complete.
            self.stdin = None;
        }
    }
}

impl Drop for Run {
    /// A run abandoned before its leader was reaped (a panic) takes its
    /// group down and leaves no zombie.
    fn drop(&mut self) {
        if self.status.is_none() {
            child::signal_group(self.pgid, libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// Reads once from `pipe`; at end-of-file (or an error) closes it.
fn read_into<R: Read>(pipe: &mut Option<R>, into: &mut Captured, cap: usize) {
    let Some(reader) = pipe else {
        return;
    };
    let mut buf = [0u8; CHUNK];
    match reader.read(&mut buf) {
        Ok(0) => *pipe = None,
        Ok(n) => into.push(&buf[..n], cap),
        Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
        Err(err) => {
            tracing::debug!("reading handler output failed: {err}");
            *pipe = None;
        }
    }
}

fn raw<T: AsRawFd>(fd: &Option<T>) -> i32 {
    fd.as_ref().map_or(-1, AsRawFd::as_raw_fd)
}

fn write_ignoring_epipe(stdin: &mut ChildStdin, data: &[u8]) {
    if let Err(err) = stdin.write_all(data) {
        stdin_failed(&err);
    }
}

/// A handler that exits without reading its envelope is fine: EPIPE is not
/// an error here, the exit status tells the story.
fn stdin_failed(err: &io::Error) {
    if err.kind() != io::ErrorKind::BrokenPipe {
        tracing::debug!("writing the envelope to the handler's stdin failed: {err}");
    }
}

fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_SETFL on an open descriptor; only O_NONBLOCK changes.
    let rc = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A pidfd for `pid` (readable once it exits), or `None` on kernels
/// without `pidfd_open` (before 5.3): then the leader is polled.
fn pidfd_open(pid: libc::pid_t) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a non-negative result is a descriptor we now own.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
