//! `hookd check`: validate the config and show what would run.

use std::path::Path;
use std::process::ExitCode;

use crate::config::http::{BodyMode, HttpTarget};
use crate::config::{Config, PullConfig, SourceConfig, StoreConfig};
use crate::extract::Extractor;
use crate::provider::Mode;

pub fn check(path: &Path) -> anyhow::Result<ExitCode> {
    let cfg = super::load(path)?;
    for w in &cfg.warnings {
        eprintln!("warning: {w}");
    }
    print!("{}", plan(&cfg));
    Ok(ExitCode::SUCCESS)
}

/// The resolved plan, as text. Never includes a secret value.
pub fn plan(cfg: &Config) -> String {
    let mut out = format!("config {} is valid\n\n", cfg.file.display());
    let state = match &cfg.store {
        StoreConfig::Sqlite => cfg.database_path().display().to_string(),
        StoreConfig::Postgres(pg) => format!("PostgreSQL, {} (url from {})", pg.target, pg.url_ref),
    };
    out += &format!(
        "state      {state} (retention {})\n",
        humantime::format_duration(cfg.daemon.retention)
    );
    let scheme = if cfg.server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    for a in &cfg.server.listen {
        out += &format!(
            "listen     {scheme}://{a} (max body {} bytes)\n",
            cfg.server.max_body
        );
    }
    match cfg.admin.listen {
        Some(a) => {
            out += &format!("admin      http://{a}/metrics /healthz /readyz\n");
            let token = match &cfg.admin.token_ref {
                Some(r) => format!("token from {r}"),
                None => "no token".to_string(),
            };
            let actions = if cfg.admin.console_actions {
                "on"
            } else {
                "off"
            };
            out += &format!("console    http://{a}/ ({token}, actions {actions})\n");
        }
        None => out += "admin      off\n",
    }
    out += "\nsources\n";
    for s in &cfg.sources {
        let at = match s.mode {
            Mode::Push => format!("POST {}", s.path),
            m => match s.pull.as_ref().map(|p| (&p.sse, &p.poll)) {
                Some((Some(sse), _)) if m == Mode::Sse => format!("sse {}", sse.url),
                Some((_, Some(poll))) => format!("poll {}", poll.url),
                _ => format!(
                    "{} from {}",
                    m.name(),
                    s.api_base.as_deref().unwrap_or("(no api_base)")
                ),
            },
        };
        let secrets: Vec<String> = s.secret_refs.iter().map(|r| r.to_string()).collect();
        out += &format!(
            "  {:<14} {:<17} {:<28} scheme {} secrets [{}]\n",
            s.name,
            s.provider.name(),
            at,
            s.scheme.name(),
            secrets.join(", ")
        );
        if let Some(p) = &s.pull {
            out += &pull_line(s.mode, p);
        }
        out += &ingest_lines(s);
    }
    out += "\nhandlers\n";
    for h in &cfg.handlers {
        let kind = h.kind.name();
        let sources = if h.sources.is_empty() {
            "*".to_string()
        } else {
            h.sources.join(",")
        };
        let target = match &h.http {
            Some(t) => http_target(t),
            None => format!("{:?}", h.command),
        };
        out += &format!(
            "  {:<14} {kind:<6} events [{}] sources [{sources}] -> {target} (timeout {}, x{}, {} attempts)\n",
            h.name,
            h.events.join(", "),
            humantime::format_duration(h.timeout),
            h.concurrency,
            h.max_attempts
        );
    }
    out += "\nroutes\n";
    for s in &cfg.sources {
        let hs: Vec<&str> = cfg
            .handlers
            .iter()
            .filter(|h| h.sources.is_empty() || h.sources.contains(&s.name))
            .map(|h| h.name.as_str())
            .collect();
        out += &format!(
            "  {:<14} -> {}\n",
            s.name,
            if hs.is_empty() {
                "(stored only)".to_string()
            } else {
                hs.join(", ")
            }
        );
    }
    out
}

/// What the source's signature, extraction and type aliases are, whether
/// written in the config or filled in by the provider's preset.
fn ingest_lines(s: &SourceConfig) -> String {
    let list = |l: &[Extractor]| {
        let items: Vec<String> = l.iter().map(Extractor::to_string).collect();
        format!("[{}]", items.join(", "))
    };
    let e = &s.extract;
    let suffix = match &e.type_suffix {
        Some(x) => format!(", then \".\" + {x} when present"),
        None => String::new(),
    };
    let mut out = String::new();
    if s.mode == Mode::Push {
        out += &format!("  {:<14} signature {}\n", "", s.scheme.describe());
    }
    out += &format!(
        "  {:<14} id {}  type {}{suffix}  time {}\n",
        "",
        list(&e.id),
        list(&e.ty),
        list(&e.time)
    );
    if !s.type_aliases.is_empty() {
        let a: Vec<String> = s
            .type_aliases
            .iter()
            .map(|(from, to)| format!("{from} -> {to}"))
            .collect();
        out += &format!("  {:<14} type aliases {}\n", "", a.join(", "));
    }
    out
}

/// An http handler's target: method, URL and what goes with it; header
/// names only, and the signing secret by reference.
fn http_target(t: &HttpTarget) -> String {
    let mut parts = vec![format!(
        "{} {} ({})",
        t.method,
        t.url.as_str(),
        match t.body {
            BodyMode::Envelope => "envelope",
            BodyMode::Payload => "payload",
        }
    )];
    if let Some(s) = &t.sign {
        parts.push(format!("signed {} with {}", s.scheme.name(), s.secret));
    }
    if !t.headers.is_empty() {
        let names: Vec<&str> = t.headers.iter().map(|(n, _)| n.as_str()).collect();
        parts.push(format!("headers [{}]", names.join(", ")));
    }
    if let Some(f) = &t.ca_file {
        parts.push(format!("ca_file {}", f.display()));
    }
    if t.follow_redirects {
        parts.push("follows redirects".into());
    }
    if !t.retry_on_4xx {
        parts.push("4xx is final".into());
    }
    parts.join(", ")
}

/// The tuning of a pull source, under its source line.
fn pull_line(mode: Mode, p: &PullConfig) -> String {
    let d = humantime::format_duration;
    let mut parts = Vec::new();
    if let (Mode::Sse, Some(sse)) = (mode, &p.sse) {
        parts.push(format!("idle timeout {}", d(sse.idle_timeout)));
        if let Some(poll) = &p.poll {
            parts.push(format!("backfill from {}", poll.url));
        }
    }
    if let (Mode::Poll, Some(poll)) = (mode, &p.poll) {
        parts.push(format!("every {}, limit {}", d(poll.interval), poll.limit));
    }
    if p.needs_stored_id() {
        parts.push("webhook id from `hookd register`".into());
    }
    format!("  {:<14} {}\n", "", parts.join("; "))
}
