//! The paging catch-up: reading a provider's poll endpoint from the stored
//! position until it has nothing newer. Poll sources run it on every
//! interval; SSE sources run it as the backfill of every connection.
//!
//! Owns one request (`since` values, fetch, parse, the classification of a
//! refusal) and the paging over them. It must not know which kind of source
//! runs it, nor import `poll`, `sse` or the task runner.
//!
//! A poll asks `GET url?since=<cursor>&limit=<n>` and reads the items at the
//! configured JSON pointer. [`catch_up`] pages from the stored position
//! until the provider has nothing newer, committing each page together with
//! the position it reaches, so a crash between pages re-reads at most one
//! page (and its events are duplicates).
//!
//! Where each request starts (`Pager`): the first request of a cycle
//! re-reads a small `overlap` before the stored time, for events stored by
//! the provider a moment late. Within the cycle, each next page starts one
//! tick (of the cursor's resolution) before the newest item of the page
//! before: `since` is exclusive, so starting exactly at that item would skip
//! others that share its timestamp across the page edge; re-reading them
//! costs only duplicates. A full page of duplicates therefore still moves
//! on. Only a page whose items all share one cursor value cannot move (more
//! than `limit` events at one value): that is warned about, and the pager
//! steps past the value rather than asking for the same page for ever.
//!
//! A failed poll (network, 5xx, 429, an answer that is not the expected
//! JSON) moves nothing and is retried with backoff, honouring
//! `Retry-After`; 401/403/404 stop the source, because asking again cannot
//! help.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, StatusCode};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::shared::{self, Item, PullCtx, provider_message};
use crate::config::{PollConfig, PullConfig, SinceFormat};
use crate::preset::Mode;
use crate::provider::manage::client;
use crate::secret::Secret;
use crate::store::cursors::{Advance, Cursor};
use crate::store::pull_status::Counts;
use crate::timefmt;

/// Largest poll answer read; beyond it the poll fails (and is retried).
const MAX_PAGE_BYTES: usize = 32 << 20;
/// Longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Why a poll produced nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchError {
    /// The provider refused us (401/403/404): stop, the operator must act.
    Fatal(String),
    /// Worth asking again later; `after` is the provider's Retry-After.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Fatal(r) | FetchError::Retry { reason: r, .. } => f.write_str(r),
        }
    }
}

fn retry(reason: impl Into<String>) -> FetchError {
    FetchError::Retry {
        reason: reason.into(),
        after: None,
    }
}

/// One item of an answer: the event bytes and where it puts the cursor.
#[derive(Debug)]
pub struct PageItem {
    pub body: Bytes,
    pub cursor: Option<String>,
    /// The cursor as a time (unix µs), when it is one.
    pub at: Option<i64>,
}

/// The `since` value for a stored position: the time minus the overlap, or
/// the opaque cursor; None on a source's very first poll (the provider then
/// answers from the start of what it keeps).
pub fn since_value(cfg: &PollConfig, cur: &Cursor) -> Option<String> {
    // Without a cursor pointer there is nothing to resume from.
    cfg.cursor.as_ref()?;
    match cfg.since_format {
        SinceFormat::Opaque => cur.cursor.clone(),
        f => {
            let overlap = cfg.overlap.as_micros().min(i64::MAX as u128) as i64;
            Some(format_since(f, cur.position_at?.saturating_sub(overlap)))
        }
    }
}

/// The `since` that asks for the page after one whose newest item is
/// `adv`: one tick of the format's resolution before that item, so items
/// sharing its time are re-read rather than skipped; an opaque cursor as it
/// is. None when the page gave no cursor to continue from.
pub fn next_page_since(cfg: &PollConfig, adv: &Advance) -> Option<String> {
    cfg.cursor.as_ref()?;
    match cfg.since_format {
        SinceFormat::Opaque => adv.cursor.clone(),
        f => Some(format_since(f, adv.position_at?.saturating_sub(tick(f)))),
    }
}

