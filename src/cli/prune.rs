//! `hookd prune`: delete events past the retention now (the daemon also
//! does it periodically). Events with unfinished deliveries are kept.

use std::process::ExitCode;

use clap::Args;

use super::db::Db;
use crate::config::Config;

/// Events deleted per statement.
const BATCH: usize = 500;

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Prune events older than this instead of daemon.retention (e.g. 7d)
    #[arg(long)]
    pub older_than: Option<String>,
}

pub fn prune(cfg: &Config, a: PruneArgs) -> anyhow::Result<ExitCode> {
    let retention = match a.older_than.as_deref() {
        Some(s) => crate::config::units::parse_duration(s).map_err(anyhow::Error::msg)?,
        None => cfg.daemon.retention,
    };
    let before = crate::timefmt::now_micros() - retention.as_micros().min(i64::MAX as u128) as i64;
    let db = Db::open(cfg, true)?;
    let (total, kept) = db.run(async {
        let mut total = 0;
        loop {
            let n = db.prune_events(before, BATCH).await?;
            total += n;
            if n < BATCH as u64 {
                break;
            }
        }
        anyhow::Ok((total, db.unfinished_before(before).await?))
    })?;
    println!(
        "pruned {total} event(s) older than {}",
        humantime::format_duration(retention)
    );
    if kept > 0 {
        println!("kept {kept} older event(s) whose deliveries are not finished");
    }
    Ok(ExitCode::SUCCESS)
}
