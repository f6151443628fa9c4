//! What every benchmark needs: its sizes from the environment, a runtime
//! with a fixed number of worker threads (so a target and its baseline get
//! the same share of the machine), and hookd's config around a source.
#![allow(dead_code)] // each bench uses what it needs

/// `name` from the environment as a number, else `default`.
pub fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A multi-thread runtime with `threads` workers named `name` (so a
/// profile or `top -H` tells the target, the baseline and the load apart).
pub fn runtime(threads: usize, name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .enable_all()
        .build()
        .unwrap()
}

/// hookd's config with its state in `dir/state`, an ephemeral listener and
/// no admin listener, followed by `rest` (the `[[source]]` table).
pub fn config(dir: &std::path::Path, rest: &str) -> hookd::config::Config {
    let text = format!(
        "[daemon]\nstate_dir = \"{}\"\n[server]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"\"\n{rest}",
        dir.join("state").display()
    );
    hookd::config::parse(&text, &dir.join("bench.toml")).unwrap()
}

/// CPU time of one of this process's threads, in clock ticks.
#[derive(Clone, Debug, Default)]
pub struct ThreadCpu {
    pub name: String,
    pub user: u64,
    pub sys: u64,
}

/// Every live thread of this process by tid, with its CPU time so far.
pub fn thread_cpu() -> std::collections::HashMap<u32, ThreadCpu> {
    thread_cpu_of("self")
}

/// Every live thread of process `pid` ("self", or a number) by tid, with
/// its CPU time so far; empty when the process is gone.
pub fn thread_cpu_of(pid: &str) -> std::collections::HashMap<u32, ThreadCpu> {
    let mut out = std::collections::HashMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let p = task.path();
        let Some(tid) = p.file_name().and_then(|n| n.to_str()?.parse().ok()) else {
            continue;
        };
        let name = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(p.join("stat")).unwrap_or_default();
        // Fields after the name in parentheses: utime and stime are the 12th and 13th.
        let f: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let tick = |i: usize| f.get(i).and_then(|v| v.parse().ok()).unwrap_or(0);
        out.insert(
            tid,
            ThreadCpu {
                name: name.trim().to_string(),
                user: tick(11),
                sys: tick(12),
            },
        );
    }
    out
}

/// Clock ticks per second, the unit of [`ThreadCpu`].
pub fn clock_hz() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// Seconds of CPU (user, sys) spent between two snapshots, summed by
/// thread name; a thread that ended in between is not counted.
pub fn cpu_between(
    before: &std::collections::HashMap<u32, ThreadCpu>,
    after: &std::collections::HashMap<u32, ThreadCpu>,
) -> std::collections::BTreeMap<String, (f64, f64)> {
    let hz = clock_hz();
    let mut out = std::collections::BTreeMap::<String, (f64, f64)>::new();
    for (tid, a) in after {
        let b = before.get(tid).cloned().unwrap_or_default();
        let e = out.entry(a.name.clone()).or_default();
        e.0 += a.user.saturating_sub(b.user) as f64 / hz;
        e.1 += a.sys.saturating_sub(b.sys) as f64 / hz;
    }
    out
}

/// Adds `more` into `total`, name by name.
pub fn add_cpu(
    total: &mut std::collections::BTreeMap<String, (f64, f64)>,
    more: std::collections::BTreeMap<String, (f64, f64)>,
) {
    for (k, (u, s)) in more {
        let e = total.entry(k).or_default();
        e.0 += u;
        e.1 += s;
    }
}
