//! `hookd subscriptions [SOURCE…]`: what each provider reports, next to what
//! the config wants (`ours`, `drift`, `other`, `missing`); then, for SSE and
//! poll sources, what the daemon last recorded about each stream or poll.

use std::process::ExitCode;

use clap::Args;

use super::manage::{pick, runtime};
use super::output::{clip, print_rows};
use super::pull_status;
use crate::config::{Config, SourceConfig, StoreConfig};
use crate::provider::ProviderKind;
use crate::provider::manage::Manager;
use crate::provider::manage::status::{Row, rows};

#[derive(Args, Debug)]
pub struct SubscriptionsArgs {
    /// Sources to show (default: every linkup, linq and linkedapi source)
    pub sources: Vec<String>,
    /// One JSON object per line
    #[arg(long)]
    pub json: bool,
}

pub fn subscriptions(cfg: &Config, a: SubscriptionsArgs) -> anyhow::Result<ExitCode> {
    let pulls: Vec<&SourceConfig> = if a.sources.is_empty() {
        cfg.sources.iter().filter(|s| s.pull.is_some()).collect()
    } else {
        pick(cfg, &a.sources, |_| true)?
    };
    let pull_lines = pull_status::lines(cfg, &pulls)?;
    let sources = match pick(cfg, &a.sources, |_| true) {
        Ok(s) => s,
        // Only generic pull sources: there is no provider to ask.
        Err(_) if !pull_lines.is_empty() => {
            pull_status::print(&pull_lines, a.json)?;
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e),
    };
    // A generic pull source has no management API; its status is below.
    let sources: Vec<&SourceConfig> = sources
        .into_iter()
        .filter(|s| !(s.provider == ProviderKind::Generic && s.pull.is_some()))
        .collect();
    if sources.is_empty() {
        pull_status::print(&pull_lines, a.json)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rt = runtime()?;
    // Read-only: without a SQLite database nothing was registered from
    // here yet. A PostgreSQL store is always opened: replicas elsewhere
    // may have registered.
    let store = match &cfg.store {
        StoreConfig::Sqlite if !cfg.database_path().exists() => None,
        _ => Some(rt.block_on(super::manage::store(cfg))?),
    };
    let mut all: Vec<Row> = Vec::new();
    let mut failed = false;
    for src in sources {
        let got = match Manager::for_source(cfg, src) {
            Ok(m) => rt.block_on(rows(&m, store.as_ref())),
            Err(e) => Err(e),
        };
        match got {
            Ok(r) => all.extend(r),
            Err(e) => {
                failed = true;
                eprintln!("hookd: source {}: {e}", src.name);
            }
        }
    }
    if failed && all.is_empty() {
        pull_status::print(&pull_lines, a.json)?;
        return Ok(ExitCode::from(1));
    }
    print_rows(
        &all,
        a.json,
        &[
            "source", "provider", "id", "status", "active", "url", "events", "detail",
        ],
        |r| {
            vec![
                r.source.clone(),
                r.provider.clone(),
                r.id.clone().unwrap_or_else(|| "-".into()),
                r.status.to_string(),
                match r.active {
                    Some(true) => "yes".into(),
                    Some(false) => "no".into(),
                    None => "-".into(),
                },
                r.url.clone().unwrap_or_else(|| "(hosted)".into()),
                clip(&r.events.join(","), 40),
                r.detail.clone(),
            ]
        },
    )?;
    pull_status::print(&pull_lines, a.json)?;
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
