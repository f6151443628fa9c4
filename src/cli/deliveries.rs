//! `hookd deliveries`: handler runs and their state.

use std::process::ExitCode;

use anyhow::bail;
use clap::Args;

use super::db::Db;
use super::output::{clip, print_rows};
use crate::config::Config;
use crate::dispatch::started;
use crate::store::deliveries::{DeliveryFilter, DeliveryRow, STATUSES};

#[derive(Args, Debug)]
pub struct DeliveriesArgs {
    #[arg(long)]
    pub handler: Option<String>,
    /// pending, running, failed, succeeded or dead
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long)]
    pub source: Option<String>,
    /// Changed after this time: RFC 3339 or a duration ago such as 2h
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    #[arg(long)]
    pub json: bool,
}

pub fn deliveries(cfg: &Config, a: DeliveriesArgs) -> anyhow::Result<ExitCode> {
    if let Some(s) = &a.status
        && !STATUSES.contains(&s.as_str())
    {
        bail!("--status {s:?} is not one of: {}", STATUSES.join(", "));
    }
    let since = super::time_bound(a.since.as_deref(), crate::timefmt::now_micros())?;
    let db = Db::open(cfg, false)?;
    let mut rows = db.run(db.list_deliveries(DeliveryFilter {
        handler: a.handler,
        status: a.status,
        source: a.source,
        since,
        event: None,
        limit: Some(a.limit),
        before: None,
    }))?;
    if db.is_sqlite() {
        mark_held(cfg, &mut rows);
    }
    print_rows(
        &rows,
        a.json,
        &[
            "id",
            "event",
            "source",
            "type",
            "handler",
            "status",
            "attempts",
            "next / last error",
        ],
        |r| {
            vec![
                r.id.to_string(),
                r.event.to_string(),
                r.source.clone(),
                r.event_type.clone(),
                r.handler.clone(),
                r.shown_status(),
                r.attempts.to_string(),
                clip(
                    r.next_attempt_at
                        .as_deref()
                        .or(r.last_error.as_deref())
                        .unwrap_or(""),
                    60,
                ),
            ]
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Tells the deliveries an exec slot holds from those it started, by the
/// daemon's start log. Unreadable, it leaves them all `running`.
pub(super) fn mark_held(cfg: &Config, rows: &mut [DeliveryRow]) {
    match started::read(&cfg.daemon.state_dir) {
        Ok(starts) => rows
            .iter_mut()
            .for_each(|r| r.mark_held(|id, at| starts.contains(id, at))),
        Err(e) => eprintln!(
            "warning: cannot read {}: {e}; held deliveries show as running",
            cfg.daemon.state_dir.join(started::FILE_NAME).display()
        ),
    }
}
