//! Helpers shared by the dispatch tests: handler scripts in a temp dir, a
//! clean environment, readiness files and checks that a process is dead.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The environment every test handler gets: nothing from the test process.
pub fn clean_env() -> Vec<(String, String)> {
    vec![
        ("PATH".into(), "/usr/bin:/bin".into()),
        ("HOOKD_TEST".into(), "yes".into()),
    ]
}

/// Write `body` into `dir/name` and return its path. Scripts are run as
/// `sh <file>` / `python3 <file>`, not executed directly, so a file just
/// written can never fail with ETXTBSY when another test thread forks.
pub fn write_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).expect("write handler script");
    path
}

/// argv running an sh script.
pub fn sh(script: &Path) -> Vec<String> {
    vec!["/bin/sh".into(), script.display().to_string()]
}

/// argv running a python script with the real interpreter (not a shim that
/// needs the test's environment).
pub fn python(script: &Path) -> Vec<String> {
    vec![python3(), script.display().to_string()]
}

fn python3() -> String {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let out = std::process::Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3 is needed for the stream tests");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    })
    .clone()
}

/// Wait until `path` exists with a complete last line, and return its text.
/// A bounded poll is the last resort for a readiness signal written by
/// another process; the bound is generous and only guards against hangs.
pub async fn wait_for_file(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && text.ends_with('\n')
        {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Read a pid the handler wrote to `path`.
pub async fn read_pid(path: &Path) -> i32 {
    let text = wait_for_file(path).await;
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("bad pid {text:?}"))
}

/// True if `pid` no longer runs: gone, or a zombie. (An orphaned grandchild
/// is reparented to init; where init does not reap, as in some containers,
/// a killed one stays a zombie, which is dead all the same.)
pub fn is_dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
            matches!(state, Some(Some('Z' | 'X')))
        }
    }
}

/// Assert that `pid` dies within a few seconds of its group being
/// signalled. SIGKILL is delivered asynchronously to processes we did not
/// reap, so this waits on a pidfd, which becomes readable the moment the
/// process exits (zombie or not) — an event, not a poll.
pub async fn assert_dies(pid: i32) {
    let exited = tokio::task::spawn_blocking(move || wait_exit(pid, 5_000))
        .await
        .unwrap();
    assert!(exited && is_dead(pid), "process {pid} is still alive");
}

fn wait_exit(pid: i32, timeout_ms: i32) -> bool {
    // SAFETY: plain syscalls on an fd we own and close.
    unsafe {
        let fd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32;
        if fd < 0 {
            return std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ready = libc::poll(&mut pfd, 1, timeout_ms) == 1;
        libc::close(fd);
        ready
    }
}
