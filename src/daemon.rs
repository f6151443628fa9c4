//! Assembling and stopping a running daemon.
//!
//! [`Daemon::start`] opens the store, binds (or adopts) the listeners,
//! starts the push and admin servers, the dispatcher and the pruner, and
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
use crate::dispatch::queue::Dispatcher;
use crate::metrics::{Metrics, SharedMetrics};
use crate::runtime::{Runtime, SharedRuntime};
use crate::server::{self, Limits};
use crate::source::ingest::Ingest;
use crate::source::push;
use crate::store::{Store, StoreOptions, events, subscriptions};
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
    pub store: Store,
    pub metrics: SharedMetrics,
    pub runtime: SharedRuntime,
    dispatcher: Dispatcher,
    http_stop: CancellationToken,
    admin_stop: CancellationToken,
    background_stop: CancellationToken,
    http_tasks: JoinSet<()>,
    other_tasks: JoinSet<()>,
    draining: Arc<AtomicBool>,
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
        let store = Store::open(
            &config.daemon.state_dir,
            StoreOptions {
                queue: config.server.max_pending,
                ..Default::default()
            },
        )?;
        let issued = store
            .read(subscriptions::issued_secrets)
            .await
            .map_err(|e| format!("cannot read stored provider secrets: {e}"))?;
        let metrics: SharedMetrics = Arc::new(Metrics::new());
        let runtime = Runtime::new(config, &issued).shared();
        let cfg = runtime.load().config.clone();
        let wake = Arc::new(Notify::new());
        let ingest = Arc::new(Ingest::new(
            store.clone(),
            metrics.clone(),
            runtime.clone(),
            wake.clone(),
        ));

        let listeners = match opts.push_listeners {
            Some(ls) => ls.into_iter().map(adopt).collect::<Result<Vec<_>, _>>()?,
            None => {
                let mut v = Vec::new();
                for a in &cfg.server.listen {
                    v.push(bind(*a).await?);
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
        let http_stop = CancellationToken::new();
        let mut http_tasks = JoinSet::new();
        let mut push_addrs = Vec::new();
        for l in listeners {
            push_addrs.push(l.local_addr().map_err(|e| e.to_string())?);
            http_tasks.spawn(server::serve(
                l,
                tls.clone(),
                push::router(ingest.clone()),
                limits.clone(),
                http_stop.clone(),
            ));
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
                other_tasks.spawn(server::serve(
                    l,
                    None,
                    admin::router(state),
                    Limits::default(),
                    admin_stop.clone(),
                ));
                Some(addr)
            }
            None => None,
        };

        let dispatcher = Dispatcher::new(store.clone(), metrics.clone(), runtime.clone(), wake);
        other_tasks.spawn(dispatcher.clone().run());
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
            http_stop,
            admin_stop,
            background_stop,
            http_tasks,
            other_tasks,
            draining,
        })
    }

    /// Swaps in a new config. Sources, routes and handlers change at once;
    /// listen addresses, TLS files and the state directory need a restart.
    pub async fn reload(&self, config: Config) -> Result<Vec<String>, String> {
        let old = self.runtime.load().config.clone();
        let mut notes = Vec::new();
        if old.daemon.state_dir != config.daemon.state_dir {
            return Err("daemon.state_dir cannot change on reload; restart hookd".into());
        }
        if old.server.listen != config.server.listen || old.admin.listen != config.admin.listen {
            notes
                .push("listen addresses changed; they take effect at the next restart".to_string());
        }
        let issued = self
            .store
            .read(subscriptions::issued_secrets)
            .await
            .map_err(|e| e.to_string())?;
        self.runtime.store(Arc::new(Runtime::new(config, &issued)));
        Ok(notes)
    }

    /// Stops in the order that loses nothing; returns when everything ended.
    pub async fn shutdown(mut self) {
        self.draining.store(true, Ordering::Relaxed);
        self.http_stop.cancel();
        while self.http_tasks.join_next().await.is_some() {}
        let grace = self.runtime.load().config.daemon.shutdown_grace;
        self.dispatcher.shutdown(grace).await;
        self.background_stop.cancel();
        self.admin_stop.cancel();
        while self.other_tasks.join_next().await.is_some() {}
    }

    /// Handler runs going on now.
    pub fn running_handlers(&self) -> usize {
        self.dispatcher.running()
    }
}

/// Deletes events past the retention, in small batches so the writer is
/// never held for long.
async fn prune_loop(store: Store, runtime: SharedRuntime, stop: CancellationToken) {
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
pub async fn prune(store: &Store, retention: Duration) -> Result<usize, crate::store::StoreError> {
    let before = timefmt::now_micros() - retention.as_micros().min(i64::MAX as u128) as i64;
    let mut total = 0;
    loop {
        let n = store.write(move |c| events::prune(c, before, 500)).await?;
        total += n;
        if n < 500 {
            return Ok(total);
        }
    }
}
