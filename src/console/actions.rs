//! The console's actions: replay one event, or every dead delivery of a
//! handler. `POST` only, with the page's CSRF token, and only when
//! `[admin] console_actions = true`. They edit the queue exactly as
//! `hookd replay` does ([`crate::store::replay`]) and wake the dispatcher.

use axum::Form;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use http::StatusCode;
use serde::Deserialize;

use super::Console;
use crate::store::{StoreError, deliveries, replay};

/// Pairs put back per store transaction, as `hookd replay` does.
const CHUNK: usize = 500;

#[derive(Deserialize)]
pub struct ReplayEvent {
    csrf: String,
    event: i64,
}

#[derive(Deserialize)]
pub struct ReplayDead {
    csrf: String,
    handler: String,
}

/// Refuses the action unless actions are on and the CSRF token matches.
fn refused(c: &Console, csrf: &str) -> Option<Response> {
    if !c.actions {
        return Some(
            (
                StatusCode::FORBIDDEN,
                "console actions are off; set [admin] console_actions = true to allow them\n",
            )
                .into_response(),
        );
    }
    if !c.auth.csrf_ok(csrf) {
        return Some(
            (
                StatusCode::FORBIDDEN,
                "the form's CSRF token is missing or stale (hookd restarted?); reload the page\n",
            )
                .into_response(),
        );
    }
    None
}

fn store_failed(e: StoreError) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the store refused the replay: {e}\n"),
    )
        .into_response()
}

/// Replays one event to the handlers its source and type route to now.
pub async fn replay_event(State(c): State<Console>, Form(f): Form<ReplayEvent>) -> Response {
    if let Some(r) = refused(&c, &f.csrf) {
        return r;
    }
    let id = f.event;
    let event = match c.store.event(id).await {
        Ok(Some(e)) => e,
        Ok(None) => {
            return (StatusCode::NOT_FOUND, format!("no event with id {id}\n")).into_response();
        }
        Err(e) => return store_failed(e),
    };
    let handlers = c
        .runtime
        .load()
        .config
        .route(&event.row.source, &event.row.event_type);
    if handlers.is_empty() {
        return (
            StatusCode::CONFLICT,
            format!(
                "no handler matches {} from {}; nothing to replay\n",
                event.row.event_type, event.row.source
            ),
        )
            .into_response();
    }
    let pairs = handlers.into_iter().map(|h| (id, h)).collect();
    match requeue(&c, pairs).await {
        Ok(n) => Redirect::to(&format!("/events/{id}?queued={n}")).into_response(),
        Err(e) => store_failed(e),
    }
}

/// Replays every dead delivery of one configured handler.
pub async fn replay_dead(State(c): State<Console>, Form(f): Form<ReplayDead>) -> Response {
    if let Some(r) = refused(&c, &f.csrf) {
        return r;
    }
    if c.runtime.load().config.handler(&f.handler).is_none() {
        return (
            StatusCode::NOT_FOUND,
            format!("no [[handler]] is named {:?}\n", f.handler),
        )
            .into_response();
    }
    let pairs = c
        .store
        .pairs_with_status(deliveries::DEAD, Some(f.handler.clone()))
        .await;
    let pairs = match pairs {
        Ok(p) => p,
        Err(e) => return store_failed(e),
    };
    match requeue(&c, pairs).await {
        Ok(n) => Redirect::to(&format!(
            "/deliveries?status=dead&handler={}&queued={n}",
            encode(&f.handler)
        ))
        .into_response(),
        Err(e) => store_failed(e),
    }
}

/// Puts the pairs back in the queue as replays; returns how many were queued.
async fn requeue(c: &Console, pairs: Vec<(i64, String)>) -> Result<usize, StoreError> {
    let mut queued = 0;
    for chunk in pairs.chunks(CHUNK) {
        let now = crate::timefmt::now_micros();
        let (q, _running) = replay::tally(c.store.requeue(chunk.to_vec(), now).await?);
        queued += q;
    }
    c.wake.notify_one();
    Ok(queued)
}

/// A handler name for a query string (names are identifiers, but be safe).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
