//! A simulator of the three providers' APIs (LinkUp, Linq, Linked API), for
//! tests: nothing leaves 127.0.0.1.
//!
//! It serves each provider's management API as PROVIDERS.md describes it
//! (one file per provider: `linkup.rs`, `linq.rs`, `linkedapi.rs`), records
//! every request it gets (method, path, query, headers, body), answers with
//! switchable faults (401, 429 with `Retry-After`, 500 …) and signs and
//! delivers events to hookd the way each provider does.
//!
//! It runs on its own thread and runtime, so it serves while a test blocks
//! on the real `hookd` binary, and it can be used from sync and async tests
//! alike. Other test modules add endpoints with [`Simulator::start_with`]
//! (a router over the shared [`Sim`] state) and keep their own data in the
//! provider structs or in `Inner::ext`.
//!
//! Providers reach hookd through its *public* URL: a test maps a public
//! prefix (what hookd registered, e.g. `https://hooks.example.com`) to the
//! daemon's real address with [`Sim::route_public`], as a tunnel would.

#![allow(dead_code)]

pub mod linkedapi;
pub mod linkup;
pub mod linq;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::Value;

/// The API keys the simulator accepts.
pub const LINKUP_KEY: &str = "lu-test-key";
pub const LINQ_TOKEN: &str = "linq-test-token";
pub const LINKEDAPI_TOKEN: &str = "linked_test_token";
/// The LinkUp account that exists.
pub const LINKUP_ACCOUNT: &str = "69c127c37cae0494dd827286";

/// One request the simulator received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: std::time::Instant,
}

impl Recorded {
    /// The body as JSON (`Null` when empty or not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A canned answer for the next `times` requests whose path contains `path`.
#[derive(Clone, Debug)]
pub struct Fault {
    pub path: String,
    pub method: Option<Method>,
    pub status: u16,
    pub retry_after: Option<String>,
    /// Default: the provider's own error envelope for `status`.
    pub body: Option<Value>,
    pub times: usize,
}

impl Fault {
    pub fn new(path: &str, status: u16) -> Fault {
        Fault {
            path: path.to_string(),
            method: None,
            status,
            retry_after: None,
            body: None,
            times: 1,
        }
    }
    pub fn times(mut self, n: usize) -> Fault {
        self.times = n;
        self
    }
    pub fn retry_after(mut self, v: &str) -> Fault {
        self.retry_after = Some(v.to_string());
        self
    }
    pub fn body(mut self, v: Value) -> Fault {
        self.body = Some(v);
        self
    }
    pub fn method(mut self, m: Method) -> Fault {
        self.method = Some(m);
        self
    }
}

/// Everything the simulated providers hold.
#[derive(Default)]
pub struct Inner {
    pub requests: Vec<Recorded>,
    pub faults: Vec<Fault>,
    /// Public URL prefix → real base URL of a hookd.
    pub public: Vec<(String, String)>,
    pub linkup: linkup::Data,
    pub linq: linq::Data,
    pub linkedapi: linkedapi::Data,
    /// Room for other test modules' state.
    pub ext: HashMap<String, Value>,
    next_id: u64,
}

impl Inner {
    /// A fresh id: `n` hex digits (LinkUp's ObjectIds are 24).
    pub fn hex_id(&mut self, n: usize) -> String {
        self.next_id += 1;
        format!("{:0>width$x}", self.next_id + 0x6789_0000, width = n)
    }
    pub fn seq(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

/// The shared state behind the simulator's routes.
pub struct Sim {
    inner: Mutex<Inner>,
    client: reqwest::Client,
    /// Woken whenever state changes (for long-poll / SSE style endpoints).
    pub changed: tokio::sync::Notify,
}

pub type SimState = Arc<Sim>;

impl Sim {
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Requests received so far whose path contains `path`.
    pub fn requests(&self, path: &str) -> Vec<Recorded> {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.path.contains(path))
            .cloned()
            .collect()
    }

    /// Requests with this method and a path containing `path`.
    pub fn calls(&self, method: Method, path: &str) -> Vec<Recorded> {
        self.requests(path)
            .into_iter()
            .filter(|r| r.method == method)
            .collect()
    }

    pub fn fault(&self, f: Fault) {
        self.lock().faults.push(f);
    }

    /// Deliveries to URLs starting with `public` go to `real` instead.
    pub fn route_public(&self, public: &str, real: &str) {
        let mut g = self.lock();
        g.public.retain(|(p, _)| p != public);
        g.public.push((
            public.trim_end_matches('/').into(),
            real.trim_end_matches('/').into(),
        ));
    }

    fn resolve(&self, url: &str) -> String {
        let g = self.lock();
        for (p, r) in &g.public {
            if let Some(rest) = url.strip_prefix(p.as_str()) {
                return format!("{r}{rest}");
            }
        }
        url.to_string()
    }

    /// POSTs `body` to a registered `url` as a provider would; returns the
    /// status, or `None` when hookd could not be reached.
    pub async fn deliver(&self, url: &str, headers: HeaderMap, body: Vec<u8>) -> Option<u16> {
        let target = self.resolve(url);
        // Tests never leave the machine: an unrouted public URL is unreachable.
        if !(target.starts_with("http://127.") || target.starts_with("http://localhost")) {
            return None;
        }
        let r = self
            .client
            .post(&target)
            .headers(headers)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .timeout(std::time::Duration::from_secs(30))
            .send()
            .await
            .ok()?;
        Some(r.status().as_u16())
    }
}

/// The simulator: its base URL, state, and the thread serving it.
pub struct Simulator {
    pub base: String,
    pub sim: SimState,
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::ops::Deref for Simulator {
    type Target = Sim;
    fn deref(&self) -> &Sim {
        &self.sim
    }
}

impl Simulator {
    pub fn start() -> Simulator {
        Self::start_with(|r| r)
    }

