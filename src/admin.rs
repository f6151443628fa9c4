//! The admin listener: `/healthz`, `/readyz` and `/metrics` (SPEC §6).
//!
//! `/readyz` is 503 while draining, when the store cannot commit, or when a
//! pull source has stopped for good (it needs the operator).
//!
//! Loopback by default (the config refuses anything else without
//! `allow_remote = true`) because none of it is authenticated.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{StatusCode, header};

use crate::metrics::SharedMetrics;
use crate::store::{Store, pull_status};

#[derive(Clone)]
pub struct AdminState {
    pub store: Store,
    pub metrics: SharedMetrics,
    /// Set while the daemon drains: not ready for new traffic.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(s): State<AdminState>) -> Response {
    if s.draining.load(std::sync::atomic::Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response();
    }
    if !s.store.healthy().await {
        return (StatusCode::SERVICE_UNAVAILABLE, "store not writable\n").into_response();
    }
    match stopped_sources(&s.store).await {
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
        None => (StatusCode::OK, "ready\n").into_response(),
    }
}

/// Pull sources stopped for good (the provider refused the credentials or
/// the webhook is gone): one line each, or None when all are healthy.
async fn stopped_sources(store: &Store) -> Option<String> {
    let rows = store.read(pull_status::list).await.ok()?;
    let stopped: String = rows
        .iter()
        .filter(|r| r.state == pull_status::State::Stopped.name())
        .map(|r| {
            let why = r.last_error.as_deref().unwrap_or("stopped");
            format!("source {} stopped: {why}\n", r.source)
        })
        .collect();
    (!stopped.is_empty()).then_some(stopped)
}

/// Raises a seconds counter to the writer's running total.
fn catch_up(counter: &crate::metrics::Seconds, total: std::time::Duration) {
    let behind = total.as_secs_f64() - counter.get();
    if behind > 0.0 {
        counter.inc_by(behind);
    }
}

async fn metrics(State(s): State<AdminState>) -> Response {
    let st = s.store.stats();
    // The store counters are read from the writer at scrape time.
    let (commits, jobs) = (s.metrics.store_commits.get(), s.metrics.store_jobs.get());
    s.metrics
        .store_commits
        .inc_by(st.commits.saturating_sub(commits));
    s.metrics.store_jobs.inc_by(st.jobs.saturating_sub(jobs));
    catch_up(&s.metrics.store_run_seconds, st.run_time);
    catch_up(&s.metrics.store_commit_seconds, st.commit_time);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}
