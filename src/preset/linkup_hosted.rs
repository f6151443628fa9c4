//! LinkUp's hosted mode (a webhook without `url`): where its SSE stream and
//! poll endpoint live and what their answers look like (PROVIDERS.md §1).
//!
//! The stream sends `event: connected` once, then one `event: webhook` per
//! event with data `{account_id, event:{type,…}, timestamp}` and no `id:`.
//! The poll endpoint answers `data.items[] = {event_id, event:{…same…},
//! created_at}` with an exclusive `since` and keeps events for 24 h. The
//! stream carries no event id, so pulled events get a content id over the
//! fields both shapes share: an event read from the stream and the same
//! event read back by a backfill poll deduplicate.

use std::time::Duration;

/// `{webhook_id}` is the subscription's remote id (config or `hookd register`).
pub const STREAM_PATH: &str = "/v2/webhooks/{webhook_id}/stream";
pub const EVENTS_PATH: &str = "/v2/webhooks/{webhook_id}/events";

/// REST calls authenticate with this header; the documented stream uses
/// the query parameter, so the stream sends both.
pub const KEY_HEADER: &str = "x-api-key";
pub const KEY_QUERY: &str = "api_key";

/// SSE event names that carry an event, and the handshake.
pub const SSE_EVENTS: &[&str] = &["webhook"];
pub const SSE_HANDSHAKE: &[&str] = &["connected"];

/// Where a poll answer keeps its items, what of an item is the event, and
/// the item's cursor.
pub const ITEMS: &str = "/data/items";
pub const BODY: &str = "/event";
pub const CURSOR: &str = "/created_at";
pub const SINCE_PARAM: &str = "since";
pub const LIMIT_PARAM: &str = "limit";
/// The documented maximum: a backlog costs a quarter of the requests of
/// LinkUp's own default (50).
pub const DEFAULT_LIMIT: u32 = 200;
pub const MAX_LIMIT: u32 = 200;
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);

/// The id of a pulled event: a hash of what the stream and poll shapes share
/// (the poll item's `event_id` never appears on the stream).
pub const PULL_ID: &[&str] = &["hash:/account_id,/event,/timestamp"];
