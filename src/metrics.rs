//! The daemon's metrics (SPEC §6), served as Prometheus text on `/metrics`.
//!
//! One registry per daemon instance, owned by it and passed down: no global
//! recorder, so tests can run several daemons in one process and read each
//! one's counters.

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// A counter of seconds.
pub type Seconds = Counter<f64, std::sync::atomic::AtomicU64>;

/// Histogram constructor with fixed latency buckets (100 µs … ~52 s).
#[derive(Clone)]
pub struct Buckets;

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(0.0001, 2.0, 20))
    }
}

/// Every metric hookd exports.
pub struct Metrics {
    registry: Registry,
    received: Family<Labels, Counter>,
    accepted: Family<Labels, Counter>,
    duplicate: Family<Labels, Counter>,
    rejected: Family<Labels, Counter>,
    ack_latency: Family<Labels, Histogram, Buckets>,
    dispatched: Family<Labels, Counter>,
    succeeded: Family<Labels, Counter>,
    failed: Family<Labels, Counter>,
    dead: Family<Labels, Counter>,
    handler_duration: Family<Labels, Histogram, Buckets>,
    http_answers: Family<Labels, Counter>,
    pub queue_depth: Gauge,
    /// All accepted events, any source (for the systemd STATUS line).
    pub accepted_all: Counter,
    pub queue_oldest_seconds: Gauge,
    pub store_commits: Counter,
    pub store_jobs: Counter,
    pub store_run_seconds: Seconds,
    pub store_commit_seconds: Seconds,
    /// PostgreSQL pool: connections open, idle, and callers waiting.
    pub store_pool_connections: Gauge,
    pub store_pool_idle: Gauge,
    pub store_pool_waiting: Gauge,
    pull_events: Family<Labels, Counter>,
    pull_errors: Family<Labels, Counter>,
    reconnects: Family<Labels, Counter>,
    polls: Family<Labels, Counter>,
    pull_lag: Family<Labels, Gauge>,
    pull_connected: Family<Labels, Gauge>,
    /// The ingest path's per-source series, by source name: every request
    /// touches three of them, and looking each up in its family builds and
    /// hashes a label vector.
    sources: std::sync::RwLock<std::collections::HashMap<String, SourceSeries>>,
}

