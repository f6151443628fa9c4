//! The web console on the admin listener: recent events, one event with
//! its attempts, deliveries by status, refused requests, pull sources and
//! the headline metrics, rendered on the server (no script, nothing loaded
//! from elsewhere), plus replay actions when `[admin] console_actions`.
//!
//! Every page reads through the same store queries as the CLI verbs, on
//! SQLite or PostgreSQL ([`Backend`]).
//! With `[admin] token` set every page needs it ([`auth`]); actions are
//! `POST` forms carrying a per-process CSRF token ([`actions`]).

pub mod actions;
pub mod auth;
pub mod pages;
pub mod views;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio::sync::Notify;

use crate::metrics::SharedMetrics;
use crate::runtime::SharedRuntime;
use crate::store::Backend;

/// Rows on a page unless `limit` asks for fewer or more.
pub const PAGE: usize = 50;
/// The most rows a page shows, whatever `limit` asks.
pub const MAX_PAGE: usize = 200;
/// Form bodies are a token and an id or two.
const MAX_FORM: usize = 16 << 10;

/// What the console's handlers share.
#[derive(Clone)]
pub struct Console {
    /// The store its pages read and its actions replay through, either backend.
    pub store: Backend,
    pub metrics: SharedMetrics,
    pub runtime: SharedRuntime,
    /// Tells the dispatcher that replayed work is waiting.
    pub wake: Arc<Notify>,
    pub auth: Arc<auth::Auth>,
    /// `[admin] console_actions`: replay buttons and their `POST`s.
    pub actions: bool,
    /// The listener is on a loopback address: `Host` must say so too.
    pub loopback_only: bool,
}

/// The console's routes; merged into the admin router.
pub fn router(console: Console) -> Router {
    let pages = Router::new()
        .route("/", get(pages::events))
        .route("/events/{id}", get(pages::event))
        .route("/deliveries", get(pages::deliveries))
        .route("/rejected", get(pages::rejected))
        .route("/sources", get(pages::sources))
        .route("/actions/replay-event", post(actions::replay_event))
        .route("/actions/replay-dead", post(actions::replay_dead))
        .route_layer(axum::middleware::from_fn_with_state(
            console.clone(),
            auth::require,
        ));
    Router::new()
        .route("/login", get(auth::login_form).post(auth::login))
        .merge(pages)
        .route_layer(axum::middleware::from_fn_with_state(
            console.clone(),
            auth::same_site,
        ))
        .layer(axum::middleware::from_fn(views::security_headers))
        .layer(DefaultBodyLimit::max(MAX_FORM))
        .with_state(console)
}

/// A `limit` query value clamped to `1..=MAX_PAGE` (default [`PAGE`]).
pub fn page_size(limit: Option<usize>) -> usize {
    limit.unwrap_or(PAGE).clamp(1, MAX_PAGE)
}

/// A query value, with an empty form field meaning "not set".
pub fn given(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_bounded() {
        assert_eq!(page_size(None), PAGE);
        assert_eq!(page_size(Some(0)), 1);
        assert_eq!(page_size(Some(1_000_000)), MAX_PAGE);
        assert_eq!(given(&Some("  ".into())), None);
        assert_eq!(given(&Some(" a ".into())).as_deref(), Some("a"));
    }
}
