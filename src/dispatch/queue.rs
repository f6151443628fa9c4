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

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::attempt::{ExitKind, RunOutcome};
use super::envelope;
use super::http::HttpRunner;
use super::started::StartLog;
use super::stream::{StreamHandle, StreamOutcome, StreamSpec};
use crate::config::{HandlerConfig, HandlerKind};
use crate::metrics::SharedMetrics;
use crate::runtime::SharedRuntime;
use crate::store::Backend;
use crate::store::deliveries::{self, AttemptRecord, ClaimNext, Claimed, Next, Record};
use crate::store::rules;
use crate::timefmt;

mod exec_slot;

/// Captured stdout/stderr per attempt.
pub const OUTPUT_CAP: usize = 64 << 10;
/// SIGTERM → SIGKILL grace for handler process groups.
pub const KILL_GRACE: Duration = Duration::from_secs(5);
/// Deliveries an http slot holds beyond the one it sends, at most. A
/// request to a kept-alive target takes a small fraction of a commit (its
/// fsync, 5-12 ms on the development disk), so a slot needs many in hand to
/// keep sending while its records commit; the 20 ms bound on held work
/// (`exec_slot::ahead_after`) and the hand-back after a failed attempt keep
/// them from waiting long behind a slow target.
const HTTP_AHEAD: usize = 256;
/// Event bodies an http slot holds ahead, at most (as judged by the last
/// one's size): held deliveries carry their bodies in memory.
const HTTP_HELD_BYTES: usize = 4 << 20;
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

    /// Claims due work for every handler with free slots. True when some
    /// handler filled all its free slots (there may be more to claim).
    async fn claim_round(&self) -> bool {
        let now = timefmt::now_micros();
        let rt = self.inner.runtime.load_full();
        // Only handlers with a free slot of their own are worth a look. An
        // exec handler waiting for the global cap is looked at too: it is
        // first in line when a global slot frees up.
        let names: Vec<String> = rt
            .config
            .handlers
            .iter()
            .filter(|h| self.own_free_slots(h) > 0)
            .map(|h| h.name.clone())
            .collect();
        if names.is_empty() {
            return false;
        }
        let due: Vec<String> = match self.inner.store.handlers_with_due_work(names, now).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("cannot read the delivery queue: {e}");
                return false;
            }
        };
        let mut again = false;
        for h in self.fair_order(&rt.config.handlers, &due) {
            let free = self.own_free_slots(h);
            if free == 0 {
                continue;
            }
            // Exec and http runs hold a global slot; take them before
            // claiming so a claimed delivery always has one.
            let global = h.kind.takes_global_slot();
            let mut permits: Vec<_> = if global {
                (0..free)
                    .map_while(|_| self.inner.global.clone().try_acquire_owned().ok())
                    .collect()
            } else {
                Vec::new()
            };
            let free = if global { permits.len() } else { free };
            if free == 0 {
                continue;
            }
            let claimed = match self.inner.store.claim(&h.name, now, free).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(handler = %h.name, "cannot claim deliveries: {e}");
                    continue;
                }
            };
            again |= claimed.len() == free;
            let h = Arc::new(h.clone());
            for c in claimed {
                self.start(h.clone(), c, permits.pop());
            }
        }
        again
    }

    /// The handlers named in `due`, those with the fewest runs going first
    /// (config order among equals): a handler with nothing running gets a
    /// freed global slot before one that already holds several.
    fn fair_order<'a>(
        &self,
        handlers: &'a [HandlerConfig],
        due: &[String],
    ) -> Vec<&'a HandlerConfig> {
        let mut order: Vec<(usize, &HandlerConfig)> = handlers
            .iter()
            .filter(|h| due.contains(&h.name))
            .map(|h| (self.running_of(&h.name), h))
            .collect();
        order.sort_by_key(|(running, _)| *running);
        order.into_iter().map(|(_, h)| h).collect()
    }

    fn running_of(&self, handler: &str) -> usize {
        self.inner
            .state
            .lock()
            .map(|s| s.running.get(handler).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Slots left under the handler's own `concurrency`.
    fn own_free_slots(&self, h: &HandlerConfig) -> usize {
        h.concurrency.saturating_sub(self.running_of(&h.name))
    }

    /// When the global cap is all taken: the other exec and http handlers
    /// that could run more. If one of them has due work, a finishing run of
    /// `h` hands its global slot back instead of keeping it for `h`'s backlog.
    fn rivals_for_the_cap(&self, h: &HandlerConfig) -> Vec<String> {
        if !h.kind.takes_global_slot() || self.inner.global.available_permits() > 0 {
            return Vec::new();
        }
        self.inner
            .runtime
            .load()
            .config
            .handlers
            .iter()
            .filter(|o| o.kind.takes_global_slot() && o.name != h.name)
            .filter(|o| self.own_free_slots(o) > 0)
            .map(|o| o.name.clone())
            .collect()
    }

    fn start(
        &self,
        h: Arc<HandlerConfig>,
        c: Claimed,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ) {
        if let Ok(mut s) = self.inner.state.lock() {
            *s.running.entry(h.name.clone()).or_default() += 1;
            s.total += 1;
        }
        let this = self.clone();
        // Either way, the global slot goes back before the loop is woken, so
        // the round that wake-up starts can hand it out.
        match h.kind {
            HandlerKind::Exec => {
                tokio::task::spawn_blocking(move || {
                    let h = this.run_exec_slot(h, c);
                    drop(permit);
                    this.finished(&h.name);
                });
            }
            HandlerKind::Stream | HandlerKind::Http => {
                tokio::spawn(async move {
                    let h = this.run_slot(h, c).await;
                    drop(permit);
                    this.finished(&h.name);
                });
            }
        }
    }

    /// A stream or http slot runs deliveries back to back: recording one
    /// attempt claims the handler's next due deliveries in the same commit,
    /// and a record is sent before the next delivery goes out. (Exec slots
    /// do the same on a thread of their own: see `exec_slot`.) What it
    /// claimed but did not send when it ends is handed back untouched.
    ///
    /// An http slot holds deliveries claimed ahead, as an exec slot does, so
    /// its next requests go out while the last ones' records commit
    /// (without them each request waited for a commit and its fsync: 0.03
    /// of a plain client loop in the dispatch bench; holding up to 8, 0.17;
    /// up to 256, about 0.5). A stream delivery is a message to a process
    /// that already has many in flight: nothing is held ahead.
    async fn run_slot(&self, mut h: Arc<HandlerConfig>, first: Claimed) -> Arc<HandlerConfig> {
        let mut ahead: usize = 0;
        let mut slot = Slot {
            queue: VecDeque::from([first]),
            records: FuturesOrdered::new(),
            asked: 0,
        };
        let mut removed = false;
        loop {
            if self.inner.stop.is_cancelled() || removed {
                while let Some(done) = slot.records.next().await {
                    slot.absorb(done);
                }
                self.hand_back(std::mem::take(&mut slot.queue)).await;
                if removed {
                    // A handler gone from the config keeps no pool.
                    self.lock_state().http.remove(&h.name);
                }
                break;
            }
            let Some(c) = slot.queue.pop_front() else {
                if holds_ahead(h.kind) {
                    // Nothing left to send: no use keeping the records
                    // waiting for company.
                    self.inner.store.commit_soon();
                }
                match slot.records.next().await {
                    Some(done) => {
                        slot.absorb(done);
                        continue;
                    }
                    None => break,
                }
            };
            if c.ahead {
                // Before the request: from here on a crash counts an attempt.
                self.inner.started.note(c.delivery, c.claimed_at);
            }
            let run = async {
                if c.attempt > h.max_attempts {
                    exhausted(&c)
                } else {
                    self.inner.metrics.dispatched(&h.name);
                    self.attempt(&h, &c).await
                }
            };
            let rec = slot.run_beside_records(run).await;
            if holds_ahead(h.kind) {
                let took = Duration::from_micros(rec.duration_us.max(0) as u64);
                let most = HTTP_AHEAD.min(HTTP_HELD_BYTES / c.body.len().max(1));
                ahead = exec_slot::ahead_after(took, most);
                if rec.outcome != "ok" {
                    // The target is failing: what this slot holds goes back
                    // to the queue rather than wait behind it.
                    self.hand_back(std::mem::take(&mut slot.queue)).await;
                }
            }
            let want = self.want_after_run(&mut h, ahead, slot.queue.len() + slot.asked);
            removed = want.is_none();
            let want = want.unwrap_or(0);
            slot.asked += want;
            let hh = h.clone();
            slot.records.push_back(Box::pin(async move {
                (want, self.record(&hh, &c, rec, want).await)
            }));
        }
        h
    }

    /// Returns deliveries claimed ahead but never started to the queue, as
    /// they were: no attempt is counted.
    async fn hand_back(&self, claimed: VecDeque<Claimed>) {
        if let Some(ids) = unclaim_ids(&claimed) {
            handed_back(self.inner.store.unclaim(ids).await);
        }
    }

    fn finished(&self, handler: &str) {
        if let Ok(mut s) = self.inner.state.lock() {
            if let Some(n) = s.running.get_mut(handler) {
                *n = n.saturating_sub(1);
            }
            s.total = s.total.saturating_sub(1);
        }
        self.inner.wake.notify_one();
        self.inner.idle.notify_waiters();
    }

    /// Sends one event to the handler's stream process or http target and
    /// describes how it went. (Exec runs happen in `run_exec_slot`.)
    async fn attempt(&self, h: &HandlerConfig, c: &Claimed) -> AttemptRecord {
        let (started_at, clock) = (timefmt::now_micros(), std::time::Instant::now());
        let rec = if h.kind == HandlerKind::Http {
            self.http_attempt(h, c).await
        } else {
            let handle = self.stream_for(h);
            from_stream(handle.deliver(c.event, envelope::envelope(c)).await)
        };
        stamp(rec, c, started_at, clock)
    }

    /// One request of an http handler, counted by its answer's class.
    async fn http_attempt(&self, h: &HandlerConfig, c: &Claimed) -> AttemptRecord {
        let runner = match self.http_for(h) {
            Ok(r) => r,
            Err(e) => {
                return AttemptRecord {
                    outcome: "error".into(),
                    stderr: e.clone().into_bytes(),
                    summary: e,
                    ..Default::default()
                };
            }
        };
        let a = runner.attempt(c, &self.inner.kill).await;
        self.inner.metrics.http_answer(&h.name, a.class);
        a.record
    }

    /// The http handler's runner, built again when its config changed.
    fn http_for(&self, h: &HandlerConfig) -> Result<Arc<HttpRunner>, String> {
        let current = self.lock_state().http.get(&h.name).cloned();
        if let Some(r) = current.filter(|r| r.is_for(h)) {
            return Ok(r);
        }
        // Built outside the lock: it may read the system's CA roots.
        let runner = match HttpRunner::new(h, OUTPUT_CAP) {
            Some(r) => Arc::new(r?),
            None => return Err(format!("handler {} has no http target", h.name)),
        };
        let mut s = self.lock_state();
        let kept = s
            .http
            .entry(h.name.clone())
            .or_insert_with(|| runner.clone());
        if !kept.is_for(h) {
            *kept = runner;
        }
        Ok(kept.clone())
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        match self.inner.state.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        }
    }

    /// How many deliveries a slot's record should claim after a run, to hold
    /// `ahead` beside the next one when it already holds or asked for
    /// `holding`. Picks up a reloaded config into `h`; `None` when the
    /// handler is gone from it.
    fn want_after_run(
        &self,
        h: &mut Arc<HandlerConfig>,
        ahead: usize,
        holding: usize,
    ) -> Option<usize> {
        let latest = self.inner.runtime.load().config.handler(&h.name)?.clone();
        *h = Arc::new(latest);
        Some((1 + ahead).saturating_sub(holding))
    }

    /// Stores the attempt and decides what comes next; in the same commit,
    /// claims up to `want` due deliveries of the handler for this slot
    /// (unless the dispatcher is stopping), and returns them. Keeps retrying
    /// the write (backing off to every 5 s) while the store is down, holding the slot:
    /// nothing else could be recorded meanwhile. Only when the dispatcher
    /// stops does it give up; the delivery then stays `running` and is
    /// recovered as interrupted at the next start.
    async fn record(
        &self,
        h: &HandlerConfig,
        c: &Claimed,
        rec: AttemptRecord,
        want: usize,
    ) -> Vec<Claimed> {
        let next = self.next_step(h, c, &rec);
        let rec = Arc::new(rec);
        for (tries, wait_ms) in record_waits_ms().enumerate() {
            if self.gives_up_recording(tries) {
                break;
            }
            if wait_ms > 0 {
                // (A zero sleep still waits for the timer's next tick.)
                tokio::time::sleep(Duration::from_millis(wait_ms)).await;
            }
            let result = self
                .inner
                .store
                .record(self.record_of(h, c, rec.clone(), next, want))
                .await;
            if let Some(claimed) = self.recorded(h, c, result) {
                return claimed;
            }
        }
        unrecorded(h, c);
        Vec::new()
    }

    /// What follows an attempt: success, a retry time, dead, or back to the
    /// queue (stopped at shutdown). Counted in the metrics; a failure is logged.
    fn next_step(&self, h: &HandlerConfig, c: &Claimed, rec: &AttemptRecord) -> Next {
        let ok = rec.outcome == "ok";
        let ended = rules::Ended {
            outcome: &rec.outcome,
            no_retry: rec.no_retry,
            retry_after: rec.retry_after,
        };
        let next = rules::next_after(
            ended,
            self.inner.kill.is_cancelled(),
            c.attempt,
            h.max_attempts,
            &h.backoff,
            timefmt::now_micros(),
        );
        if next != Next::HandBack {
            self.inner.metrics.finished(
                &h.name,
                ok,
                next == Next::Dead,
                rec.duration_us as f64 / 1e6,
            );
        }
        if !ok {
            let then = match next {
                Next::RetryAt(t) => format!("retry at {}", timefmt::format_micros(t)),
                Next::Dead => "dead".into(),
                Next::HandBack => "back to the queue".into(),
                Next::Succeeded => "succeeded".into(),
            };
            tracing::info!(handler = %h.name, event = c.event, attempt = c.attempt, next = %then, "handler run failed: {}", rec.summary);
        }
        next
    }

    /// The write that stores an attempt, moves its delivery on and claims
    /// up to `want` deliveries for the slot, all in one commit. An exec
    /// slot holds what it claims ahead of running it; a stream slot sends
    /// it at once. Nothing is claimed while another handler waits for this
    /// slot's global permit (`rivals`).
    fn record_of(
        &self,
        h: &HandlerConfig,
        c: &Claimed,
        rec: Arc<AttemptRecord>,
        next: Next,
        want: usize,
    ) -> Record {
        let then_claim = (!self.inner.stop.is_cancelled() && want > 0).then(|| ClaimNext {
            handler: h.name.clone(),
            want,
            ahead: holds_ahead(h.kind),
            rivals: self.rivals_for_the_cap(h),
        });
        Record {
            delivery: c.delivery,
            rec,
            next,
            now: timefmt::now_micros(),
            then_claim,
        }
    }

    /// Takes in the result of an attempt record: the claims, or `None` after
    /// logging why the write failed.
    fn recorded(
        &self,
        h: &HandlerConfig,
        c: &Claimed,
        result: crate::store::Result<Vec<Claimed>>,
    ) -> Option<Vec<Claimed>> {
        match result {
            Ok(claimed) => {
                self.inner.started.forget(c.delivery);
                Some(claimed)
            }
            Err(e) => {
                tracing::warn!(handler = %h.name, delivery = c.delivery, "cannot record the attempt: {e}");
                None
            }
        }
    }

    /// Recording goes on while the store is down, until the dispatcher stops.
    fn gives_up_recording(&self, tries: usize) -> bool {
        tries >= 5 && self.inner.stop.is_cancelled()
    }

    /// The long-lived process of a stream handler, (re)started when its
    /// config changed.
    fn stream_for(&self, h: &HandlerConfig) -> StreamHandle {
        let fingerprint = format!(
            "{:?}|{:?}|{}|{:?}|{:?}",
            h.command,
            h.working_dir,
            h.concurrency,
            h.timeout,
            envelope::stream_environment(h)
        );
        let mut s = match self.inner.state.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        if let Some((fp, handle, _)) = s.streams.get(&h.name)
            && *fp == fingerprint
        {
            return handle.clone();
        }
        let token = self.inner.kill.child_token();
        let spec = StreamSpec {
            name: h.name.clone(),
            command: h.command.clone(),
            working_dir: h.working_dir.clone(),
            env: envelope::stream_environment(h),
            ack_timeout: h.timeout,
            max_in_flight: h.concurrency,
            restart_initial: h.backoff.initial,
            restart_max: h.backoff.max.min(Duration::from_secs(60)),
            kill_grace: KILL_GRACE,
        };
        let handle = StreamHandle::spawn(spec, token.clone());
        if let Some((_, _, old)) = s
            .streams
            .insert(h.name.clone(), (fingerprint, handle.clone(), token))
        {
            old.cancel();
        }
        handle
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

/// Whether a slot of this kind holds deliveries claimed ahead of running
/// them (see `run_slot`).
fn holds_ahead(kind: HandlerKind) -> bool {
    kind != HandlerKind::Stream
}

/// Milliseconds to wait before each try of recording an attempt.
fn record_waits_ms() -> impl Iterator<Item = u64> {
    [0, 100, 400, 1000, 2000]
        .into_iter()
        .chain(std::iter::repeat(5000))
}

fn unrecorded(h: &HandlerConfig, c: &Claimed) {
    tracing::error!(handler = %h.name, delivery = c.delivery, "stopping with the attempt unrecorded; it will be retried after a restart");
}

/// The deliveries to hand back (see `hand_back`), if any.
fn unclaim_ids(claimed: &VecDeque<Claimed>) -> Option<Vec<i64>> {
    let ids: Vec<i64> = claimed.iter().map(|c| c.delivery).collect();
    (!ids.is_empty()).then_some(ids)
}

fn handed_back(result: crate::store::Result<()>) {
    if let Err(e) = result {
        tracing::warn!(
            "cannot hand back claimed deliveries (they are recovered at the next start): {e}"
        );
    }
}

/// An attempt's record with its number, replay flag, start and duration.
fn stamp(
    mut rec: AttemptRecord,
    c: &Claimed,
    started_at: i64,
    clock: std::time::Instant,
) -> AttemptRecord {
    rec.attempt = c.attempt;
    rec.replay = c.replay;
    rec.started_at = started_at;
    rec.duration_us = clock.elapsed().as_micros() as i64;
    rec
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

/// A record in flight: how many deliveries it asked for, and what it claimed.
type InFlight<'a> = Pin<Box<dyn Future<Output = (usize, Vec<Claimed>)> + Send + 'a>>;

/// One slot's deliveries claimed ahead and its attempt records in flight.
struct Slot<'a> {
    queue: VecDeque<Claimed>,
    records: FuturesOrdered<InFlight<'a>>,
    /// Deliveries asked for by records still in flight.
    asked: usize,
}

impl Slot<'_> {
    /// Takes in what a finished record claimed.
    fn absorb(&mut self, (want, claimed): (usize, Vec<Claimed>)) {
        self.asked -= want;
        self.queue.extend(claimed);
    }

    /// Awaits `run` while records finish beside it. Records come first, so
    /// the one just queued reaches the writer before the handler spawns.
    async fn run_beside_records<T>(&mut self, run: impl Future<Output = T>) -> T {
        tokio::pin!(run);
        loop {
            tokio::select! {
                biased;
                Some(done) = self.records.next(), if !self.records.is_empty() => self.absorb(done),
                out = &mut run => return out,
            }
        }
    }
}

fn exhausted(c: &Claimed) -> AttemptRecord {
    AttemptRecord {
        attempt: c.attempt,
        replay: c.replay,
        started_at: timefmt::now_micros(),
        outcome: "interrupted".into(),
        summary: "no attempts left (the last one was interrupted by a stop)".into(),
        ..Default::default()
    }
}

fn from_exec(o: RunOutcome) -> AttemptRecord {
    let (outcome, exit_code, signal) = match &o.kind {
        ExitKind::Exited(0) => ("ok", Some(0), None),
        ExitKind::Exited(n) => ("exit", Some(*n), None),
        ExitKind::Signaled(s) => ("signal", None, Some(*s)),
        ExitKind::TimedOut => ("timeout", None, None),
        ExitKind::SpawnFailed(_) => ("spawn_error", None, None),
        ExitKind::Cancelled => ("interrupted", None, None),
    };
    AttemptRecord {
        outcome: outcome.into(),
        exit_code,
        signal,
        summary: o.describe(),
        stdout_truncated: o.stdout.truncated,
        stderr_truncated: o.stderr.truncated,
        stdout: o.stdout.bytes,
        stderr: o.stderr.bytes,
        ..Default::default()
    }
}

fn from_stream(o: StreamOutcome) -> AttemptRecord {
    let (outcome, summary) = match o {
        StreamOutcome::Ok => ("ok", "acknowledged".to_string()),
        StreamOutcome::Nack(e) => ("nack", format!("the handler answered ok=false: {e}")),
        StreamOutcome::TimedOut => (
            "timeout",
            "no answer from the stream handler in time".to_string(),
        ),
        StreamOutcome::ProcessExited(e) => (
            "exit",
            format!("the stream process ended before answering: {e}"),
        ),
        StreamOutcome::Cancelled => ("interrupted", "stopped at shutdown".to_string()),
    };
    AttemptRecord {
        outcome: outcome.into(),
        summary,
        ..Default::default()
    }
}
