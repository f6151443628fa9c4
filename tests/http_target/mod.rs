//! A scriptable HTTP(S) target on 127.0.0.1 for the http handler tests and
//! bench: it reports every request it gets on a channel (the tests' signal
//! that a request arrived, so nothing sleeps to wait for one) and answers
//! from a queue of planned answers, 200 once the queue is empty. It is
//! served by hookd's own accept loop (`hookd::server::serve`), which speaks
//! HTTP/1.1 and, over TLS, HTTP/2.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

/// One request as the target saw it.
#[derive(Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub version: http::Version,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Seen {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// How the target answers one request.
#[derive(Clone, Debug)]
pub enum Answer {
    /// Status, extra headers, body.
    Status(u16, Vec<(&'static str, String)>, Vec<u8>),
    /// Never answers.
    Hang,
    /// 200 with a body of this many bytes, streamed.
    Huge(usize),
    /// Waits for a permit of the target's gate, then 200.
    Gated,
}

struct Shared {
    plan: Mutex<VecDeque<Answer>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    gate: Arc<Semaphore>,
}

#[derive(Clone)]
struct Ctx {
    shared: Arc<Shared>,
    seen: mpsc::UnboundedSender<Seen>,
}

pub struct Target {
    /// `http(s)://127.0.0.1:PORT`
    pub base: String,
    pub requests: mpsc::UnboundedReceiver<Seen>,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Target {
    /// A plain HTTP/1.1 target.
    pub async fn start() -> Target {
        Self::serve(None).await
    }

    /// An HTTPS target with the test CA's certificate for 127.0.0.1.
    pub async fn start_tls() -> Target {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/certs");
        let tls =
            hookd::server::tls_acceptor(&dir.join("server.pem"), &dir.join("server.key")).unwrap();
        Self::serve(Some(tls)).await
    }

    async fn serve(tls: Option<tokio_rustls::TlsAcceptor>) -> Target {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base = format!("{scheme}://{}", listener.local_addr().unwrap());
        let (tx, requests) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            plan: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            gate: Arc::new(Semaphore::new(0)),
        });
        let ctx = Ctx {
            shared: shared.clone(),
            seen: tx,
        };
        let router = Router::new().fallback(answer).with_state(ctx);
        let stop = CancellationToken::new();
        tokio::spawn(hookd::server::serve(
            listener,
            tls,
            router,
            hookd::server::Limits::default(),
            stop.clone(),
        ));
        Target {
            base,
            requests,
            shared,
            stop,
        }
    }

    /// Queues answers for the next requests, in order.
    pub fn plan(&self, answers: impl IntoIterator<Item = Answer>) {
        self.shared.plan.lock().unwrap().extend(answers);
    }

    /// The next request (waits for it, at most 60 s).
    pub async fn next(&mut self) -> Seen {
        tokio::time::timeout(std::time::Duration::from_secs(60), self.requests.recv())
            .await
            .expect("no request reached the target within 60 s")
            .expect("target stopped")
    }

    /// Lets `n` gated requests answer.
    pub fn release(&self, n: usize) {
        self.shared.gate.add_permits(n);
    }

    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Counts a request in flight while alive.
struct InFlight(Arc<Shared>);

impl InFlight {
    fn new(s: &Arc<Shared>) -> InFlight {
        let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        s.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(s.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn answer(State(ctx): State<Ctx>, req: Request) -> Response {
    let _counted = InFlight::new(&ctx.shared);
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 16 << 20)
        .await
        .unwrap_or_default();
    let _ = ctx.seen.send(Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        version: parts.version,
        headers: parts.headers,
        body,
        at: Instant::now(),
    });
    let next = ctx.shared.plan.lock().unwrap().pop_front();
    match next.unwrap_or(Answer::Status(200, vec![], b"ok".to_vec())) {
        Answer::Status(code, headers, body) => {
            let mut r = Response::builder().status(code);
            for (k, v) in headers {
                r = r.header(k, v);
            }
            r.body(Body::from(body)).unwrap()
        }
        Answer::Hang => std::future::pending().await,
        Answer::Huge(n) => {
            let chunk = Bytes::from(vec![b'x'; 64 << 10]);
            let chunks = n.div_ceil(chunk.len());
            let stream = futures_util::stream::iter(
                (0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
            );
            Response::new(Body::from_stream(stream))
        }
        Answer::Gated => {
            let permit = ctx.shared.gate.acquire().await.unwrap();
            permit.forget();
            Response::new(Body::from("ok"))
        }
    }
}
