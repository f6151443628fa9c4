//! The pull half of `hookd subscriptions`: per SSE/poll source, what the
//! daemon last recorded (connected, state and since when, last event,
//! position, last error). Read straight from the store (SQLite or
//! PostgreSQL), so it works whether or not the daemon is running — and
//! shows the last word of a daemon that stopped.

use serde::Serialize;

use super::db::Db;
use super::output::{clip, print_rows};
use crate::config::{Config, SourceConfig, StoreConfig};
use crate::store::pull_status::{self, PullStatus};

/// One line of output: the source and what was recorded (None: nothing yet).
#[derive(Serialize)]
pub struct PullLine {
    pub source: String,
    pub mode: String,
    pub pull: Option<PullStatus>,
}

/// The pull sources among `sources`, with their recorded status.
pub fn lines(cfg: &Config, sources: &[&SourceConfig]) -> anyhow::Result<Vec<PullLine>> {
    let wanted: Vec<&SourceConfig> = sources
        .iter()
        .copied()
        .filter(|s| s.pull.is_some())
        .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let recorded = recorded(cfg)?;
    Ok(wanted
        .into_iter()
        .map(|s| PullLine {
            source: s.name.clone(),
            mode: s.mode.name().to_string(),
            pull: recorded.iter().find(|r| r.source == s.name).cloned(),
        })
        .collect())
}

/// What the daemon recorded about each pull source: nothing where it never
/// ran (no SQLite database yet).
fn recorded(cfg: &Config) -> anyhow::Result<Vec<PullStatus>> {
    match &cfg.store {
        StoreConfig::Sqlite if !cfg.database_path().exists() => Ok(Vec::new()),
        StoreConfig::Sqlite => {
            let conn = crate::store::connect(&cfg.database_path(), true)
                .map_err(|e| anyhow::anyhow!("cannot open the database: {e}"))?;
            // A database from before pull sources has no status table yet.
            Ok(pull_status::list(&conn).unwrap_or_default())
        }
        StoreConfig::Postgres(_) => {
            let db = Db::open(cfg, false)?;
            Ok(db.run(db.pull_statuses())?)
        }
    }
}

pub fn print(lines: &[PullLine], json: bool) -> anyhow::Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    if !json {
        println!();
    }
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    print_rows(
        lines,
        json,
        &[
            "pull source",
            "mode",
            "state",
            "since",
            "last event",
            "events",
            "reconnects",
            "polls",
            "position",
            "last error",
        ],
        |l| match &l.pull {
            None => vec![
                l.source.clone(),
                l.mode.clone(),
                "not started".into(),
                "-".into(),
                "-".into(),
                "0".into(),
                "0".into(),
                "0".into(),
                "-".into(),
                "-".into(),
            ],
            Some(p) => vec![
                l.source.clone(),
                l.mode.clone(),
                p.state.clone(),
                short(&p.state_since),
                p.last_event_at.as_deref().map_or("-".into(), short),
                p.events.to_string(),
                p.reconnects.to_string(),
                p.polls.to_string(),
                p.position_at
                    .as_deref()
                    .map(short)
                    .or_else(|| p.cursor.clone())
                    .or_else(|| p.last_event_id.clone().map(|i| format!("id {i}")))
                    .unwrap_or_else(|| "-".into()),
                clip(&dash(&p.last_error), 60),
            ],
        },
    )
}

/// `2026-11-23T10:00:00.123456Z` → `2026-11-23 10:00:00`.
fn short(t: &str) -> String {
    t.get(..19).unwrap_or(t).replace('T', " ")
}
