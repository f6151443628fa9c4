//! SSE sources (`mode = "sse"`): hold a stream open and store what it sends.
//!
//! Parsing is eventsource-client's (BOM, CR/LF/CRLF split across chunks,
//! multi-line `data`, `id`, `retry`, comments), over the daemon's reqwest
//! client ([`crate::source::transport`]). Reconnecting is ours, so that it can
//! backfill and give up properly: each connection is one client with the
//! crate's own reconnect off. A connection ends on EOF, a transport error,
//! an idle watchdog (no bytes for `idle_timeout`; keep-alive comments count)
//! or a store failure; then hookd waits a jittered exponential backoff (the
//! server's `retry:` sets its base) and connects again with the stored
//! Last-Event-ID. 401/403/404 stop the source with the provider's reason.
//!
//! An event is stored only once the parser saw its terminating blank line,
//! so a connection dropped mid-event stores nothing of it. Events read while
//! a commit runs are committed together next, with the Last-Event-ID of the
//! last one in the same transaction.
//!
//! **Backfill.** When the source also has a poll endpoint, every connection
//! first reads the poll endpoint from the stored position (on the first
//! connection ever: everything the provider still keeps), concurrently
//! with the stream (started after the stream is
//! open, so nothing falls between the two). Until that catch-up finishes,
//! stream events do not move the position: a crash mid-backfill restarts it
//! from where it was. Dedup makes the overlap harmless.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventsource_client::{self as es, Client as _, SSE};
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::backfill::{self, CaughtUp, FetchError};
use super::shared::{self, Committed, Item, PullCtx, round_ms};
use crate::config::{Backoff, PullConfig, SseConfig};
use crate::preset::Mode;
use crate::retry;
use crate::source::transport::{Activity, ReqwestTransport};
use crate::store::StoreError;
use crate::store::cursors::Advance;
use crate::store::pull_status::{Counts, State};

/// Events (and bytes) read ahead while a commit runs; beyond either the
/// stream waits.
const MAX_BATCH: usize = 2048;
const MAX_BATCH_BYTES: usize = 16 << 20;
/// A connection that lived this long (or stored an event) resets the backoff.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);

/// How one connection ended.
enum Ended {
    Stopped,
    /// The provider refused us for good.
    Fatal(String),
    Lost {
        reason: String,
        /// It delivered events or lived long: start the backoff over.
        healthy: bool,
        /// The server's Retry-After.
        after: Option<Duration>,
    },
}

fn lost(reason: impl Into<String>) -> Ended {
    Ended::Lost {
        reason: reason.into(),
        healthy: false,
        after: None,
    }
}

