//! The `[source.sse]` and `[source.poll]` tables of a pull source.
//!
//! A pull source (`mode = "sse"` or `"poll"`) needs to know where to read,
//! how to authenticate, and for polling where the items and the cursor are
//! in the answer. A named provider (LinkUp) fills all of it in from its
//! preset, so its tables are optional and only override; a `generic` source
//! writes them out. URLs may contain `{webhook_id}`, filled at run time
//! from `webhook_id` or from what `hookd register` stored.

use std::time::Duration;

use serde::Deserialize;

use super::locate::KeyPath;
use super::validate::{RawBackoff, VResult, at, dur, one_of};
use crate::preset::{Mode, ProviderKind, linkup_hosted as lh};
use crate::retry::Backoff;
use crate::secret::Secret;

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    header: Option<String>,
    query: Option<String>,
    prefix: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSse {
    url: Option<String>,
    auth: Option<RawAuth>,
    events: Option<Vec<String>>,
    handshake: Option<Vec<String>>,
    idle_timeout: Option<String>,
    backoff: Option<RawBackoff>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPoll {
    url: Option<String>,
    auth: Option<RawAuth>,
    items: Option<String>,
    body: Option<String>,
    cursor: Option<String>,
    since_param: Option<String>,
    limit_param: Option<String>,
    limit: Option<u32>,
    interval: Option<String>,
    overlap: Option<String>,
    retention: Option<String>,
    since_format: Option<String>,
    timeout: Option<String>,
    backoff: Option<RawBackoff>,
}

/// How a pull request carries the source's `api_key`: a header, a query
/// parameter, or both.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Auth {
    pub header: Option<http::HeaderName>,
    pub query: Option<String>,
    /// Put before the key in the header, e.g. `"Bearer "`.
    pub prefix: String,
}

