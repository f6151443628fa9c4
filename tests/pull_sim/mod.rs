//! A local provider for pull-source tests: an SSE stream and a poll
//! endpoint over one shared event log, with scripted misbehaviour.
//!
//! Two shapes are served:
//! - **generic** `GET /stream`: every event has `id: <seq>`, its JSON data
//!   is split over two `data:` lines, and a reconnect resumes after the
//!   `Last-Event-ID` the client sends (or, with `replay_inclusive`, at it).
//! - **LinkUp hosted mode** `GET /v2/webhooks/{id}/stream` (`event:
//!   connected` handshake, then `event: webhook` per event, no ids, only
//!   events emitted while connected) and `GET /v2/webhooks/{id}/events?
//!   since=&limit=` (exclusive `since`, LinkUp's envelope and zone-less
//!   timestamps).
//!
//! Every request needs the key `test-key` (`x-api-key`, `?api_key=` or
//! `Authorization: Bearer`), else 401 with LinkUp's error envelope. Tests
//! queue per-connection/per-request actions (status codes, raw chunks, a
//! drop mid-event, silence, garbage, a held answer) and read back what was
//! asked (`requests`), so they synchronise on facts, not on sleeps.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, watch};

pub const KEY: &str = "test-key";
pub const WEBHOOK_ID: &str = "65a1b2c3d4e5f6a7b8c9d0e1";

/// What the next SSE connection does.
#[derive(Clone, Debug)]
pub enum SseAction {
    /// Stream the log (and new events) until dropped.
    Normal,
    /// Answer with this status and an error body.
    Status(u16),
    /// Send these chunks one by one (paced), then stream normally
    /// (`then_close = false`) or close.
    Raw {
        chunks: Vec<Vec<u8>>,
        then_close: bool,
    },
    /// Stream `after` events, then these bytes (part of an event), then close.
    DropMid { after: usize, partial: Vec<u8> },
}

/// What the next poll request gets.
#[derive(Clone, Debug)]
pub enum PollAction {
    Normal,
    Status {
        code: u16,
        retry_after: Option<String>,
    },
    /// 200 with a body that is not JSON.
    Garbage,
    /// Answer normally only once `release_held` is called.
    Hold,
}

#[derive(Clone, Debug)]
pub struct Event {
    pub seq: u64,
    /// Unix µs.
    pub created_at: i64,
    /// False: emitted while "disconnected", only the poll endpoint has it.
    pub streamable: bool,
}

/// One request as the simulator saw it.
#[derive(Clone, Debug)]
pub struct Req {
    pub path: String,
    pub query: HashMap<String, String>,
    pub last_event_id: Option<String>,
    pub authorized: bool,
}

#[derive(Default)]
struct Shared {
    log: Mutex<Vec<Event>>,
    sse_script: Mutex<VecDeque<SseAction>>,
    poll_script: Mutex<VecDeque<PollAction>>,
    requests: Mutex<Vec<Req>>,
    connections: AtomicUsize,
    keepalives: AtomicUsize,
    silent: AtomicBool,
    replay_inclusive: AtomicBool,
    keepalive_every: Mutex<Option<Duration>>,
    released: Notify,
    held: AtomicUsize,
}

