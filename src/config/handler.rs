//! `[[handler]]`: what runs for an event. The event globs and the sources
//! it listens to, the kind (`exec`, `stream` or `http`; the http keys are
//! validated in [`super::http`]), the argv and working directory, timeouts,
//! concurrency, attempts and backoff, and the environment.
//!
//! Owns one handler's validation; it must not look at sources beyond the
//! set of their names.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::http;
use super::locate::KeyPath;
use super::validate::{RawBackoff, VResult, Validator, at, clean_path, dur, is_identifier, one_of};
use crate::retry::Backoff;
use crate::secret::{Secret, SecretRef};

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHandler {
    pub(super) name: String,
    pub(super) events: Option<Vec<String>>,
    pub(super) sources: Option<Vec<String>>,
    pub(super) command: Option<Vec<String>>,
    pub(super) kind: Option<String>,
    pub(super) timeout: Option<String>,
    pub(super) concurrency: Option<usize>,
    pub(super) max_attempts: Option<u32>,
    pub(super) backoff: Option<RawBackoff>,
    pub(super) env: Option<BTreeMap<String, String>>,
    pub(super) working_dir: Option<String>,
    // kind = "http" (see `config::http`)
    pub(super) url: Option<String>,
    pub(super) method: Option<String>,
    pub(super) body: Option<String>,
    pub(super) headers: Option<BTreeMap<String, String>>,
    pub(super) sign: Option<http::RawSign>,
    pub(super) follow_redirects: Option<bool>,
    retry_on_4xx: Option<bool>,
    pub(super) ca_file: Option<String>,
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

impl Validator {
    pub(super) fn handler(
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
    pub(super) fn command(
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
