//! What every pull source uses: the context a pull task runs with, the
//! commit of a batch (events, position and status counters in one store
//! job), status and counter updates, the stored position, the webhook id a
//! URL needs, and the URL/auth/log helpers for provider APIs.
//!
//! Owns the rules both SSE and poll follow; it knows neither of them nor the
//! task runner in `pull/mod.rs`, and must not import them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderMap;
use tokio_util::sync::CancellationToken;

use crate::config::{Auth, PullConfig};
use crate::preset::Mode;
use crate::provider::manage::client;
use crate::secret::Secret;
use crate::source::ingest::{Inbound, Ingest};
use crate::store::StoreError;
use crate::store::cursors::{self, Advance};
use crate::store::events::{Ingested, NewEvent};
use crate::store::pull_status::{Counts, State};
use crate::timefmt;
use crate::verify::Request;

/// What every pull task needs.
pub struct PullCtx {
    pub ingest: Arc<Ingest>,
    /// The daemon's HTTP client (no whole-request timeout: it streams).
    pub http: reqwest::Client,
    /// Bumped when registrations may have changed (a source waiting for
    /// its webhook id looks again).
    pub(super) registrations: Arc<tokio::sync::watch::Sender<u64>>,
}

impl PullCtx {
    pub fn new(ingest: Arc<Ingest>, http: reqwest::Client) -> PullCtx {
        PullCtx {
            ingest,
            http,
            registrations: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }
}

/// The daemon's HTTP client for provider APIs: one pool, rustls with
/// aws-lc-rs, bounded connects, no redirects (a redirect could carry the
/// API key elsewhere). Requests that must end set their own timeout.
pub fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("hookd/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// One pulled event as read: the bytes to store and the pseudo-headers
/// extractors may look at (`sse-event`, `sse-id`).
pub struct Item {
    pub body: Bytes,
    pub headers: HeaderMap,
    pub read_at: Instant,
}

/// How a batch went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Committed {
    pub accepted: usize,
    pub duplicates: usize,
    /// Refused by verification or extraction (recorded under `hookd rejected`).
    pub refused: usize,
    /// Newest event time in the batch (occurred_at, else received_at).
    pub newest: Option<i64>,
}

/// Stores a batch and moves the source's position in the same transaction.
/// With `position_from_events`, `position_at` also moves to the batch's
/// newest event time. Refused items are skipped (and recorded): the
/// position moves past them, or a poison item would stop the source.
pub async fn commit(
    ctx: &PullCtx,
    name: &str,
    mode: Mode,
    items: Vec<Item>,
    mut advance: Advance,
    position_from_events: bool,
    polls: i64,
) -> Result<Committed, StoreError> {
    let ingest = &ctx.ingest;
    let rt = ingest.runtime.load_full();
    let Some(idx) = rt.source_index(name) else {
        return Err(StoreError::Unavailable(format!(
            "source {name} is no longer configured"
        )));
    };
    let src = &rt.config.sources[idx];
    let received_at = timefmt::now_micros();
    let mut out = Committed::default();
    let mut rows: Vec<NewEvent> = Vec::with_capacity(items.len());
    // Per stored row: when it was read, and whether it has handlers.
    let mut meta: Vec<(Instant, bool)> = Vec::with_capacity(items.len());
    for item in items {
        ingest.metrics.received(name);
        let inbound = Inbound {
            path: format!("{}:{name}", mode.name()),
            headers: item.headers,
            body: item.body,
            remote: None,
            started: item.read_at,
            received_at,
        };
        let verified = src.scheme.verify(
            &Request {
                headers: &inbound.headers,
                body: &inbound.body,
            },
            rt.keys(idx),
            received_at / 1_000_000,
            src.tolerance,
        );
        let verified = match verified {
            Ok(v) => format!("{} ({} pull)", v.variant, mode.name()),
            Err(r) => {
                ingest.refused(src, &inbound, 401, r.code(), &r.to_string());
                out.refused += 1;
                continue;
            }
        };
        match ingest.normalize(&rt, src, &inbound, verified) {
            Ok(e) => {
                let at = e.occurred_at.unwrap_or(e.received_at);
                out.newest = Some(out.newest.map_or(at, |n| n.max(at)));
                meta.push((inbound.started, !e.handlers.is_empty()));
                rows.push(e);
            }
            Err(e) => {
                ingest.refused(src, &inbound, 422, e.code(), &e.to_string());
                out.refused += 1;
            }
        }
    }
    if position_from_events && let Some(n) = out.newest {
        advance.position_at = Some(advance.position_at.map_or(n, |p| p.max(n)));
    }
    let counts = Counts {
        events: rows.len() as i64,
        polls,
        reconnects: 0,
        last_event_at: out.newest,
    };
    let results = ingest
        .store
        .pull_commit(name.to_string(), rows, advance, counts, received_at)
        .await?;
    let mut wake = false;
    let stored = meta.len() as u64;
    for ((started, routed), r) in meta.into_iter().zip(results) {
        let latency = started.elapsed().as_secs_f64();
        match r {
            Ingested::Accepted { deliveries, .. } => {
                ingest.metrics.accepted(name, latency);
                out.accepted += 1;
                wake |= deliveries > 0 || routed;
            }
            Ingested::Duplicate { .. } => {
                ingest.metrics.duplicate(name, latency);
                out.duplicates += 1;
            }
        }
    }
    ingest.metrics.pulled(name, stored);
    if let Some(n) = out.newest {
        ingest
            .metrics
            .pull_lag(name, (received_at - n).max(0) / 1_000_000);
    }
    if wake {
        ingest.wake.notify_one();
    }
    Ok(out)
}

/// Records a state (and error) in the source's status row. A failure to
/// record is logged, never fatal: status is for humans.
pub async fn status(ctx: &PullCtx, name: &str, mode: Mode, state: State, error: Option<&str>) {
    let (name, error) = (name.to_string(), error.map(str::to_string));
    let now = timefmt::now_micros();
    let r = ctx
        .ingest
        .store
        .pull_state(name, mode.name(), state, error, now)
        .await;
    if let Err(e) = r {
        tracing::debug!("could not record a pull status: {e}");
    }
}

/// Adds to a source's counters outside a batch (failed polls, reconnects).
pub async fn count(ctx: &PullCtx, name: &str, counts: Counts) {
    let now = timefmt::now_micros();
    if let Err(e) = ctx
        .ingest
        .store
        .pull_count(name.to_string(), counts, now)
        .await
    {
        tracing::debug!("could not count a pull event: {e}");
    }
}

/// The stored position of a source.
pub async fn position(ctx: &PullCtx, name: &str) -> Result<cursors::Cursor, StoreError> {
    Ok(ctx.ingest.store.cursor(name).await?.unwrap_or_default())
}

/// How long to wait before asking again for a webhook id that is missing.
const ID_RECHECK: Duration = Duration::from_secs(30);

/// The webhook id the URLs need: from the config, else from what `hookd
/// register` stored. Waits (reporting why) until there is one; None when
/// stopped first.
pub async fn webhook_id(
    ctx: &PullCtx,
    name: &str,
    mode: Mode,
    pull: &PullConfig,
    stop: &CancellationToken,
) -> Option<Option<String>> {
    if !pull.needs_stored_id() {
        return Some(pull.webhook_id.clone());
    }
    let mut changed = ctx.registrations.subscribe();
    loop {
        changed.mark_unchanged();
        let stored = ctx.ingest.store.registration(name).await;
        let problem = match stored {
            Ok(Some(reg)) => match reg.remote_id {
                Some(id) if usable_id(&id) => return Some(Some(id)),
                Some(id) => format!("the stored webhook id {id:?} cannot go into a URL"),
                None => "the stored subscription has no webhook id".to_string(),
            },
            Ok(None) => format!(
                "no webhook id yet: run `hookd register {name}` or set webhook_id on the source"
            ),
            Err(e) => format!("cannot read the stored subscription: {e}"),
        };
        tracing::warn!(source = %name, "{problem}");
        status(ctx, name, mode, State::WaitingForId, Some(&problem)).await;
        tokio::select! {
            _ = stop.cancelled() => return None,
            _ = tokio::time::sleep(ID_RECHECK) => {}
            _ = changed.changed() => {}
        }
    }
}

fn usable_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:~".contains(&b))
}

