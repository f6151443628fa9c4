//! The `exec` runner against real processes: exit codes, signals, a clean
//! environment, big stdin and output, timeouts and cancellation that kill
//! the whole process group.

mod dispatch_support;

use std::path::Path;
use std::time::{Duration, Instant};

use dispatch_support::{assert_dies, clean_env, read_pid, sh, wait_for_file, write_script};
use hookd::dispatch::exec::{ExecSpec, ExitKind, run};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

const MIB: usize = 1024 * 1024;

fn spec(dir: &Path, command: Vec<String>) -> ExecSpec {
    ExecSpec {
        command,
        working_dir: dir.to_path_buf(),
        env: clean_env(),
        timeout: Duration::from_secs(20),
        kill_grace: Duration::from_secs(2),
        output_cap: 64 * 1024,
    }
}

fn sh_spec(dir: &TempDir, body: &str) -> ExecSpec {
    let script = write_script(dir.path(), "handler.sh", body);
    spec(dir.path(), sh(&script))
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// Bytes that are not all alike, so a shifted or reordered copy is caught.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[tokio::test]
async fn exit_zero_succeeds() {
    let dir = TempDir::new().unwrap();
    let out = run(
        &sh_spec(&dir, "echo hi; echo oops >&2"),
        vec![],
        CancellationToken::new(),
    )
    .await;
    assert_eq!(out.kind, ExitKind::Exited(0));
    assert!(out.succeeded());
    assert_eq!(out.stdout.bytes, b"hi\n");
    assert_eq!(out.stderr.bytes, b"oops\n");
    assert!(!out.stdout.truncated);
    assert_eq!(out.stdout.total_len, 3);
}

#[tokio::test]
async fn exit_code_is_reported() {
    let dir = TempDir::new().unwrap();
    let out = run(&sh_spec(&dir, "exit 3"), vec![], CancellationToken::new()).await;
    assert_eq!(out.kind, ExitKind::Exited(3));
    assert!(!out.succeeded());
    assert_eq!(out.describe(), "exit 3");
}

#[tokio::test]
async fn death_by_signal_is_reported() {
    let dir = TempDir::new().unwrap();
    let out = run(
        &sh_spec(&dir, "kill -USR1 $$"),
        vec![],
        CancellationToken::new(),
    )
    .await;
    assert_eq!(out.kind, ExitKind::Signaled(libc::SIGUSR1));
    assert_eq!(out.describe(), "killed by signal 10 (SIGUSR1)");
    assert!(!out.succeeded());
}

#[tokio::test]
async fn missing_program_is_a_readable_spawn_failure() {
    let dir = TempDir::new().unwrap();
    let cases = [
        (
            argv(&["/nonexistent/handler"]),
            "could not start: `/nonexistent/handler`: No such file or directory (os error 2)",
        ),
        (
            argv(&["no-such-handler-xyz", "arg"]),
            "could not start: `no-such-handler-xyz` was not found as an executable file in \
             PATH=/usr/bin:/bin",
        ),
        (vec![], "could not start: the command is empty"),
    ];
    for (command, want) in cases {
        let out = run(&spec(dir.path(), command), vec![], CancellationToken::new()).await;
        assert!(
            matches!(out.kind, ExitKind::SpawnFailed(_)),
            "{:?}",
            out.kind
        );
        assert_eq!(out.describe(), want);
    }
}

/// The directory is looked at only when the spawn fails; the failure
/// still names it, whether the program is looked up in PATH or given as a
/// path, and whether the directory is missing or a file.
#[tokio::test]
async fn missing_working_dir_is_a_readable_spawn_failure() {
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("file"), "").unwrap();
    let cases = [
        ("gone", "true", "No such file or directory (os error 2)"),
        (
            "gone",
            "/bin/true",
            "No such file or directory (os error 2)",
        ),
        ("file", "true", "not a directory"),
        ("file", "/bin/true", "not a directory"),
    ];
    for (working_dir, program, why) in cases {
        let mut spec = spec(dir.path(), argv(&[program]));
        spec.working_dir = dir.path().join(working_dir);
        let out = run(&spec, vec![], CancellationToken::new()).await;
        let want = format!(
            "could not start: working directory {} is not usable: {why}",
            spec.working_dir.display()
        );
        assert_eq!(out.describe(), want, "{program} in {working_dir}");
    }
}

