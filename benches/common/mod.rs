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
