//! Assembling and stopping a running daemon.
//!
//! [`Daemon::start`] opens the store, binds (or adopts) the listeners,
//! starts the push and admin servers, the pull (SSE/poll) sources, the
//! dispatcher and the pruner, and
//! returns once all of them are up — that moment is "ready". Tests start
//! daemons in-process through this; `hookd run` wraps it with signals,
//! logging and systemd notifications. [`Daemon::shutdown`] drains in the
//! order that loses nothing: stop taking requests, finish in-flight ones,
//! let handlers finish (bounded), hand the rest back to the queue.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};
use crate::config::Config;
use crate::config::StoreConfig;
use crate::console::{self, Console};
use crate::dispatch::queue::Dispatcher;
use crate::dispatch::started::StartLog;
use crate::metrics::{Metrics, SharedMetrics};
use crate::runtime::{Runtime, SharedRuntime};
use crate::server::{self, Limits};
use crate::source::ingest::Ingest;
use crate::source::pull::{self, PullCtx, PullSources};
use crate::source::push;
use crate::store::pg::{PgOptions, PgStore};
use crate::store::{Backend, Store, StoreOptions};
use crate::timefmt;

/// How the daemon gets its push listeners.
#[derive(Default)]
pub struct StartOptions {
    /// Already-bound listeners (systemd socket activation); replaces `server.listen`.
    pub push_listeners: Option<Vec<std::net::TcpListener>>,
}

pub struct Daemon {
    pub push_addrs: Vec<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    pub store: Backend,
    pub metrics: SharedMetrics,
    pub runtime: SharedRuntime,
    dispatcher: Dispatcher,
    push: tokio::sync::Mutex<PushListeners>,
    /// SSE and poll sources, one task each.
    pub pull: PullSources,
    admin_stop: CancellationToken,
    background_stop: CancellationToken,
    other_tasks: JoinSet<()>,
    draining: Arc<AtomicBool>,
}

impl Drop for Daemon {
    /// A daemon dropped without [`Daemon::shutdown`] (an embedding program
    /// or a test that panicked) still stops its handlers: exec slots run on
    /// the runtime's blocking threads, which the runtime waits for when it
    /// is dropped, so one blocked in a long handler run would hang it.
    fn drop(&mut self) {
        self.dispatcher.abandon();
    }
}

/// The push listeners, by the address the config asked for, so a reload
/// can open new ones and drain removed ones without touching the rest.
struct PushListeners {
    /// Sockets from systemd: never rebound on reload.
    activated: bool,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: Limits,
    router: axum::Router,
    running: Vec<PushListener>,
}

