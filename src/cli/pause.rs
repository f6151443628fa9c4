//! `hookd pause SOURCE…` / `hookd resume SOURCE…`: stop and restart
//! deliveries without removing the subscription, where the provider can
//! (LinkUp `stop`/`start`, Linq `active`). Linked API has no pause.

use std::process::ExitCode;

use clap::Args;

use super::manage::{each_with_store, pick};
use crate::config::Config;

#[derive(Args, Debug)]
pub struct PauseArgs {
    /// Sources to pause or resume
    #[arg(required = true)]
    pub sources: Vec<String>,
}

pub fn set_active(cfg: &Config, a: PauseArgs, active: bool) -> anyhow::Result<ExitCode> {
    let sources = pick(cfg, &a.sources, |_| true)?;
    each_with_store(cfg, &sources, |m, store| async move {
        let id = m.set_active(&store, active).await?;
        let word = if active { "resumed" } else { "paused" };
        Ok(vec![format!("{word} {} subscription {id}", m.name())])
    })
}
