//! The http runner (issue 16): one attempt of a `kind = "http"` handler is
//! one request to its target, and its answer becomes an attempt record
//! like an exec run's (status, time, the first 64 KiB of the body).
//!
//! It is the third runner beside exec and stream, not a queue of its own:
//! the dispatcher claims, retries, records, dead-letters and drains http
//! deliveries exactly as it does the others, and calls [`HttpRunner::attempt`]
//! where it would spawn a process. Each handler gets one runner, so one
//! connection pool (HTTP/1.1 keep-alive, HTTP/2 when TLS offers it),
//! rebuilt when a reload changes the handler.

mod answer;
pub mod sign;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue};
use tokio_util::sync::CancellationToken;

use super::envelope;
use crate::config::HandlerConfig;
use crate::config::http::{BodyMode, HttpTarget};
use crate::store::deliveries::{AttemptRecord, Claimed};
use answer::Verdict;

/// Longest wait for a connection, within the handler's timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Redirects followed at most, with `follow_redirects = true`.
const MAX_REDIRECTS: usize = 5;

/// One http handler's client and target.
pub struct HttpRunner {
    target: Arc<HttpTarget>,
    client: reqwest::Client,
    handler: String,
    timeout: Duration,
    output_cap: usize,
}

/// How an attempt went, for the metrics: an answer's status class, or
/// `timeout`, `error` (no answer) or `interrupted`.
pub struct Attempted {
    pub record: AttemptRecord,
    pub class: &'static str,
}

impl HttpRunner {
    /// The runner of an http handler; `None` for another kind.
    pub fn new(h: &HandlerConfig, output_cap: usize) -> Option<Result<HttpRunner, String>> {
        let target = h.http.clone()?;
        Some(client(&target, h).map(|client| HttpRunner {
            target,
            client,
            handler: h.name.clone(),
            timeout: h.timeout,
            output_cap,
        }))
    }

    /// Whether this runner was built from `h`'s current config.
    pub fn is_for(&self, h: &HandlerConfig) -> bool {
        h.name == self.handler
            && h.timeout == self.timeout
            && h.http
                .as_ref()
                .is_some_and(|t| Arc::ptr_eq(t, &self.target))
    }

    /// Sends one delivery and waits for the answer, at most the handler's
    /// timeout; `cancel` (the dispatcher's kill) ends it as interrupted.
    pub async fn attempt(&self, c: &Claimed, cancel: &CancellationToken) -> Attempted {
        let request = self.request(c);
        tokio::select! {
            _ = cancel.cancelled() => Attempted {
                record: failure("interrupted", "stopped at shutdown".into()),
                class: "interrupted",
            },
            done = tokio::time::timeout(self.timeout, self.exchange(request)) => match done {
                Ok(a) => a,
                Err(_) => Attempted {
                    record: failure(
                        "timeout",
                        format!(
                            "no complete answer from {} within {}",
                            self.target.url.as_str(),
                            humantime::format_duration(self.timeout)
                        ),
                    ),
                    class: "timeout",
                },
            },
        }
    }

    /// The request of one attempt: URL, body and headers, signed now.
    fn request(&self, c: &Claimed) -> reqwest::RequestBuilder {
        let t = &self.target;
        let (body, content_type) = match t.body {
            BodyMode::Envelope => (envelope::envelope(c), "application/json"),
            BodyMode::Payload => {
                let ct = payload_content_type(&c.body);
                (c.body.clone(), ct)
            }
        };
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        for (name, value) in delivery_headers(c) {
            headers.insert(name, value);
        }
        let id = sign::webhook_id(&self.handler, &c.source, &c.event_id);
        let now = crate::timefmt::now_micros() / 1_000_000;
        for (name, value) in sign::headers(t.sign.as_ref(), &id, &body, now) {
            headers.insert(name, value);
        }
        for (name, value) in &t.headers {
            headers.insert(name.clone(), value.clone());
        }
        self.client
            .request(t.method.clone(), t.url.render(&c.source, &c.event_type))
            .headers(headers)
            .body(body)
    }

