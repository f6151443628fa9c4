//! `hookd events list|show`: what is stored.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use super::EventSelect;
use super::db::Db;
use super::output::{clip, print_rows};
use crate::config::Config;
use crate::store::deliveries;
use crate::store::events::STATUSES as EVENT_STATUSES;
use crate::store::events::{EventDetail, EventRow};

#[derive(Subcommand, Debug)]
pub enum EventsCommand {
    /// List stored events, newest first
    List(ListArgs),
    /// Show one event: fields, headers, payload and every delivery attempt
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub select: EventSelect,
    /// unrouted, pending, running, failed, succeeded or dead
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    #[arg(long)]
    pub json: bool,
}

pub fn events(cfg: &Config, cmd: EventsCommand) -> anyhow::Result<ExitCode> {
    let db = Db::open(cfg, false)?;
    match cmd {
        EventsCommand::List(a) => list(&db, a)?,
        EventsCommand::Show { id, json } => show(cfg, &db, id, json)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `events list`: a table or NDJSON of the matching events.
fn list(db: &Db, a: ListArgs) -> anyhow::Result<()> {
    if let Some(s) = &a.status
        && !EVENT_STATUSES.contains(&s.as_str())
    {
        bail!(
            "--status {s:?} is not one of: {}",
            EVENT_STATUSES.join(", ")
        );
    }
    let f = a.select.filter(a.status, Some(a.limit))?;
    let rows = db.run(db.list_events(&f))?;
    print_rows(
        &rows,
        a.json,
        &["id", "received", "source", "type", "event id", "status"],
        list_cells,
    )
}

fn list_cells(r: &EventRow) -> Vec<String> {
    let dup = if r.duplicates > 0 {
        format!(" (+{} dup)", r.duplicates)
    } else {
        String::new()
    };
    vec![
        r.id.to_string(),
        r.received_at.clone(),
        r.source.clone(),
        r.event_type.clone(),
        clip(&r.event_id, 40),
        format!("{}{dup}", r.status),
    ]
}

/// `events show`: the event, its deliveries and every attempt.
fn show(cfg: &Config, db: &Db, id: i64, json: bool) -> anyhow::Result<()> {
    let (e, attempts, mut dels) = db.run(async {
        let e = db.event(id).await?;
        let filter = deliveries::DeliveryFilter {
            event: Some(id),
            ..Default::default()
        };
        anyhow::Ok((
            e,
            db.attempts_for_event(id).await?,
            db.list_deliveries(filter).await?,
        ))
    })?;
    let e = e.with_context(|| format!("no event with id {id}"))?;
    if db.is_sqlite() {
        super::deliveries::mark_held(cfg, &mut dels);
    }
    let payload = serde_json::from_slice::<serde_json::Value>(&e.body).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(&e.body).into_owned())
    });
    if json {
        let v = serde_json::json!({ "event": e, "payload": payload, "deliveries": dels, "attempts": attempts });
        println!("{}", serde_json::to_string(&v)?);
        return Ok(());
    }
    let mut o = std::io::stdout().lock();
    write_event(&mut o, &e, &payload)?;
    writeln!(o, "deliveries")?;
    for d in &dels {
        let next = d
            .next_attempt_at
            .as_deref()
            .map(|t| format!(", next attempt {t}"))
            .unwrap_or_default();
        writeln!(
            o,
            "  #{} {}: {} after {} attempt(s){next}",
            d.id,
            d.handler,
            d.shown_status(),
            d.attempts
        )?;
    }
    for a in &attempts {
        write_attempt(&mut o, a, is_http(cfg, &a.handler))?;
    }
    Ok(())
}

/// The event's fields, headers and payload.
fn write_event(
    o: &mut impl Write,
    e: &EventDetail,
    payload: &serde_json::Value,
) -> anyhow::Result<()> {
    let r = &e.row;
    writeln!(o, "event {}  {} / {}", r.id, r.source, r.provider)?;
    writeln!(
        o,
        "  event id     {}{}",
        r.event_id,
        if r.id_synthetic {
            " (synthetic: hash of the body)"
        } else {
            ""
        }
    )?;
    writeln!(
        o,
        "  type         {} (as sent: {})",
        r.event_type, e.type_raw
    )?;
    writeln!(
        o,
        "  occurred at  {}",
        r.occurred_at.as_deref().unwrap_or("-")
    )?;
    writeln!(o, "  received at  {}", r.received_at)?;
    writeln!(o, "  verified     {}", e.verified)?;
    writeln!(
        o,
        "  status       {} (duplicates received: {})",
        r.status, r.duplicates
    )?;
    writeln!(o, "headers")?;
    for (k, v) in &e.headers {
        writeln!(o, "  {k}: {}", clip(v, 200))?;
    }
    writeln!(o, "payload")?;
    writeln!(o, "{}", serde_json::to_string_pretty(payload)?)?;
    Ok(())
}

/// Whether `handler` is an http handler in the current config.
fn is_http(cfg: &Config, handler: &str) -> bool {
    cfg.handler(handler)
        .is_some_and(|h| h.kind == crate::config::HandlerKind::Http)
}

/// One attempt: outcome, code or HTTP status, time, and what it printed
/// (stdout, stderr) or was answered (response, error).
fn write_attempt(
    o: &mut impl Write,
    a: &deliveries::AttemptRow,
    http: bool,
) -> std::io::Result<()> {
    let code = match (a.http_status, a.exit_code, a.signal) {
        (Some(s), _, _) => format!("HTTP {s}"),
        (_, Some(c), _) => format!("exit {c}"),
        (_, _, Some(s)) => format!("signal {s}"),
        _ => "-".into(),
    };
    writeln!(
        o,
        "  attempt {} of {}{}: {} ({code}) at {} in {:.1} ms",
        a.attempt,
        a.handler,
        if a.replay { " (replay)" } else { "" },
        a.outcome,
        a.started_at,
        a.duration_ms
    )?;
    let (out, err) = if http || a.http_status.is_some() {
        ("response", "error")
    } else {
        ("stdout", "stderr")
    };
    for (name, text, cut) in [
        (out, &a.stdout, a.stdout_truncated),
        (err, &a.stderr, a.stderr_truncated),
    ] {
        if !text.is_empty() {
            writeln!(o, "    {name}{}:", if cut { " (truncated)" } else { "" })?;
            for line in text.lines() {
                writeln!(o, "      {line}")?;
            }
        }
    }
    Ok(())
}
