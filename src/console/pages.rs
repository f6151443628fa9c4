//! The console's pages: each reads through the CLI's store queries and
//! hands the rows to [`views`]. Listings are newest first, one bounded page
//! at a time (`limit`, and `before` = the last id of the previous page).

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Deserialize;

use super::{Console, given, page_size, views};
use crate::dispatch::started;
use crate::store::StoreError;
use crate::store::deliveries::{AttemptRow, DeliveryFilter, DeliveryRow, STATUSES};
use crate::store::events::{EventDetail, EventFilter, EventRow, STATUSES as EVENT_STATUSES};

/// Attempts shown on an event's page, newest kept.
const MAX_ATTEMPTS: usize = 100;

/// The metrics shown at the top of the events page, summed over labels.
const HEADLINE: [(&str, &str); 9] = [
    ("received", "hookd_received_total"),
    ("accepted", "hookd_accepted_total"),
    ("duplicate", "hookd_duplicate_total"),
    ("rejected", "hookd_rejected_total"),
    ("dispatched", "hookd_dispatched_total"),
    ("succeeded", "hookd_succeeded_total"),
    ("failed", "hookd_failed_total"),
    ("dead", "hookd_dead_total"),
    ("queue depth", "hookd_queue_depth"),
];

#[derive(Deserialize, Default)]
pub struct EventsQuery {
    pub source: Option<String>,
    #[serde(rename = "type")]
    pub type_glob: Option<String>,
    pub status: Option<String>,
    pub before: Option<i64>,
    pub limit: Option<usize>,
}

#[derive(Deserialize, Default)]
pub struct DeliveriesQuery {
    pub status: Option<String>,
    pub handler: Option<String>,
    pub before: Option<i64>,
    pub limit: Option<usize>,
    pub queued: Option<usize>,
}

#[derive(Deserialize, Default)]
pub struct LimitQuery {
    pub limit: Option<usize>,
    pub before: Option<i64>,
    pub queued: Option<usize>,
}

fn store_error(e: StoreError) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        views::problem("The store cannot be read", &e.to_string()),
    )
        .into_response()
}

fn bad_request(what: &str) -> Response {
    (StatusCode::BAD_REQUEST, views::problem("Bad request", what)).into_response()
}

/// The `status` filter given, if any, when it is one of `allowed`; else
/// why not, naming them.
fn status_filter(
    given_status: &Option<String>,
    allowed: &[&str],
) -> Result<Option<String>, String> {
    match given(given_status) {
        Some(s) if !allowed.contains(&s.as_str()) => Err(format!(
            "status {s:?} is not one of: {}",
            allowed.join(", ")
        )),
        status => Ok(status),
    }
}

/// Keeps the first `size` rows; says whether there were more.
fn one_page<T>(mut rows: Vec<T>, size: usize) -> (Vec<T>, bool) {
    let more = rows.len() > size;
    rows.truncate(size);
    (rows, more)
}

/// `GET /`: recent events with filters, and the headline metrics.
pub async fn events(State(c): State<Console>, Query(q): Query<EventsQuery>) -> Response {
    let status = match status_filter(&q.status, &EVENT_STATUSES) {
        Ok(s) => s,
        Err(why) => return bad_request(&why),
    };
    let size = page_size(q.limit);
    let filter = EventFilter {
        source: given(&q.source),
        type_glob: given(&q.type_glob),
        status,
        limit: Some(size + 1),
        before: q.before,
        ..Default::default()
    };
    let shown = filter.clone();
    let rows: Vec<EventRow> = match c.store.list_events(filter).await {
        Ok(r) => r,
        Err(e) => return store_error(e),
    };
    let (rows, more) = one_page(rows, size);
    let metrics = headline(&c.metrics.render());
    views::events(&shown, size, &rows, more, &metrics).into_response()
}

/// `GET /events/{id}`: the event, its payload and headers, every attempt.
pub async fn event(
    State(c): State<Console>,
    Path(id): Path<i64>,
    Query(q): Query<LimitQuery>,
) -> Response {
    let state_dir = c.runtime.load().config.daemon.state_dir.clone();
    let found = event_with_runs(&c, id).await.map(|found| {
        found.map(|(e, mut dels, attempts)| {
            mark_held(&state_dir, &mut dels);
            (e, dels, attempts)
        })
    });
    match found {
        Ok(Some((e, dels, attempts))) => {
            // The newest attempts; an event replayed many times keeps them all.
            let hidden = attempts.len().saturating_sub(MAX_ATTEMPTS);
            let view = views::EventView {
                event: &e,
                deliveries: &dels,
                attempts: &attempts[hidden..],
                hidden_attempts: hidden,
                queued: q.queued,
            };
            views::event(&view, c.actions.then(|| c.auth.csrf())).into_response()
        }
        Ok(None) => (
            StatusCode::NOT_FOUND,
            views::problem("No such event", &format!("no event with id {id}")),
        )
            .into_response(),
        Err(e) => store_error(e),
    }
}

