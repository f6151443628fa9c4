//! Reaching PostgreSQL: the URL, TLS over rustls, the pool, and the one
//! connection kept aside for LISTEN.
//!
//! `sslmode=disable` connects in the clear; any other mode (`prefer`, the
//! default, and `require`) uses rustls with the platform's certificate
//! verifier (the system's roots, plus `store.ca_file` for a private CA),
//! so a server's certificate is always checked, and `require` refuses a
//! server without TLS. The URL's password never appears in a
//! message: errors name the host and database only.

use std::str::FromStr;
use std::sync::Arc;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rustls::pki_types::CertificateDer;
use tokio::sync::{Notify, watch};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{AsyncMessage, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_util::sync::CancellationToken;

/// The channel replicas NOTIFY when they queue work.
pub const WORK_CHANNEL: &str = "hookd_work";

/// Parses `postgres://user[:password]@host[:port]/db[?sslmode=…]`.
pub fn parse_url(url: &str) -> Result<Config, String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("must be a postgres:// URL (postgres://user@host/db)".into());
    }
    let cfg = Config::from_str(url)
        .map_err(|e| format!("not a usable PostgreSQL URL: {}", super::describe(&e)))?;
    if cfg.get_hosts().is_empty() {
        return Err("the URL names no host (postgres://user@host/db)".into());
    }
    if cfg.get_user().is_none() {
        return Err("the URL names no user (postgres://user@host/db)".into());
    }
    Ok(cfg)
}

/// "db on host:port", for messages: never the password.
pub fn describe_target(cfg: &Config) -> String {
    let host = match cfg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "?".into(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    let db = cfg
        .get_dbname()
        .or(cfg.get_user())
        .unwrap_or("?")
        .to_string();
    format!("database {db} on {host}:{port}")
}

/// The TLS connector for this URL's `sslmode`.
#[derive(Clone)]
enum Tls {
    Off,
    Rustls(MakeRustlsConnect),
}

/// Certificate authorities trusted besides the system's (`store.ca_file`).
pub type ExtraRoots = [CertificateDer<'static>];

fn tls_for(cfg: &Config, ca: &ExtraRoots) -> Result<Tls, String> {
    if cfg.get_ssl_mode() == SslMode::Disable {
        return Ok(Tls::Off);
    }
    let failed = |e: &dyn std::fmt::Display| format!("cannot set up TLS for PostgreSQL: {e}");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(
        ca.iter().cloned(),
        provider.clone(),
    )
    .map_err(|e| failed(&e))?;
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| failed(&e))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Tls::Rustls(MakeRustlsConnect::new(client)))
}

/// How long a caller waits for a pooled connection, or for a new one to
/// be made, before the store counts as unavailable (503, not a hang).
pub const WAIT: Duration = Duration::from_secs(5);

/// A pool of up to `size` connections. A URL without `connect_timeout`
/// gets [`WAIT`].
pub fn pool(cfg: &Config, size: usize, ca: &ExtraRoots) -> Result<Pool, String> {
    let mc = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let mut cfg = cfg.clone();
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(WAIT);
    }
    let manager = match tls_for(&cfg, ca)? {
        Tls::Off => Manager::from_config(cfg, NoTls, mc),
        Tls::Rustls(t) => Manager::from_config(cfg, t, mc),
    };
    Pool::builder(manager)
        .max_size(size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(WAIT))
        .create_timeout(Some(WAIT))
        .build()
        .map_err(|e| format!("cannot build the PostgreSQL pool: {e}"))
}

/// Keeps one connection LISTENing on [`WORK_CHANNEL`] and wakes `wake` on
/// every notification, until `stop`. Reconnects after a lost connection
/// (waking `wake` too, since notifications may have been missed); the
/// caller's slow poll covers the gap.
/// `ready` turns true once the first LISTEN is in place.
pub async fn listen(
    cfg: Config,
    ca: Arc<Vec<CertificateDer<'static>>>,
    wake: Arc<Notify>,
    ready: watch::Sender<bool>,
    stop: CancellationToken,
) {
    let tls = match tls_for(&cfg, &ca) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!("PostgreSQL LISTEN is off: {e}");
            return;
        }
    };
    let mut backoff = std::time::Duration::from_millis(100);
    while !stop.is_cancelled() {
        let r = match &tls {
            Tls::Off => listen_once(&cfg, NoTls, &wake, &ready, &stop).await,
            Tls::Rustls(t) => listen_once(&cfg, t.clone(), &wake, &ready, &stop).await,
        };
        if let Err(e) = r {
            tracing::warn!(
                "LISTEN on {} lost: {e}; relying on the slow poll until it is back",
                describe_target(&cfg)
            );
            wake.notify_one();
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.cancelled() => {}
            }
            backoff = (backoff * 2).min(std::time::Duration::from_secs(10));
        }
    }
}

async fn listen_once<T>(
    cfg: &Config,
    tls: T,
    wake: &Notify,
    ready: &watch::Sender<bool>,
    stop: &CancellationToken,
) -> Result<(), String>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
{
    let mut cfg = cfg.clone();
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(WAIT);
    }
    let (client, mut conn) = cfg.connect(tls).await.map_err(|e| super::describe(&e))?;
    // The connection must be polled for the LISTEN to be sent and for
    // notifications to arrive: poll both together.
    let messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
    futures_util::pin_mut!(messages);
    let sql = format!("LISTEN {WORK_CHANNEL}");
    let subscribe = client.batch_execute(&sql);
    futures_util::pin_mut!(subscribe);
    let mut subscribed = false;
    loop {
        use futures_util::StreamExt;
        tokio::select! {
            r = &mut subscribe, if !subscribed => {
                r.map_err(|e| super::describe(&e))?;
                subscribed = true;
                ready.send_replace(true);
            }
            m = messages.next() => match m {
                Some(Ok(AsyncMessage::Notification(_))) => wake.notify_one(),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(super::describe(&e)),
                None => return Err("the connection closed".into()),
            },
            _ = stop.cancelled() => return Ok(()),
        }
    }
}

/// One connection outside the pool, for state that lives as long as a
/// session does (advisory locks). `lost` fires when the connection ends.
pub async fn session(
    cfg: &Config,
    ca: &ExtraRoots,
    lost: CancellationToken,
) -> Result<tokio_postgres::Client, String> {
    let mut cfg = cfg.clone();
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(WAIT);
    }
    // A replica that vanishes without closing its socket (power, network)
    // is noticed by its own side; the server's tcp_keepalives_* decide
    // when PostgreSQL lets go of its locks.
    cfg.keepalives(true)
        .keepalives_idle(Duration::from_secs(10));
    match tls_for(&cfg, ca)? {
        Tls::Off => spawn_session(cfg.connect(NoTls).await, lost),
        Tls::Rustls(t) => spawn_session(cfg.connect(t).await, lost),
    }
}

fn spawn_session<S, T>(
    connected: Result<
        (tokio_postgres::Client, tokio_postgres::Connection<S, T>),
        tokio_postgres::Error,
    >,
    lost: CancellationToken,
) -> Result<tokio_postgres::Client, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (client, conn) = connected.map_err(|e| super::describe(&e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!("PostgreSQL session lost: {}", super::describe(&e));
        }
        lost.cancel();
    });
    Ok(client)
}