    /// Sends the request and reads the answer's status and the start of its body.
    async fn exchange(&self, request: reqwest::RequestBuilder) -> Attempted {
        let mut resp = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                let what = if e.is_connect() {
                    "connect_error"
                } else {
                    "error"
                };
                return Attempted {
                    record: failure(
                        what,
                        format!("no answer from {}: {}", self.target.url.as_str(), chain(&e)),
                    ),
                    class: "error",
                };
            }
        };
        let status = resp.status();
        let retry_after = answer::retry_after(resp.headers(), SystemTime::now());
        let body = answer::read_capped(&mut resp, self.output_cap).await;
        let verdict = answer::verdict(status.as_u16(), self.target.retry_on_4xx);
        let summary = summary(status, &body.bytes, verdict);
        Attempted {
            record: AttemptRecord {
                outcome: if verdict == Verdict::Success {
                    "ok"
                } else {
                    "http"
                }
                .into(),
                http_status: Some(status.as_u16()),
                summary,
                stdout: body.bytes,
                stdout_truncated: body.truncated,
                stderr: body.error.unwrap_or_default().into_bytes(),
                retry_after: (verdict == Verdict::Retry).then_some(retry_after).flatten(),
                no_retry: verdict == Verdict::Final,
                ..Default::default()
            },
            class: answer::class(status.as_u16()),
        }
    }
}

/// The handler's pool: keep-alive, HTTP/2 where TLS offers it, rustls with
/// the system roots plus `ca_file`, no redirects unless asked for.
fn client(t: &HttpTarget, h: &HandlerConfig) -> Result<reqwest::Client, String> {
    let redirects = if t.follow_redirects {
        reqwest::redirect::Policy::limited(MAX_REDIRECTS)
    } else {
        reqwest::redirect::Policy::none()
    };
    let mut b = reqwest::Client::builder()
        .redirect(redirects)
        .connect_timeout(CONNECT_TIMEOUT.min(h.timeout))
        .pool_max_idle_per_host(h.concurrency)
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .user_agent(concat!("hookd/", env!("CARGO_PKG_VERSION")));
    if !t.ca_certs.is_empty() {
        b = b.tls_certs_merge(t.ca_certs.iter().cloned());
    }
    b.build()
        .map_err(|e| format!("cannot build the HTTP client: {}", chain(&e)))
}

/// What the receiver may want besides the signature: the event's identity
/// (as an exec handler gets it in `HOOKD_*`), useful with `body = "payload"`.
fn delivery_headers(c: &Claimed) -> Vec<(HeaderName, HeaderValue)> {
    let pairs = [
        ("hookd-event-id", c.event_id.clone()),
        ("hookd-event-type", c.event_type.clone()),
        ("hookd-source", c.source.clone()),
        ("hookd-attempt", c.attempt.to_string()),
        ("hookd-delivery-id", c.delivery.to_string()),
        ("hookd-replay", if c.replay { "1" } else { "0" }.to_string()),
    ];
    pairs
        .into_iter()
        // An id with bytes a header cannot carry is left out (it is in the body).
        .filter_map(|(n, v)| Some((HeaderName::from_static(n), HeaderValue::from_str(&v).ok()?)))
        .collect()
}

/// A sender's raw body is JSON far more often than not; say so when it is.
fn payload_content_type(body: &[u8]) -> &'static str {
    if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
        "application/json"
    } else {
        "application/octet-stream"
    }
}

/// `HTTP 503 Service Unavailable: <start of the body>`.
fn summary(status: reqwest::StatusCode, body: &[u8], verdict: Verdict) -> String {
    let mut s = format!("HTTP {status}");
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if verdict != Verdict::Success && !text.is_empty() {
        let cut: String = text.chars().take(200).collect();
        s += &format!(": {}", cut.replace(['\n', '\r'], " "));
    }
    if verdict == Verdict::Final {
        s += " (not retried: retry_on_4xx = false)";
    }
    s
}

fn failure(outcome: &str, summary: String) -> AttemptRecord {
    AttemptRecord {
        outcome: outcome.into(),
        stderr: summary.clone().into_bytes(),
        summary,
        ..Default::default()
    }
}

/// An error with its causes, `a: b: c` (reqwest's own Display stops at the
/// first level, which rarely says "connection refused").
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let t = inner.to_string();
        if !s.contains(&t) {
            s += &format!(": {t}");
        }
        cur = inner.source();
    }
    s
}