/// The SSE source's loop: connect, read, reconnect with backoff.
pub async fn run(
    ctx: &Arc<PullCtx>,
    name: &str,
    pull: &PullConfig,
    max_event: usize,
    stop: &CancellationToken,
) {
    let cfg = pull
        .sse
        .as_ref()
        .expect("validated: an SSE source has an sse table");
    shared::status(ctx, name, Mode::Sse, State::Connecting, None).await;
    let Some(id) = shared::webhook_id(ctx, name, Mode::Sse, pull, stop).await else {
        return;
    };
    let mut attempt = 0u32;
    let mut retry_hint: Option<Duration> = None;
    loop {
        let conn = Connection {
            ctx,
            name,
            pull,
            cfg,
            webhook_id: id.as_deref(),
            max_event,
            stop,
        };
        let (reason, after) = match conn.run(&mut retry_hint).await {
            Ended::Stopped => return,
            Ended::Fatal(msg) => {
                tracing::error!(source = %name, "SSE source stopped: {msg}");
                ctx.ingest.metrics.pull_error(name);
                shared::status(ctx, name, Mode::Sse, State::Stopped, Some(&msg)).await;
                return;
            }
            Ended::Lost {
                reason,
                healthy,
                after,
            } => {
                if healthy {
                    attempt = 0;
                }
                (reason, after)
            }
        };
        attempt += 1;
        ctx.ingest.metrics.pull_error(name);
        ctx.ingest.metrics.reconnected(name);
        let base = Backoff {
            initial: retry_hint
                .unwrap_or(cfg.backoff.initial)
                .min(cfg.backoff.max),
            max: cfg.backoff.max,
        };
        let wait = after.unwrap_or_else(|| retry::delay(&base, attempt));
        tracing::warn!(
            source = %name,
            "SSE stream lost ({reason}); reconnecting in {}",
            humantime::format_duration(round_ms(wait))
        );
        shared::status(ctx, name, Mode::Sse, State::Backoff, Some(&reason)).await;
        shared::count(
            ctx,
            name,
            Counts {
                reconnects: 1,
                ..Default::default()
            },
        )
        .await;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

type Commit<'a> = Pin<Box<dyn Future<Output = Result<Committed, StoreError>> + Send + 'a>>;
type Backfill = AbortOnDropHandle<Result<CaughtUp, String>>;

/// One connection's worth of state.
struct Connection<'a> {
    ctx: &'a Arc<PullCtx>,
    name: &'a str,
    pull: &'a PullConfig,
    cfg: &'a SseConfig,
    webhook_id: Option<&'a str>,
    max_event: usize,
    stop: &'a CancellationToken,
}

impl<'a> Connection<'a> {
    async fn run(&self, retry_hint: &mut Option<Duration>) -> Ended {
        let (ctx, name, cfg) = (self.ctx, self.name, self.cfg);
        let cur = match shared::position(ctx, name).await {
            Ok(c) => c,
            Err(e) => return lost(format!("cannot read the stored position: {e}")),
        };
        let key = self.pull.api_key.as_ref();
        let url = match shared::build_url(&cfg.url, self.webhook_id, &cfg.auth, key) {
            Ok(u) => u,
            Err(e) => return Ended::Fatal(e),
        };
        let shown = shared::redact(&url);
        let activity = Activity::new();
        let mut stream = match self.client(url.as_str(), cur.last_event_id, &activity) {
            Ok(c) => c.stream(),
            Err(e) => return Ended::Fatal(e),
        };
        let started = Instant::now();
        let mut tick = tokio::time::interval(watch_every(cfg.idle_timeout));
        let first = loop {
            tokio::select! {
                _ = self.stop.cancelled() => return Ended::Stopped,
                _ = tick.tick() => if activity.idle() >= cfg.idle_timeout {
                    return lost(format!("{shown} did not answer within {}", humantime::format_duration(cfg.idle_timeout)));
                },
                item = stream.next() => break item,
            }
        };
        match first {
            Some(Ok(SSE::Connected(_))) => {}
            Some(Err(es::Error::UnexpectedResponse(resp, body))) => {
                return refused(&shown, resp, body.into_stream()).await;
            }
            Some(Err(e)) => return lost(format!("cannot connect to {shown}: {}", describe(&e))),
            Some(Ok(_)) | None => return lost(format!("{shown} closed the connection")),
        }
        tracing::info!(source = %name, "SSE connected to {shown}");
        ctx.ingest.metrics.pull_connected(name, true);
        shared::status(ctx, name, Mode::Sse, State::Connected, None).await;
        // From the stored position; on a source's first connection, from
        // the start of what the provider still keeps.
        let backfill = self.pull.poll.as_ref().map(|_| self.spawn_backfill());
        let (reason, stored) = self
            .read(&mut stream, &activity, &mut tick, backfill, retry_hint)
            .await;
        ctx.ingest.metrics.pull_connected(name, false);
        match reason {
            None => Ended::Stopped,
            Some(reason) => Ended::Lost {
                reason,
                healthy: stored > 0 || started.elapsed() >= HEALTHY_AFTER,
                after: None,
            },
        }
    }

    fn client(
        &self,
        url: &str,
        last_event_id: Option<String>,
        activity: &Activity,
    ) -> Result<impl es::Client + use<>, String> {
        let bad = |e: es::Error| format!("cannot set up the SSE request: {e}");
        let mut b = es::ClientBuilder::for_url(url)
            .map_err(bad)?
            .reconnect(es::ReconnectOptions::reconnect(false).build())
            // A redirect would carry the API key to wherever it points.
            .redirect_limit(0);
        if let Some((h, v)) = shared::auth_header(&self.cfg.auth, self.pull.api_key.as_ref())? {
            let v = v.to_str().map_err(|_| "the API key is not header text")?;
            b = b.header(h.as_str(), v).map_err(bad)?;
        }
        if let Some(id) = last_event_id.filter(|i| !i.is_empty()) {
            b = b.last_event_id(id);
        }
        let transport =
            ReqwestTransport::new(self.ctx.http.clone(), activity.clone(), self.max_event);
        Ok(b.build_with_transport(transport))
    }

    /// Catches up through the poll endpoint, retrying with backoff until it
    /// succeeds or the provider refuses; dropped (aborted) with the connection.
    fn spawn_backfill(&self) -> Backfill {
        let ctx = self.ctx.clone();
        let (name, pull) = (self.name.to_string(), self.pull.clone());
        let id = self.webhook_id.map(str::to_string);
        let stop = self.stop.child_token();
        AbortOnDropHandle::new(tokio::spawn(async move {
            let backoff = pull.poll.as_ref().expect("poll").backoff.clone();
            let mut attempt = 0;
            loop {
                match backfill::catch_up(&ctx, &name, Mode::Sse, &pull, id.as_deref(), &stop).await
                {
                    Ok(c) => return Ok(c),
                    Err(FetchError::Fatal(m)) => return Err(m),
                    Err(FetchError::Retry { reason, after }) => {
                        attempt += 1;
                        let wait = after.unwrap_or_else(|| retry::delay(&backoff, attempt));
                        tracing::warn!(source = %name, "backfill poll failed, retrying in {}: {reason}", humantime::format_duration(round_ms(wait)));
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }))
    }

    /// Reads events until the connection ends; returns why (None = stopped)
    /// and how many events were stored. What was read is committed first.
    async fn read(
        &self,
        stream: &mut es::BoxStream<es::Result<SSE>>,
        activity: &Activity,
        tick: &mut tokio::time::Interval,
        mut backfill: Option<Backfill>,
        retry_hint: &mut Option<Duration>,
    ) -> (Option<String>, usize) {
        let (ctx, name, cfg) = (self.ctx, self.name, self.cfg);
        let mut batch = Batch {
            gap_open: backfill.is_some(),
            ..Default::default()
        };
        let mut inflight: Option<Commit<'_>> = None;
        let reason = loop {
            if inflight.is_none() && !batch.items.is_empty() {
                inflight = Some(batch.commit(ctx, name));
            }
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => break None,
                r = wait_some(&mut inflight), if inflight.is_some() => {
                    inflight = None;
                    if let Err(e) = batch.committed(r) {
                        break Some(format!("events could not be stored: {e}"));
                    }
                }
                r = wait_some(&mut backfill), if backfill.is_some() => {
                    backfill = None;
                    match r {
                        Ok(Ok(c)) => {
                            tracing::info!(source = %name, pages = c.pages, new = c.accepted, "backfill caught up");
                            batch.gap_open = false;
                        }
                        Ok(Err(m)) => {
                            tracing::error!(source = %name, "backfill refused, events sent while disconnected may be missing: {m}");
                            shared::status(ctx, name, Mode::Sse, State::Connected, Some(&format!("backfill: {m}"))).await;
                        }
                        Err(e) => tracing::warn!(source = %name, "backfill task failed: {e}"),
                    }
                }
                _ = tick.tick() => if activity.idle() >= cfg.idle_timeout {
                    break Some(format!("no bytes for {}", humantime::format_duration(cfg.idle_timeout)));
                },
                item = stream.next(), if batch.items.len() < MAX_BATCH && batch.bytes < MAX_BATCH_BYTES => match item {
                    None => break Some("the server closed the stream".into()),
                    Some(Err(e)) => break Some(describe(&e)),
                    Some(Ok(SSE::Event(ev))) => {
                        if let Some(ms) = ev.retry {
                            *retry_hint = Some(Duration::from_millis(ms));
                        }
                        self.take(ev, &mut batch);
                    }
                    Some(Ok(SSE::Comment(_) | SSE::Connected(_))) => {}
                },
            }
        };
        // Keep what was read: finish the running commit, then the rest.
        if let Some(f) = inflight.take() {
            let _ = batch.committed(f.await);
        }
        if !batch.items.is_empty() {
            let r = batch.commit(ctx, name).await;
            let _ = batch.committed(r);
        }
        (reason, batch.stored)
    }

    /// Queues an event for the next commit, or skips a handshake/other name.
    fn take(&self, ev: es::Event, batch: &mut Batch) {
        let cfg = self.cfg;
        if cfg.handshake.contains(&ev.event_type) {
            tracing::debug!(source = %self.name, event = %ev.event_type, "SSE handshake");
            return;
        }
        if !cfg.events.is_empty() && !cfg.events.contains(&ev.event_type) {
            tracing::debug!(source = %self.name, event = %ev.event_type, "ignoring an SSE event of another name");
            return;
        }
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&ev.event_type) {
            headers.insert("sse-event", v);
        }
        if let Some(id) = ev.id.as_deref().filter(|i| !i.is_empty()) {
            if let Ok(v) = HeaderValue::from_str(id) {
                headers.insert("sse-id", v);
            }
            batch.last_id = Some(id.to_string());
        }
        batch.bytes += ev.data.len();
        batch.items.push(Item {
            body: bytes::Bytes::from(ev.data),
            headers,
            read_at: Instant::now(),
        });
    }
}

/// Events read but not yet committed, and what this connection stored.
#[derive(Default)]
struct Batch {
    items: Vec<Item>,
    bytes: usize,
    last_id: Option<String>,
    /// A backfill is still running: stream events must not move the position.
    gap_open: bool,
    /// Newest event time stored on this connection.
    newest: Option<i64>,
    stored: usize,
}

impl Batch {
    fn commit<'a>(&mut self, ctx: &'a PullCtx, name: &'a str) -> Commit<'a> {
        let items = std::mem::take(&mut self.items);
        self.bytes = 0;
        let advance = Advance {
            last_event_id: self.last_id.take(),
            // Everything up to the newest stored event is in, once no gap is open.
            position_at: if self.gap_open { None } else { self.newest },
            cursor: None,
        };
        Box::pin(shared::commit(
            ctx,
            name,
            Mode::Sse,
            items,
            advance,
            !self.gap_open,
            0,
        ))
    }

    fn committed(&mut self, r: Result<Committed, StoreError>) -> Result<(), StoreError> {
        let c = r?;
        self.stored += c.accepted;
        if let Some(n) = c.newest {
            self.newest = Some(self.newest.map_or(n, |o| o.max(n)));
        }
        Ok(())
    }
}

/// Awaits an optional future (guarded by `is_some()` in `select!`).
async fn wait_some<F: Future + Unpin>(f: &mut Option<F>) -> F::Output {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// How often the idle watchdog looks.
fn watch_every(idle: Duration) -> Duration {
    (idle / 4).max(Duration::from_millis(25))
}

/// A non-2xx answer to the stream request.
async fn refused(
    shown: &str,
    resp: es::Response,
    mut s: launchdarkly_sdk_transport::ByteStream,
) -> Ended {
    let status = resp.status();
    let mut text = Vec::new();
    let read = async {
        while let Some(Ok(c)) = s.next().await {
            text.extend_from_slice(&c);
            if text.len() >= 4096 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
    let why = shared::provider_message(&text);
    let code = http::StatusCode::from_u16(status).map_or(status.to_string(), |c| c.to_string());
    match status {
        401 | 403 => Ended::Fatal(format!(
            "{shown} answered {code}{why}; check the source's api_key"
        )),
        404 => Ended::Fatal(format!(
            "{shown} answered {code}{why}; check the URL and the webhook id"
        )),
        _ => Ended::Lost {
            reason: format!("{shown} answered {code}{why}"),
            healthy: false,
            after: resp
                .get_header_value("retry-after")
                .ok()
                .flatten()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| Duration::from_secs(s.min(3600))),
        },
    }
}

fn describe(e: &es::Error) -> String {
    match e {
        es::Error::UnexpectedEof => {
            "the connection dropped in the middle of an event (the partial event was discarded)"
                .into()
        }
        es::Error::Eof => "the server closed the stream".into(),
        es::Error::InvalidLine(l) => format!("the server sent a line that is not SSE ({l})"),
        other => other.to_string(),
    }
}