    /// Starts with extra routes added to the three providers' APIs.
    pub fn start_with(extend: impl FnOnce(Router<SimState>) -> Router<SimState>) -> Simulator {
        let sim: SimState = Arc::new(Sim {
            inner: Mutex::new(Inner::default()),
            client: reqwest::Client::new(),
            changed: tokio::sync::Notify::new(),
        });
        let router = extend(
            Router::new()
                .merge(linkup::routes())
                .merge(linq::routes())
                .merge(linkedapi::routes()),
        )
        .layer(middleware::from_fn_with_state(
            sim.clone(),
            record_and_fault,
        ))
        .with_state(sim.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("provider-sim".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                    let addr = l.local_addr().unwrap();
                    tx.send((addr, tokio::runtime::Handle::current())).unwrap();
                    axum::serve(l, router)
                        .with_graceful_shutdown(async {
                            let _ = stop_rx.await;
                        })
                        .await
                        .unwrap();
                });
            })
            .unwrap();
        let (addr, handle) = rx.recv().unwrap();
        Simulator {
            base: format!("http://{addr}"),
            sim,
            handle,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Runs `f` on the simulator's runtime (e.g. a delivery) and awaits it.
    pub async fn on_sim<T: Send + 'static>(
        &self,
        f: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        self.handle.spawn(f).await.unwrap()
    }

    /// Like [`Simulator::on_sim`], from a sync test.
    pub fn on_sim_blocking<T: Send + 'static>(
        &self,
        f: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        self.handle.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv().unwrap()
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Records every request, then answers from the fault list if one matches.
async fn record_and_fault(State(sim): State<SimState>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let fault = {
        let mut g = sim.lock();
        g.requests.push(Recorded {
            method: parts.method.clone(),
            path: path.clone(),
            query: parts.uri.query().map(str::to_string),
            headers: parts.headers.clone(),
            body: bytes.clone(),
            at: std::time::Instant::now(),
        });
        let hit = g.faults.iter().position(|f| {
            f.times > 0
                && path.contains(&f.path)
                && f.method.as_ref().is_none_or(|m| *m == parts.method)
        });
        hit.map(|i| {
            g.faults[i].times -= 1;
            let f = g.faults[i].clone();
            if g.faults[i].times == 0 {
                g.faults.remove(i);
            }
            f
        })
    };
    if let Some(f) = fault {
        return fault_response(&path, &f);
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn fault_response(path: &str, f: &Fault) -> Response {
    let status = StatusCode::from_u16(f.status).unwrap();
    let body = f.body.clone().unwrap_or_else(|| {
        if path.starts_with("/v2/") {
            linkup::error_body(f.status)
        } else if path.starts_with("/admin/") {
            linkedapi::error_body(f.status)
        } else {
            linq::error_body(f.status)
        }
    });
    let mut r = (status, axum::Json(body)).into_response();
    if let Some(ra) = &f.retry_after {
        r.headers_mut().insert(
            http::header::RETRY_AFTER,
            HeaderValue::from_str(ra).unwrap(),
        );
    }
    r
}

/// A JSON answer.
pub fn reply(status: u16, body: Value) -> Response {
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

/// `HMAC-SHA256(key, msg)` in lowercase hex (the providers' own signing).
pub fn hmac_hex(key: &[u8], msg: &[u8]) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    m.update(msg);
    hex::encode(m.finalize().into_bytes())
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Now as RFC 3339 with milliseconds and `Z`.
pub fn iso_now() -> String {
    let t = time::OffsetDateTime::now_utc();
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&f).unwrap()
}

/// A random secret of `n` hex characters.
pub fn random_secret(n: usize) -> String {
    (0..n).map(|_| fastrand::char('a'..='f')).collect()
}

/// Is `url` a bare IP in a private, loopback or link-local range? (Linked
/// API refuses those.)
pub fn private_ip_url(url: &str) -> bool {
    let host = url
        .split("://")
        .nth(1)
        .unwrap_or("")
        .split(['/', '?'])
        .next()
        .unwrap_or("");
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.split(']').next())
        .unwrap_or_else(|| host.rsplit_once(':').map_or(host, |(h, _)| h));
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => {
            v4.is_private() || v4.is_loopback() || v4.is_link_local() || v4.is_unspecified()
        }
        Ok(std::net::IpAddr::V6(v6)) => v6.is_loopback() || v6.is_unspecified(),
        Err(_) => false,
    }
}

/// A header map from pairs.
pub fn headers(pairs: &[(&str, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}