impl Auth {
    pub fn is_none(&self) -> bool {
        self.header.is_none() && self.query.is_none()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct SseConfig {
    /// May contain `{webhook_id}`.
    pub url: String,
    pub auth: Auth,
    /// SSE event names that carry an event; empty means every name.
    pub events: Vec<String>,
    /// Event names that only say "connected" (not stored).
    pub handshake: Vec<String>,
    /// No bytes for this long → reconnect.
    pub idle_timeout: Duration,
    pub backoff: Backoff,
}

/// How the cursor is written back into the `since` parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinceFormat {
    /// A time, sent as RFC 3339 UTC; re-read with `overlap`.
    Rfc3339,
    /// A time, sent as unix seconds.
    Unix,
    /// A time, sent as unix milliseconds.
    UnixMs,
    /// Not a time: sent back verbatim, no overlap possible.
    Opaque,
}

impl SinceFormat {
    pub fn is_time(self) -> bool {
        self != SinceFormat::Opaque
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct PollConfig {
    /// May contain `{webhook_id}`.
    pub url: String,
    pub auth: Auth,
    /// JSON pointer to the array of items in an answer ("" = the answer is the array).
    pub items: String,
    /// JSON pointer to the part of an item stored as the event ("" = the whole item).
    pub body: String,
    /// JSON pointer to an item's cursor value; None = no cursor (every poll reads the same page).
    pub cursor: Option<String>,
    pub since_param: String,
    /// None = the endpoint takes no page size.
    pub limit_param: Option<String>,
    pub limit: u32,
    pub interval: Duration,
    /// Re-read this much before the cursor, so events sharing a timestamp
    /// across a page boundary are not skipped (duplicates are dropped).
    pub overlap: Duration,
    /// How long the provider keeps events; an older cursor gets a warning.
    pub retention: Option<Duration>,
    pub since_format: SinceFormat,
    /// Whole-request limit of one poll.
    pub timeout: Duration,
    pub backoff: Backoff,
}

/// Everything a pull source needs besides the common source settings.
#[derive(Clone, Debug, PartialEq)]
pub struct PullConfig {
    pub sse: Option<SseConfig>,
    /// The poll endpoint: the source itself in poll mode, the backfill of an SSE source.
    pub poll: Option<PollConfig>,
    /// Fills `{webhook_id}`; when None, the id `hookd register` stored is used.
    pub webhook_id: Option<String>,
    pub api_key: Option<Secret>,
}

impl PullConfig {
    /// True when the URLs need a webhook id the config does not give.
    pub fn needs_stored_id(&self) -> bool {
        self.webhook_id.is_none()
            && (self
                .sse
                .as_ref()
                .is_some_and(|s| s.url.contains("{webhook_id}"))
                || self
                    .poll
                    .as_ref()
                    .is_some_and(|p| p.url.contains("{webhook_id}")))
    }
}

/// What the source-level keys contribute.
pub(super) struct SourceSide<'a> {
    pub provider: ProviderKind,
    pub mode: Mode,
    pub api_base: Option<&'a str>,
    pub api_key: Option<&'a Secret>,
    pub webhook_id: Option<String>,
    /// `poll_interval` / `idle_timeout` on the source itself (SPEC §3).
    pub poll_interval: Option<&'a str>,
    pub idle_timeout: Option<&'a str>,
}

const DEFAULT_BACKOFF: Backoff = Backoff {
    initial: Duration::from_secs(1),
    max: Duration::from_secs(60),
};

/// Validates the pull tables of a source; None for a push source.
pub(super) fn validate(
    s: SourceSide<'_>,
    sse: Option<RawSse>,
    poll: Option<RawPoll>,
    p: &KeyPath,
) -> VResult<Option<PullConfig>> {
    if s.mode == Mode::Push {
        for (key, present) in [("sse", sse.is_some()), ("poll", poll.is_some())] {
            if present {
                return Err((
                    p.key(key),
                    "is only used by mode = \"sse\" or \"poll\"".into(),
                ));
            }
        }
        return Ok(None);
    }
    if s.mode == Mode::Poll && sse.is_some() {
        return Err((
            p.key("sse"),
            "is only used by mode = \"sse\" (this source polls)".into(),
        ));
    }
    let linkup = s.provider == ProviderKind::Linkup;
    if linkup && s.api_key.is_none() {
        return Err((
            p.key("api_key"),
            "LinkUp's stream and poll endpoints need the API key (api_key = \"env:LINKUP_API_KEY\")"
                .into(),
        ));
    }
    let base = s.api_base.unwrap_or_default();
    let sse = match s.mode {
        Mode::Sse => Some(sse_config(&s, sse.unwrap_or_default(), linkup, base, p)?),
        _ => None,
    };
    // An SSE source backfills through the poll endpoint when it has one.
    let want_poll = s.mode == Mode::Poll || poll.is_some() || linkup;
    let poll = match want_poll {
        true => Some(poll_config(&s, poll.unwrap_or_default(), linkup, base, p)?),
        false => None,
    };
    if let Some(id) = &s.webhook_id
        && (id.is_empty() || id.contains(['/', '?', '#', ' ']))
    {
        return Err((
            p.key("webhook_id"),
            format!("{id:?} is not a usable webhook id"),
        ));
    }
    Ok(Some(PullConfig {
        sse,
        poll,
        webhook_id: s.webhook_id,
        api_key: s.api_key.cloned(),
    }))
}

fn sse_config(
    s: &SourceSide<'_>,
    r: RawSse,
    linkup: bool,
    base: &str,
    src: &KeyPath,
) -> VResult<SseConfig> {
    let p = src.key("sse");
    let preset = linkup.then(|| {
        (
            format!("{base}{}", lh::STREAM_PATH),
            RawAuth {
                header: Some(lh::KEY_HEADER.into()),
                query: Some(lh::KEY_QUERY.into()),
                prefix: None,
            },
        )
    });
    let (url, auth) = endpoint(
        s,
        r.url,
        r.auth,
        preset,
        &p,
        "a generic SSE source needs [source.sse] url = \"https://…\"",
    )?;
    let idle_timeout = one_place(
        (&src.key("idle_timeout"), s.idle_timeout),
        (&p.key("idle_timeout"), r.idle_timeout.as_deref()),
        Duration::from_secs(75),
    )?;
    if idle_timeout < Duration::from_millis(100) {
        return Err((p.key("idle_timeout"), "must be at least 100ms".into()));
    }
    let names = |v: Option<Vec<String>>, preset: &[&str]| {
        v.unwrap_or_else(|| {
            if linkup {
                preset.iter().map(|s| s.to_string()).collect()
            } else {
                Vec::new()
            }
        })
    };
    Ok(SseConfig {
        url,
        auth,
        events: names(r.events, lh::SSE_EVENTS),
        handshake: names(r.handshake, lh::SSE_HANDSHAKE),
        idle_timeout,
        backoff: backoff(&p.key("backoff"), r.backoff)?,
    })
}

fn poll_config(
    s: &SourceSide<'_>,
    r: RawPoll,
    linkup: bool,
    base: &str,
    src: &KeyPath,
) -> VResult<PollConfig> {
    let p = src.key("poll");
    let or_preset = |v: Option<String>, preset: &str| -> Option<String> {
        v.or_else(|| linkup.then(|| preset.to_string()))
    };
    let preset = linkup.then(|| {
        (
            format!("{base}{}", lh::EVENTS_PATH),
            RawAuth {
                header: Some(lh::KEY_HEADER.into()),
                ..Default::default()
            },
        )
    });
    let (url, auth) = endpoint(
        s,
        r.url,
        r.auth,
        preset,
        &p,
        "a generic poll source needs [source.poll] url = \"https://…\"",
    )?;
    let pointer = |key: &str, v: Option<String>| -> VResult<Option<String>> {
        match v {
            Some(v) if !v.is_empty() && !v.starts_with('/') => Err((
                p.key(key),
                format!("{v:?} is not a JSON pointer (RFC 6901), e.g. \"/data/items\""),
            )),
            v => Ok(v),
        }
    };
    let items = pointer("items", or_preset(r.items, lh::ITEMS))?.unwrap_or_default();
    let body = pointer("body", or_preset(r.body, lh::BODY))?.unwrap_or_default();
    let cursor = pointer("cursor", or_preset(r.cursor, lh::CURSOR))?;
    let max_limit = if linkup { lh::MAX_LIMIT } else { 10_000 };
    let limit = r
        .limit
        .unwrap_or(if linkup { lh::DEFAULT_LIMIT } else { 100 });
    if limit == 0 || limit > max_limit {
        return Err((p.key("limit"), format!("{limit} is outside 1-{max_limit}")));
    }
    let since_format = one_of(
        &p.key("since_format"),
        r.since_format.as_deref(),
        SinceFormat::Rfc3339,
        &[
            ("rfc3339", SinceFormat::Rfc3339),
            ("unix", SinceFormat::Unix),
            ("unix_ms", SinceFormat::UnixMs),
            ("opaque", SinceFormat::Opaque),
        ],
    )?;
    let interval = one_place(
        (&src.key("poll_interval"), s.poll_interval),
        (&p.key("interval"), r.interval.as_deref()),
        Duration::from_secs(10),
    )?;
    if interval < Duration::from_millis(10) {
        return Err((p.key("interval"), "must be at least 10ms".into()));
    }
    let retention = match (r.retention, linkup) {
        (Some(v), _) => Some(at(&p.key("retention"), super::units::parse_duration(&v))?),
        (None, true) => Some(lh::RETENTION),
        (None, false) => None,
    };
    let timeout = dur(
        &p.key("timeout"),
        r.timeout.as_deref(),
        Duration::from_secs(30),
    )?;
    if timeout.is_zero() {
        return Err((p.key("timeout"), "must be more than 0".into()));
    }
    Ok(PollConfig {
        url,
        auth,
        items,
        body,
        cursor,
        since_param: or_preset(r.since_param, lh::SINCE_PARAM).unwrap_or_else(|| "since".into()),
        limit_param: match r.limit_param {
            Some(v) if v.is_empty() => None,
            Some(v) => Some(v),
            None => Some(lh::LIMIT_PARAM.to_string()),
        },
        limit,
        interval,
        overlap: dur(
            &p.key("overlap"),
            r.overlap.as_deref(),
            Duration::from_secs(2),
        )?,
        retention,
        since_format,
        timeout,
        backoff: backoff(&p.key("backoff"), r.backoff)?,
    })
}

/// Where an endpoint (the table at `p`) is and how it authenticates: as
/// the table says, else the provider's `preset` (URL, auth). Without a
/// preset (generic) the URL must be given (`missing_url` says so) and no
/// key is sent unless `auth` says how.
fn endpoint(
    s: &SourceSide<'_>,
    url: Option<String>,
    given_auth: Option<RawAuth>,
    preset: Option<(String, RawAuth)>,
    p: &KeyPath,
    missing_url: &str,
) -> VResult<(String, Auth)> {
    let (preset_url, preset_auth) = preset.unzip();
    let url = url
        .or(preset_url)
        .ok_or_else(|| (p.key("url"), missing_url.to_string()))?;
    check_url(&p.key("url"), &url)?;
    let auth = match given_auth.or(preset_auth) {
        Some(a) => auth(s, a, &p.key("auth"))?,
        None => Auth::default(),
    };
    Ok((url, auth))
}

fn check_url(p: &KeyPath, url: &str) -> VResult<()> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(r) if !r.is_empty() && !url.contains(char::is_whitespace) => Ok(()),
        _ => Err((p.clone(), format!("{url:?} must be an http(s) URL"))),
    }
}