/// The event, its deliveries and its attempts; None when there is no such event.
async fn event_with_runs(c: &Console, id: i64) -> Result<Option<EventWithRuns>, StoreError> {
    let Some(e) = c.store.event(id).await? else {
        return Ok(None);
    };
    let attempts = c.store.attempts_for_event(id).await?;
    let dels = c
        .store
        .list_deliveries(DeliveryFilter {
            event: Some(id),
            ..Default::default()
        })
        .await?;
    Ok(Some((e, dels, attempts)))
}

type EventWithRuns = (EventDetail, Vec<DeliveryRow>, Vec<AttemptRow>);

/// `GET /deliveries`: handler runs by status, with "replay dead" buttons.
pub async fn deliveries(State(c): State<Console>, Query(q): Query<DeliveriesQuery>) -> Response {
    let status = match status_filter(&q.status, &STATUSES) {
        Ok(s) => s,
        Err(why) => return bad_request(&why),
    };
    let size = page_size(q.limit);
    let filter = DeliveryFilter {
        handler: given(&q.handler),
        status: status.clone(),
        limit: Some(size + 1),
        before: q.before,
        ..Default::default()
    };
    let shown = filter.clone();
    let rows = match c.store.list_deliveries(filter).await {
        Ok(r) => r,
        Err(e) => return store_error(e),
    };
    let (rows, more) = one_page(rows, size);
    let handlers: Vec<String> = c
        .runtime
        .load()
        .config
        .handlers
        .iter()
        .map(|h| h.name.clone())
        .collect();
    let view = views::DeliveriesView {
        filter: &shown,
        size,
        rows: &rows,
        more,
        handlers: &handlers,
        queued: q.queued,
    };
    views::deliveries(&view, c.actions.then(|| c.auth.csrf())).into_response()
}

/// `GET /rejected`: the newest refused requests with their reasons.
pub async fn rejected(State(c): State<Console>, Query(q): Query<LimitQuery>) -> Response {
    let size = page_size(q.limit);
    let before = q.before;
    match c.store.rejected_page(None, before, size + 1).await {
        Ok(rows) => {
            let (rows, more) = one_page(rows, size);
            views::rejected(&rows, size, more).into_response()
        }
        Err(e) => store_error(e),
    }
}

/// `GET /sources`: what each SSE and poll source is doing.
pub async fn sources(State(c): State<Console>) -> Response {
    match c.store.pull_statuses().await {
        Ok(rows) => views::sources(&rows).into_response(),
        Err(e) => store_error(e),
    }
}

/// Tells held deliveries from started ones by the daemon's start log, as
/// `hookd deliveries` does; unreadable, they all stay `running`.
fn mark_held(state_dir: &std::path::Path, rows: &mut [DeliveryRow]) {
    if let Ok(starts) = started::read(state_dir) {
        rows.iter_mut()
            .for_each(|r| r.mark_held(|id, at| starts.contains(id, at)));
    }
}

/// The `HEADLINE` figures from the Prometheus text, summed over labels.
pub fn headline(text: &str) -> Vec<(&'static str, f64)> {
    HEADLINE
        .iter()
        .map(|(label, name)| {
            let sum = text
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter(|l| {
                    l.strip_prefix(name)
                        .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            (*label, sum)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headline_sums_each_family_over_its_labels() {
        let text = "# HELP hookd_received Requests\nhookd_received_total{source=\"a\"} 2\nhookd_received_total{source=\"b\"} 3\nhookd_received_created{source=\"a\"} 17\nhookd_queue_depth 4\n";
        let h = headline(text);
        assert_eq!(h[0], ("received", 5.0));
        assert_eq!(h[8], ("queue depth", 4.0));
        assert_eq!(h[3], ("rejected", 0.0));
    }

    #[test]
    fn a_page_says_whether_there_is_more() {
        assert_eq!(one_page(vec![1, 2, 3], 2), (vec![1, 2], true));
        assert_eq!(one_page(vec![1, 2], 2), (vec![1, 2], false));
    }
}