/// The `since` that steps past a time that more than a page of items share
/// (exclusive: the items at `at` not yet read are skipped).
fn past_since(f: SinceFormat, at: i64) -> String {
    format_since(f, at)
}

/// The smallest step (µs) a `since` of this format can express.
fn tick(f: SinceFormat) -> i64 {
    match f {
        SinceFormat::Unix => 1_000_000,
        SinceFormat::UnixMs => 1_000,
        SinceFormat::Rfc3339 | SinceFormat::Opaque => 1,
    }
}

/// A time (unix µs) as a `since` parameter of this format.
fn format_since(f: SinceFormat, t: i64) -> String {
    match f {
        SinceFormat::Unix => t.div_euclid(1_000_000).to_string(),
        SinceFormat::UnixMs => t.div_euclid(1_000).to_string(),
        _ => timefmt::format_micros(t),
    }
}

/// Reads one page.
pub async fn fetch(
    http: &reqwest::Client,
    cfg: &PollConfig,
    webhook_id: Option<&str>,
    key: Option<&Secret>,
    since: Option<&str>,
) -> Result<Vec<PageItem>, FetchError> {
    let mut url = shared::build_url(&cfg.url, webhook_id, &cfg.auth, key).map_err(retry)?;
    {
        let mut q = url.query_pairs_mut();
        if let Some(s) = since {
            q.append_pair(&cfg.since_param, s);
        }
        if let Some(l) = &cfg.limit_param {
            q.append_pair(l, &cfg.limit.to_string());
        }
    }
    let shown = shared::redact(&url);
    let mut req = http
        .get(url)
        .timeout(cfg.timeout)
        .header(http::header::ACCEPT, "application/json");
    if let Some((h, v)) = shared::auth_header(&cfg.auth, key).map_err(retry)? {
        req = req.header(h, v);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| retry(format!("poll of {shown} failed: {}", e.without_url())))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = read_limited(resp, MAX_PAGE_BYTES)
        .await
        .map_err(|e| retry(format!("poll of {shown}: {e}")))?;
    if !status.is_success() {
        return Err(refusal(status, &headers, &body, &shown));
    }
    parse_page(cfg, &body).map_err(|e| retry(format!("poll of {shown}: {e}")))
}

/// Classifies a non-2xx answer.
fn refusal(status: StatusCode, headers: &HeaderMap, body: &[u8], shown: &str) -> FetchError {
    let what = format!("{shown} answered {status}{}", provider_message(body));
    match status.as_u16() {
        401 | 403 => FetchError::Fatal(format!("{what}; check the source's api_key")),
        404 => FetchError::Fatal(format!("{what}; check the URL and the webhook id")),
        _ => FetchError::Retry {
            reason: what,
            after: retry_after(headers),
        },
    }
}

/// `Retry-After` as seconds or an HTTP date, capped.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    let secs = client::parse_retry_after(v)?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

