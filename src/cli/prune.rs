//! `hookd prune`: delete events past the retention now (the daemon also
//! does it periodically). Events with unfinished deliveries are kept.

use std::process::ExitCode;

use clap::Args;

use super::open_db;
use crate::config::Config;
use crate::store::events;

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
    let conn = open_db(cfg, true)?;
    let mut total = 0;
    loop {
        let n = events::prune(&conn, before, 500)?;
        total += n;
        if n < 500 {
            break;
        }
    }
    let kept = events::unfinished_before(&conn, before)?;
    println!(
        "pruned {total} event(s) older than {}",
        humantime::format_duration(retention)
    );
    if kept > 0 {
        println!("kept {kept} older event(s) whose deliveries are not finished");
    }
    Ok(ExitCode::SUCCESS)
}