struct PushListener {
    /// The configured address (None for an inherited socket).
    wanted: Option<SocketAddr>,
    bound: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl PushListeners {
    fn spawn(&mut self, wanted: Option<SocketAddr>, l: TcpListener) -> Result<SocketAddr, String> {
        let bound = l.local_addr().map_err(|e| e.to_string())?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(server::serve(
            l,
            self.tls.clone(),
            self.router.clone(),
            self.limits.clone(),
            stop.clone(),
        ));
        self.running.push(PushListener {
            wanted,
            bound,
            stop,
            task,
        });
        Ok(bound)
    }

    /// Opens listeners for addresses new in `wanted`; returns the ones to
    /// drain (no longer wanted). Binds all new ones before changing anything.
    async fn reconcile(&mut self, wanted: &[SocketAddr]) -> Result<Vec<PushListener>, String> {
        if self.activated {
            return Ok(Vec::new());
        }
        let mut fresh = Vec::new();
        for a in wanted {
            if !self.running.iter().any(|l| l.wanted == Some(*a)) {
                fresh.push((*a, bind(*a).await?));
            }
        }
        for (a, l) in fresh {
            let bound = self.spawn(Some(a), l)?;
            tracing::info!("now also listening on {bound}");
        }
        let (keep, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut self.running)
            .into_iter()
            .partition(|l| l.wanted.is_none_or(|w| wanted.contains(&w)));
        self.running = keep;
        Ok(gone)
    }

    /// Stops accepting and waits for in-flight requests (bounded by the drain limit).
    async fn drain(listeners: Vec<PushListener>) {
        for l in &listeners {
            l.stop.cancel();
        }
        for l in listeners {
            let _ = l.task.await;
        }
    }
}

/// Opens the store `[store]` names: SQLite in the state directory (the
/// group-commit writer), or the shared PostgreSQL database (connected,
/// migrated once across replicas).
async fn open_store(config: &Config) -> Result<Backend, String> {
    match &config.store {
        StoreConfig::Sqlite => Ok(Store::open(
            &config.daemon.state_dir,
            StoreOptions {
                queue: config.server.max_pending,
                ..Default::default()
            },
        )?
        .into()),
        StoreConfig::Postgres(pg) => {
            // Still this replica's own, for its start log.
            crate::store::make_state_dir(&config.daemon.state_dir)?;
            let url = std::str::from_utf8(pg.url.expose())
                .map_err(|_| "store.url is not UTF-8 text".to_string())?;
            let opts = PgOptions {
                pool_size: pg.pool_size,
                lease: pg.lease,
                ca_certs: pg.ca_certs.clone(),
                ..PgOptions::default()
            };
            let store = PgStore::open(url, opts).await?;
            tracing::info!(
                "store: PostgreSQL, {} (this replica: {})",
                pg.target,
                store.owner()
            );
            Ok(Backend::Postgres(store))
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))
}

fn adopt(l: std::net::TcpListener) -> Result<TcpListener, String> {
    l.set_nonblocking(true)
        .map_err(|e| format!("cannot use an inherited socket: {e}"))?;
    TcpListener::from_std(l).map_err(|e| format!("cannot use an inherited socket: {e}"))
}

impl Daemon {
    pub async fn start(config: Config, opts: StartOptions) -> Result<Daemon, String> {
        let store = open_store(&config).await?;
        let issued = store
            .issued_secrets()
            .await
            .map_err(|e| format!("cannot read stored provider secrets: {e}"))?;
        let metrics: SharedMetrics = Arc::new(Metrics::new());
        let runtime = Runtime::new(config, &issued).shared();
        let cfg = runtime.load().config.clone();
        let wake = match &store {
            // Woken by every replica's NOTIFY, this one's included.
            Backend::Postgres(p) => p.work_notify(),
            Backend::Sqlite(_) => Arc::new(Notify::new()),
        };
        let ingest = Arc::new(Ingest::new(
            store.clone(),
            metrics.clone(),
            runtime.clone(),
            wake.clone(),
        ));

        let opts_activated = opts.push_listeners.is_some();
        let listeners: Vec<(Option<SocketAddr>, TcpListener)> = match opts.push_listeners {
            Some(ls) => ls
                .into_iter()
                .map(|l| adopt(l).map(|l| (None, l)))
                .collect::<Result<Vec<_>, _>>()?,
            None => {
                let mut v = Vec::new();
                for a in &cfg.server.listen {
                    v.push((Some(*a), bind(*a).await?));
                }
                v
            }
        };
        let tls = match &cfg.server.tls {
            Some(t) => Some(server::tls_acceptor(&t.cert, &t.key)?),
            None => None,
        };
        let limits = Limits {
            header_timeout: cfg.server.header_timeout,
            max_header_bytes: cfg.server.max_header_bytes,
            ..Limits::default()
        };
        let activated = opts_activated;
        let mut push = PushListeners {
            activated,
            tls,
            limits,
            router: push::router(ingest.clone()),
            running: Vec::new(),
        };
        let mut push_addrs = Vec::new();
        for (wanted, l) in listeners {
            push_addrs.push(push.spawn(wanted, l)?);
        }

        let draining = Arc::new(AtomicBool::new(false));
        let admin_stop = CancellationToken::new();
        let mut other_tasks = JoinSet::new();
        let admin_addr = match cfg.admin.listen {
            Some(a) => {
                let l = bind(a).await?;
                let addr = l.local_addr().map_err(|e| e.to_string())?;
                let state = AdminState {
                    store: store.clone(),
                    metrics: metrics.clone(),
                    draining: draining.clone(),
                };
                let auth = console::auth::Auth::new(cfg.admin.token.clone())
                    .map_err(|e| format!("cannot make the console's session keys: {e}"))?;
                let console = Console {
                    store: store.clone(),
                    metrics: metrics.clone(),
                    runtime: runtime.clone(),
                    wake: wake.clone(),
                    auth: Arc::new(auth),
                    actions: cfg.admin.console_actions,
                    loopback_only: addr.ip().is_loopback(),
                };
                other_tasks.spawn(server::serve(
                    l,
                    None,
                    admin::router(state).merge(console::router(console)),
                    Limits::default(),
                    admin_stop.clone(),
                ));
                Some(addr)
            }
            None => None,
        };

        let pull = PullSources::new(PullCtx::new(ingest.clone(), pull::http_client()?));
        pull.reconcile(&cfg).await;

        let state_dir = &cfg.daemon.state_dir;
        let started = StartLog::open(state_dir).map_err(|e| {
            let path = state_dir.join(crate::dispatch::started::FILE_NAME);
            format!("cannot open {}: {e}", path.display())
        })?;
        let dispatcher = Dispatcher::new(
            store.clone(),
            metrics.clone(),
            runtime.clone(),
            wake,
            started,
        );
        other_tasks.spawn(dispatcher.clone().run());
        let (s, c) = (store.clone(), cfg.clone());
        other_tasks.spawn(async move {
            for note in unknown_handler_notes(&s, &c).await {
                tracing::warn!("{note}");
            }
        });
        let background_stop = CancellationToken::new();
        other_tasks.spawn(prune_loop(
            store.clone(),
            runtime.clone(),
            background_stop.clone(),
        ));

        Ok(Daemon {
            push_addrs,
            admin_addr,
            store,
            metrics,
            runtime,
            dispatcher,
            push: tokio::sync::Mutex::new(push),
            pull,
            admin_stop,
            background_stop,
            other_tasks,
            draining,
        })
    }

