//! `hookd tail`: follow new events (and, with `--deliveries`, attempts as
//! they end) like `tail -f`.
//!
//! It reads the store only (SQLite through a read-only connection, or
//! PostgreSQL), by id cursor every [`INTERVAL`]: it needs no port and works
//! the same whether the daemon runs or not. It starts at the newest row unless `--since` is
//! given, and exits 0 on SIGINT or SIGTERM. On PostgreSQL, where replicas
//! commit rows out of id order, it reads only as far as the ids are final
//! ([`crate::store::pg::settled`]), so a row that commits late is printed
//! late rather than never.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use serde::Serialize;
use tokio::signal::unix::{SignalKind, signal};

use super::EventSelect;
use super::db::Db;
use crate::config::Config;
use crate::store::deliveries::EndedAttempt;
use crate::store::events::{self, EventRow};
use crate::store::pg::settled::{Settled, Table};

/// How often the store is read.
const INTERVAL: Duration = Duration::from_millis(250);
/// Rows read per look; more wait for the next one.
const BATCH: usize = 500;

#[derive(Args, Debug)]
pub struct TailArgs {
    #[arg(long)]
    pub source: Option<String>,
    /// Glob on the normalized type, e.g. 'message.*'
    #[arg(long = "type")]
    pub type_glob: Option<String>,
    /// Only events whose status is this when they are read
    #[arg(long)]
    pub status: Option<String>,
    /// Start from this time instead of now: RFC 3339, or a duration ago such as 2h
    #[arg(long)]
    pub since: Option<String>,
    /// Also show handler attempts as they end
    #[arg(long)]
    pub deliveries: bool,
    /// One JSON object per line
    #[arg(long)]
    pub json: bool,
}

/// Where the tail has read up to, and which ids are final (on PostgreSQL
/// rows commit out of id order: the tail reads no further than that).
struct Cursor {
    event: i64,
    attempt: i64,
    events_settled: Settled,
    attempts_settled: Settled,
}

impl Cursor {
    fn at(event: i64, attempt: i64) -> Cursor {
        Cursor {
            event,
            attempt,
            events_settled: Settled::new(Table::Events),
            attempts_settled: Settled::new(Table::Attempts),
        }
    }
}

