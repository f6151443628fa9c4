//! The HTTP(S) accept loop shared by the push and admin listeners.
//!
//! Written on hyper-util rather than `axum::serve` because the daemon needs
//! what that hides: a header-read timeout and header size/count bounds (slow
//! or bloated clients are cut off), TLS through rustls, listeners handed in
//! by systemd, a cap on open connections, and a graceful drain on shutdown
//! that lets in-flight requests finish.
//!
//! hyper's header timeout covers an HTTP/1 request that is slow to arrive,
//! but not a connection that never starts one: the auto (HTTP/1 or HTTP/2)
//! builder reads the first bytes without a deadline, and an HTTP/2
//! connection may sit with no stream for ever (its pings are answered by
//! any client). Each connection therefore counts its requests in flight
//! (`Activity`); one that has had none for `header_timeout` is asked to
//! close, and dropped if it is still open one more `header_timeout` later.
//! So nobody holds a connection slot without using it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// The peer address, put into each request's extensions.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

/// Bounds applied to every connection.
#[derive(Clone, Debug)]
pub struct Limits {
    pub header_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_connections: usize,
    /// How long a shutdown waits for in-flight requests.
    pub drain: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 64 << 10,
            max_headers: 100,
            max_connections: 4096,
            drain: Duration::from_secs(10),
        }
    }
}

/// Loads a certificate chain and key for HTTPS.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read the TLS certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read the TLS key {}: {e}", key.display()))?;
    let mut cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("the TLS certificate and key do not work together: {e}"))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// Serves `router` on `listener` until `shutdown` fires, then drains.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let connections = TaskTracker::new();
    let closing = shutdown.child_token();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let builder = Arc::new(builder(&limits));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (router, builder, tls, closing, timeout) = (
            router.clone(),
            builder.clone(),
            tls.clone(),
            closing.clone(),
            limits.header_timeout,
        );
        connections.spawn(async move {
            let _permit = permit;
            let io: Box<dyn Io> = match tls {
                None => Box::new(stream),
                Some(acceptor) => match handshake(&acceptor, stream, timeout).await {
                    Some(s) => Box::new(s),
                    None => return,
                },
            };
            serve_connection(&builder, io, router, peer, timeout, closing).await;
        });
    }
    drop(listener);
    closing.cancel();
    connections.close();
    if tokio::time::timeout(limits.drain, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "some connections were still open after {:?}; closing them",
            limits.drain
        );
    }
}

/// A connection's byte stream, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Drives one connection until it ends, is idle too long, or the listener
/// closes (then in-flight requests finish first).
async fn serve_connection(
    builder: &Builder<TokioExecutor>,
    io: Box<dyn Io>,
    router: Router,
    peer: SocketAddr,
    idle: Duration,
    closing: CancellationToken,
) {
    let activity = Arc::new(Activity::new());
    let counted = activity.clone();
    let svc = router
        .map_request(move |mut req: http::Request<Incoming>| {
            req.extensions_mut().insert(Peer(peer));
            req
        })
        .map_future(move |fut| {
            let guard = counted.start();
            async move {
                let out = fut.await;
                drop(guard);
                out
            }
        });
    let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(svc));
    tokio::pin!(conn);
    let mut asked_to_close = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = closing.cancelled(), if !asked_to_close => {
                conn.as_mut().graceful_shutdown();
                asked_to_close = true;
            }
            _ = activity.idle(idle) => {
                if asked_to_close {
                    tracing::debug!("dropping connection from {peer}: still open after being asked to close");
                    return;
                }
                conn.as_mut().graceful_shutdown();
                asked_to_close = true;
                activity.touch();
            }
        }
    }
}

/// Requests in flight on one connection, and when it last had one.
struct Activity {
    in_flight: AtomicUsize,
    last: Mutex<Instant>,
}

/// One request in flight; dropping it ends the request.
struct InFlight(Arc<Activity>);

impl Activity {
    fn new() -> Activity {
        Activity {
            in_flight: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
        }
    }

    fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    fn touch(&self) {
        if let Ok(mut l) = self.last.lock() {
            *l = Instant::now();
        }
    }

    /// Resolves once no request has been in flight for `limit`.
    async fn idle(&self, limit: Duration) {
        loop {
            let wait = if self.in_flight.load(Ordering::SeqCst) > 0 {
                limit
            } else {
                let since = self.last.lock().map(|l| l.elapsed()).unwrap_or_default();
                match limit.checked_sub(since) {
                    Some(left) if !left.is_zero() => left,
                    _ => return,
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn builder(limits: &Limits) -> Builder<TokioExecutor> {
    let mut b = Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes.min(u32::MAX as usize) as u32)
        .max_concurrent_streams(256)
        .keep_alive_interval(Duration::from_secs(30));
    b
}

async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    timeout: Duration,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::debug!("TLS handshake failed: {e}");
            None
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            None
        }
    }
}