    /// Swaps in a new config: sources (pull ones started, restarted or
    /// stopped), routes, handlers and push listen
    /// addresses change at once; in-flight requests and handler runs are
    /// not interrupted. The state directory, TLS files, the admin address
    /// and the global handler cap need a restart (the returned notes say so).
    pub async fn reload(&self, config: Config) -> Result<Vec<String>, String> {
        let old = self.runtime.load().config.clone();
        let mut notes = Vec::new();
        if old.daemon.state_dir != config.daemon.state_dir {
            return Err("daemon.state_dir cannot change on reload; restart hookd".into());
        }
        if !old.store.same_as(&config.store) {
            return Err("[store] cannot change on reload; restart hookd".into());
        }
        if old.admin.listen != config.admin.listen {
            notes.push("admin.listen changed; it takes effect at the next restart".to_string());
        }
        if old.admin.console_actions != config.admin.console_actions
            || old.admin.token != config.admin.token
        {
            notes.push(
                "admin.console_actions or admin.token changed; it takes effect at the next restart"
                    .to_string(),
            );
        }
        if old.daemon.max_concurrency != config.daemon.max_concurrency {
            notes.push(
                "daemon.max_concurrency changed; it takes effect at the next restart".to_string(),
            );
        }
        if old.server.tls.as_ref().map(|t| (&t.cert, &t.key))
            != config.server.tls.as_ref().map(|t| (&t.cert, &t.key))
        {
            notes.push("TLS files changed; they take effect at the next restart".to_string());
        }
        let issued = self
            .store
            .issued_secrets()
            .await
            .map_err(|e| e.to_string())?;
        let mut push = self.push.lock().await;
        if push.activated && old.server.listen != config.server.listen {
            notes.push("server.listen is ignored: the sockets come from systemd".to_string());
        }
        let gone = push.reconcile(&config.server.listen).await?;
        self.runtime.store(Arc::new(Runtime::new(config, &issued)));
        drop(push);
        let cfg = self.runtime.load().config.clone();
        self.pull.reconcile(&cfg).await;
        for l in &gone {
            tracing::info!("no longer listening on {}", l.bound);
        }
        tokio::spawn(PushListeners::drain(gone));
        notes.extend(unknown_handler_notes(&self.store, &cfg).await);
        Ok(notes)
    }

