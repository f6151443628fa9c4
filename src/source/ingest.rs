//! The common path of every event: verify → normalize → route → commit.
//!
//! Nothing here answers a provider before the store has committed the event
//! (and the deliveries for its handlers) in one transaction. Refusals are
//! classified the way SPEC §4 answers them, and 401/422 refusals are
//! recorded for `hookd rejected` without delaying the answer.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::HeaderMap;
use tokio::sync::{Notify, Semaphore};

use crate::config::SourceConfig;
use crate::extract::{ExtractError, Input};
use crate::metrics::SharedMetrics;
use crate::runtime::{Runtime, SharedRuntime, refresh_issued};
use crate::store::events::{Ingested, NewEvent};
use crate::store::rejected::{self, NewRejection};
use crate::store::{Backend, StoreError};
use crate::timefmt;
use crate::verify::{Rejection, Request};

/// One request as it arrived.
pub struct Inbound {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub remote: Option<String>,
    pub started: Instant,
    pub received_at: i64,
}

/// A committed answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stored {
    Accepted {
        id: i64,
    },
    Duplicate {
        id: i64,
    },
    /// A verified handshake (Slack's `url_verification`): answered with
    /// this body, not stored.
    Handshake(serde_json::Value),
}

/// Why an event was not stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 401: signature or timestamp.
    Unauthorized(Rejection),
    /// 422: no id or type.
    Unprocessable(ExtractError),
    /// 503: not committed; the provider should retry.
    Unavailable(StoreError),
}

/// Headers never stored: credentials, whatever the source.
const SENSITIVE: [&str; 6] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "x-linq-integration-token",
    "linked-api-token",
];

/// Refusals being written at once; beyond this they are counted, not stored,
/// so a flood of forged requests cannot crowd real events out of the writer.
const REJECTION_WRITES: usize = 16;

pub struct Ingest {
    pub store: Backend,
    pub metrics: SharedMetrics,
    pub runtime: SharedRuntime,
    /// Woken after a commit that created deliveries.
    pub wake: Arc<Notify>,
    rejection_slots: Arc<Semaphore>,
    /// Bytes of request bodies held in memory at once, across all requests.
    pub body_budget: Arc<Semaphore>,
}

/// Memory for request bodies being read or waiting for their commit: at
/// least this much, and at least a few maximal bodies. Beyond it requests
/// are answered 503 with Retry-After instead of growing the heap, so many
/// large concurrent bodies cannot exhaust memory.
pub const BODY_BUDGET_MIN: usize = 64 << 20;

/// The body budget for a `max_body`.
pub fn body_budget(max_body: usize) -> usize {
    BODY_BUDGET_MIN.max(max_body.saturating_mul(4))
}

impl Ingest {
    pub fn new(
        store: Backend,
        metrics: SharedMetrics,
        runtime: SharedRuntime,
        wake: Arc<Notify>,
    ) -> Ingest {
        let max_body = runtime.load().config.server.max_body;
        let body_budget = Arc::new(Semaphore::new(body_budget(max_body)));
        Ingest {
            store,
            metrics,
            runtime,
            wake,
            rejection_slots: Arc::new(Semaphore::new(REJECTION_WRITES)),
            body_budget,
        }
    }

    /// Verifies, normalizes and commits one pushed request.
    pub async fn push(
        &self,
        rt: &Runtime,
        source: usize,
        inbound: Inbound,
    ) -> Result<Stored, Refusal> {
        let src = &rt.config.sources[source];
        self.metrics.received(&src.name);
        let now_s = inbound.received_at / 1_000_000;
        let req = Request {
            headers: &inbound.headers,
            body: &inbound.body,
        };
        let mut verified = src
            .scheme
            .verify(&req, rt.keys(source), now_s, src.tolerance);
        if let Err(Rejection::NoMatch | Rejection::NoKeys) = verified
            && src.provider.issues_secret()
            && let Some(fresh) = self.fresh_keys(rt).await
        {
            verified = src
                .scheme
                .verify(&req, fresh.keys(source), now_s, src.tolerance);
        }
        let verified = verified.map_err(|r| {
            self.refused(src, &inbound, 401, r.code(), &r.to_string());
            Refusal::Unauthorized(r)
        })?;
        if let Some(reply) = src.provider.handshake(&inbound.body) {
            return Ok(Stored::Handshake(reply));
        }
        let verified = match (src.scheme.name(), verified.variant) {
            (name, variant) if name == variant => format!("{name}, key {}", verified.key_index),
            (name, variant) => format!("{name} ({variant}), key {}", verified.key_index),
        };
        let event = self.normalize(rt, src, &inbound, verified).map_err(|e| {
            self.refused(src, &inbound, 422, e.code(), &e.to_string());
            Refusal::Unprocessable(e)
        })?;
        self.commit(src, event, inbound.started).await
    }

    /// A runtime holding provider-issued secrets saved since `rt` was built
    /// (say by `hookd register` while the daemon runs), if there are any.
    async fn fresh_keys(&self, rt: &Runtime) -> Option<Arc<Runtime>> {
        match refresh_issued(&self.runtime, &self.store).await {
            Ok(now) if Arc::ptr_eq(&now.config, &rt.config) && !now.same_issued(rt) => Some(now),
            Ok(_) => None,
            Err(e) => {
                tracing::debug!("could not look for new provider secrets: {e}");
                None
            }
        }
    }