/// The URL with `{webhook_id}` filled and the API key added as a query
/// parameter when the auth says so.
pub fn build_url(
    template: &str,
    webhook_id: Option<&str>,
    auth: &Auth,
    key: Option<&Secret>,
) -> Result<reqwest::Url, String> {
    let filled = match webhook_id {
        Some(id) => template.replace("{webhook_id}", id),
        None => template.to_string(),
    };
    let mut url = reqwest::Url::parse(&filled).map_err(|e| format!("bad URL: {e}"))?;
    if let (Some(q), Some(k)) = (&auth.query, key) {
        let v = std::str::from_utf8(k.expose())
            .map_err(|_| "the API key is not UTF-8 text".to_string())?;
        url.query_pairs_mut().append_pair(q, v);
    }
    Ok(url)
}

/// The auth header to send, if any (marked sensitive).
pub fn auth_header(
    auth: &Auth,
    key: Option<&Secret>,
) -> Result<Option<(http::HeaderName, http::HeaderValue)>, String> {
    let (Some(h), Some(k)) = (&auth.header, key) else {
        return Ok(None);
    };
    let mut v = auth.prefix.as_bytes().to_vec();
    v.extend_from_slice(k.expose());
    let mut v = http::HeaderValue::from_bytes(&v)
        .map_err(|_| "the API key cannot be sent in a header".to_string())?;
    v.set_sensitive(true);
    Ok(Some((h.clone(), v)))
}