#[tokio::test]
async fn program_is_found_through_the_handlers_own_path() {
    let dir = TempDir::new().unwrap();
    let mut spec = spec(dir.path(), argv(&["sh", "-c", "exit 0"]));
    spec.env = vec![("PATH".into(), "/nonexistent".into())];
    let out = run(&spec, vec![], CancellationToken::new()).await;
    assert!(
        matches!(out.kind, ExitKind::SpawnFailed(_)),
        "{:?}",
        out.kind
    );
    spec.env = vec![("PATH".into(), "/nonexistent:/bin".into())];
    let out = run(&spec, vec![], CancellationToken::new()).await;
    assert_eq!(out.kind, ExitKind::Exited(0));
}

#[tokio::test]
async fn handler_sees_exactly_the_given_environment() {
    let dir = TempDir::new().unwrap();
    let mut spec = spec(dir.path(), argv(&["env"]));
    spec.env.push(("WITH_SPACE".into(), "a b=c".into()));
    let out = run(&spec, vec![], CancellationToken::new()).await;
    assert_eq!(out.kind, ExitKind::Exited(0));
    let mut got: Vec<String> = String::from_utf8(out.stdout.bytes)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let mut want: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    // Meaningful only if the test process has variables of its own to leak.
    assert!(std::env::vars().any(|(k, v)| !want.contains(&format!("{k}={v}"))));
}

#[tokio::test]
async fn handler_runs_in_the_working_dir() {
    let dir = TempDir::new().unwrap();
    let out = run(
        &spec(dir.path(), argv(&["pwd", "-P"])),
        vec![],
        CancellationToken::new(),
    )
    .await;
    let want = dir.path().canonicalize().unwrap();
    assert_eq!(
        String::from_utf8(out.stdout.bytes).unwrap().trim_end(),
        want.to_str().unwrap()
    );
}

#[tokio::test]
async fn big_stdin_arrives_intact() {
    let dir = TempDir::new().unwrap();
    let input = pattern(MIB + 17);
    let mut spec = spec(dir.path(), argv(&["cat"]));
    spec.output_cap = 2 * MIB;
    let out = run(&spec, input.clone(), CancellationToken::new()).await;
    assert_eq!(out.kind, ExitKind::Exited(0));
    assert!(!out.stdout.truncated);
    assert_eq!(out.stdout.total_len, input.len() as u64);
    assert!(out.stdout.bytes == input, "echoed stdin differs");
}

