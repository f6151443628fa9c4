//! `hookd recover [SOURCE…] [--since T]`: ask the provider to deliver again
//! what failed to reach hookd (Linked API: `webhook.replayDelivery` for each
//! failed delivery). Replays carry the same event id, so nothing is handled
//! twice. With no SOURCE: every source whose provider can do it.

use std::process::ExitCode;

use clap::Args;

use super::manage::{each_with_store, pick};
use crate::config::Config;
use crate::provider::manage::Manager;

#[derive(Args, Debug)]
pub struct RecoverArgs {
    /// Sources to recover (default: every source whose provider can replay)
    pub sources: Vec<String>,
    /// Only deliveries created after this: RFC 3339, or a duration ago such as 2h
    #[arg(long)]
    pub since: Option<String>,
}

pub fn recover(cfg: &Config, a: RecoverArgs) -> anyhow::Result<ExitCode> {
    let since = super::time_bound(a.since.as_deref(), crate::timefmt::now_micros())?;
    let sources = pick(cfg, &a.sources, |s| {
        Manager::for_source(cfg, s).is_ok_and(|m| m.caps().recover)
    })?;
    each_with_store(cfg, &sources, |m, store| async move {
        let r = m.recover(&store, since).await?;
        Ok(vec![format!(
            "asked {} to redeliver {} failed deliver{} (of {} listed){}",
            m.name(),
            r.replayed.len(),
            if r.replayed.len() == 1 { "y" } else { "ies" },
            r.seen,
            if r.replayed.is_empty() {
                String::new()
            } else {
                format!(": {}", r.replayed.join(", "))
            }
        )])
    })
}