fn auth(s: &SourceSide<'_>, r: RawAuth, p: &KeyPath) -> VResult<Auth> {
    if r.header.is_none() && r.query.is_none() {
        return Err((
            p.clone(),
            "names neither header nor query; e.g. { header = \"x-api-key\" } or { query = \"api_key\" }"
                .into(),
        ));
    }
    if s.api_key.is_none() {
        return Err((
            p.clone(),
            "sends the source's api_key, but the source has none (api_key = \"env:NAME\")".into(),
        ));
    }
    let header = match r.header {
        Some(h) => Some(
            http::HeaderName::from_bytes(h.as_bytes())
                .map_err(|_| (p.key("header"), format!("{h:?} is not a valid header name")))?,
        ),
        None => None,
    };
    if let Some(q) = &r.query
        && (q.is_empty() || q.contains(['&', '=', '#', ' ']))
    {
        return Err((
            p.key("query"),
            format!("{q:?} is not a usable parameter name"),
        ));
    }
    Ok(Auth {
        header,
        query: r.query,
        prefix: r.prefix.unwrap_or_default(),
    })
}

fn backoff(p: &KeyPath, r: Option<RawBackoff>) -> VResult<Backoff> {
    let Some(r) = r else {
        return Ok(DEFAULT_BACKOFF);
    };
    let b = Backoff {
        initial: dur(
            &p.key("initial"),
            r.initial.as_deref(),
            DEFAULT_BACKOFF.initial,
        )?,
        max: dur(&p.key("max"), r.max.as_deref(), DEFAULT_BACKOFF.max)?,
    };
    if b.initial.is_zero() {
        return Err((p.key("initial"), "must be more than 0".into()));
    }
    if b.initial > b.max {
        return Err((p.key("initial"), "is longer than backoff.max".into()));
    }
    Ok(b)
}

