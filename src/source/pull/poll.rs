//! Poll sources (`mode = "poll"`): catch up, wait `interval`, again.
//!
//! The paging itself is [`super::backfill`]'s (shared with the SSE
//! backfill); this file owns the loop around it: the waiting, the backoff
//! after a failed poll (honouring `Retry-After`), stopping on a refusal
//! (401/403/404, because asking again cannot help), the status a poll
//! source reports, and the warning for a position older than the
//! provider's retention. It must not import `sse` or the task runner.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::backfill::{FetchError, catch_up};
use super::shared::{self, PullCtx, round_ms};
use crate::config::{PollConfig, PullConfig};
use crate::preset::Mode;
use crate::retry;
use crate::store::cursors::Cursor;
use crate::store::pull_status::State;
use crate::timefmt;

/// Warns when the position is older than the provider keeps events.
pub fn warn_if_expired(name: &str, cfg: &PollConfig, cur: &Cursor) -> bool {
    let (Some(ret), Some(pos)) = (cfg.retention, cur.position_at) else {
        return false;
    };
    let age = timefmt::now_micros().saturating_sub(pos);
    if age <= ret.as_micros().min(i64::MAX as u128) as i64 {
        return false;
    }
    tracing::warn!(
        source = %name,
        "the cursor is {} old, beyond the provider's retention of {}: events older than that may have expired and cannot be fetched",
        humantime::format_duration(Duration::from_secs((age / 1_000_000) as u64)),
        humantime::format_duration(ret)
    );
    true
}

/// The poll source's loop: catch up, sleep `interval`, again; back off on errors.
pub async fn run(ctx: &PullCtx, name: &str, pull: &PullConfig, stop: &CancellationToken) {
    let cfg = pull
        .poll
        .as_ref()
        .expect("validated: a poll source has a poll table");
    shared::status(ctx, name, Mode::Poll, State::Connecting, None).await;
    let Some(id) = shared::webhook_id(ctx, name, Mode::Poll, pull, stop).await else {
        return;
    };
    if let Ok(cur) = shared::position(ctx, name).await {
        warn_if_expired(name, cfg, &cur);
    }
    let mut attempt = 0u32;
    loop {
        let wait = match catch_up(ctx, name, Mode::Poll, pull, id.as_deref(), stop).await {
            Ok(_) => {
                attempt = 0;
                ctx.ingest.metrics.pull_connected(name, true);
                shared::status(ctx, name, Mode::Poll, State::Idle, None).await;
                cfg.interval
            }
            Err(FetchError::Fatal(msg)) => {
                tracing::error!(source = %name, "poll source stopped: {msg}");
                ctx.ingest.metrics.pull_error(name);
                ctx.ingest.metrics.pull_connected(name, false);
                shared::status(ctx, name, Mode::Poll, State::Stopped, Some(&msg)).await;
                return;
            }
            Err(FetchError::Retry { reason, after }) => {
                attempt += 1;
                let wait = after.unwrap_or_else(|| retry::delay(&cfg.backoff, attempt));
                tracing::warn!(
                    source = %name,
                    "poll failed, retrying in {}: {reason}",
                    humantime::format_duration(round_ms(wait))
                );
                ctx.ingest.metrics.pull_error(name);
                ctx.ingest.metrics.pull_connected(name, false);
                shared::status(ctx, name, Mode::Poll, State::Backoff, Some(&reason)).await;
                wait
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SinceFormat;
    use crate::source::pull::backfill::tests::cfg;

    #[test]
    fn warns_only_past_retention() {
        let c = cfg(SinceFormat::Rfc3339);
        let fresh = Cursor {
            position_at: Some(timefmt::now_micros() - 1_000_000),
            ..Default::default()
        };
        let old = Cursor {
            position_at: Some(timefmt::now_micros() - 7_200_000_000),
            ..Default::default()
        };
        assert!(!warn_if_expired("s", &c, &fresh));
        assert!(warn_if_expired("s", &c, &old));
    }
}
