//! The async slot: a stream or http handler's deliveries run back to back
//! on a task, each attempt's record sent beside the next run, and the
//! stream process or http runner kept per handler (rebuilt when its config
//! changes). Exec slots do the same on a thread of their own (`exec_slot`).
//!
//! Owns holding ahead for http and the per-handler stream/http state; what
//! a record says and what follows it are `record`'s. Must not import
//! `claim`.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;

use super::record::{exhausted, from_stream, holds_ahead, stamp};
use super::{Dispatcher, KILL_GRACE, OUTPUT_CAP, exec_slot};
use crate::config::{HandlerConfig, HandlerKind};
use crate::dispatch::envelope;
use crate::dispatch::http::HttpRunner;
use crate::dispatch::stream::{StreamHandle, StreamSpec};
use crate::store::deliveries::{AttemptRecord, Claimed};
use crate::timefmt;

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

impl Dispatcher {
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
    pub(super) async fn run_slot(
        &self,
        mut h: Arc<HandlerConfig>,
        first: Claimed,
    ) -> Arc<HandlerConfig> {
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

    /// Sends one event to the handler's stream process or http target and
    /// describes how it went. (Exec runs happen in `run_exec_slot`.)
    pub(super) async fn attempt(&self, h: &HandlerConfig, c: &Claimed) -> AttemptRecord {
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
    pub(super) async fn http_attempt(&self, h: &HandlerConfig, c: &Claimed) -> AttemptRecord {
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
    pub(super) fn http_for(&self, h: &HandlerConfig) -> Result<Arc<HttpRunner>, String> {
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

    /// The long-lived process of a stream handler, (re)started when its
    /// config changed.
    pub(super) fn stream_for(&self, h: &HandlerConfig) -> StreamHandle {
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
