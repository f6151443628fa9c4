//! An exec slot, on a blocking thread for its whole life.
//!
//! Handing each run to a thread and back costs two thread wake-ups, about
//! 40 µs of CPU per run on the 2-core machine, which is taken from the
//! handlers themselves. So an exec slot lives on one blocking-pool thread:
//! it spawns, feeds and waits for each run right there (`supervise`), sends
//! each attempt record to the writer without waiting for it, and takes in
//! the deliveries the records claimed between runs. The async `run_slot`
//! does the same for stream handlers, whose runs are messages, not
//! processes.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot::error::TryRecvError;

use super::record::{
    exhausted, from_exec, handed_back, record_waits_ms, stamp, unclaim_ids, unrecorded,
};
use super::{Dispatcher, KILL_GRACE, OUTPUT_CAP};
use crate::config::HandlerConfig;
use crate::dispatch::attempt::ExecSpec;
use crate::dispatch::{envelope, supervise};
use crate::store::deliveries::{AttemptRecord, Claimed, Next};
use crate::store::{Pending, StoreError};

/// Deliveries an exec slot holds beyond the one it runs, at most.
const AHEAD: usize = 8;

/// The work, judged by the slot's last run, that one slot may hold back
/// from the others.
const HELD_WORK: Duration = Duration::from_millis(20);

/// How many deliveries to hold ahead after a run that took `took`, at most
/// `most` (exec slots hold up to [`AHEAD`], http slots more: see `run_slot`).
/// Claiming ahead lets one commit serve several runs of a fast handler;
/// but a delivery one slot holds cannot go to an idle slot, so a handler
/// whose runs take `HELD_WORK` or more holds none and its queue is shared
/// out one run at a time.
pub(super) fn ahead_after(took: Duration, most: usize) -> usize {
    let per_run = took.as_micros().max(1);
    // Held runs' work stays under HELD_WORK.
    ((HELD_WORK.as_micros() - 1) / per_run).min(most as u128) as usize
}

/// An attempt record sent to the writer and not yet taken in.
struct Sent {
    h: Arc<HandlerConfig>,
    c: Claimed,
    rec: Arc<AttemptRecord>,
    next: Next,
    /// Deliveries it asked for.
    want: usize,
    reply: Result<Pending<Vec<Claimed>>, StoreError>,
}

/// What the slot holds: deliveries claimed and the records in flight.
#[derive(Default)]
struct Held {
    queue: VecDeque<Claimed>,
    sent: VecDeque<Sent>,
    /// Deliveries asked for by records in flight.
    asked: usize,
}

impl Dispatcher {
    /// Runs deliveries of `h` back to back, as `run_slot` does, until none is
    /// left or the dispatcher stops; returns the handler's latest config.
    pub(super) fn run_exec_slot(
        &self,
        mut h: Arc<HandlerConfig>,
        first: Claimed,
    ) -> Arc<HandlerConfig> {
        let mut held = Held {
            queue: VecDeque::from([first]),
            ..Held::default()
        };
        let mut removed = false;
        loop {
            self.take_in(&mut held, Wait::No);
            if self.inner.stop.is_cancelled() || removed {
                self.take_in(&mut held, Wait::All);
                self.hand_back_now(std::mem::take(&mut held.queue));
                return h;
            }
            let Some(c) = held.queue.pop_front() else {
                if held.sent.is_empty() {
                    return h;
                }
                self.take_in(&mut held, Wait::Oldest);
                continue;
            };
            if held.queue.is_empty() && !held.sent.is_empty() {
                // The last delivery held: have the records in flight commit
                // during this run, so their claims are here when it ends.
                self.inner.store.commit_soon();
            }
            if c.ahead {
                // Before the spawn: from here on a crash counts an attempt.
                self.inner.started.note(c.delivery, c.claimed_at);
            }
            let rec = if c.attempt > h.max_attempts {
                exhausted(&c)
            } else {
                self.inner.metrics.dispatched(&h.name);
                self.run_exec(&h, &c)
            };
            let took = Duration::from_micros(rec.duration_us.max(0) as u64);
            let want = self.want_after_run(
                &mut h,
                ahead_after(took, AHEAD),
                held.queue.len() + held.asked,
            );
            removed = want.is_none();
            let want = want.unwrap_or(0);
            held.asked += want;
            let sent = self.send_record(&h, c, rec, want);
            held.sent.push_back(sent);
        }
    }