    /// The push addresses being served right now.
    pub async fn listening(&self) -> Vec<SocketAddr> {
        self.push
            .lock()
            .await
            .running
            .iter()
            .map(|l| l.bound)
            .collect()
    }

    /// Stops in the order that loses nothing; returns when everything ended.
    pub async fn shutdown(mut self) {
        self.draining.store(true, Ordering::Relaxed);
        let listeners = std::mem::take(&mut self.push.get_mut().running);
        PushListeners::drain(listeners).await;
        self.pull.shutdown().await;
        let grace = self.runtime.load().config.daemon.shutdown_grace;
        self.dispatcher.shutdown(grace).await;
        self.background_stop.cancel();
        self.admin_stop.cancel();
        while self.other_tasks.join_next().await.is_some() {}
        match self.store.checkpoint_at_stop().await {
            Ok(true) => {}
            Ok(false) => tracing::info!(
                "a reader kept the WAL busy at stop; SQLite replays it at the next start"
            ),
            Err(e) => {
                tracing::warn!("final WAL checkpoint failed (replayed at the next start): {e}")
            }
        }
    }

    /// Handler runs going on now.
    pub fn running_handlers(&self) -> usize {
        self.dispatcher.running()
    }
}

/// One line per handler that has deliveries waiting but is not in `config`
/// (removed or renamed): they stay pending, untouched, and run again if a
/// handler of that name comes back. Said at start and on every reload so
/// the backlog does not sit there unnoticed.
async fn unknown_handler_notes(store: &Backend, config: &Config) -> Vec<String> {
    const CAP: i64 = 1_000_000;
    let names: Vec<String> = config.handlers.iter().map(|h| h.name.clone()).collect();
    let found = store.waiting_for_unknown(names, CAP).await;
    match found {
        Ok(list) => list
            .into_iter()
            .map(|(h, n)| {
                let waiting = match n {
                    1 => "1 delivery waits".to_string(),
                    n if n >= CAP => format!("{CAP} or more deliveries wait"),
                    n => format!("{n} deliveries wait"),
                };
                format!(
                    "{waiting} for handler `{h}`, which is not in the config; \
                     kept pending until a handler named `{h}` comes back"
                )
            })
            .collect(),
        Err(e) => vec![format!("cannot check the queue for removed handlers: {e}")],
    }
}

/// Deletes events past the retention, in small batches so the writer is
/// never held for long.
async fn prune_loop(store: Backend, runtime: SharedRuntime, stop: CancellationToken) {
    loop {
        let interval = runtime.load().config.daemon.prune_interval;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let retention = runtime.load().config.daemon.retention;
        match prune(&store, retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                "pruned {n} event(s) older than {}",
                humantime::format_duration(retention)
            ),
            Err(e) => tracing::warn!("pruning failed: {e}"),
        }
    }
}

/// Prunes everything older than `retention`; returns how many events went.
pub async fn prune(
    store: &Backend,
    retention: Duration,
) -> Result<usize, crate::store::StoreError> {
    let before = timefmt::now_micros() - retention.as_micros().min(i64::MAX as u128) as i64;
    let mut total = 0;
    loop {
        let n = store.prune_events(before, 500).await? as usize;
        total += n;
        if n < 500 {
            return Ok(total);
        }
    }
}
