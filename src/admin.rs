//! The admin listener: `/healthz`, `/readyz` and `/metrics` (SPEC §6).
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
use crate::store::Store;

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
    if s.store.healthy().await {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "store not writable\n").into_response()
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
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}