    /// One exec attempt, on this thread.
    fn run_exec(&self, h: &HandlerConfig, c: &Claimed) -> AttemptRecord {
        let (started_at, clock) = (crate::timefmt::now_micros(), Instant::now());
        let spec = ExecSpec {
            command: h.command.clone(),
            working_dir: h.working_dir.clone(),
            env: envelope::environment(h, c),
            timeout: h.timeout,
            kill_grace: KILL_GRACE,
            output_cap: OUTPUT_CAP,
        };
        let out = supervise::run(&spec, envelope::envelope(c), &self.inner.kill);
        stamp(from_exec(out), c, started_at, clock)
    }

    /// Queues the attempt's record (with the slot's next claims) without
    /// waiting for its commit.
    fn send_record(
        &self,
        h: &Arc<HandlerConfig>,
        c: Claimed,
        rec: AttemptRecord,
        want: usize,
    ) -> Sent {
        let next = self.next_step(h, &c, &rec);
        let rec = Arc::new(rec);
        let record = self.record_of(h, &c, rec.clone(), next, want);
        Sent {
            reply: self.inner.store.record_patient(record),
            h: h.clone(),
            c,
            rec,
            next,
            want,
        }
    }

    /// Takes in finished records, oldest first: those already committed, or
    /// (waiting) the oldest, or all of them.
    fn take_in(&self, held: &mut Held, wait: Wait) {
        let mut waited = false;
        while let Some(front) = held.sent.front_mut() {
            let ready = match &mut front.reply {
                Err(e) => Some(Err(e.clone())),
                Ok(rx) => match rx.try_recv() {
                    Ok(result) => Some(result),
                    Err(TryRecvError::Closed) => Some(Err(StoreError::Closed)),
                    Err(TryRecvError::Empty) => None,
                },
            };
            let may_wait = wait == Wait::All || (wait == Wait::Oldest && !waited);
            if ready.is_none() && !may_wait {
                return;
            }
            let Some(mut sent) = held.sent.pop_front() else {
                return;
            };
            let result = ready.unwrap_or_else(|| {
                // This slot has nothing left to run: no use holding the
                // record back for company any longer.
                self.inner.store.commit_soon();
                match std::mem::replace(&mut sent.reply, Err(StoreError::Closed)) {
                    Ok(rx) => rx.blocking_recv().unwrap_or(Err(StoreError::Closed)),
                    Err(e) => Err(e),
                }
            });
            waited = true;
            held.asked -= sent.want;
            held.queue.extend(self.settle(&sent, result));
        }
    }

    /// The claims of a committed record; if its write failed, keeps trying
    /// here (holding the slot, as `record` does) until it succeeds or the
    /// dispatcher stops.
    fn settle(&self, s: &Sent, first: crate::store::Result<Vec<Claimed>>) -> Vec<Claimed> {
        if let Some(claimed) = self.recorded(&s.h, &s.c, first) {
            return claimed;
        }
        for (tries, wait_ms) in record_waits_ms().enumerate().skip(1) {
            if self.gives_up_recording(tries) {
                break;
            }
            std::thread::sleep(Duration::from_millis(wait_ms));
            let record = self.record_of(&s.h, &s.c, s.rec.clone(), s.next, s.want);
            let result = self.inner.store.record_blocking(record);
            if let Some(claimed) = self.recorded(&s.h, &s.c, result) {
                return claimed;
            }
        }
        unrecorded(&s.h, &s.c);
        Vec::new()
    }

    /// `hand_back`, from this thread.
    fn hand_back_now(&self, claimed: VecDeque<Claimed>) {
        if let Some(ids) = unclaim_ids(&claimed) {
            handed_back(self.inner.store.unclaim_blocking(ids));
        }
    }
}

/// How long `take_in` may wait.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    No,
    Oldest,
    All,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_runs_hold_deliveries_ahead_and_slow_ones_none() {
        let ms = Duration::from_millis;
        assert_eq!(ahead_after(Duration::ZERO, AHEAD), AHEAD);
        assert_eq!(ahead_after(ms(1), AHEAD), AHEAD);
        assert_eq!(ahead_after(ms(4), AHEAD), 4);
        assert_eq!(ahead_after(ms(10), AHEAD), 1);
        assert_eq!(ahead_after(ms(19), AHEAD), 1);
        assert_eq!(ahead_after(HELD_WORK, AHEAD), 0);
        assert_eq!(ahead_after(Duration::from_secs(30), AHEAD), 0);
    }
}
