//! `hookd store copy`: move the SQLite store of `daemon.state_dir` into a
//! PostgreSQL store (see [`crate::store::copy`]), and print what went.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use crate::config::{Config, StoreConfig};
use crate::secret::SecretRef;
use crate::store::copy::{self, Target};

#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// Copy the SQLite store into PostgreSQL, history and saved secrets included
    #[command(long_about = COPY_ABOUT)]
    Copy(CopyArgs),
}

const COPY_ABOUT: &str = "\
Copy the SQLite store of daemon.state_dir (hookd.db) into a PostgreSQL store: \
events with their ids, dedup keys, bodies and headers; deliveries in their \
state (pending, failed, dead, succeeded) with every attempt; pull cursors and \
pull status; saved provider registrations with the secrets providers issued; \
and the refused-request log.

Stop `hookd run` first: the copy is refused if the SQLite store changes while \
it runs. Everything is copied in one transaction, so a failure leaves the \
PostgreSQL store as it was. Ids are kept and the id sequences continue after \
them. A PostgreSQL store that already holds anything is refused unless \
--replace is given. The SQLite store stays in place (it is copied, not moved).

Then set [store] url in the config and start hookd on PostgreSQL.";

#[derive(Args, Debug)]
pub struct CopyArgs {
    /// The PostgreSQL store: env:NAME, file:PATH, credential:NAME or a postgres:// URL
    /// [default: the config's [store] url]
    #[arg(long, value_name = "URL")]
    pub to: Option<String>,
    /// Delete everything the PostgreSQL store holds before copying (without
    /// it, a store that holds anything is refused)
    #[arg(long)]
    pub replace: bool,
}

pub fn store(cfg: &Config, c: StoreCommand) -> anyhow::Result<ExitCode> {
    match c {
        StoreCommand::Copy(a) => copy_to(cfg, a),
    }
}

fn copy_to(cfg: &Config, a: CopyArgs) -> anyhow::Result<ExitCode> {
    let url = match (&a.to, &cfg.store) {
        (Some(to), _) => {
            let r = SecretRef::parse(to);
            let cwd = std::env::current_dir().context("cannot read the current directory")?;
            let url = r.resolve(&cwd).map_err(|e| anyhow::anyhow!("--to: {e}"))?;
            let text = url
                .expose_str()
                .map_err(|e| anyhow::anyhow!("--to: {e}"))?
                .to_string();
            let parsed = crate::store::pg::connect::parse_url(&text)
                .map_err(|e| anyhow::anyhow!("--to: {e}"))?;
            if r.is_literal() && parsed.get_password().is_some() {
                eprintln!(
                    "hookd: warning: --to carries a password that other users can see in the process list; prefer --to env:NAME or file:PATH"
                );
            }
            text
        }
        (None, StoreConfig::Postgres(pg)) => pg
            .url
            .expose_str()
            .map_err(|e| anyhow::anyhow!("store.url: {e}"))?
            .to_string(),
        (None, StoreConfig::Sqlite) => bail!(
            "where to? pass --to postgres://… (or env:NAME), or set [store] url in {}",
            cfg.file.display()
        ),
    };
    let target = if a.replace {
        Target::Replace
    } else {
        Target::MustBeEmpty
    };
    let sqlite = cfg.database_path();
    // A private CA named by the config's [store] applies to --to as well.
    let ca = match &cfg.store {
        StoreConfig::Postgres(pg) => pg.ca_certs.to_vec(),
        StoreConfig::Sqlite => Vec::new(),
    };
    let rt = super::manage::runtime()?;
    let copied = rt
        .block_on(copy::copy(&sqlite, &url, &ca, target))
        .map_err(anyhow::Error::msg)?;
    let name = crate::store::pg::connect::parse_url(&url)
        .map(|c| crate::store::pg::connect::describe_target(&c))
        .unwrap_or_default();
    println!("copied {} into {name}:", sqlite.display());
    for (label, n) in &copied.tables {
        println!("  {n:>10} {label}");
    }
    Ok(ExitCode::SUCCESS)
}
