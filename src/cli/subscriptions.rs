//! `hookd subscriptions [SOURCE…]`: what each provider reports, next to what
//! the config wants (`ours`, `drift`, `other`, `missing`).

use std::process::ExitCode;

use clap::Args;

use super::manage::{pick, runtime};
use super::output::{clip, print_rows};
use crate::config::Config;
use crate::provider::manage::Manager;
use crate::provider::manage::status::{Row, rows};
use crate::store::{Store, StoreOptions};

#[derive(Args, Debug)]
pub struct SubscriptionsArgs {
    /// Sources to show (default: every linkup, linq and linkedapi source)
    pub sources: Vec<String>,
    /// One JSON object per line
    #[arg(long)]
    pub json: bool,
}

pub fn subscriptions(cfg: &Config, a: SubscriptionsArgs) -> anyhow::Result<ExitCode> {
    let sources = pick(cfg, &a.sources, |_| true)?;
    // Read-only: without a database nothing was registered from here yet.
    let store = if cfg.database_path().exists() {
        Some(
            Store::open(&cfg.daemon.state_dir, StoreOptions::default())
                .map_err(anyhow::Error::msg)?,
        )
    } else {
        None
    };
    let rt = runtime()?;
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
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
