//! The delivery rules both store backends follow, kept apart from their
//! SQL so that SQLite and PostgreSQL cannot drift.
//!
//! What a claim is: a due delivery (`pending`, or `failed` with its retry
//! time reached) becomes `running` and its attempt counter goes up in the
//! same statement. What follows an attempt ([`next_after`]) and where the
//! delivery goes then ([`after_attempt`]). What undoing a claim that never
//! ran does ([`UNCLAIMED_STATUS_SQL`]). What a run that was cut off
//! counts as: an `interrupted` attempt, due again at once. And the state
//! an event is listed in, from its deliveries ([`EVENT_STATUS_SQL`]). This
//! module owns no SQL dialect: its SQL fragments are plain SQL both
//! engines read the same way.

use std::time::Duration;

use crate::retry::{self, Backoff};

// The states a delivery is in (`deliveries.status`).
pub const PENDING: &str = "pending";
pub const RUNNING: &str = "running";
pub const FAILED: &str = "failed";
pub const SUCCEEDED: &str = "succeeded";
pub const DEAD: &str = "dead";

/// What happens to the delivery after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    Succeeded,
    RetryAt(i64),
    Dead,
    /// Not the handler's fault (shutdown): back to pending, due now.
    HandBack,
}

/// The outcome stored for a run that was cut off (crash, lost lease).
pub const INTERRUPTED: &str = "interrupted";

/// `last_error` of a run found running when hookd started again.
pub const INTERRUPTED_AT_START: &str = "interrupted: hookd stopped while the handler ran";

/// `last_error` of a run whose replica stopped renewing its lease.
pub const INTERRUPTED_LEASE: &str =
    "interrupted: the replica running it stopped renewing its lease";

/// The status a claim that never ran goes back to, given the counter
/// already raised by that claim: a delivery tried before is `failed`
/// (waiting for its retry), one never tried is `pending`.
pub const UNCLAIMED_STATUS_SQL: &str = "CASE WHEN attempts > 1 THEN 'failed' ELSE 'pending' END";

/// An event's overall state (`events e`), derived from its deliveries:
/// `unrouted` with no handler, else the most urgent of its deliveries'
/// states (dead, running, failed, pending), else `succeeded`.
pub const EVENT_STATUS_SQL: &str = "CASE WHEN e.routed = 0 THEN 'unrouted' ELSE COALESCE((
    SELECT CASE WHEN SUM(CASE WHEN d.status = 'dead' THEN 1 ELSE 0 END) > 0 THEN 'dead'
                WHEN SUM(CASE WHEN d.status = 'running' THEN 1 ELSE 0 END) > 0 THEN 'running'
                WHEN SUM(CASE WHEN d.status = 'failed' THEN 1 ELSE 0 END) > 0 THEN 'failed'
                WHEN SUM(CASE WHEN d.status = 'pending' THEN 1 ELSE 0 END) > 0 THEN 'pending'
                ELSE 'succeeded' END
    FROM deliveries d WHERE d.event = e.id), 'unrouted') END";

/// The deliveries whose work is not finished: their events are kept by
/// `hookd prune` (`d` is the deliveries table).
pub const UNFINISHED_SQL: &str = "d.status IN ('pending', 'failed', 'running')";

/// How an attempt ended, as far as what follows depends on it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ended<'a> {
    /// `ok`, `exit`, `interrupted`, … (an attempt's `outcome` column).
    pub outcome: &'a str,
    /// The target said not to try again (an http handler's 4xx with
    /// `retry_on_4xx = false`).
    pub no_retry: bool,
    /// When the target asked to be tried again (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl<'a> Ended<'a> {
    /// An attempt that ended with `outcome` and nothing else to say.
    pub fn with(outcome: &'a str) -> Self {
        Ended {
            outcome,
            ..Default::default()
        }
    }
}

/// What follows attempt number `attempt`: success, a retry after the
/// handler's backoff (or the target's `Retry-After`, up to the backoff's
/// longest wait), dead once `max_attempts` are used or the target refused
/// for good, or back to the queue when the run was stopped by a shutdown
/// (`stopping`), which is not the handler's fault.
pub fn next_after(
    ended: Ended<'_>,
    stopping: bool,
    attempt: u32,
    max_attempts: u32,
    backoff: &Backoff,
    now: i64,
) -> Next {
    if ended.outcome == "ok" {
        Next::Succeeded
    } else if ended.outcome == INTERRUPTED && stopping {
        Next::HandBack
    } else if attempt >= max_attempts || ended.no_retry {
        Next::Dead
    } else {
        let wait = match ended.retry_after {
            Some(asked) => asked.min(backoff.max),
            None => retry::delay(backoff, attempt),
        };
        Next::RetryAt(now + wait.as_micros() as i64)
    }
}

/// Where a delivery goes after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition<'a> {
    pub status: &'static str,
    pub next_attempt_at: i64,
    pub last_error: Option<&'a str>,
}

/// The row's new state after an attempt summarised by `summary`.
pub fn after_attempt(next: Next, summary: &str, now: i64) -> Transition<'_> {
    let (status, next_attempt_at, last_error) = match next {
        Next::Succeeded => (SUCCEEDED, now, None),
        Next::RetryAt(t) => (FAILED, t, Some(summary)),
        Next::Dead => (DEAD, now, Some(summary)),
        Next::HandBack => (PENDING, now, Some(summary)),
    };
    Transition {
        status,
        next_attempt_at,
        last_error,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const B: Backoff = Backoff {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(60),
    };

    #[test]
    fn the_next_step_of_an_attempt() {
        let e = Ended::with;
        assert_eq!(next_after(e("ok"), true, 9, 3, &B, 0), Next::Succeeded);
        assert_eq!(
            next_after(e(INTERRUPTED), true, 1, 3, &B, 0),
            Next::HandBack
        );
        assert_eq!(next_after(e("exit"), true, 3, 3, &B, 0), Next::Dead);
        let Next::RetryAt(t) = next_after(e(INTERRUPTED), false, 2, 3, &B, 1_000_000) else {
            panic!("an interrupted run outside a shutdown is retried");
        };
        assert!((2_000_000..=3_000_000).contains(&t), "{t}");
        let refused = Ended {
            no_retry: true,
            ..e("http")
        };
        assert_eq!(next_after(refused, false, 1, 3, &B, 0), Next::Dead);
        let asked = |secs| Ended {
            retry_after: Some(Duration::from_secs(secs)),
            ..e("http")
        };
        assert_eq!(
            next_after(asked(7), false, 1, 3, &B, 0),
            Next::RetryAt(7_000_000),
            "the target's Retry-After"
        );
        assert_eq!(
            next_after(asked(3600), false, 1, 3, &B, 0),
            Next::RetryAt(60_000_000),
            "capped at the backoff's longest wait"
        );
    }

    #[test]
    fn where_the_delivery_goes() {
        let t = after_attempt(Next::RetryAt(50), "exit 1", 10);
        assert_eq!(
            (t.status, t.next_attempt_at, t.last_error),
            (FAILED, 50, Some("exit 1"))
        );
        let t = after_attempt(Next::Succeeded, "ok", 10);
        assert_eq!((t.status, t.last_error), (SUCCEEDED, None));
        assert_eq!(after_attempt(Next::HandBack, "x", 10).status, PENDING);
        assert_eq!(after_attempt(Next::Dead, "x", 10).status, DEAD);
    }
}
