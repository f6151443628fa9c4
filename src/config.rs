//! `receiver.toml`: parsing, defaults and validation (SPEC §3).
//!
//! The file is read twice: once by serde into raw structs (unknown keys are
//! errors), once as toml's spanned document so that every error can name the
//! file, the line and the key. Validation turns the raw structs into the
//! runtime [`Config`]: secrets resolved, paths made absolute against the
//! config file's directory, schemes and extractors built. A `Config` is
//! immutable; a reload builds a new one and swaps it in whole.

pub mod http;
#[doc(hidden)]
pub mod keys;
pub mod locate;
mod pull;
mod store;
pub mod units;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use locate::KeyPath;
pub use pull::{Auth, PollConfig, PullConfig, SinceFormat, SseConfig};
pub use store::{PostgresStore, StoreConfig};

use crate::extract::{ExtractSpec, Extractor};
use crate::preset::{self, Mode, ProviderKind};
use crate::secret::{Secret, SecretRef};
use crate::verify::{Key, Scheme, SignatureConfig};

/// A config error an operator can act on: where, which key, what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        write!(f, ": {}: {}", self.key, self.message)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterMode {
    Manual,
    Auto,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandlerKind {
    Exec,
    Stream,
    /// Forwards each event over HTTP (`[[handler]] url = …`).
    Http,
}

impl HandlerKind {
    pub fn name(self) -> &'static str {
        match self {
            HandlerKind::Exec => "exec",
            HandlerKind::Stream => "stream",
            HandlerKind::Http => "http",
        }
    }

    /// Whether each run takes one of the daemon's `max_concurrency` slots.
    /// A stream handler's runs are messages to one process it already
    /// counts; an exec run is a process and an http run a request.
    pub fn takes_global_slot(self) -> bool {
        matches!(self, HandlerKind::Exec | HandlerKind::Http)
    }
}

/// The whole validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub file: PathBuf,
    pub daemon: DaemonConfig,
    pub server: ServerConfig,
    pub admin: AdminConfig,
    /// Where the state is kept: SQLite in `daemon.state_dir` unless `[store]` says otherwise.
    pub store: StoreConfig,
    pub sources: Vec<SourceConfig>,
    pub handlers: Vec<HandlerConfig>,
    /// Things that are accepted but worth telling the operator (literal secrets).
    pub warnings: Vec<String>,
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

#[derive(Clone, Debug)]
pub struct SourceConfig {
    pub name: String,
    pub provider: ProviderKind,
    pub mode: Mode,
    pub path: String,
    pub events: Vec<String>,
    pub scheme: Scheme,
    /// Where each configured secret came from (for `check`), in key order.
    pub secret_refs: Vec<SecretRef>,
    pub secrets: Vec<Secret>,
    /// MAC keys derived from `secrets`, same order.
    pub keys: Vec<Key>,
    pub insecure: bool,
    /// Headers never stored because they carry the secret (the `token` scheme's).
    pub redact_headers: Vec<::http::HeaderName>,
    pub tolerance: Duration,
    pub extract: ExtractSpec,
    pub type_aliases: BTreeMap<String, String>,
    pub api_key: Option<Secret>,
    pub api_base: Option<String>,
    pub register: RegisterMode,
    pub account_id: Option<String>,
    pub payload_mode: Option<String>,
    pub takeover: bool,
    pub poll_interval: Duration,
    pub idle_timeout: Duration,
    /// Where and how an SSE or poll source reads (None for push).
    pub pull: Option<PullConfig>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

#[derive(Clone, Debug)]
pub struct HandlerConfig {
    pub name: String,
    /// Globs on the normalized event type, as written.
    pub events: Vec<String>,
    pub patterns: Vec<glob::Pattern>,
    /// Source names; empty means every source.
    pub sources: Vec<String>,
    /// The program and its arguments (empty for an http handler).
    pub command: Vec<String>,
    pub kind: HandlerKind,
    /// Where an http handler sends events. Shared, so a slot's copy of the
    /// config is cheap, and a reload (a new `Arc`) gets a new connection pool.
    pub http: Option<std::sync::Arc<http::HttpTarget>>,
    pub timeout: Duration,
    pub concurrency: usize,
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub env: Vec<(String, Secret)>,
    pub working_dir: PathBuf,
}

impl HandlerConfig {
    /// Does this handler want events of `event_type` from `source`?
    pub fn matches(&self, source: &str, event_type: &str) -> bool {
        (self.sources.is_empty() || self.sources.iter().any(|s| s == source))
            && self.patterns.iter().any(|p| p.matches(event_type))
    }
}

impl Config {
    pub fn source(&self, name: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|s| s.name == name)
    }
    pub fn handler(&self, name: &str) -> Option<&HandlerConfig> {
        self.handlers.iter().find(|h| h.name == name)
    }
    /// Names of the handlers an event is routed to.
    pub fn route(&self, source: &str, event_type: &str) -> Vec<String> {
        self.handlers
            .iter()
            .filter(|h| h.matches(source, event_type))
            .map(|h| h.name.clone())
            .collect()
    }
    pub fn database_path(&self) -> PathBuf {
        self.daemon.state_dir.join("hookd.db")
    }
}

