//! `receiver.toml`: parsing, defaults and validation (SPEC §3).
//!
//! The file is read twice: once by serde into raw structs (unknown keys are
//! errors), once as toml's spanned document so that every error can name the
//! file, the line and the key. Validation turns the raw structs into the
//! runtime [`Config`]: secrets resolved, paths made absolute against the
//! config file's directory, schemes and extractors built. A `Config` is
//! immutable; a reload builds a new one and swaps it in whole.
//!
//! This file owns loading, the error type and the walk over the whole file
//! (the rules across tables: unique source names and push paths, unique
//! handler names); the rest is one file per concept: `validate` (the
//! validator core: value parsers every table uses),
//! `daemon` (`[daemon]`, `[server]`, `[admin]`), `source` (`[[source]]` and
//! its provider preset), `pull` (a source's `sse`/`poll` tables), `handler`
//! (`[[handler]]`), `http` (an http handler's target), `store`
//! (`[store]`). Config must not import `provider` (the control plane reads
//! config, not the other way round); provider presets come from
//! [`crate::preset`].

mod daemon;
mod handler;
pub mod http;
#[doc(hidden)]
pub mod keys;
pub mod locate;
mod pull;
mod source;
mod store;
pub mod units;
mod validate;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::retry::Backoff;
pub use daemon::{AdminConfig, DaemonConfig, LogFormat, ServerConfig, TlsFiles};
pub use handler::{HandlerConfig, HandlerKind};
pub use locate::KeyPath;
pub use pull::{Auth, PollConfig, PullConfig, SinceFormat, SseConfig};
pub use source::{RegisterMode, SourceConfig};
pub use store::{PostgresStore, StoreConfig};

use daemon::{RawAdmin, RawDaemon, RawServer};
use handler::RawHandler;
use source::RawSource;
use validate::{VResult, Validator};

use crate::preset::Mode;

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

// ------------------------------------------------------ the whole file ----

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

impl Validator {
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

#[cfg(test)]
mod tests;
