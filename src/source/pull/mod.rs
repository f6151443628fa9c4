//! Pull sources: the SSE and poll sources a daemon runs.
//!
//! [`PullSources`] keeps one task per `mode = "sse"`/`"poll"` source and
//! reconciles them with each config (start new ones, restart changed ones,
//! stop removed ones); each task runs [`sse`] or [`poll`] while this replica
//! owns the source. Every batch of pulled events goes through
//! [`commit`]: verify and normalize exactly as a push, then one store job
//! that inserts the events, moves the source's position and counts them in
//! its status — so the position is durable exactly when the events are.
//!
//! Imports form a tree: this runner → [`sse`], [`poll`] → [`backfill`] (the
//! paging catch-up both use) → [`shared`] (context, commit, status, URL and
//! auth helpers). `sse` and `poll` do not know each other, and none of them
//! knows the runner.

pub mod backfill;
pub mod poll;
pub mod shared;
pub mod sse;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, PullConfig};
use crate::preset::Mode;

pub use shared::{
    Committed, Item, PullCtx, auth_header, build_url, commit, count, http_client, position, redact,
    status, webhook_id,
};

/// Tells pull sources waiting for a webhook id that one may be stored now
/// (after `register = "auto"` ran). Cheap to clone.
#[derive(Clone)]
pub struct Registered(Arc<tokio::sync::watch::Sender<u64>>);

impl Registered {
    pub fn notify(&self) {
        self.0.send_modify(|n| *n += 1);
    }
}

/// What a running pull task was started with; a change restarts it.
#[derive(Clone, Debug, PartialEq)]
struct Wanted {
    mode: Mode,
    pull: PullConfig,
    max_event: usize,
}

struct Running {
    wanted: Wanted,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// The daemon's pull tasks, by source name.
pub struct PullSources {
    ctx: Arc<PullCtx>,
    running: tokio::sync::Mutex<HashMap<String, Running>>,
}

impl PullSources {
    pub fn new(ctx: PullCtx) -> PullSources {
        PullSources {
            ctx: Arc::new(ctx),
            running: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Brings the running tasks in line with `cfg`.
    pub async fn reconcile(&self, cfg: &Config) {
        let wanted: HashMap<String, Wanted> = cfg
            .sources
            .iter()
            .filter_map(|s| {
                let pull = s.pull.clone()?;
                Some((
                    s.name.clone(),
                    Wanted {
                        mode: s.mode,
                        pull,
                        max_event: cfg.server.max_body,
                    },
                ))
            })
            .collect();
        let mut running = self.running.lock().await;
        let names: Vec<String> = running.keys().cloned().collect();
        let mut stopping = Vec::new();
        for name in names {
            if wanted.get(&name) != running.get(&name).map(|r| &r.wanted) {
                let r = running.remove(&name).expect("present");
                tracing::info!(source = %name, "stopping pull source");
                r.stop.cancel();
                stopping.push(r.task);
            }
        }
        for t in stopping {
            let _ = t.await;
        }
        let keep: Vec<String> = wanted.keys().cloned().collect();
        if let Err(e) = self.ctx.ingest.store.pull_retain(keep).await {
            tracing::debug!("could not tidy pull statuses: {e}");
        }
        for (name, w) in wanted {
            if running.contains_key(&name) {
                continue;
            }
            let stop = CancellationToken::new();
            let task = tokio::spawn(run(self.ctx.clone(), name.clone(), w.clone(), stop.clone()));
            running.insert(
                name,
                Running {
                    wanted: w,
                    stop,
                    task,
                },
            );
        }
    }

    /// Stops every pull task; each commits what it already read first.
    pub async fn shutdown(&self) {
        let mut running = self.running.lock().await;
        for r in running.values() {
            r.stop.cancel();
        }
        for (_, r) in running.drain() {
            let _ = r.task.await;
        }
    }

    /// A handle that wakes sources waiting for their webhook id.
    pub fn registered(&self) -> Registered {
        Registered(self.ctx.registrations.clone())
    }

    /// Names of the pull sources running now.
    pub async fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.running.lock().await.keys().cloned().collect();
        v.sort();
        v
    }
}

/// Runs a pull source while this replica owns it (always, on SQLite; on
/// PostgreSQL, while it holds the source's lock), until `stop`.
async fn run(ctx: Arc<PullCtx>, name: String, w: Wanted, stop: CancellationToken) {
    let store = ctx.ingest.store.clone();
    while let Some(lost) = store.own_source(&name, &stop).await {
        let owned = stop.child_token();
        let cancel = owned.clone();
        let watch = tokio::spawn(async move {
            lost.cancelled().await;
            cancel.cancel();
        });
        tracing::info!(source = %name, mode = w.mode.name(), "starting pull source");
        match w.mode {
            Mode::Sse => sse::run(&ctx, &name, &w.pull, w.max_event, &owned).await,
            Mode::Poll => poll::run(&ctx, &name, &w.pull, &owned).await,
            Mode::Push => {}
        }
        watch.abort();
        ctx.ingest.metrics.pull_connected(&name, false);
        store.release_source(&name).await;
        if stop.is_cancelled() || !owned.is_cancelled() {
            // Stopped here, or ended by itself (stopped for good).
            return;
        }
        tracing::warn!(source = %name, "lost the database session that owned this pull source; competing for it again");
    }
}