async fn read_limited(resp: reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| format!("reading the answer failed: {}", e.without_url()))?;
        if out.len() + chunk.len() > max {
            return Err(format!("the answer is larger than {max} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The items of an answer, each with its cursor.
pub fn parse_page(cfg: &PollConfig, body: &[u8]) -> Result<Vec<PageItem>, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON ({e})"))?;
    let items = v
        .pointer(&cfg.items)
        .and_then(Value::as_array)
        .ok_or_else(|| format!("the answer has no array at {:?}", cfg.items))?;
    items
        .iter()
        .map(|item| {
            let event = match cfg.body.as_str() {
                "" => item,
                p => item.pointer(p).unwrap_or(item),
            };
            let cursor = cfg
                .cursor
                .as_deref()
                .and_then(|p| item.pointer(p))
                .and_then(|c| match c {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                });
            let at = cursor
                .as_deref()
                .and_then(|c| cursor_time(cfg.since_format, c));
            let body = serde_json::to_vec(event).map_err(|e| e.to_string())?;
            Ok(PageItem {
                body: Bytes::from(body),
                cursor,
                at,
            })
        })
        .collect()
}

fn cursor_time(f: SinceFormat, c: &str) -> Option<i64> {
    match f {
        SinceFormat::Opaque => None,
        SinceFormat::Unix => c.parse::<i64>().ok()?.checked_mul(1_000_000),
        SinceFormat::UnixMs => c.parse::<i64>().ok()?.checked_mul(1_000),
        SinceFormat::Rfc3339 => timefmt::parse_lenient(c),
    }
}

/// How a catch-up ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaughtUp {
    pub pages: u32,
    pub accepted: usize,
    /// The position reached (unix µs), if the cursor is a time.
    pub position_at: Option<i64>,
}

/// Pages from the stored position until the provider has nothing newer.
/// Each page is committed with the position it reaches.
pub async fn catch_up(
    ctx: &PullCtx,
    name: &str,
    mode: Mode,
    pull: &PullConfig,
    webhook_id: Option<&str>,
    stop: &CancellationToken,
) -> Result<CaughtUp, FetchError> {
    let cfg = pull.poll.as_ref().expect("a poll endpoint");
    let mut cur = shared::position(ctx, name)
        .await
        .map_err(|e| retry(format!("cannot read the stored cursor: {e}")))?;
    let mut out = CaughtUp {
        position_at: cur.position_at,
        ..Default::default()
    };
    let mut since = since_value(cfg, &cur);
    while !stop.is_cancelled() {
        ctx.ingest.metrics.polled(name);
        let mut items = match fetch(
            &ctx.http,
            cfg,
            webhook_id,
            pull.api_key.as_ref(),
            since.as_deref(),
        )
        .await
        {
            Ok(items) => items,
            Err(e) => {
                count_poll_without_events(ctx, name).await;
                return Err(e);
            }
        };
        out.pages += 1;
        let n = items.len();
        if n == 0 {
            count_poll_without_events(ctx, name).await;
            return Ok(out);
        }
        if cfg.since_format.is_time() {
            // Oldest first, so events are stored (and dispatched) in order.
            items.sort_by_key(|i| i.at.unwrap_or(i64::MIN));
        }
        let advance = page_advance(&items);
        if cfg.since_format.is_time() && advance.position_at.is_none() && advance.cursor.is_some() {
            tracing::warn!(
                source = %name,
                "the cursor {:?} is not a time, so polling cannot resume from it; set since_format = \"opaque\" (or unix, unix_ms)",
                advance.cursor.as_deref().unwrap_or_default()
            );
        }
        let read_at = Instant::now();
        let batch = items
            .into_iter()
            .map(|i| Item {
                body: i.body,
                headers: HeaderMap::new(),
                read_at,
            })
            .collect();
        let done = shared::commit(ctx, name, mode, batch, advance.clone(), false, 1)
            .await
            .map_err(|e| retry(format!("the page could not be stored: {e}")))?;
        out.accepted += done.accepted;
        if let Some(p) = advance.position_at {
            cur.position_at = Some(cur.position_at.map_or(p, |c| c.max(p)));
        }
        out.position_at = cur.position_at;
        let full = cfg.limit_param.is_none() || n >= cfg.limit as usize;
        if !full {
            return Ok(out);
        }
        match after_full_page(cfg, name, since.as_deref(), &advance) {
            Some(next) => since = Some(next),
            None => return Ok(out),
        }
    }
    Ok(out)
}

/// The `since` of the page after a full one, or None when paging must end
/// (no cursor to continue from, or an opaque cursor that did not move).
/// A page that cannot move the time cursor (all its items share the value
/// it was asked from) is warned about and stepped past.
fn after_full_page(
    cfg: &PollConfig,
    name: &str,
    since: Option<&str>,
    adv: &Advance,
) -> Option<String> {
    let next = next_page_since(cfg, adv)?;
    if since != Some(next.as_str()) {
        return Some(next);
    }
    let shown = adv.cursor.as_deref().unwrap_or_default();
    match (cfg.since_format, adv.position_at) {
        (SinceFormat::Opaque, _) | (_, None) => {
            tracing::warn!(
                source = %name,
                "the provider answered a full page that ends at the cursor {shown:?} it was asked from, so polling cannot move on; it asks again at the next interval"
            );
            None
        }
        (f, Some(at)) => {
            tracing::warn!(
                source = %name,
                "more than limit = {} events share the cursor value {shown:?}, so a page cannot get past them: polling moves on after that value, and those of them not on this page are not read; raise limit",
                cfg.limit
            );
            Some(past_since(f, at))
        }
    }
}

/// Counts a poll that stored nothing (it failed, or its page was empty);
/// a page with items is counted when it is committed (`shared::commit`).
async fn count_poll_without_events(ctx: &PullCtx, name: &str) {
    shared::count(
        ctx,
        name,
        Counts {
            polls: 1,
            ..Default::default()
        },
    )
    .await;
}

/// Where a page moves the position: the newest item's cursor.
fn page_advance(items: &[PageItem]) -> Advance {
    let newest = items
        .iter()
        .filter(|i| i.at.is_some())
        .max_by_key(|i| i.at)
        .or_else(|| items.iter().rev().find(|i| i.cursor.is_some()));
    Advance {
        cursor: newest.and_then(|i| i.cursor.clone()),
        position_at: newest.and_then(|i| i.at),
        last_event_id: None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{Auth, Backoff};

    pub(crate) fn cfg(format: SinceFormat) -> PollConfig {
        PollConfig {
            url: "http://127.0.0.1:1/events".into(),
            auth: Auth::default(),
            items: "/data/items".into(),
            body: "/event".into(),
            cursor: Some("/created_at".into()),
            since_param: "since".into(),
            limit_param: Some("limit".into()),
            limit: 2,
            interval: Duration::from_secs(1),
            overlap: Duration::from_secs(2),
            retention: Some(Duration::from_secs(3600)),
            since_format: format,
            timeout: Duration::from_secs(1),
            backoff: Backoff {
                initial: Duration::from_millis(10),
                max: Duration::from_millis(100),
            },
        }
    }

    const T: i64 = 1_747_863_000_000_000; // 2025-05-21T21:30:00Z

    #[test]
    fn since_subtracts_the_overlap_in_each_format() {
        let cur = Cursor {
            cursor: Some("c9".into()),
            position_at: Some(T),
            ..Default::default()
        };
        assert_eq!(
            since_value(&cfg(SinceFormat::Rfc3339), &cur).as_deref(),
            Some("2025-05-21T21:29:58.000000Z")
        );
        assert_eq!(
            since_value(&cfg(SinceFormat::Unix), &cur).as_deref(),
            Some("1747862998")
        );
        assert_eq!(
            since_value(&cfg(SinceFormat::UnixMs), &cur).as_deref(),
            Some("1747862998000")
        );
        assert_eq!(
            since_value(&cfg(SinceFormat::Opaque), &cur).as_deref(),
            Some("c9")
        );
        assert_eq!(
            since_value(&cfg(SinceFormat::Rfc3339), &Cursor::default()),
            None
        );
    }

    fn adv(at: i64) -> Advance {
        Advance {
            cursor: Some(timefmt::format_micros(at)),
            position_at: Some(at),
            last_event_id: None,
        }
    }

    #[test]
    fn next_pages_start_one_tick_before_the_newest_item_without_overlap() {
        let next = |f| next_page_since(&cfg(f), &adv(T + 1_500_000));
        assert_eq!(
            next(SinceFormat::Rfc3339).as_deref(),
            Some("2025-05-21T21:30:01.499999Z"),
            "items sharing the newest time are re-read, the overlap is not"
        );
        assert_eq!(next(SinceFormat::UnixMs).as_deref(), Some("1747863001499"));
        assert_eq!(next(SinceFormat::Unix).as_deref(), Some("1747863000"));
        let opaque = Advance {
            cursor: Some("c9".into()),
            ..Default::default()
        };
        assert_eq!(
            next_page_since(&cfg(SinceFormat::Opaque), &opaque).as_deref(),
            Some("c9")
        );
        assert_eq!(
            next_page_since(&cfg(SinceFormat::Rfc3339), &Advance::default()),
            None
        );
    }

    #[test]
    fn a_full_page_moves_on_unless_it_cannot_move_the_cursor() {
        let c = cfg(SinceFormat::Rfc3339);
        // A page (of duplicates, say) whose newest item is ahead of `since`.
        let since = since_value(
            &c,
            &Cursor {
                position_at: Some(T),
                ..Default::default()
            },
        );
        assert_eq!(
            after_full_page(&c, "s", since.as_deref(), &adv(T)).as_deref(),
            Some("2025-05-21T21:29:59.999999Z")
        );
        // Asked from just before T, every item is at T: it steps past T.
        let stuck = next_page_since(&c, &adv(T));
        assert_eq!(
            after_full_page(&c, "s", stuck.as_deref(), &adv(T)).as_deref(),
            Some("2025-05-21T21:30:00.000000Z")
        );
        // An opaque cursor that did not move ends the cycle.
        let o = cfg(SinceFormat::Opaque);
        let same = Advance {
            cursor: Some("c9".into()),
            ..Default::default()
        };
        assert_eq!(after_full_page(&o, "s", Some("c9"), &same), None);
        assert_eq!(
            after_full_page(&o, "s", Some("c8"), &same).as_deref(),
            Some("c9")
        );
    }

    #[test]
    fn parses_linkup_shaped_pages_and_refuses_garbage() {
        let body = br#"{"success":true,"data":{"items":[
            {"event_id":"e2","event":{"account_id":"a","event":{"type":"message"},"timestamp":"x"},"created_at":"2025-05-21T21:30:01.000000"},
            {"event_id":"e1","event":{"account_id":"a","event":{"type":"message"},"timestamp":"y"},"created_at":"2025-05-21T21:30:00.000000"}]}}"#;
        let items = parse_page(&cfg(SinceFormat::Rfc3339), body).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].at, Some(T));
        let ev: Value = serde_json::from_slice(&items[0].body).unwrap();
        assert_eq!(ev["account_id"], "a", "the stored body is the item's event");
        let adv = page_advance(&items);
        assert_eq!(adv.position_at, Some(T + 1_000_000));
        assert_eq!(adv.cursor.as_deref(), Some("2025-05-21T21:30:01.000000"));
        assert!(parse_page(&cfg(SinceFormat::Rfc3339), b"<html>").is_err());
        assert!(parse_page(&cfg(SinceFormat::Rfc3339), br#"{"data":{}}"#).is_err());
    }

    #[test]
    fn classifies_refusals_and_reads_retry_after() {
        let mut h = HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let body = br#"{"success":false,"error":{"code":"INVALID_API_KEY","message":"bad key"}}"#;
        let e = refusal(StatusCode::FORBIDDEN, &h, body, "http://x/events");
        assert_eq!(
            e,
            FetchError::Fatal(
                "http://x/events answered 403 Forbidden: INVALID_API_KEY: bad key; check the source's api_key".into()
            )
        );
        let e = refusal(StatusCode::TOO_MANY_REQUESTS, &h, b"slow down", "u");
        assert_eq!(
            e,
            FetchError::Retry {
                reason: "u answered 429 Too Many Requests: slow down".into(),
                after: Some(Duration::from_secs(7))
            }
        );
        h.insert(
            http::header::RETRY_AFTER,
            "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap(),
        );
        assert_eq!(
            retry_after(&h),
            Some(Duration::ZERO),
            "a past date means now"
        );
    }
}
