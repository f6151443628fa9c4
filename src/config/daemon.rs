//! The `[daemon]`, `[server]` and `[admin]` tables: the state directory and
//! the daemon's limits, the public listener (addresses, TLS, request
//! limits) and the admin listener (metrics, health, console and its token).
//!
//! Owns their defaults and checks; it must not look at sources or handlers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::locate::KeyPath;
use super::validate::{VResult, Validator, dur, one_of, size};
use crate::secret::{Secret, SecretRef};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug)]
pub struct DaemonConfig {
    pub state_dir: PathBuf,
    pub retention: Duration,
    pub log_format: LogFormat,
    /// Handler runs at once across all handlers.
    pub max_concurrency: usize,
    /// How many refused requests `hookd rejected` keeps.
    pub rejected_keep: usize,
    /// How long SIGTERM waits for running handlers before leaving them pending.
    pub shutdown_grace: Duration,
    pub prune_interval: Duration,
}

#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    pub public_url: Option<String>,
    pub max_body: usize,
    pub tls: Option<TlsFiles>,
    /// Whole-request limit: headers and body must arrive within it.
    pub request_timeout: Duration,
    pub header_timeout: Duration,
    pub max_header_bytes: usize,
    /// Requests waiting for the store before new ones get 503.
    pub max_pending: usize,
}

#[derive(Clone, Debug)]
pub struct AdminConfig {
    pub listen: Option<SocketAddr>,
    /// The web console may replay events (`POST` actions); off by default.
    pub console_actions: bool,
    /// When set, every console page needs it (bearer header or login cookie).
    pub token: Option<Secret>,
    /// Where the token comes from, for `hookd check` (never the value).
    pub token_ref: Option<SecretRef>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDaemon {
    pub(super) state_dir: Option<String>,
    pub(super) retention: Option<String>,
    pub(super) log_format: Option<String>,
    pub(super) max_concurrency: Option<usize>,
    pub(super) rejected_keep: Option<usize>,
    pub(super) shutdown_grace: Option<String>,
    pub(super) prune_interval: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) listen: Option<Vec<String>>,
    pub(super) public_url: Option<String>,
    pub(super) max_body: Option<String>,
    pub(super) tls_cert: Option<String>,
    pub(super) tls_key: Option<String>,
    pub(super) request_timeout: Option<String>,
    pub(super) header_timeout: Option<String>,
    pub(super) max_header_bytes: Option<String>,
    pub(super) max_pending: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub(super) listen: Option<String>,
    pub(super) allow_remote: Option<bool>,
    pub(super) console_actions: Option<bool>,
    pub(super) token: Option<String>,
}

impl Validator {
    pub(super) fn daemon(&mut self, r: RawDaemon, p: &KeyPath) -> VResult<DaemonConfig> {
        let state_dir = match (r.state_dir, std::env::var_os("STATE_DIRECTORY")) {
            (Some(d), _) => self.path(&d),
            // systemd's StateDirectory= may list several, colon-separated.
            (None, Some(sd)) => PathBuf::from(sd.to_string_lossy().split(':').next().unwrap_or("")),
            (None, None) => self.path("state"),
        };
        let max_concurrency = r.max_concurrency.unwrap_or(16);
        if max_concurrency == 0 {
            return Err((p.key("max_concurrency"), "must be at least 1".into()));
        }
        Ok(DaemonConfig {
            state_dir,
            retention: dur(
                &p.key("retention"),
                r.retention.as_deref(),
                Duration::from_secs(30 * 86400),
            )?,
            log_format: one_of(
                &p.key("log_format"),
                r.log_format.as_deref(),
                LogFormat::Text,
                &[("text", LogFormat::Text), ("json", LogFormat::Json)],
            )?,
            max_concurrency,
            rejected_keep: r.rejected_keep.unwrap_or(1000).max(1),
            shutdown_grace: dur(
                &p.key("shutdown_grace"),
                r.shutdown_grace.as_deref(),
                Duration::from_secs(20),
            )?,
            prune_interval: dur(
                &p.key("prune_interval"),
                r.prune_interval.as_deref(),
                Duration::from_secs(3600),
            )?,
        })
    }

    pub(super) fn server(&mut self, r: RawServer, p: &KeyPath) -> VResult<ServerConfig> {
        let listen = match r.listen {
            None => vec!["127.0.0.1:8787".parse().expect("valid")],
            Some(list) => list
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    a.parse::<SocketAddr>().map_err(|_| {
                        (p.key("listen").index(i), format!("{a:?} is not an address:port such as \"127.0.0.1:8787\" or \"[::]:443\""))
                    })
                })
                .collect::<VResult<Vec<_>>>()?,
        };
        if let Some(u) = &r.public_url
            && !(u.starts_with("https://") || u.starts_with("http://"))
        {
            return Err((
                p.key("public_url"),
                format!("{u:?} must start with https:// (or http:// for testing)"),
            ));
        }
        let tls = match (r.tls_cert, r.tls_key) {
            (Some(c), Some(k)) => Some(TlsFiles {
                cert: self.path(&c),
                key: self.path(&k),
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err((p.key("tls_cert"), "tls_key must be set as well".into()));
            }
            (None, Some(_)) => {
                return Err((p.key("tls_key"), "tls_cert must be set as well".into()));
            }
        };
        let max_body = size(&p.key("max_body"), r.max_body.as_deref(), 1 << 20)?;
        if max_body == 0 {
            return Err((p.key("max_body"), "must be more than 0".into()));
        }
        Ok(ServerConfig {
            listen,
            public_url: r.public_url.map(|u| u.trim_end_matches('/').to_string()),
            max_body,
            tls,
            request_timeout: dur(
                &p.key("request_timeout"),
                r.request_timeout.as_deref(),
                Duration::from_secs(30),
            )?,
            header_timeout: dur(
                &p.key("header_timeout"),
                r.header_timeout.as_deref(),
                Duration::from_secs(10),
            )?,
            max_header_bytes: size(
                &p.key("max_header_bytes"),
                r.max_header_bytes.as_deref(),
                64 << 10,
            )?,
            max_pending: r.max_pending.unwrap_or(4096).max(1),
        })
    }

    pub(super) fn admin(&mut self, r: RawAdmin, p: &KeyPath) -> VResult<AdminConfig> {
        let listen = match r.listen.as_deref() {
            None => Some("127.0.0.1:8788".parse().expect("valid")),
            Some("") | Some("off") => None,
            Some(a) => Some(a.parse::<SocketAddr>().map_err(|_| {
                (
                    p.key("listen"),
                    format!(
                        "{a:?} is not an address:port (use \"\" to turn the admin listener off)"
                    ),
                )
            })?),
        };
        if let Some(a) = listen
            && !a.ip().is_loopback()
            && !r.allow_remote.unwrap_or(false)
        {
            return Err((
                p.key("listen"),
                format!(
                    "{a} is not a loopback address; metrics, health and the console (unless [admin] token is set) are open to whoever reaches it, so set allow_remote = true to expose them"
                ),
            ));
        }
        let (token_ref, token) = match r.token.as_deref() {
            Some(t) => {
                let (r, v) = self.secret(&p.key("token"), t)?;
                (Some(r), Some(v))
            }
            None => (None, None),
        };
        Ok(AdminConfig {
            listen,
            console_actions: r.console_actions.unwrap_or(false),
            token,
            token_ref,
        })
    }
}
