//! Retry timing: exponential backoff with jitter.
//!
//! Attempt n waits `initial × 2^(n-1)`, capped at `max`, then a random
//! 50–100 % of that ("equal jitter"), so handlers failing together do not
//! retry in lockstep, yet the wait never collapses to zero.
//!
//! A leaf: handler retries (`store::rules`), pull sources' reconnects and
//! config (`[handler] backoff`, a source's `backoff`) all use it, so it must
//! import none of them.

use std::time::Duration;

/// A backoff as configured: the first wait and the longest.
#[derive(Clone, Debug, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

/// The wait after failed attempt number `attempt` (1-based).
pub fn delay(b: &Backoff, attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(40);
    let full = b.initial.saturating_mul(1u32 << exp.min(31)).min(b.max);
    let full = if exp > 31 { b.max } else { full };
    let half = full / 2;
    half + half.mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_is_capped_and_jittered() {
        let b = Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        };
        for _ in 0..200 {
            let d1 = delay(&b, 1);
            assert!(
                d1 >= Duration::from_millis(500) && d1 <= Duration::from_secs(1),
                "{d1:?}"
            );
            let d4 = delay(&b, 4);
            assert!(
                d4 >= Duration::from_secs(4) && d4 <= Duration::from_secs(8),
                "{d4:?}"
            );
            let d100 = delay(&b, 100);
            assert!(
                d100 >= Duration::from_secs(30) && d100 <= Duration::from_secs(60),
                "{d100:?}"
            );
        }
        let spread: std::collections::HashSet<_> = (0..50).map(|_| delay(&b, 3)).collect();
        assert!(spread.len() > 10, "jitter varies the delay");
    }
}
