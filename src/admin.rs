//! The admin listener: `/healthz`, `/readyz` and `/metrics` (SPEC §6).
//!
//! `/readyz` is 503 while draining, when the store cannot commit, or when a
//! pull source has stopped for good (it needs the operator).
//!
//! Loopback by default (the config refuses anything else without
//! `allow_remote = true`) because none of it is authenticated. The web
//! console (`crate::console`) is merged into the same listener and has
//! its own optional token.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{StatusCode, header};
use prometheus_client::metrics::counter::{Atomic, Counter};

use crate::metrics::SharedMetrics;
use crate::store::{Backend, pull_status};

#[derive(Clone)]
pub struct AdminState {
    pub store: Backend,
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
pub async fn stopped_sources(store: &Backend) -> Option<String> {
    let rows = store.pull_statuses().await.ok()?;
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

/// Raises a counter to `total`, the writer's running figure: the store
/// counters are read from the writer at scrape time.
fn catch_up<N, A>(counter: &Counter<N, A>, total: N)
where
    N: PartialOrd + std::ops::Sub<Output = N> + Copy,
    A: Atomic<N>,
{
    let seen = counter.get();
    if total > seen {
        counter.inc_by(total - seen);
    }
}

async fn metrics(State(s): State<AdminState>) -> Response {
    let m = &s.metrics;
    if let Some(st) = s.store.sqlite().map(|s| s.stats()) {
        catch_up(&m.store_commits, st.commits);
        catch_up(&m.store_jobs, st.jobs);
        catch_up(&m.store_run_seconds, st.run_time.as_secs_f64());
        catch_up(&m.store_commit_seconds, st.commit_time.as_secs_f64());
    }
    if let Some(p) = s.store.pool_figures() {
        m.store_pool_connections.set(p.size as i64);
        m.store_pool_idle.set(p.idle as i64);
        m.store_pool_waiting.set(p.waiting as i64);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}