pub struct Sim {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    log_len: watch::Sender<usize>,
    drops: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct AppState {
    shared: Arc<Shared>,
    log_len: watch::Receiver<usize>,
    drops: watch::Receiver<u64>,
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A timestamp as LinkUp writes it: no zone, microseconds.
pub fn linkup_time(us: i64) -> String {
    hookd::timefmt::format_micros(us)
        .trim_end_matches('Z')
        .to_string()
}

impl Sim {
    pub async fn start() -> Sim {
        let shared = Arc::new(Shared::default());
        let (log_len, log_rx) = watch::channel(0usize);
        let (drops, drops_rx) = watch::channel(0u64);
        let state = AppState {
            shared: shared.clone(),
            log_len: log_rx,
            drops: drops_rx,
        };
        let app = Router::new()
            .route("/stream", get(generic_stream))
            .route("/v2/webhooks/{id}/stream", get(linkup_stream))
            .route("/v2/webhooks/{id}/events", get(linkup_events))
            .with_state(state);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        Sim {
            addr,
            shared,
            log_len,
            drops,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Appends events at these times; streamed only if `streamable`.
    pub fn push_times(&self, times: &[i64], streamable: bool) {
        let mut log = self.shared.log.lock().unwrap();
        for &t in times {
            let seq = log.len() as u64 + 1;
            log.push(Event {
                seq,
                created_at: t,
                streamable,
            });
        }
        let n = log.len();
        drop(log);
        self.log_len.send_replace(n);
    }

    fn next_times(&self, n: usize) -> Vec<i64> {
        let last = self
            .shared
            .log
            .lock()
            .unwrap()
            .last()
            .map_or(0, |e| e.created_at);
        let start = hookd::timefmt::now_micros().max(last + 1_000);
        (0..n as i64).map(|i| start + i * 1_000).collect()
    }

    /// Appends `n` new events, streamed to connected clients.
    pub fn push(&self, n: usize) {
        let t = self.next_times(n);
        self.push_times(&t, true);
    }

    /// Appends `n` events that only the poll endpoint returns (as if
    /// emitted while the client was disconnected).
    pub fn push_hidden(&self, n: usize) {
        let t = self.next_times(n);
        self.push_times(&t, false);
    }

    pub fn events(&self) -> Vec<Event> {
        self.shared.log.lock().unwrap().clone()
    }

    pub fn script_sse(&self, actions: impl IntoIterator<Item = SseAction>) {
        self.shared.sse_script.lock().unwrap().extend(actions);
    }

    pub fn script_poll(&self, actions: impl IntoIterator<Item = PollAction>) {
        self.shared.poll_script.lock().unwrap().extend(actions);
    }

    /// Closes every open stream (the client sees EOF between events).
    pub fn drop_streams(&self) {
        self.drops.send_modify(|n| *n += 1);
    }

    /// Keep-alive comments at this interval on open and new streams.
    pub fn keepalive(&self, every: Option<Duration>) {
        *self.shared.keepalive_every.lock().unwrap() = every;
    }

    /// Streams stay open but send nothing at all.
    pub fn silence(&self, on: bool) {
        self.shared.silent.store(on, Ordering::SeqCst);
    }

    /// Reconnects resume *at* the Last-Event-ID (re-sending that event).
    pub fn replay_inclusive(&self, on: bool) {
        self.shared.replay_inclusive.store(on, Ordering::SeqCst);
    }

    pub fn release_held(&self) {
        self.shared.released.notify_waiters();
    }

    /// Poll requests being held right now (or ever, counting).
    pub fn held(&self) -> usize {
        self.shared.held.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    pub fn keepalives(&self) -> usize {
        self.shared.keepalives.load(Ordering::SeqCst)
    }

    /// Requests whose path contains `part`, oldest first.
    pub fn requests(&self, part: &str) -> Vec<Req> {
        self.shared
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path.contains(part))
            .cloned()
            .collect()
    }
}

fn record(shared: &Shared, path: &str, q: &HashMap<String, String>, h: &HeaderMap) -> bool {
    let header = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    let authorized = header("x-api-key").as_deref() == Some(KEY)
        || q.get("api_key").map(String::as_str) == Some(KEY)
        || header("authorization").as_deref() == Some(&format!("Bearer {KEY}"));
    shared.requests.lock().unwrap().push(Req {
        path: path.to_string(),
        query: q.clone(),
        last_event_id: header("last-event-id"),
        authorized,
    });
    authorized
}

fn error(code: u16, retry_after: Option<&str>) -> Response {
    let (c, m) = match code {
        401 => ("INVALID_API_KEY", "The API key is invalid"),
        404 => ("NOT_FOUND", "No such webhook"),
        429 => ("RATE_LIMITED", "Too many requests"),
        _ => ("INTERNAL_ERROR", "Something went wrong"),
    };
    let mut r = (
        StatusCode::from_u16(code).unwrap(),
        axum::Json(json!({"success": false, "error": {"code": c, "message": m}})),
    )
        .into_response();
    if let Some(ra) = retry_after {
        r.headers_mut().insert("retry-after", ra.parse().unwrap());
    }
    r
}

fn sse_response(rx: mpsc::Receiver<Bytes>) -> Response {
    let s = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(s))
        .unwrap()
}

#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Generic,
    Linkup,
}

fn generic_event(e: &Event) -> String {
    let created = hookd::timefmt::format_micros(e.created_at);
    format!(
        "id: {}\nevent: message\ndata: {{\"id\":\"evt-{}\",\ndata: \"type\":\"thing.happened\",\"created_at\":\"{created}\",\"n\":{}}}\n\n",
        e.seq, e.seq, e.seq
    )
}

/// The inner LinkUp event (SSE data; the poll item's `event` adds `account_name`).
fn linkup_data(e: &Event, with_name: bool) -> Value {
    let mut v = json!({
        "account_id": "acc1",
        "event": {"type": "message", "message_text": format!("m{}", e.seq), "sender_name": "Ada"},
        "timestamp": linkup_time(e.created_at),
    });
    if with_name {
        v["account_name"] = json!("Ada Lovelace");
    }
    v
}

fn linkup_event(e: &Event) -> String {
    format!("event: webhook\ndata: {}\n\n", linkup_data(e, false))
}

async fn generic_stream(
    State(st): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
) -> Response {
    open_stream(st, Shape::Generic, "/stream", q, h).await
}

async fn linkup_stream(
    State(st): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
) -> Response {
    if id != WEBHOOK_ID {
        return error(404, None);
    }
    open_stream(
        st,
        Shape::Linkup,
        &format!("/v2/webhooks/{id}/stream"),
        q,
        h,
    )
    .await
}

async fn open_stream(
    st: AppState,
    shape: Shape,
    path: &str,
    q: HashMap<String, String>,
    h: HeaderMap,
) -> Response {
    let authorized = record(&st.shared, path, &q, &h);
    st.shared.connections.fetch_add(1, Ordering::SeqCst);
    if !authorized {
        return error(401, None);
    }
    let action = st
        .shared
        .sse_script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(SseAction::Normal);
    if let SseAction::Status(code) = action {
        return error(code, None);
    }
    let last: Option<u64> = h
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(stream_task(st, shape, action, last, tx));
    sse_response(rx)
}

async fn stream_task(
    st: AppState,
    shape: Shape,
    action: SseAction,
    last: Option<u64>,
    tx: mpsc::Sender<Bytes>,
) {
    let send = |s: Vec<u8>| {
        let tx = tx.clone();
        async move { tx.send(Bytes::from(s)).await.is_ok() }
    };
    let (mut drops, mut log_len) = (st.drops.clone(), st.log_len.clone());
    drops.mark_unchanged();
    let (drop_after, partial) = match &action {
        SseAction::DropMid { after, partial } => (Some(*after), partial.clone()),
        _ => (None, Vec::new()),
    };
    if let SseAction::Raw { chunks, then_close } = &action {
        for c in chunks {
            if !send(c.clone()).await {
                return;
            }
            // Pace the chunks so each reaches the client on its own.
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        if *then_close {
            return;
        }
    }
    // Where this connection starts in the log.
    let mut next = {
        let log = st.shared.log.lock().unwrap();
        match shape {
            Shape::Linkup => log.len(),
            Shape::Generic => match last {
                Some(id) if st.shared.replay_inclusive.load(Ordering::SeqCst) => {
                    id.saturating_sub(1) as usize
                }
                Some(id) => id as usize,
                None => 0,
            },
        }
    };
    if shape == Shape::Linkup {
        let hello = format!(
            "event: connected\ndata: {}\n\n",
            json!({"webhook_id": WEBHOOK_ID, "account_id": "acc1"})
        );
        if !send(hello.into_bytes()).await {
            return;
        }
    }
    let mut sent = 0usize;
    loop {
        let batch: Vec<Event> = {
            let log = st.shared.log.lock().unwrap();
            let b = log[next.min(log.len())..].to_vec();
            next = log.len();
            b
        };
        for e in batch.iter().filter(|e| e.streamable) {
            if drop_after == Some(sent) {
                break;
            }
            let text = match shape {
                Shape::Generic => generic_event(e),
                Shape::Linkup => linkup_event(e),
            };
            if !send(text.into_bytes()).await {
                return;
            }
            sent += 1;
        }
        if drop_after == Some(sent) {
            let _ = send(partial.clone()).await;
            return;
        }
        let every = *st.shared.keepalive_every.lock().unwrap();
        let tick = async {
            match every {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tx.closed() => return,
            _ = drops.changed() => return,
            r = log_len.changed() => if r.is_err() { return },
            _ = tick => {
                if !st.shared.silent.load(Ordering::SeqCst) {
                    if !send(b": keepalive\n\n".to_vec()).await {
                        return;
                    }
                    st.shared.keepalives.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        if st.shared.silent.load(Ordering::SeqCst) {
            // Silent: hold the connection, send nothing, until dropped.
            tokio::select! {
                _ = tx.closed() => return,
                _ = drops.changed() => return,
            }
        }
    }
}

async fn linkup_events(
    State(st): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
) -> Response {
    let authorized = record(&st.shared, &format!("/v2/webhooks/{id}/events"), &q, &h);
    if !authorized {
        return error(401, None);
    }
    if id != WEBHOOK_ID {
        return error(404, None);
    }
    let action = st
        .shared
        .poll_script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(PollAction::Normal);
    match action {
        PollAction::Normal => {}
        PollAction::Status { code, retry_after } => return error(code, retry_after.as_deref()),
        PollAction::Garbage => {
            return (StatusCode::OK, "<html>upstream hiccup</html>").into_response();
        }
        PollAction::Hold => {
            let released = st.shared.released.notified();
            st.shared.held.fetch_add(1, Ordering::SeqCst);
            let _ = tokio::time::timeout(Duration::from_secs(60), released).await;
        }
    }
    let since = q
        .get("since")
        .map(|s| hookd::timefmt::parse_lenient(s).expect("since is a time"));
    let limit: usize = q
        .get("limit")
        .map(|l| l.parse().expect("limit is a number"))
        .unwrap_or(50);
    assert!((1..=200).contains(&limit), "LinkUp's limit is 1-200");
    // A store answers in time order; events sharing a time in the order
    // they were stored.
    let mut log = st.shared.log.lock().unwrap().clone();
    log.sort_by_key(|e| (e.created_at, e.seq));
    let items: Vec<Value> = log
        .iter()
        .filter(|e| since.is_none_or(|s| e.created_at > s))
        .take(limit)
        .map(|e| {
            json!({
                "event_id": format!("{:024x}", e.seq),
                "event": linkup_data(e, true),
                "created_at": linkup_time(e.created_at),
            })
        })
        .collect();
    axum::Json(json!({
        "success": true,
        "data": {"items": items},
        "metadata": {"action": "webhook_events", "credits_consumed": 0, "timestamp": linkup_time(hookd::timefmt::now_micros())},
    }))
    .into_response()
}

/// The seq of each stored event's body (`n` or `message_text`), in store order.
pub fn stored_seqs(db: &rusqlite::Connection, source: &str) -> Vec<u64> {
    let mut stmt = db
        .prepare("SELECT body FROM events WHERE source = ?1 ORDER BY id")
        .unwrap();
    stmt.query_map([source], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|b| {
            let v: Value = serde_json::from_slice(&b.unwrap()).unwrap();
            v.get("n").and_then(Value::as_u64).unwrap_or_else(|| {
                v["event"]["message_text"].as_str().unwrap()[1..]
                    .parse()
                    .unwrap()
            })
        })
        .collect()
}

/// A generic SSE source on the simulator's `/stream` (ids, two-line data).
pub fn generic_sse(sim: &Sim, idle: &str) -> String {
    format!(
        r#"[[source]]
name = "feed"
provider = "generic"
mode = "sse"
api_key = "{KEY}"
extract = {{ id = ["json:/id"], type = ["json:/type"], time = ["json:/created_at"] }}
[source.sse]
url = "{}/stream"
auth = {{ header = "Authorization", prefix = "Bearer " }}
idle_timeout = "{idle}"
backoff = {{ initial = "50ms", max = "300ms" }}

"#,
        sim.url()
    )
}