#[tokio::test]
async fn big_stdin_echo_is_capped() {
    let dir = TempDir::new().unwrap();
    let input = pattern(MIB);
    let out = run(
        &spec(dir.path(), argv(&["cat"])),
        input.clone(),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(out.kind, ExitKind::Exited(0));
    assert!(out.stdout.truncated);
    assert_eq!(out.stdout.total_len, MIB as u64);
    assert!(
        out.stdout.bytes == input[..64 * 1024],
        "kept prefix differs"
    );
}

#[tokio::test]
async fn handler_that_ignores_stdin_is_not_an_error() {
    let dir = TempDir::new().unwrap();
    let out = run(
        &sh_spec(&dir, "exit 0"),
        pattern(4 * MIB),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(out.kind, ExitKind::Exited(0));
}

#[tokio::test]
async fn ten_mib_on_both_streams_without_reading_stdin() {
    let dir = TempDir::new().unwrap();
    let body = "head -c 10485760 /dev/zero >&2 &\nhead -c 10485760 /dev/zero\nwait\n";
    let out = run(&sh_spec(&dir, body), pattern(MIB), CancellationToken::new()).await;
    assert_eq!(out.kind, ExitKind::Exited(0));
    for captured in [&out.stdout, &out.stderr] {
        assert_eq!(captured.bytes.len(), 64 * 1024);
        assert!(captured.truncated);
        assert_eq!(captured.total_len, 10 * MIB as u64);
    }
}

#[tokio::test]
async fn timeout_kills_the_whole_group() {
    let dir = TempDir::new().unwrap();
    let mut spec = sh_spec(&dir, "sleep 1000 &\necho $! > grandchild.pid\nwait\n");
    spec.timeout = Duration::from_millis(500);
    spec.kill_grace = Duration::from_secs(2);
    let started = Instant::now();
    let out = run(&spec, vec![], CancellationToken::new()).await;
    assert_eq!(out.kind, ExitKind::TimedOut);
    assert!(started.elapsed() < spec.timeout + spec.kill_grace + Duration::from_secs(1));
    assert!(
        out.describe().starts_with("timed out after "),
        "{}",
        out.describe()
    );
    let grandchild = read_pid(&dir.path().join("grandchild.pid")).await;
    assert_dies(grandchild).await;
}

#[tokio::test]
async fn sigterm_ignored_means_sigkill_after_the_grace() {
    let dir = TempDir::new().unwrap();
    let body = "trap '' TERM\necho $$ > leader.pid\nsleep 1000 &\necho $! > grandchild.pid\n\
                while :; do wait; done\n";
    let mut spec = sh_spec(&dir, body);
    spec.timeout = Duration::from_millis(300);
    spec.kill_grace = Duration::from_millis(700);
    let out = run(&spec, vec![], CancellationToken::new()).await;
    assert_eq!(out.kind, ExitKind::TimedOut);
    assert!(
        out.duration >= spec.timeout + spec.kill_grace,
        "{:?}",
        out.duration
    );
    assert!(out.duration < spec.timeout + spec.kill_grace + Duration::from_secs(1));
    assert_dies(read_pid(&dir.path().join("leader.pid")).await).await;
    assert_dies(read_pid(&dir.path().join("grandchild.pid")).await).await;
}

#[tokio::test]
async fn cancel_stops_the_group() {
    let dir = TempDir::new().unwrap();
    let spec = sh_spec(&dir, "sleep 1000 &\necho $! > grandchild.pid\nwait\n");
    let cancel = CancellationToken::new();
    let running = tokio::spawn({
        let (spec, cancel) = (spec.clone(), cancel.clone());
        async move { run(&spec, vec![], cancel).await }
    });
    let grandchild = read_pid(&dir.path().join("grandchild.pid")).await;
    cancel.cancel();
    let out = running.await.unwrap();
    assert_eq!(out.kind, ExitKind::Cancelled);
    assert_eq!(out.describe(), "cancelled at shutdown");
    assert!(out.duration < spec.timeout);
    assert_dies(grandchild).await;
}

#[tokio::test]
async fn already_cancelled_does_not_start_the_handler() {
    let dir = TempDir::new().unwrap();
    let cancel = CancellationToken::new();
    cancel.cancel();
    let out = run(&sh_spec(&dir, "echo ran > ran.txt\n"), vec![], cancel).await;
    assert_eq!(out.kind, ExitKind::Cancelled);
    assert!(!dir.path().join("ran.txt").exists());
}

#[tokio::test]
async fn leftovers_are_killed_when_the_handler_exits() {
    let dir = TempDir::new().unwrap();
    // The background sleep keeps stdout open; without the group sweep the
    // run would wait for it.
    let spec = sh_spec(&dir, "sleep 1000 &\necho $! > grandchild.pid\nexit 0\n");
    let out = run(&spec, vec![], CancellationToken::new()).await;
    assert_eq!(out.kind, ExitKind::Exited(0));
    assert!(out.duration < Duration::from_secs(2), "{:?}", out.duration);
    let grandchild = read_pid(&dir.path().join("grandchild.pid")).await;
    assert_dies(grandchild).await;
}

#[tokio::test]
async fn stdin_is_closed_after_the_envelope() {
    let dir = TempDir::new().unwrap();
    let body = "wc -c > count.txt\n";
    let out = run(
        &sh_spec(&dir, body),
        b"{\"id\":1}".to_vec(),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(out.kind, ExitKind::Exited(0));
    let count = wait_for_file(&dir.path().join("count.txt")).await;
    assert_eq!(count.trim(), "8");
}