pub fn tail(cfg: &Config, a: TailArgs) -> anyhow::Result<ExitCode> {
    if let Some(s) = &a.status
        && !events::STATUSES.contains(&s.as_str())
    {
        bail!(
            "--status {s:?} is not one of: {}",
            events::STATUSES.join(", ")
        );
    }
    let select = EventSelect {
        source: a.source.clone(),
        type_glob: a.type_glob.clone(),
        range: super::TimeRange {
            since: a.since.clone(),
            until: None,
        },
    };
    let filter = select.filter(a.status.clone(), Some(BATCH))?;
    let db = Db::open(cfg, false)?;
    let mut cursor = match a.since {
        Some(_) => Cursor::at(0, 0),
        None => db.run(async {
            anyhow::Ok(Cursor::at(
                db.newest_event_id().await?,
                db.newest_attempt_id().await?,
            ))
        })?,
    };
    // From --since on, attempts are those started since then (times
    // compare as text: they are all written by `format_micros`).
    let attempts_since = filter.since.map(crate::timefmt::format_micros);
    let style = Style::for_stdout(a.json);
    eprintln!("hookd tail: following new events (Ctrl-C to stop)");
    db.run(async {
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut tick = tokio::time::interval(INTERVAL);
        loop {
            tokio::select! {
                _ = int.recv() => break,
                _ = term.recv() => break,
                _ = tick.tick() => {}
            }
            // What is final first, then the rows: none below it is missed.
            let upto = db.settled(&mut cursor.events_settled).await?;
            let mut ev = db.events_after(&filter, cursor.event).await?;
            ev.retain(|e| e.id <= upto);
            let at = if a.deliveries {
                let upto = db.settled(&mut cursor.attempts_settled).await?;
                let only = (a.source.as_deref(), a.type_glob.as_deref());
                let mut at = db.attempts_after(cursor.attempt, only, BATCH).await?;
                at.retain(|x| x.seq <= upto);
                at
            } else {
                Vec::new()
            };
            if let Some(last) = ev.last() {
                cursor.event = last.id;
            }
            if let Some(last) = at.last() {
                cursor.attempt = last.seq;
            }
            let at = at.into_iter().filter(|x| {
                attempts_since
                    .as_ref()
                    .is_none_or(|t| x.attempt.started_at >= *t)
            });
            if let Err(e) = print_batch(&style, &ev, at) {
                // The reader went away (`hookd tail | head`): a normal end.
                if is_broken_pipe(&e) {
                    break;
                }
                return Err(e);
            }
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Prints a read's events, then its attempts, and flushes.
fn print_batch(
    style: &Style,
    ev: &[EventRow],
    at: impl Iterator<Item = EndedAttempt>,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for e in ev {
        writeln!(out, "{}", style.event(e)?)?;
    }
    for x in at {
        writeln!(out, "{}", style.attempt(&x)?)?;
    }
    out.flush()?;
    Ok(())
}

/// How lines look: NDJSON, or text with or without colour.
enum Style {
    Json,
    Text { colour: bool },
}

/// A tail line in `--json`: the listing's fields plus what the line is.
#[derive(Serialize)]
struct Tagged<'a, T: Serialize> {
    kind: &'static str,
    #[serde(flatten)]
    row: &'a T,
}

impl Style {
    fn for_stdout(json: bool) -> Style {
        if json {
            return Style::Json;
        }
        let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Style::Text { colour }
    }

    fn event(&self, e: &EventRow) -> anyhow::Result<String> {
        Ok(match self {
            Style::Json => serde_json::to_string(&Tagged {
                kind: "event",
                row: e,
            })?,
            Style::Text { colour } => format!(
                "{}  {}  {}  {}  {}",
                e.received_at,
                e.source,
                e.event_type,
                e.event_id,
                paint(*colour, &e.status)
            ),
        })
    }

    fn attempt(&self, x: &EndedAttempt) -> anyhow::Result<String> {
        Ok(match self {
            Style::Json => serde_json::to_string(&Tagged {
                kind: "attempt",
                row: x,
            })?,
            Style::Text { colour } => format!(
                "{}  {}  {}  {}  attempt {} of {} → {} ({:.1} ms) {}",
                x.attempt.started_at,
                x.source,
                x.event_type,
                x.event_id,
                x.attempt.attempt,
                x.attempt.handler,
                paint(*colour, &x.attempt.outcome),
                x.attempt.duration_ms,
                paint(*colour, &x.status)
            ),
        })
    }
}

/// A status word, coloured by how good it is when `colour` is on.
fn paint(colour: bool, word: &str) -> String {
    if !colour {
        return word.to_string();
    }
    let code = match word {
        "succeeded" | "ok" => "32",
        "failed" | "exit" | "signal" | "timeout" | "nack" | "spawn_error" | "interrupted" => "33",
        "dead" => "31",
        "pending" | "running" => "36",
        _ => "2",
    };
    format!("\x1b[{code}m{word}\x1b[0m")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_when_asked() {
        assert_eq!(paint(false, "dead"), "dead");
        assert_eq!(paint(true, "dead"), "\x1b[31mdead\x1b[0m");
        assert_eq!(paint(true, "succeeded"), "\x1b[32msucceeded\x1b[0m");
    }

    #[test]
    fn json_lines_carry_the_listing_fields() {
        let e = EventRow {
            id: 7,
            event_id: "ev".into(),
            source: "s".into(),
            provider: "generic".into(),
            event_type: "t".into(),
            occurred_at: None,
            received_at: "2026-01-01T00:00:00Z".into(),
            status: "pending".into(),
            duplicates: 0,
            id_synthetic: false,
        };
        let line: serde_json::Value =
            serde_json::from_str(&Style::Json.event(&e).unwrap()).unwrap();
        for k in [
            "id",
            "event_id",
            "source",
            "provider",
            "type",
            "received_at",
            "status",
        ] {
            assert!(line.get(k).is_some(), "{k} missing from {line}");
        }
        assert_eq!(line["kind"], "event");
    }
}
