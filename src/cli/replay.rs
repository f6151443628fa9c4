//! `hookd replay`: put stored events back in the dispatch queue.
//!
//! It only edits the queue in the store (SQLite or PostgreSQL), so it
//! works the same whether the daemon runs (it picks the work up within a
//! second; on PostgreSQL every replica is told at once) or not (it runs at
//! the next start). Replayed runs see `HOOKD_REPLAY=1` and start again at
//! attempt 1 with a fresh attempt budget.

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::EventSelect;
use super::db::Db;
use crate::config::Config;
use crate::store::deliveries;
use crate::store::replay;

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Event ids (the `id` column of `hookd events list`)
    pub ids: Vec<i64>,
    #[command(flatten)]
    pub select: EventSelect,
    /// Only deliveries in this state (e.g. dead)
    #[arg(long)]
    pub status: Option<String>,
    /// Only this handler
    #[arg(long)]
    pub handler: Option<String>,
    /// List what would run, change nothing
    #[arg(long)]
    pub dry_run: bool,
}

pub fn replay(cfg: &Config, a: ReplayArgs) -> anyhow::Result<ExitCode> {
    if let Some(h) = &a.handler
        && cfg.handler(h).is_none()
    {
        bail!("no [[handler]] is named {h:?} in {}", cfg.file.display());
    }
    if let Some(s) = &a.status
        && (!deliveries::STATUSES.contains(&s.as_str()) || s == deliveries::RUNNING)
    {
        bail!("--status {s:?} must be one of: pending, failed, succeeded, dead");
    }
    let filtered = a.select.is_set();
    if a.ids.is_empty() && !filtered && a.status.is_none() {
        bail!(
            "name event ids or a filter (--source, --type, --since, --until, --status); replaying everything is not a default"
        );
    }
    let db = Db::open(cfg, !a.dry_run)?;
    let pairs = db.run(targets(cfg, &db, &a, filtered))?;
    if pairs.is_empty() {
        eprintln!("nothing to replay");
        return Ok(ExitCode::SUCCESS);
    }
    if a.dry_run {
        for (event, handler) in &pairs {
            println!("would replay event {event} to {handler}");
        }
        println!("{} run(s) would be queued", pairs.len());
        return Ok(ExitCode::SUCCESS);
    }
    let (queued, running) = requeue(&db, &pairs)?;
    println!("queued {queued} run(s) for replay");
    if running > 0 {
        println!("skipped {running} that are running right now");
    }
    Ok(ExitCode::SUCCESS)
}

/// Puts `pairs` back in the queue, a transaction per chunk, with a progress
/// bar on a terminal. Returns (queued, skipped because running).
fn requeue(db: &Db, pairs: &[(i64, String)]) -> anyhow::Result<(usize, usize)> {
    let bar = ProgressBar::new(pairs.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (mut queued, mut running) = (0, 0);
    let now = crate::timefmt::now_micros();
    for chunk in pairs.chunks(500) {
        let (q, r) = replay::tally(db.run(db.requeue(chunk, now))?);
        queued += q;
        running += r;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok((queued, running))
}

/// The (event, handler) pairs to replay.
async fn targets(
    cfg: &Config,
    db: &Db,
    a: &ReplayArgs,
    filtered: bool,
) -> anyhow::Result<Vec<(i64, String)>> {
    let filter = a.select.filter(None, None)?;
    // The events in scope: named ids, or those matching the filters.
    let mut scope: Option<BTreeSet<i64>> = None;
    if !a.ids.is_empty() {
        scope = Some(a.ids.iter().copied().collect());
    }
    if filtered {
        let matching: BTreeSet<i64> = db.event_ids(&filter).await?.into_iter().collect();
        scope = Some(match scope {
            Some(ids) => ids.intersection(&matching).copied().collect(),
            None => matching,
        });
    }
    if let Some(status) = &a.status {
        let pairs = db.pairs_with_status(status, a.handler.as_deref()).await?;
        return Ok(pairs
            .into_iter()
            .filter(|(e, _)| scope.as_ref().is_none_or(|s| s.contains(e)))
            .collect());
    }
    let mut out = Vec::new();
    for id in scope.unwrap_or_default() {
        let Some(e) = db.event(id).await? else {
            bail!("no event with id {id}");
        };
        let handlers = match &a.handler {
            Some(h) => vec![h.clone()],
            None => cfg.route(&e.row.source, &e.row.event_type),
        };
        if handlers.is_empty() {
            eprintln!(
                "event {id}: no handler matches {} from {}",
                e.row.event_type, e.row.source
            );
        }
        out.extend(handlers.into_iter().map(|h| (id, h)));
    }
    Ok(out)
}