/// A setting that may be written on the source or in its table, not both.
fn one_place(
    source: (&KeyPath, Option<&str>),
    table: (&KeyPath, Option<&str>),
    default: Duration,
) -> VResult<Duration> {
    match (source.1, table.1) {
        (Some(_), Some(_)) => Err((
            table.0.clone(),
            format!("is also set as {}; keep one", source.0),
        )),
        (Some(v), None) => dur(source.0, Some(v), default),
        (None, v) => dur(table.0, v, default),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{Config, ConfigError, parse};

    fn ok(body: &str) -> Config {
        parse(body, Path::new("/etc/hookd/receiver.toml")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(body: &str) -> ConfigError {
        parse(body, Path::new("/etc/hookd/receiver.toml")).unwrap_err()
    }

    const LINKUP_SSE: &str = r#"
[[source]]
name = "lu"
provider = "linkup"
mode = "sse"
api_key = "k"
idle_timeout = "30s"
"#;

    #[test]
    fn linkup_hosted_needs_only_a_key() {
        let cfg = ok(LINKUP_SSE);
        let s = &cfg.sources[0];
        let pull = s.pull.as_ref().unwrap();
        let sse = pull.sse.as_ref().unwrap();
        assert_eq!(
            sse.url,
            "https://api.linkupapi.com/v2/webhooks/{webhook_id}/stream"
        );
        assert_eq!(sse.auth.query.as_deref(), Some("api_key"));
        assert_eq!(sse.auth.header.as_ref().unwrap(), "x-api-key");
        assert_eq!(
            (sse.events.clone(), sse.handshake.clone()),
            (vec!["webhook".to_string()], vec!["connected".to_string()])
        );
        assert_eq!(sse.idle_timeout, Duration::from_secs(30));
        assert_eq!(s.idle_timeout, Duration::from_secs(30));
        let poll = pull.poll.as_ref().unwrap();
        assert_eq!(
            poll.url,
            "https://api.linkupapi.com/v2/webhooks/{webhook_id}/events"
        );
        assert_eq!(
            (poll.items.as_str(), poll.body.as_str()),
            ("/data/items", "/event")
        );
        assert_eq!(poll.limit, 200, "LinkUp's documented maximum");
        assert_eq!(poll.retention, Some(Duration::from_secs(86_400)));
        assert!(pull.needs_stored_id());
        assert_eq!(s.scheme.name(), "none", "pulled events carry no signature");
        assert_eq!(
            s.extract.id[0].to_string(),
            "hash:/account_id,/event,/timestamp"
        );
    }

    #[test]
    fn generic_tables_and_webhook_id() {
        let cfg = ok(r#"
[[source]]
name = "feed"
provider = "generic"
mode = "poll"
api_key = "env:HOME"
webhook_id = "w1"
extract = { id = ["json:/id"], type = ["json:/type"] }
[source.poll]
url = "http://127.0.0.1:9/events/{webhook_id}"
auth = { header = "Authorization", prefix = "Bearer " }
items = ""
cursor = "/seq"
since_format = "opaque"
limit = 500
interval = "250ms"
backoff = { initial = "10ms", max = "1s" }
"#);
        let s = &cfg.sources[0];
        let pull = s.pull.as_ref().unwrap();
        assert!(pull.sse.is_none());
        assert!(!pull.needs_stored_id());
        let p = pull.poll.as_ref().unwrap();
        assert_eq!(p.auth.prefix, "Bearer ");
        assert_eq!(
            (p.items.as_str(), p.limit, p.since_format),
            ("", 500, SinceFormat::Opaque)
        );
        assert_eq!(s.poll_interval, Duration::from_millis(250));
        assert_eq!(p.backoff.initial, Duration::from_millis(10));
    }

    #[test]
    fn mistakes_name_file_line_and_key() {
        let e = err(
            "[[source]]\nname = \"g\"\nprovider = \"generic\"\nmode = \"sse\"\nextract = { id = [\"hash\"], type = [\"const:x\"] }\n",
        );
        assert_eq!(e.key, "source[0].sse.url");
        assert!(e.message.contains("needs [source.sse] url"), "{e}");
        let e = err("[[source]]\nname = \"lu\"\nprovider = \"linkup\"\nmode = \"poll\"\n");
        assert_eq!((e.key.as_str(), e.line), ("source[0].api_key", Some(1)));
        let e = err(&format!("{LINKUP_SSE}[source.poll]\nlimit = 500\n"));
        assert_eq!(e.key, "source[0].poll.limit");
        assert_eq!(e.line, Some(9));
        assert!(e.message.contains("1-200"), "{e}");
        let e = err(&format!(
            "{LINKUP_SSE}[source.sse]\nidle_timeout = \"5s\"\n"
        ));
        assert_eq!(e.key, "source[0].sse.idle_timeout");
        assert!(
            e.message.contains("also set as source[0].idle_timeout"),
            "{e}"
        );
        let e = err(&format!("{LINKUP_SSE}[source.sse]\nurl = \"ftp://x\"\n"));
        assert_eq!(e.key, "source[0].sse.url");
        let e = err(&format!("{LINKUP_SSE}[source.sse]\nbogus = 1\n"));
        assert_eq!((e.key.as_str(), e.line), ("source[0].sse.bogus", Some(9)));
        let e = err(
            "[[source]]\nname = \"p\"\nprovider = \"generic\"\nsecret = \"s\"\nsignature = { scheme = \"hmac\", header = \"X\" }\nextract = { id = [\"hash\"], type = [\"const:x\"] }\n[source.poll]\nurl = \"http://x\"\n",
        );
        assert_eq!(e.key, "source[0].poll");
        assert!(e.message.contains("only used by mode"), "{e}");
        let e = err(
            "[[source]]\nname = \"g\"\nprovider = \"generic\"\nmode = \"sse\"\nextract = { id = [\"hash\"], type = [\"const:x\"] }\n[source.sse]\nurl = \"http://x\"\nauth = { header = \"x-api-key\" }\n",
        );
        assert_eq!(e.key, "source[0].sse.auth");
        assert!(e.message.contains("has none"), "{e}");
    }
}