/// A URL fit for logs: no query (it may hold the API key), no userinfo.
pub fn redact(url: &reqwest::Url) -> String {
    format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port().map(|p| format!(":{p}")).unwrap_or_default()
    ) + url.path()
}

/// `: message` from the provider's error body (the same reading the
/// management calls use), or nothing when the body says nothing.
pub fn provider_message(body: &[u8]) -> String {
    let msg = client::provider_message(&String::from_utf8_lossy(body));
    if msg.is_empty() {
        msg
    } else {
        format!(": {msg}")
    }
}

/// A wait as logged: whole milliseconds.
pub fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_filled_keyed_and_redacted() {
        let auth = Auth {
            header: None,
            query: Some("api_key".into()),
            prefix: String::new(),
        };
        let key = Secret::new(b"k&y".to_vec());
        let u = build_url(
            "https://api.example.com:8443/v2/webhooks/{webhook_id}/stream",
            Some("abc123"),
            &auth,
            Some(&key),
        )
        .unwrap();
        assert_eq!(
            u.as_str(),
            "https://api.example.com:8443/v2/webhooks/abc123/stream?api_key=k%26y"
        );
        assert_eq!(
            redact(&u),
            "https://api.example.com:8443/v2/webhooks/abc123/stream"
        );
        assert!(usable_id("65a1b2c3d4e5f6a7b8c9d0e1"));
        assert!(!usable_id("../x") && !usable_id("a b") && !usable_id(""));
    }

    #[test]
    fn auth_header_has_prefix_and_is_sensitive() {
        let auth = Auth {
            header: Some(http::HeaderName::from_static("authorization")),
            query: None,
            prefix: "Bearer ".into(),
        };
        let (h, v) = auth_header(&auth, Some(&Secret::new(b"t0k".to_vec())))
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.as_str(), v.to_str().unwrap()),
            ("authorization", "Bearer t0k")
        );
        assert!(v.is_sensitive());
        assert_eq!(auth_header(&auth, None).unwrap(), None);
    }
}
