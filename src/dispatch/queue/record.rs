//! Recording: how an attempt becomes a record (exec exit, stream answer,
//! exhausted attempts), what follows it (success, a retry time from the
//! delivery rules, dead, or back to the queue at shutdown), and the one
//! write that stores it and claims the slot's next deliveries. Keeps
//! retrying that write while the store is down.
//!
//! Shared by both slot kinds; must not import `claim` or either slot.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use super::Dispatcher;
use crate::config::{HandlerConfig, HandlerKind};
use crate::dispatch::attempt::{ExitKind, RunOutcome};
use crate::dispatch::stream::StreamOutcome;
use crate::store::deliveries::{AttemptRecord, ClaimNext, Claimed, Next, Record};
use crate::store::rules;
use crate::timefmt;

impl Dispatcher {
    /// Returns deliveries claimed ahead but never started to the queue, as
    /// they were: no attempt is counted.
    pub(super) async fn hand_back(&self, claimed: VecDeque<Claimed>) {
        if let Some(ids) = unclaim_ids(&claimed) {
            handed_back(self.inner.store.unclaim(ids).await);
        }
    }

    /// How many deliveries a slot's record should claim after a run, to hold
    /// `ahead` beside the next one when it already holds or asked for
    /// `holding`. Picks up a reloaded config into `h`; `None` when the
    /// handler is gone from it.
    pub(super) fn want_after_run(
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
    pub(super) async fn record(
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
    pub(super) fn next_step(&self, h: &HandlerConfig, c: &Claimed, rec: &AttemptRecord) -> Next {
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
    pub(super) fn record_of(
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
    pub(super) fn recorded(
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
    pub(super) fn gives_up_recording(&self, tries: usize) -> bool {
        tries >= 5 && self.inner.stop.is_cancelled()
    }
}

/// Whether a slot of this kind holds deliveries claimed ahead of running
/// them (see `run_slot`).
pub(super) fn holds_ahead(kind: HandlerKind) -> bool {
    kind != HandlerKind::Stream
}

/// Milliseconds to wait before each try of recording an attempt.
pub(super) fn record_waits_ms() -> impl Iterator<Item = u64> {
    [0, 100, 400, 1000, 2000]
        .into_iter()
        .chain(std::iter::repeat(5000))
}

pub(super) fn unrecorded(h: &HandlerConfig, c: &Claimed) {
    tracing::error!(handler = %h.name, delivery = c.delivery, "stopping with the attempt unrecorded; it will be retried after a restart");
}

/// The deliveries to hand back (see `hand_back`), if any.
pub(super) fn unclaim_ids(claimed: &VecDeque<Claimed>) -> Option<Vec<i64>> {
    let ids: Vec<i64> = claimed.iter().map(|c| c.delivery).collect();
    (!ids.is_empty()).then_some(ids)
}

pub(super) fn handed_back(result: crate::store::Result<()>) {
    if let Err(e) = result {
        tracing::warn!(
            "cannot hand back claimed deliveries (they are recovered at the next start): {e}"
        );
    }
}

/// An attempt's record with its number, replay flag, start and duration.
pub(super) fn stamp(
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

pub(super) fn exhausted(c: &Claimed) -> AttemptRecord {
    AttemptRecord {
        attempt: c.attempt,
        replay: c.replay,
        started_at: timefmt::now_micros(),
        outcome: "interrupted".into(),
        summary: "no attempts left (the last one was interrupted by a stop)".into(),
        ..Default::default()
    }
}

pub(super) fn from_exec(o: RunOutcome) -> AttemptRecord {
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

pub(super) fn from_stream(o: StreamOutcome) -> AttemptRecord {
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
