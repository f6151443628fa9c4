//! `hookd unregister [SOURCE…]`: remove each source's subscription at its
//! provider and forget its saved id and secret.

use std::process::ExitCode;

use clap::Args;

use super::manage::{each_with_store, pick};
use crate::config::Config;

#[derive(Args, Debug)]
pub struct UnregisterArgs {
    /// Sources to unregister (default: every linkup, linq and linkedapi source)
    pub sources: Vec<String>,
}

pub fn unregister(cfg: &Config, a: UnregisterArgs) -> anyhow::Result<ExitCode> {
    let sources = pick(cfg, &a.sources, |_| true)?;
    each_with_store(cfg, &sources, |m, store| async move {
        let removed = m.unregister(&store).await?;
        Ok(vec![if removed.is_empty() {
            format!(
                "{} reports no subscription for this source; nothing to remove",
                m.name()
            )
        } else {
            format!("removed {} subscription {}", m.name(), removed.join(", "))
        }])
    })
}
