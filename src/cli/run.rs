//! `hookd run`: the daemon in the foreground, as systemd runs it.
//!
//! Around [`Daemon`] this adds what a service needs: logging (text or JSON,
//! without timestamps under journald), socket activation, `sd_notify`
//! readiness/reload/stop/status and watchdog pings, SIGHUP reload (an
//! invalid config keeps the old one), SIGTERM drain, and the registration
//! of `register = "auto"` sources once the daemon is ready.

use std::os::fd::FromRawFd;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use sd_notify::NotifyState;
use tokio::signal::unix::{SignalKind, signal};

use crate::config::{self, Config, LogFormat};
use crate::daemon::{Daemon, StartOptions};

pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let cfg = super::load(path)?;
    init_logging(cfg.daemon.log_format);
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    // Each running exec handler holds a blocking thread (its slot; see
    // dispatch::queue::exec_slot), so the store's reads keep tokio's
    // usual 512 beside them. The global cap is fixed when the daemon starts.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("hookd")
        .max_blocking_threads(512 + cfg.daemon.max_concurrency)
        .build()?;
    rt.block_on(serve(path, cfg))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // journald stamps every line itself.
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match (format, journald) {
        (LogFormat::Json, _) => b.json().flatten_event(true).try_init(),
        (LogFormat::Text, true) => b.without_time().with_ansi(false).try_init(),
        (LogFormat::Text, false) => b.try_init(),
    };
}

/// Sockets passed by systemd (`LISTEN_FDS`), if any.
fn activated_listeners() -> anyhow::Result<Option<Vec<std::net::TcpListener>>> {
    let fds: Vec<i32> = sd_notify::listen_fds()
        .context("bad socket activation environment")?
        .collect();
    // SAFETY: systemd's protocol hands these descriptors to this process
    // alone (LISTEN_PID was checked); each is wrapped exactly once.
    let ls: Vec<std::net::TcpListener> = fds
        .into_iter()
        .map(|fd| unsafe { std::net::TcpListener::from_raw_fd(fd) })
        .collect();
    Ok((!ls.is_empty()).then_some(ls))
}

fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!("sd_notify failed: {e}");
    }
}

async fn serve(path: &Path, cfg: Config) -> anyhow::Result<ExitCode> {
    // A file-size limit (RLIMIT_FSIZE) must fail a write, not kill the daemon.
    let _xfsz = signal(SignalKind::from_raw(libc::SIGXFSZ)).ok();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;

    let push_listeners = activated_listeners()?;
    let daemon = Daemon::start(cfg, StartOptions { push_listeners })
        .await
        .map_err(anyhow::Error::msg)?;
    let addrs: Vec<String> = daemon.push_addrs.iter().map(|a| a.to_string()).collect();
    let admin = daemon
        .admin_addr
        .map_or("off".to_string(), |a| a.to_string());
    tracing::info!(listen = %addrs.join(","), admin = %admin, "hookd ready");
    let status = format!("listening on {}", addrs.join(" "));
    notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
    let watchdog =
        sd_notify::watchdog_enabled().map(|d| tokio::spawn(watchdog(daemon.store.clone(), d)));
    let status_task = tokio::spawn(status_line(daemon.metrics.clone(), status));
    // `register = "auto"` sources: after ready, so a provider's first
    // delivery finds us listening; failures are logged, never fatal.
    let mut auto_register = register_auto(&daemon, None);

    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                if reload(path, &daemon).await {
                    // The reloaded config's auto sources (registration is
                    // idempotent: an unchanged one is only looked up).
                    auto_register = register_auto(&daemon, Some(auto_register));
                }
            }
        }
    }
    tracing::info!("stopping: no new requests; waiting for running handlers");
    notify(&[NotifyState::Stopping, NotifyState::Status("draining")]);
    if let Some(w) = watchdog {
        w.abort();
    }
    status_task.abort();
    auto_register.abort();
    daemon.shutdown().await;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Registers the running config's `register = "auto"` sources in the
/// background, after `previous` (an earlier run) finished, so two runs never
/// race to create the same subscription.
fn register_auto(
    daemon: &Daemon,
    previous: Option<tokio::task::JoinHandle<()>>,
) -> tokio::task::JoinHandle<()> {
    let (cfg, store, runtime) = (
        daemon.runtime.load().config.clone(),
        daemon.store.clone(),
        daemon.runtime.clone(),
    );
    let registered = daemon.pull.registered();
    tokio::spawn(async move {
        if let Some(p) = previous {
            let _ = p.await;
        }
        crate::provider::manage::auto::register_auto(&cfg, &store, &runtime).await;
        // SSE/poll sources waiting for their webhook id look again.
        registered.notify();
    })
}

/// Re-reads the config and swaps it in; true when the new one runs.
async fn reload(path: &Path, daemon: &Daemon) -> bool {
    let stamp = NotifyState::monotonic_usec_now().ok();
    let mut states = vec![NotifyState::Reloading];
    states.extend(stamp);
    notify(&states);
    let swapped = async {
        let cfg = config::load(path).map_err(|e| e.to_string())?;
        for w in &cfg.warnings {
            tracing::warn!("{w}");
        }
        for n in daemon.reload(cfg).await? {
            tracing::warn!("{n}");
        }
        Ok::<(), String>(())
    }
    .await;
    match &swapped {
        Ok(()) => tracing::info!("config reloaded from {}", path.display()),
        Err(e) => tracing::error!("config not reloaded, keeping the running one: {e}"),
    }
    notify(&[NotifyState::Ready]);
    swapped.is_ok()
}

/// Pings the watchdog at half its interval, but only while the SQLite
/// store still commits: a wedged writer stops the pings and systemd
/// restarts us. A PostgreSQL store that does not answer is an outage of
/// the database, not of this process, which a restart would not mend:
/// `/readyz` reports it instead.
async fn watchdog(store: crate::store::Backend, interval: Duration) {
    let mut tick = tokio::time::interval(interval / 2);
    let Some(store) = store.sqlite().cloned() else {
        loop {
            tick.tick().await;
            notify(&[NotifyState::Watchdog]);
        }
    };
    loop {
        tick.tick().await;
        if tokio::time::timeout(interval / 2, store.healthy())
            .await
            .unwrap_or(false)
        {
            notify(&[NotifyState::Watchdog]);
        } else {
            tracing::error!("the store did not commit in time; not pinging the watchdog");
        }
    }
}

/// Keeps `systemctl status` informative: address, ingest rate, queue depth.
async fn status_line(metrics: crate::metrics::SharedMetrics, listening: String) {
    const EVERY: Duration = Duration::from_secs(10);
    let mut last = metrics.accepted_all.get();
    loop {
        tokio::time::sleep(EVERY).await;
        let now = metrics.accepted_all.get();
        let rate = (now - last) as f64 / EVERY.as_secs_f64();
        last = now;
        let line = format!(
            "{listening}; {rate:.1} events/s; queue {}",
            metrics.queue_depth.get()
        );
        notify(&[NotifyState::Status(&line)]);
    }
}