// ---------------------------------------------------------------- raw ----

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    daemon: RawDaemon,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    admin: RawAdmin,
    store: Option<store::RawStore>,
    #[serde(default)]
    source: Vec<RawSource>,
    #[serde(default)]
    handler: Vec<RawHandler>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    state_dir: Option<String>,
    retention: Option<String>,
    log_format: Option<String>,
    max_concurrency: Option<usize>,
    rejected_keep: Option<usize>,
    shutdown_grace: Option<String>,
    prune_interval: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<Vec<String>>,
    public_url: Option<String>,
    max_body: Option<String>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    request_timeout: Option<String>,
    header_timeout: Option<String>,
    max_header_bytes: Option<String>,
    max_pending: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<String>,
    allow_remote: Option<bool>,
    console_actions: Option<bool>,
    token: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    name: String,
    provider: String,
    mode: Option<String>,
    path: Option<String>,
    events: Option<Vec<String>>,
    secret: Option<String>,
    secrets: Option<Vec<String>>,
    api_key: Option<String>,
    api_base: Option<String>,
    register: Option<String>,
    tolerance: Option<String>,
    signature: Option<SignatureConfig>,
    extract: Option<RawExtract>,
    insecure: Option<bool>,
    type_aliases: Option<BTreeMap<String, String>>,
    account_id: Option<String>,
    payload_mode: Option<String>,
    takeover: Option<bool>,
    poll_interval: Option<String>,
    idle_timeout: Option<String>,
    webhook_id: Option<String>,
    sse: Option<pull::RawSse>,
    poll: Option<pull::RawPoll>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawExtract {
    id: Option<Vec<String>>,
    #[serde(rename = "type")]
    ty: Option<Vec<String>>,
    time: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHandler {
    name: String,
    events: Option<Vec<String>>,
    sources: Option<Vec<String>>,
    command: Option<Vec<String>>,
    kind: Option<String>,
    timeout: Option<String>,
    concurrency: Option<usize>,
    max_attempts: Option<u32>,
    backoff: Option<RawBackoff>,
    env: Option<BTreeMap<String, String>>,
    working_dir: Option<String>,
    // kind = "http" (see `config::http`)
    url: Option<String>,
    method: Option<String>,
    body: Option<String>,
    headers: Option<BTreeMap<String, String>>,
    sign: Option<http::RawSign>,
    follow_redirects: Option<bool>,
    retry_on_4xx: Option<bool>,
    ca_file: Option<String>,
}

impl RawHandler {
    /// Moves the http keys out of the flat table.
    fn take_http(&mut self) -> http::RawHttp {
        http::RawHttp {
            url: self.url.take(),
            method: self.method.take(),
            body: self.body.take(),
            headers: self.headers.take(),
            sign: self.sign.take(),
            follow_redirects: self.follow_redirects.take(),
            retry_on_4xx: self.retry_on_4xx.take(),
            ca_file: self.ca_file.take(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackoff {
    initial: Option<String>,
    max: Option<String>,
}

// ------------------------------------------------------------ loading ----

/// Reads and validates a config file.
pub fn load(file: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|e| ConfigError {
        file: file.to_path_buf(),
        line: None,
        key: "(file)".into(),
        message: format!("cannot read the config: {e}"),
    })?;
    parse(&text, file)
}

/// Validates config text as if it were read from `file`.
pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
    let doc = toml::de::DeTable::parse(text).map_err(|e| {
        let line = e.span().map(|s| locate::line_of(text, s.start));
        ConfigError {
            file: file.to_path_buf(),
            line,
            key: "(syntax)".into(),
            message: first_line(e.message()),
        }
    })?;
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let (line, key) = match e.span() {
            Some(s) => (
                Some(locate::line_of(text, s.start)),
                locate::path_at(&doc, s.start).to_string(),
            ),
            None => (None, "(top level)".to_string()),
        };
        ConfigError {
            file: file.to_path_buf(),
            line,
            key,
            message: first_line(e.message()),
        }
    })?;
    let base = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut v = Validator {
        base,
        warnings: Vec::new(),
    };
    v.config(raw, file).map_err(|(path, message)| ConfigError {
        file: file.to_path_buf(),
        line: Some(locate::line_of(text, locate::span_of(&doc, &path).start)),
        key: path.to_string(),
        message,
    })
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).trim().to_string()
}