    /// Builds the row to store: extraction, aliases, routing, kept headers.
    pub fn normalize(
        &self,
        rt: &Runtime,
        src: &SourceConfig,
        inbound: &Inbound,
        verified: String,
    ) -> Result<NewEvent, ExtractError> {
        let json: Option<serde_json::Value> = serde_json::from_slice(&inbound.body).ok();
        let found = src.extract.extract(
            &Input {
                headers: &inbound.headers,
                body: &inbound.body,
                json: json.as_ref(),
                received_at: inbound.received_at,
                scheme: Some(&src.scheme),
            },
            &src.type_aliases,
        )?;
        Ok(NewEvent {
            source: src.name.clone(),
            provider: src.provider.name().to_string(),
            handlers: rt.config.route(&src.name, &found.event_type),
            event_id: found.event_id,
            id_synthetic: found.id_synthetic,
            event_type: found.event_type,
            type_raw: found.type_raw,
            occurred_at: found.occurred_at,
            received_at: inbound.received_at,
            headers_json: kept_headers_json(&inbound.headers, src),
            body: inbound.body.clone(),
            verified,
        })
    }

    /// Commits one event; answers only once it is durable.
    pub async fn commit(
        &self,
        src: &SourceConfig,
        event: NewEvent,
        started: Instant,
    ) -> Result<Stored, Refusal> {
        let routed = !event.handlers.is_empty();
        let result = self.store.insert_event(event).await;
        let latency = started.elapsed().as_secs_f64();
        match result {
            Ok(Ingested::Accepted { id, .. }) => {
                self.metrics.accepted(&src.name, latency);
                if routed {
                    self.wake.notify_one();
                }
                Ok(Stored::Accepted { id })
            }
            Ok(Ingested::Duplicate { id }) => {
                self.metrics.duplicate(&src.name, latency);
                Ok(Stored::Duplicate { id })
            }
            Err(e) => {
                self.metrics.rejected(&src.name, "store_unavailable");
                tracing::warn!(source = %src.name, "event not stored, answering 503: {e}");
                Err(Refusal::Unavailable(e))
            }
        }
    }

    /// Counts a refusal and records it in the background (bounded).
    pub(crate) fn refused(
        &self,
        src: &SourceConfig,
        inbound: &Inbound,
        status: u16,
        code: &str,
        reason: &str,
    ) {
        self.metrics.rejected(&src.name, code);
        tracing::info!(source = %src.name, status, code, "refused: {reason}");
        let Ok(permit) = self.rejection_slots.clone().try_acquire_owned() else {
            return;
        };
        let row = NewRejection {
            source: Some(src.name.clone()),
            path: inbound.path.clone(),
            status,
            reason: reason.to_string(),
            code: code.to_string(),
            received_at: inbound.received_at,
            remote: inbound.remote.clone(),
            headers: kept_headers(&inbound.headers, src),
            body: inbound.body[..inbound.body.len().min(rejected::BODY_KEEP)].to_vec(),
        };
        let keep = self.runtime.load().config.daemon.rejected_keep;
        let store = self.store.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = store.insert_rejected(row, keep).await {
                tracing::debug!("could not record a refused request: {e}");
            }
        });
    }
}

/// The request headers worth storing: everything but credentials and the
/// source's own shared-token header.
pub fn kept_headers(headers: &HeaderMap, src: &SourceConfig) -> Vec<(String, String)> {
    kept(headers, src)
        .map(|(k, v)| (k.to_string(), v.into_owned()))
        .collect()
}

/// [`kept_headers`] as stored with an event, a JSON array of `[name,
/// value]` pairs, written straight from the header map (no copy of each
/// header on the way, which every accepted request would pay).
pub fn kept_headers_json(headers: &HeaderMap, src: &SourceConfig) -> String {
    struct Kept<'a>(&'a HeaderMap, &'a SourceConfig);
    impl serde::Serialize for Kept<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(kept(self.0, self.1))
        }
    }
    serde_json::to_string(&Kept(headers, src)).unwrap_or_else(|_| "[]".into())
}

fn kept<'a>(
    headers: &'a HeaderMap,
    src: &'a SourceConfig,
) -> impl Iterator<Item = (&'a str, std::borrow::Cow<'a, str>)> {
    headers
        .iter()
        .filter(|(k, _)| !SENSITIVE.contains(&k.as_str()) && !src.redact_headers.contains(k))
        .map(|(k, v)| (k.as_str(), String::from_utf8_lossy(v.as_bytes())))
}

/// Microseconds since the epoch, for `Inbound::received_at`.
pub fn now() -> i64 {
    timefmt::now_micros()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_headers_json_is_the_kept_pairs_serialized() {
        let cfg = crate::config::parse(
            "[[source]]\nname = \"s\"\nprovider = \"generic\"\ninsecure = true\nsignature = { scheme = \"none\" }\nextract = { id = [\"json:/id\"], type = [\"json:/type\"] }\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let src = &cfg.sources[0];
        let mut h = HeaderMap::new();
        h.insert("content-type", "application/json".parse().unwrap());
        h.insert("authorization", "Bearer secret".parse().unwrap());
        h.append("x-many", "one \"quoted\"".parse().unwrap());
        h.append("x-many", "two".parse().unwrap());
        h.insert(
            "x-bytes",
            http::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
        );
        let json = kept_headers_json(&h, src);
        assert_eq!(json, serde_json::to_string(&kept_headers(&h, src)).unwrap());
        assert!(
            !json.contains("secret"),
            "credentials are never stored: {json}"
        );
        assert!(
            json.contains(r#"["x-many","one \"quoted\""],["x-many","two"]"#),
            "{json}"
        );
    }
}