/// One source's series of the ingest path (handles onto the families' own).
#[derive(Clone)]
struct SourceSeries {
    received: Counter,
    accepted: Counter,
    duplicate: Counter,
    ack_latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn src(source: &str) -> Labels {
    vec![("source", source.to_string())]
}

fn hnd(handler: &str) -> Labels {
    vec![("handler", handler.to_string())]
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("hookd");
        let m = Metrics {
            received: Family::default(),
            accepted: Family::default(),
            duplicate: Family::default(),
            rejected: Family::default(),
            ack_latency: Family::new_with_constructor(Buckets),
            dispatched: Family::default(),
            succeeded: Family::default(),
            failed: Family::default(),
            dead: Family::default(),
            handler_duration: Family::new_with_constructor(Buckets),
            http_answers: Family::default(),
            queue_depth: Gauge::default(),
            accepted_all: Counter::default(),
            queue_oldest_seconds: Gauge::default(),
            store_commits: Counter::default(),
            store_jobs: Counter::default(),
            store_run_seconds: Seconds::default(),
            store_commit_seconds: Seconds::default(),
            store_pool_connections: Gauge::default(),
            store_pool_idle: Gauge::default(),
            store_pool_waiting: Gauge::default(),
            pull_events: Family::default(),
            pull_errors: Family::default(),
            reconnects: Family::default(),
            polls: Family::default(),
            pull_lag: Family::default(),
            pull_connected: Family::default(),
            sources: Default::default(),
            registry: Registry::default(),
        };
        registry.register(
            "received",
            "Requests that reached a source",
            m.received.clone(),
        );
        registry.register(
            "accepted",
            "New events committed to the store",
            m.accepted.clone(),
        );
        registry.register(
            "duplicate",
            "Events already stored (answered 200, not dispatched)",
            m.duplicate.clone(),
        );
        registry.register(
            "rejected",
            "Refused requests, by reason",
            m.rejected.clone(),
        );
        registry.register(
            "ack_latency_seconds",
            "From request start to the committed answer",
            m.ack_latency.clone(),
        );
        registry.register("dispatched", "Handler runs started", m.dispatched.clone());
        registry.register(
            "succeeded",
            "Handler runs that succeeded",
            m.succeeded.clone(),
        );
        registry.register(
            "failed",
            "Handler runs that failed (to be retried)",
            m.failed.clone(),
        );
        registry.register(
            "dead",
            "Deliveries that used up their attempts",
            m.dead.clone(),
        );
        registry.register(
            "handler_duration_seconds",
            "Handler run time",
            m.handler_duration.clone(),
        );
        registry.register(
            "http_answers",
            "Attempts of http handlers, by the answer's status class (2xx … 5xx) or timeout, error, interrupted",
            m.http_answers.clone(),
        );
        registry.register(
            "queue_depth",
            "Deliveries pending, retrying or running",
            m.queue_depth.clone(),
        );
        registry.register(
            "queue_oldest_seconds",
            "Age of the oldest queued delivery",
            m.queue_oldest_seconds.clone(),
        );
        registry.register(
            "store_commits",
            "Group commits of the store writer",
            m.store_commits.clone(),
        );
        registry.register(
            "store_jobs",
            "Writes committed by the store writer",
            m.store_jobs.clone(),
        );
        registry.register(
            "store_run_seconds",
            "Time the store writer spent running writes inside its transactions",
            m.store_run_seconds.clone(),
        );
        registry.register(
            "store_commit_seconds",
            "Time the store writer spent committing: writing the WAL and waiting for fsync",
            m.store_commit_seconds.clone(),
        );
        registry.register(
            "store_pool_connections",
            "PostgreSQL store: connections this replica has open",
            m.store_pool_connections.clone(),
        );
        registry.register(
            "store_pool_idle",
            "PostgreSQL store: open connections not in use",
            m.store_pool_idle.clone(),
        );
        registry.register(
            "store_pool_waiting",
            "PostgreSQL store: callers waiting for a connection",
            m.store_pool_waiting.clone(),
        );
        registry.register(
            "pull_events",
            "Events read by SSE and poll sources",
            m.pull_events.clone(),
        );
        registry.register(
            "pull_errors",
            "Errors of SSE and poll sources",
            m.pull_errors.clone(),
        );
        registry.register(
            "pull_reconnects",
            "SSE reconnections after a lost stream",
            m.reconnects.clone(),
        );
        registry.register("polls", "Poll requests made", m.polls.clone());
        registry.register(
            "pull_lag_seconds",
            "Age of the newest event a pull source has seen",
            m.pull_lag.clone(),
        );
        registry.register(
            "pull_connected",
            "1 while an SSE stream is open or the last poll succeeded",
            m.pull_connected.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Runs `f` on `source`'s series, creating them the first time.
    fn with_source(&self, source: &str, f: impl FnOnce(&SourceSeries)) {
        let known = self.sources.read().unwrap_or_else(|p| p.into_inner());
        if let Some(series) = known.get(source) {
            return f(series);
        }
        drop(known);
        let labels = src(source);
        let series = SourceSeries {
            received: self.received.get_or_create(&labels).clone(),
            accepted: self.accepted.get_or_create(&labels).clone(),
            duplicate: self.duplicate.get_or_create(&labels).clone(),
            ack_latency: self.ack_latency.get_or_create(&labels).clone(),
        };
        f(&series);
        self.sources
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(source.to_string(), series);
    }

    pub fn received(&self, source: &str) {
        self.with_source(source, |s| {
            s.received.inc();
        });
    }
    pub fn accepted(&self, source: &str, latency_s: f64) {
        self.accepted_all.inc();
        self.with_source(source, |s| {
            s.accepted.inc();
            s.ack_latency.observe(latency_s);
        });
    }
    pub fn duplicate(&self, source: &str, latency_s: f64) {
        self.with_source(source, |s| {
            s.duplicate.inc();
            s.ack_latency.observe(latency_s);
        });
    }
    pub fn rejected(&self, source: &str, reason: &str) {
        self.rejected
            .get_or_create(&vec![
                ("source", source.to_string()),
                ("reason", reason.to_string()),
            ])
            .inc();
    }
    pub fn dispatched(&self, handler: &str) {
        self.dispatched.get_or_create(&hnd(handler)).inc();
    }
    pub fn finished(&self, handler: &str, ok: bool, dead: bool, duration_s: f64) {
        let l = hnd(handler);
        self.handler_duration.get_or_create(&l).observe(duration_s);
        match (ok, dead) {
            (true, _) => self.succeeded.get_or_create(&l).inc(),
            (false, true) => {
                self.failed.get_or_create(&l).inc();
                self.dead.get_or_create(&l).inc()
            }
            (false, false) => self.failed.get_or_create(&l).inc(),
        };
    }
    /// One attempt of an http handler: `class` is `2xx` … `5xx`, `timeout`,
    /// `error` (no answer) or `interrupted`.
    pub fn http_answer(&self, handler: &str, class: &str) {
        self.http_answers
            .get_or_create(&vec![
                ("handler", handler.to_string()),
                ("class", class.to_string()),
            ])
            .inc();
    }

    pub fn pulled(&self, source: &str, n: u64) {
        self.pull_events.get_or_create(&src(source)).inc_by(n);
    }
    pub fn pull_error(&self, source: &str) {
        self.pull_errors.get_or_create(&src(source)).inc();
    }
    pub fn reconnected(&self, source: &str) {
        self.reconnects.get_or_create(&src(source)).inc();
    }
    pub fn polled(&self, source: &str) {
        self.polls.get_or_create(&src(source)).inc();
    }
    pub fn pull_lag(&self, source: &str, seconds: i64) {
        self.pull_lag.get_or_create(&src(source)).set(seconds);
    }
    pub fn pull_connected(&self, source: &str, up: bool) {
        self.pull_connected
            .get_or_create(&src(source))
            .set(i64::from(up));
    }

    /// The registry in Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

pub type SharedMetrics = Arc<Metrics>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_labelled_counters() {
        let m = Metrics::new();
        m.received("linq");
        m.rejected("linq", "bad_signature");
        m.accepted("linq", 0.002);
        let text = m.render();
        assert!(
            text.contains("hookd_received_total{source=\"linq\"} 1"),
            "{text}"
        );
        assert!(text.contains("hookd_rejected_total{source=\"linq\",reason=\"bad_signature\"} 1"));
        assert!(text.contains("hookd_ack_latency_seconds_count{source=\"linq\"} 1"));
    }
}