/// The config file to use: `-c`, then `$HOOKD_CONFIG`, then `./receiver.toml`,
/// then `/etc/hookd/receiver.toml`.
pub fn default_path(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("HOOKD_CONFIG") {
        return PathBuf::from(p);
    }
    let local = PathBuf::from("receiver.toml");
    if local.exists() {
        return local;
    }
    PathBuf::from("/etc/hookd/receiver.toml")
}

/// `p` without `.` steps (`./a/./b` → `a/b`).
fn clean_path(p: &Path) -> PathBuf {
    let clean: PathBuf = p
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect();
    if clean.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        clean
    }
}

type VResult<T> = Result<T, (KeyPath, String)>;

struct Validator {
    base: PathBuf,
    warnings: Vec<String>,
}

fn at<T>(path: &KeyPath, r: Result<T, String>) -> VResult<T> {
    r.map_err(|m| (path.clone(), m))
}

fn dur(path: &KeyPath, v: Option<&str>, default: Duration) -> VResult<Duration> {
    v.map_or(Ok(default), |s| at(path, units::parse_duration(s)))
}

fn size(path: &KeyPath, v: Option<&str>, default: u64) -> VResult<usize> {
    let n = v.map_or(Ok(default), |s| at(path, units::parse_size(s)))?;
    at(
        path,
        usize::try_from(n).map_err(|_| "too large".to_string()),
    )
}

fn one_of<T: Copy>(
    path: &KeyPath,
    v: Option<&str>,
    default: T,
    options: &[(&str, T)],
) -> VResult<T> {
    let Some(v) = v else { return Ok(default) };
    options
        .iter()
        .find(|(n, _)| *n == v)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            (
                path.clone(),
                format!("{v:?} is not one of: {}", names.join(", ")),
            )
        })
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// `header:webhook-id` on a Standard Webhooks source means the message id
/// whichever spelling the sender uses (`svix-id` too), and is read from the
/// verified request; the same for the timestamp.
fn signed_spelling(list: Vec<Extractor>, scheme: &Scheme) -> Vec<Extractor> {
    list.into_iter()
        .map(|e| match &e {
            Extractor::Header(h) => scheme.signed_header(h).map_or(e, Extractor::Signed),
            _ => e,
        })
        .collect()
}

/// Every `signed:` extractor names something the source's scheme signs.
fn signed_by(spec: &ExtractSpec, scheme: &Scheme, p: &KeyPath) -> VResult<()> {
    let lists = [("id", &spec.id), ("type", &spec.ty), ("time", &spec.time)];
    for (key, list) in lists {
        for (i, e) in list.iter().enumerate() {
            if let Extractor::Signed(f) = e
                && !scheme.signs(*f)
            {
                return Err((
                    p.key(key).index(i),
                    format!(
                        "scheme {:?} signs no {}; signed:id needs standard-webhooks or hmac with id_header, \
                         signed:timestamp a scheme that signs a timestamp",
                        scheme.name(),
                        f.name()
                    ),
                ));
            }
        }
    }
    Ok(())
}

impl Validator {
    /// A config path, relative to the config file's directory, without `.` steps.
    fn path(&self, p: &str) -> PathBuf {
        clean_path(&self.base.join(p))
    }

