//! The command line (SPEC §2): one binary, one verb per task.
//!
//! Each verb lives in its own file. Errors surface as one line on stderr
//! and exit code 1; usage errors exit 2 (clap's default).

mod check;
mod db;
mod deliveries;
mod events;
mod manage;
mod output;
mod pause;
mod prune;
mod pull_status;
mod recover;
mod register;
mod rejected;
mod replay;
pub mod run;
mod send_test;
mod store;
mod subscriptions;
mod tail;
mod unregister;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::config::{self, Config};

#[derive(Parser, Debug)]
#[command(name = "hookd", version, about = "Webhook receiver and event-processing daemon", long_about = None)]
pub struct Cli {
    /// Config file [default: $HOOKD_CONFIG, ./receiver.toml, /etc/hookd/receiver.toml]
    #[arg(short, long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon: listeners, pull sources, dispatcher (foreground, logs to stderr)
    Run,
    /// Validate the config and print what would run
    Check,
    /// Create or reuse the subscription at each source's provider (never a duplicate)
    Register(register::RegisterArgs),
    /// Remove each source's subscription at its provider
    Unregister(unregister::UnregisterArgs),
    /// List the subscriptions each provider reports, next to what the config wants
    Subscriptions(subscriptions::SubscriptionsArgs),
    /// Stop deliveries without removing the subscription (LinkUp, Linq)
    Pause(pause::PauseArgs),
    /// Restart deliveries stopped by `pause`
    Resume(pause::PauseArgs),
    /// Ask the provider to deliver failed events again (Linked API)
    Recover(recover::RecoverArgs),
    /// Sign a sample event as the provider would and POST it to the running daemon
    SendTest(send_test::SendTestArgs),
    /// Stored events
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// Handler runs
    Deliveries(deliveries::DeliveriesArgs),
    /// Re-dispatch stored events
    Replay(replay::ReplayArgs),
    /// The most recent refused requests, with the reason
    Rejected(rejected::RejectedArgs),
    /// Follow new events (and handler attempts) as they are stored
    Tail(tail::TailArgs),
    /// Delete events older than the retention
    Prune(prune::PruneArgs),
    /// Move the store: copy the SQLite store into PostgreSQL
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// Print shell completions
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff)
    Man,
}

/// `--source`, `--type`, `--since`, `--until`: which events a verb is about.
#[derive(Args, Debug, Clone, Default)]
pub struct EventSelect {
    #[arg(long)]
    pub source: Option<String>,
    /// Glob on the normalized type, e.g. 'message.*'
    #[arg(long = "type")]
    pub type_glob: Option<String>,
    #[command(flatten)]
    pub range: TimeRange,
}

impl EventSelect {
    /// Whether any of the flags was given.
    pub fn is_set(&self) -> bool {
        self.source.is_some()
            || self.type_glob.is_some()
            || self.range.since.is_some()
            || self.range.until.is_some()
    }

    /// The store filter for these flags.
    pub fn filter(
        &self,
        status: Option<String>,
        limit: Option<usize>,
    ) -> anyhow::Result<crate::store::events::EventFilter> {
        let (since, until) = self.range.bounds()?;
        Ok(crate::store::events::EventFilter {
            source: self.source.clone(),
            type_glob: self.type_glob.clone(),
            since,
            until,
            status,
            limit,
            before: None,
        })
    }
}

/// `--since`/`--until` shared by listing verbs.
#[derive(Args, Debug, Clone, Default)]
pub struct TimeRange {
    /// Only after this time: RFC 3339, or a duration ago such as 2h
    #[arg(long)]
    pub since: Option<String>,
    /// Only before this time: RFC 3339, or a duration ago such as 10m
    #[arg(long)]
    pub until: Option<String>,
}

impl TimeRange {
    pub fn bounds(&self) -> anyhow::Result<(Option<i64>, Option<i64>)> {
        let now = crate::timefmt::now_micros();
        Ok((
            time_bound(self.since.as_deref(), now)?,
            time_bound(self.until.as_deref(), now)?,
        ))
    }
}

/// A `--since`/`--until` value as unix µs: RFC 3339, or a duration before `now`.
pub fn time_bound(v: Option<&str>, now: i64) -> anyhow::Result<Option<i64>> {
    v.map(|v| crate::timefmt::parse_bound(v, now).map_err(anyhow::Error::msg))
        .transpose()
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hookd: {}", one_line(&e));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes on one line, without a backtrace.
fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ").replace('\n', " ")
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let path = config::default_path(cli.config.as_deref());
    match cli.command {
        Command::Run => run::run(&path),
        Command::Check => check::check(&path),
        Command::Register(a) => register::register(&load(&path)?, a),
        Command::Unregister(a) => unregister::unregister(&load(&path)?, a),
        Command::Subscriptions(a) => subscriptions::subscriptions(&load(&path)?, a),
        Command::Pause(a) => pause::set_active(&load(&path)?, a, false),
        Command::Resume(a) => pause::set_active(&load(&path)?, a, true),
        Command::Recover(a) => recover::recover(&load(&path)?, a),
        Command::SendTest(a) => send_test::send_test(&load(&path)?, a),
        Command::Events(c) => events::events(&load(&path)?, c),
        Command::Deliveries(a) => deliveries::deliveries(&load(&path)?, a),
        Command::Replay(a) => replay::replay(&load(&path)?, a),
        Command::Rejected(a) => rejected::rejected(&load(&path)?, a),
        Command::Tail(a) => tail::tail(&load(&path)?, a),
        Command::Prune(a) => prune::prune(&load(&path)?, a),
        Command::Store(c) => store::store(&load(&path)?, c),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "hookd", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Loads the config, or fails with the `file:line: key: message` error.
pub fn load(path: &Path) -> anyhow::Result<Config> {
    Ok(config::load(path)?)
}

/// Opens the SQLite database of `cfg` for a CLI verb that does not run
/// on PostgreSQL yet. Read-only verbs refuse to create one where the
/// daemon never ran.
pub fn open_db(cfg: &Config, write: bool) -> anyhow::Result<rusqlite::Connection> {
    cfg.require_sqlite("this hookd verb")
        .map_err(anyhow::Error::msg)?;
    db::open_sqlite(cfg, write)
}
