//! The dispatcher: turns due deliveries in SQLite into handler runs.
//!
//! The queue *is* the `deliveries` table, so pending work survives restarts
//! and nothing lives only in memory. The loop wakes when an ingest commits
//! new deliveries or a run finishes (event-driven, no added latency), when
//! the next retry falls due, and at least once a second so work queued by
//! another process (`hookd replay` while the daemon runs) is picked up.
//! Each handler has its own slot count (`concurrency`) and exec handlers
//! share a global cap. The cap is shared fairly, so a slow handler never
//! starves another's queue: free global slots go first to the handlers
//! with the fewest runs going, and while another exec handler has due
//! work waiting for a global slot, a finishing run hands its slot back
//! instead of chaining into its own handler's next delivery.
//!
//! The parts, one file each: `claim` (the claim round, fair sharing of the
//! global cap, starting and finishing slots), `async_slot` (stream and http
//! slots), `exec_slot` (exec slots on a blocking thread), `record` (how an
//! attempt becomes a record, what follows it — retry, dead, hand back —
//! and what the record claims next). This file owns the dispatcher's state
//! and its loop, recovery and shutdown. The parts import this file and
//! `record`; none imports `claim` or a slot of the other kind.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::http::HttpRunner;
use super::started::StartLog;
use super::stream::StreamHandle;
use crate::metrics::SharedMetrics;
use crate::runtime::SharedRuntime;
use crate::store::Backend;
use crate::store::deliveries;
use crate::timefmt;

mod async_slot;
mod claim;
mod exec_slot;
mod record;

/// Captured stdout/stderr per attempt.
pub const OUTPUT_CAP: usize = 64 << 10;
/// SIGTERM → SIGKILL grace for handler process groups.
pub const KILL_GRACE: Duration = Duration::from_secs(5);
/// Longest the loop sleeps without looking at the table.
const IDLE_CHECK: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    store: Backend,
    metrics: SharedMetrics,
    runtime: SharedRuntime,
    wake: Arc<Notify>,
    /// Fired first on shutdown: no new claims.
    stop: CancellationToken,
    /// Fired when the shutdown grace is over: running handlers are stopped.
    kill: CancellationToken,
    global: Arc<Semaphore>,
    state: Mutex<State>,
    idle: Notify,
    started: StartLog,
}

#[derive(Default)]
struct State {
    running: HashMap<String, usize>,
    total: usize,
    streams: HashMap<String, (String, StreamHandle, CancellationToken)>,
    /// Each http handler's runner (its connection pool).
    http: HashMap<String, Arc<HttpRunner>>,
}

impl Dispatcher {
    pub fn new(
        store: Backend,
        metrics: SharedMetrics,
        runtime: SharedRuntime,
        wake: Arc<Notify>,
        started: StartLog,
    ) -> Dispatcher {
        let cap = runtime.load().config.daemon.max_concurrency;
        Dispatcher {
            inner: Arc::new(Inner {
                store,
                metrics,
                runtime,
                wake,
                stop: CancellationToken::new(),
                kill: CancellationToken::new(),
                global: Arc::new(Semaphore::new(cap)),
                state: Mutex::new(State::default()),
                idle: Notify::new(),
                started,
            }),
        }
    }

    /// Runs until [`Dispatcher::shutdown`]. Hands runs that were interrupted
    /// by a crash back to the queue first.
    pub async fn run(self) {
        self.recover().await;
        let mut last_gauges = std::time::Instant::now() - IDLE_CHECK;
        while !self.inner.stop.is_cancelled() {
            let again = self.claim_round().await;
            if last_gauges.elapsed() >= IDLE_CHECK {
                self.take_over_lost().await;
                self.update_gauges().await;
                last_gauges = std::time::Instant::now();
            }
            if again {
                continue;
            }
            let sleep = self.until_next_due().await;
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
                _ = self.inner.stop.cancelled() => {}
            }
        }
    }

    /// Counts the runs the last stop interrupted and returns what was only
    /// claimed ahead, as the start log tells them apart; then empties the log.
    async fn recover(&self) {
        let started = self
            .inner
            .started
            .started()
            .inspect_err(|e| {
                tracing::warn!(
                    "cannot read the start log ({e}); every delivery held at the last stop counts as interrupted"
                )
            })
            .ok();
        let now = timefmt::now_micros();
        let started = started.map(|s| move |id, at| s.contains(id, at));
        match self.inner.store.recover(now, started).await {
            Ok(r) => {
                log_recovered(r);
                if let Err(e) = self.inner.started.clear() {
                    tracing::warn!("cannot empty the start log: {e}");
                }
            }
            Err(e) => tracing::error!("could not recover interrupted runs: {e}"),
        }
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        match self.inner.state.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        }
    }

    async fn until_next_due(&self) -> Duration {
        let now = timefmt::now_micros();
        let next = self.inner.store.next_due_after(now).await.ok().flatten();
        match next {
            Some(t) => Duration::from_micros((t - now).max(0) as u64).min(IDLE_CHECK),
            None => IDLE_CHECK,
        }
    }

    /// On PostgreSQL: runs of replicas that stopped renewing their leases
    /// (killed, cut off) count as interrupted and are due again here.
    async fn take_over_lost(&self) {
        match self
            .inner
            .store
            .take_over_expired(timefmt::now_micros())
            .await
        {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(
                    "took over {n} handler run(s) whose replica stopped renewing their lease; they count as interrupted and will be retried"
                );
                self.inner.wake.notify_one();
            }
            Err(e) => tracing::warn!("cannot look for runs of stopped replicas: {e}"),
        }
    }

    async fn update_gauges(&self) {
        let now = timefmt::now_micros();
        if let Ok((depth, oldest)) = self.inner.store.queue_depth(now).await {
            self.inner.metrics.queue_depth.set(depth);
            self.inner
                .metrics
                .queue_oldest_seconds
                .set(oldest / 1_000_000);
        }
    }

    /// Runs in flight right now.
    pub fn running(&self) -> usize {
        self.inner.state.lock().map(|s| s.total).unwrap_or(0)
    }

    /// Stops at once, without waiting: slots end after their current run,
    /// and running handlers are killed. For a daemon dropped without its
    /// shutdown (say a test that panicked), whose runtime would otherwise
    /// wait on exec slots blocked in handler runs.
    pub fn abandon(&self) {
        self.inner.stop.cancel();
        self.inner.kill.cancel();
    }

    /// Stops claiming, lets running handlers finish for up to `grace`, then
    /// stops the rest and hands their deliveries back (pending, not done).
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.stop.cancel();
        if !self.wait_idle(grace).await {
            tracing::warn!(
                "{} handler run(s) still going after {grace:?}; stopping them",
                self.running()
            );
            self.inner.kill.cancel();
            self.wait_idle(KILL_GRACE + Duration::from_secs(5)).await;
        }
        self.inner.kill.cancel();
    }

    async fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.inner.idle.notified();
            if self.running() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.running() == 0;
            }
        }
    }
}

fn log_recovered(r: deliveries::Recovered) {
    if r.interrupted > 0 {
        tracing::warn!(
            "{} handler run(s) were interrupted by the last stop; they will be retried",
            r.interrupted
        );
    }
    if r.handed_back > 0 {
        tracing::info!(
            "back in the queue, no attempt counted: {} claimed ahead at the last stop but never started",
            r.handed_back
        );
    }
}