    fn config(&mut self, raw: RawConfig, file: &Path) -> VResult<Config> {
        let root = KeyPath::root();
        let daemon = self.daemon(raw.daemon, &root.key("daemon"))?;
        let server = self.server(raw.server, &root.key("server"))?;
        let admin = self.admin(raw.admin, &root.key("admin"))?;
        let store = self.store(raw.store, &root.key("store"))?;
        let mut sources = Vec::new();
        let (mut names, mut paths) = (HashSet::new(), HashSet::new());
        for (i, s) in raw.source.into_iter().enumerate() {
            let p = root.key("source").index(i);
            let s = self.source(s, &p)?;
            if !names.insert(s.name.clone()) {
                return Err((
                    p.key("name"),
                    format!("another [[source]] is already named {:?}", s.name),
                ));
            }
            if s.mode == Mode::Push && !paths.insert(s.path.clone()) {
                return Err((
                    p.key("path"),
                    format!("path {:?} is already used by another source", s.path),
                ));
            }
            sources.push(s);
        }
        let mut handlers: Vec<HandlerConfig> = Vec::new();
        for (i, h) in raw.handler.into_iter().enumerate() {
            let p = root.key("handler").index(i);
            let h = self.handler(h, &p, &names)?;
            if handlers.iter().any(|o| o.name == h.name) {
                return Err((
                    p.key("name"),
                    format!("another [[handler]] is already named {:?}", h.name),
                ));
            }
            handlers.push(h);
        }
        Ok(Config {
            file: file.to_path_buf(),
            daemon,
            server,
            admin,
            store,
            sources,
            handlers,
            warnings: std::mem::take(&mut self.warnings),
        })
    }

