//! `hookd rejected`: refused requests, newest first, to diagnose a wrong
//! secret or a changed payload in one command.

use std::process::ExitCode;

use clap::Args;

use super::db::Db;
use super::output::{clip, print_rows};
use crate::config::Config;

#[derive(Args, Debug)]
pub struct RejectedArgs {
    #[arg(long)]
    pub source: Option<String>,
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    #[arg(long)]
    pub json: bool,
}

pub fn rejected(cfg: &Config, a: RejectedArgs) -> anyhow::Result<ExitCode> {
    let db = Db::open(cfg, false)?;
    let rows = db.run(db.list_rejected(a.source.as_deref(), a.limit))?;
    print_rows(
        &rows,
        a.json,
        &["received", "source", "status", "reason", "body"],
        |r| {
            vec![
                r.received_at.clone(),
                r.source.clone().unwrap_or_else(|| r.path.clone()),
                r.status.to_string(),
                r.reason.clone(),
                format!("{} ({} bytes)", clip(&r.body_preview, 40), r.body_len),
            ]
        },
    )?;
    Ok(ExitCode::SUCCESS)
}
