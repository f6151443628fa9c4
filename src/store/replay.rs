//! What replaying an (event, handler) pair does to the dispatch queue,
//! shared by both store backends so that `hookd replay` and the console's
//! replay buttons mean the same on SQLite and PostgreSQL.
//!
//! A delivery that is running is left alone (its run is not interrupted).
//! Any other existing delivery starts over as a replay: `pending`, due now,
//! attempt counter at zero (a fresh attempt budget), no last error. A pair
//! with no delivery yet (a handler added since the event arrived) gets a
//! new one, marked as a replay, and the event counts one more route.

use super::rules::{PENDING, RUNNING};

/// The outcome of replaying one pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requeued {
    Queued,
    AlreadyRunning,
}

/// What to do with one pair, given its delivery's status (None: none yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Running right now: leave it.
    Skip,
    /// Put the existing delivery back in the queue as [`Replayed`] says.
    Reset,
    /// Create the delivery as [`Replayed`] says, and count the route.
    Create,
}

/// The step for a delivery currently in `status`.
pub fn step(status: Option<&str>) -> Step {
    match status {
        Some(RUNNING) => Step::Skip,
        Some(_) => Step::Reset,
        None => Step::Create,
    }
}

/// The state a replayed delivery is written with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replayed {
    pub status: &'static str,
    pub attempts: i32,
    pub replay: bool,
    pub next_attempt_at: i64,
    pub updated_at: i64,
}

/// A delivery replayed at `now`: waiting, due at once, a fresh budget.
pub fn replayed(now: i64) -> Replayed {
    Replayed {
        status: PENDING,
        attempts: 0,
        replay: true,
        next_attempt_at: now,
        updated_at: now,
    }
}

/// Adds up the outcomes of a batch: (queued, skipped because running).
pub fn tally(outcomes: impl IntoIterator<Item = Requeued>) -> (usize, usize) {
    outcomes.into_iter().fold((0, 0), |(q, r), o| match o {
        Requeued::Queued => (q + 1, r),
        Requeued::AlreadyRunning => (q, r + 1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::rules::{DEAD, SUCCEEDED};

    #[test]
    fn running_is_left_alone_the_rest_starts_over() {
        assert_eq!(step(Some(RUNNING)), Step::Skip);
        assert_eq!(step(Some(DEAD)), Step::Reset);
        assert_eq!(step(Some(SUCCEEDED)), Step::Reset);
        assert_eq!(step(None), Step::Create);
        let r = replayed(7);
        assert_eq!((r.status, r.attempts, r.replay), (PENDING, 0, true));
        assert_eq!((r.next_attempt_at, r.updated_at), (7, 7));
        let outcomes = [Requeued::Queued, Requeued::AlreadyRunning, Requeued::Queued];
        assert_eq!(tally(outcomes), (2, 1));
    }
}