    fn daemon(&mut self, r: RawDaemon, p: &KeyPath) -> VResult<DaemonConfig> {
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

    fn server(&mut self, r: RawServer, p: &KeyPath) -> VResult<ServerConfig> {
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

    fn admin(&mut self, r: RawAdmin, p: &KeyPath) -> VResult<AdminConfig> {
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

    fn secret(&mut self, p: &KeyPath, s: &str) -> VResult<(SecretRef, Secret)> {
        let r = SecretRef::parse(s);
        if r.is_literal() {
            self.warnings.push(format!(
                "{p}: the secret is written literally in the config; prefer env:NAME, file:PATH or credential:NAME"
            ));
        }
        let v = at(p, r.resolve(&self.base))?;
        Ok((r, v))
    }

    fn source(&mut self, r: RawSource, p: &KeyPath) -> VResult<SourceConfig> {
        if !is_identifier(&r.name) {
            return Err((
                p.key("name"),
                format!("{:?} must be 1-64 letters, digits, '_', '-' or '.'", r.name),
            ));
        }
        let provider = ProviderKind::parse(&r.provider).ok_or_else(|| {
            let names: Vec<&str> = ProviderKind::ALL.iter().map(|k| k.name()).collect();
            (
                p.key("provider"),
                format!("{:?} is not one of: {}", r.provider, names.join(", ")),
            )
        })?;
        let preset = provider.preset();
        let mode = match r.mode.as_deref() {
            None => Mode::Push,
            Some(m) => Mode::parse(m).ok_or_else(|| {
                (
                    p.key("mode"),
                    format!("{m:?} is not one of: push, sse, poll"),
                )
            })?,
        };
        if !preset.modes.contains(&mode) {
            let names: Vec<&str> = preset.modes.iter().map(|m| m.name()).collect();
            return Err((
                p.key("mode"),
                format!(
                    "provider {} supports mode {} only",
                    provider.name(),
                    names.join(", ")
                ),
            ));
        }
        let path = r.path.unwrap_or_else(|| format!("/hooks/{}", r.name));
        if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
            return Err((
                p.key("path"),
                format!("{path:?} must be a URL path starting with '/'"),
            ));
        }
        let sig_cfg = match (r.signature, preset.signature) {
            (Some(s), _) => s,
            // Pulled events come over our own authenticated request and
            // carry no signature: the preset's scheme is for pushes.
            (None, Some(preset)) if mode == Mode::Push => preset,
            (None, _) if mode != Mode::Push => SignatureConfig {
                scheme: "none".into(),
                ..Default::default()
            },
            (None, _) => {
                return Err((p.key("signature"), "a generic push source needs a signature table, e.g. { scheme = \"hmac\", header = \"X-Signature\" } (or { scheme = \"none\" } with insecure = true)".into()));
            }
        };
        let scheme = Scheme::from_config(&sig_cfg)
            .map_err(|e| (p.key("signature").key(e.key), e.message))?;
        let insecure = r.insecure.unwrap_or(false);
        let redact_headers = match (sig_cfg.scheme.as_str(), &sig_cfg.header) {
            ("token", Some(h)) => ::http::HeaderName::from_bytes(h.as_bytes())
                .into_iter()
                .collect(),
            _ => Vec::new(),
        };
        // Pull sources are authenticated by our own API call; push needs a signature.
        if scheme.name() == "none" && mode == Mode::Push && !insecure {
            return Err((p.key("signature").key("scheme"), "scheme \"none\" accepts anyone's requests; set insecure = true on the source to allow it".into()));
        }
        let secret_list: Vec<(KeyPath, String)> = match (r.secret, r.secrets) {
            (Some(_), Some(_)) => {
                return Err((
                    p.key("secrets"),
                    "set either secret or secrets, not both".into(),
                ));
            }
            (Some(s), None) => vec![(p.key("secret"), s)],
            (None, Some(v)) => v
                .into_iter()
                .enumerate()
                .map(|(i, s)| (p.key("secrets").index(i), s))
                .collect(),
            (None, None) => Vec::new(),
        };
        let (mut secret_refs, mut secrets, mut keys) = (Vec::new(), Vec::new(), Vec::new());
        for (kp, s) in secret_list {
            let (r, v) = self.secret(&kp, &s)?;
            keys.push(at(&kp, scheme.derive_key(v.expose()))?);
            secret_refs.push(r);
            secrets.push(v);
        }
        // A provider that issues its own secret (LinkUp, Linked API) may have
        // none in the config: `hookd register` persists it in the state directory.
        let issues_secret = provider.issues_secret();
        if scheme.requires_secret() && secrets.is_empty() && mode == Mode::Push && !issues_secret {
            return Err((
                p.key("secret"),
                format!(
                    "scheme {:?} needs a secret (secret = \"env:NAME\")",
                    scheme.name()
                ),
            ));
        }
        let mut preset_extract = match provider {
            ProviderKind::Generic => preset::scheme_extract(&scheme),
            _ => preset.extract.clone(),
        };
        if provider == ProviderKind::Linkup && mode != Mode::Push {
            preset_extract.id = preset::extractors(preset::linkup_hosted::PULL_ID);
        }
        let extract = self.extract(
            r.extract,
            &p.key("extract"),
            &preset_extract,
            provider,
            &scheme,
        )?;
        let mut type_aliases: BTreeMap<String, String> = preset
            .aliases
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        type_aliases.extend(r.type_aliases.unwrap_or_default());
        let api_key = match r.api_key {
            Some(k) => Some(self.secret(&p.key("api_key"), &k)?.1),
            None => None,
        };
        if let Some(b) = &r.api_base
            && !(b.starts_with("https://") || b.starts_with("http://"))
        {
            return Err((p.key("api_base"), format!("{b:?} must be an http(s) URL")));
        }
        let events = r.events.unwrap_or_default();
        if let Some(pm) = &r.payload_mode
            && !["fat", "thin"].contains(&pm.as_str())
        {
            return Err((
                p.key("payload_mode"),
                format!("{pm:?} is not one of: fat, thin"),
            ));
        }
        let api_base = r
            .api_base
            .or(preset.api_base.map(str::to_string))
            .map(|b| b.trim_end_matches('/').to_string());
        let pull = pull::validate(
            pull::SourceSide {
                provider,
                mode,
                api_base: api_base.as_deref(),
                api_key: api_key.as_ref(),
                webhook_id: r.webhook_id,
                poll_interval: r.poll_interval.as_deref(),
                idle_timeout: r.idle_timeout.as_deref(),
            },
            r.sse,
            r.poll,
            p,
        )?;
        let register = one_of(
            &p.key("register"),
            r.register.as_deref(),
            RegisterMode::Manual,
            &[
                ("manual", RegisterMode::Manual),
                ("auto", RegisterMode::Auto),
            ],
        )?;
        if register == RegisterMode::Auto && !provider.has_management_api() {
            return Err((
                p.key("register"),
                "\"auto\" needs a provider with a management API (linkup, linq, linkedapi)".into(),
            ));
        }
        Ok(SourceConfig {
            name: r.name,
            provider,
            mode,
            path,
            events,
            scheme,
            secret_refs,
            secrets,
            keys,
            insecure,
            redact_headers,
            tolerance: dur(
                &p.key("tolerance"),
                r.tolerance.as_deref(),
                Duration::from_secs(300),
            )?,
            extract,
            type_aliases,
            api_key,
            api_base,
            register,
            account_id: r.account_id,
            payload_mode: r.payload_mode,
            takeover: r.takeover.unwrap_or(false),
            poll_interval: match pull.as_ref().and_then(|c| c.poll.as_ref()) {
                Some(poll) => poll.interval,
                None => dur(
                    &p.key("poll_interval"),
                    r.poll_interval.as_deref(),
                    Duration::from_secs(10),
                )?,
            },
            idle_timeout: match pull.as_ref().and_then(|c| c.sse.as_ref()) {
                Some(sse) => sse.idle_timeout,
                None => dur(
                    &p.key("idle_timeout"),
                    r.idle_timeout.as_deref(),
                    Duration::from_secs(75),
                )?,
            },
            pull,
        })
    }

    fn extract(
        &mut self,
        r: Option<RawExtract>,
        p: &KeyPath,
        preset: &ExtractSpec,
        provider: ProviderKind,
        scheme: &Scheme,
    ) -> VResult<ExtractSpec> {
        let r = r.unwrap_or_default();
        let list =
            |key: &str, v: Option<Vec<String>>, default: &[Extractor]| -> VResult<Vec<Extractor>> {
                match v {
                    None => Ok(default.to_vec()),
                    Some(v) => v
                        .iter()
                        .enumerate()
                        .map(|(i, s)| at(&p.key(key).index(i), Extractor::parse(s)))
                        .collect(),
                }
            };
        let type_suffix = match r.ty {
            None => preset.type_suffix.clone(),
            Some(_) => None,
        };
        let spec = ExtractSpec {
            id: signed_spelling(list("id", r.id, &preset.id)?, scheme),
            ty: list("type", r.ty, &preset.ty)?,
            time: signed_spelling(list("time", r.time, &preset.time)?, scheme),
            type_suffix,
        };
        signed_by(&spec, scheme, p)?;
        let generic = provider == ProviderKind::Generic;
        if spec.id.is_empty() {
            return Err((
                p.key("id"),
                if generic {
                    "a generic source must say where the event id is, e.g. id = [\"json:/id\", \"hash\"]".into()
                } else {
                    "needs at least one extractor".into()
                },
            ));
        }
        if spec.ty.is_empty() {
            return Err((
                p.key("type"),
                if generic {
                    "a generic source must say where the event type is, e.g. type = [\"json:/type\"]".into()
                } else {
                    "needs at least one extractor".into()
                },
            ));
        }
        if let Some(i) = spec
            .ty
            .iter()
            .position(|e| matches!(e, Extractor::Hash | Extractor::HashOf(_) | Extractor::Now))
        {
            return Err((
                p.key("type").index(i),
                "hash and now cannot give an event type".into(),
            ));
        }
        if let Some(i) = spec.id.iter().position(|e| matches!(e, Extractor::Now)) {
            return Err((
                p.key("id").index(i),
                "now cannot give an event id; use hash".into(),
            ));
        }
        if let Some(i) = spec
            .time
            .iter()
            .position(|e| matches!(e, Extractor::Hash | Extractor::HashOf(_)))
        {
            return Err((
                p.key("time").index(i),
                "hash cannot give a time; use now".into(),
            ));
        }
        Ok(spec)
    }

    fn handler(
        &mut self,
        mut r: RawHandler,
        p: &KeyPath,
        sources: &HashSet<String>,
    ) -> VResult<HandlerConfig> {
        let raw_http = r.take_http();
        if !is_identifier(&r.name) {
            return Err((
                p.key("name"),
                format!("{:?} must be 1-64 letters, digits, '_', '-' or '.'", r.name),
            ));
        }
        let events = r.events.unwrap_or_else(|| vec!["*".to_string()]);
        if events.is_empty() {
            return Err((
                p.key("events"),
                "lists no event types; use [\"*\"] for all".into(),
            ));
        }
        let patterns = events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                glob::Pattern::new(e).map_err(|err| {
                    (
                        p.key("events").index(i),
                        format!("{e:?} is not a valid glob: {err}"),
                    )
                })
            })
            .collect::<VResult<Vec<_>>>()?;
        let handler_sources = r.sources.unwrap_or_default();
        for (i, s) in handler_sources.iter().enumerate() {
            if !sources.contains(s) {
                return Err((
                    p.key("sources").index(i),
                    format!("no [[source]] is named {s:?}"),
                ));
            }
        }
        let kind = one_of(
            &p.key("kind"),
            r.kind.as_deref(),
            HandlerKind::Exec,
            &[
                ("exec", HandlerKind::Exec),
                ("stream", HandlerKind::Stream),
                ("http", HandlerKind::Http),
            ],
        )?;
        let working_dir = self.path(r.working_dir.as_deref().unwrap_or("."));
        let (command, http) = if kind == HandlerKind::Http {
            for (key, set) in [
                ("command", r.command.is_some()),
                ("env", r.env.is_some()),
                ("working_dir", r.working_dir.is_some()),
            ] {
                if set {
                    return Err((
                        p.key(key),
                        format!("an http handler runs no program; remove {key}"),
                    ));
                }
            }
            let target = http::validate(raw_http, p, &self.base)?;
            (Vec::new(), Some(std::sync::Arc::new(target)))
        } else {
            if let Some(key) = raw_http.set_keys().first() {
                return Err((
                    p.key(key),
                    format!(
                        "applies to kind = \"http\" only; this handler is kind = \"{}\"",
                        kind.name()
                    ),
                ));
            }
            (self.command(r.command.take(), p, &working_dir)?, None)
        };
        let timeout = dur(
            &p.key("timeout"),
            r.timeout.as_deref(),
            Duration::from_secs(30),
        )?;
        if timeout.is_zero() {
            return Err((p.key("timeout"), "must be more than 0".into()));
        }
        let concurrency = r.concurrency.unwrap_or(4);
        if concurrency == 0 {
            return Err((p.key("concurrency"), "must be at least 1".into()));
        }
        let max_attempts = r.max_attempts.unwrap_or(8);
        if max_attempts == 0 {
            return Err((p.key("max_attempts"), "must be at least 1".into()));
        }
        let bp = p.key("backoff");
        let (bi, bm) = r
            .backoff
            .map(|b| (b.initial, b.max))
            .unwrap_or((None, None));
        let backoff = Backoff {
            initial: dur(&bp.key("initial"), bi.as_deref(), Duration::from_secs(1))?,
            max: dur(&bp.key("max"), bm.as_deref(), Duration::from_secs(3600))?,
        };
        if backoff.initial > backoff.max {
            return Err((bp.key("initial"), "is longer than backoff.max".into()));
        }
        let mut env = Vec::new();
        for (k, v) in r.env.unwrap_or_default() {
            let kp = p.key("env").key(&k);
            if k.is_empty() || k.contains('=') || k.contains('\0') || k.starts_with("HOOKD_") {
                return Err((
                    kp,
                    format!("{k:?} is not a usable variable name (HOOKD_* is reserved)"),
                ));
            }
            // Handler env values are often plain settings, so literals are not warned about.
            env.push((k, at(&kp, SecretRef::parse(&v).resolve(&self.base))?));
        }
        Ok(HandlerConfig {
            name: r.name,
            events,
            patterns,
            sources: handler_sources,
            command,
            kind,
            http,
            timeout,
            concurrency,
            max_attempts,
            backoff,
            env,
            working_dir,
        })
    }
    /// An exec or stream handler's argv; a relative program path is
    /// relative to its working_dir.
    fn command(
        &self,
        command: Option<Vec<String>>,
        p: &KeyPath,
        working_dir: &Path,
    ) -> VResult<Vec<String>> {
        let mut command = command.unwrap_or_default();
        if command.is_empty() || command[0].is_empty() {
            return Err((p.key("command"), "is empty; give the program and its arguments, e.g. [\"./handlers/notify.sh\", \"--quiet\"]".into()));
        }
        if command[0].contains('/') && Path::new(&command[0]).is_relative() {
            command[0] = clean_path(&working_dir.join(&command[0]))
                .to_string_lossy()
                .into_owned();
        }
        Ok(command)
    }
}

#[cfg(test)]
mod tests;
