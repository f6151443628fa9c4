//! The one HTTP client every provider's management calls go through.
//!
//! It exists so that the rules hold for every provider alike: each call
//! has a timeout; `429` and `5xx` (and network failures) are retried with
//! exponential backoff that honours `Retry-After`; `401`/`403`/`404` and
//! other client errors stop at once with one line that names the provider
//! and quotes the provider's own message. The API key travels in a header
//! marked sensitive and never appears in an error or a log line.

use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, StatusCode};
use serde_json::Value;

/// How hard to try one call.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Tries in total, the first one included.
    pub attempts: u32,
    /// First backoff; doubled per retry, with jitter.
    pub initial: Duration,
    pub max_delay: Duration,
    /// A `Retry-After` longer than this is not waited for: the call fails.
    pub max_retry_after: Duration,
    /// Whole-request limit of each try.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            initial: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
            timeout: Duration::from_secs(30),
        }
    }
}

/// Whether a call may be repeated after the provider may have acted on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idempotence {
    /// Reads, updates, deletes: a 5xx or a lost answer is retried.
    Safe,
    /// Creates: retried only when the provider certainly did nothing
    /// (429, or the connection was never made). The caller re-lists instead.
    Unsafe,
}

/// Why a call failed, already phrased for the operator.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error(
        "{provider} refused the API key ({status}{}); check api_key",
        quoted(message)
    )]
    Auth {
        provider: &'static str,
        status: u16,
        message: String,
    },
    #[error(
        "{provider} answered {status} Not Found for {what}{}{}",
        quoted(message),
        hint(message)
    )]
    NotFound {
        provider: &'static str,
        status: u16,
        what: String,
        message: String,
    },
    #[error(
        "{provider} rejected the request ({status}{}){}",
        quoted(message),
        hint(message)
    )]
    Rejected {
        provider: &'static str,
        status: u16,
        message: String,
    },
    #[error("{provider} is rate limiting us ({status}{}){}", quoted(message), retry_hint(*retry_after))]
    RateLimited {
        provider: &'static str,
        status: u16,
        message: String,
        retry_after: Option<u64>,
    },
    #[error(
        "{provider} failed ({status}{}) after {attempts} tries",
        quoted(message)
    )]
    Server {
        provider: &'static str,
        status: u16,
        message: String,
        attempts: u32,
    },
    #[error("cannot reach {provider} at {url}: {detail}")]
    Network {
        provider: &'static str,
        url: String,
        detail: String,
    },
    #[error("{provider} sent an answer hookd cannot read: {detail}")]
    Unexpected {
        provider: &'static str,
        detail: String,
    },
}

impl ApiError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Auth { status, .. }
            | ApiError::NotFound { status, .. }
            | ApiError::Rejected { status, .. }
            | ApiError::RateLimited { status, .. }
            | ApiError::Server { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The provider may have acted on the request (a 5xx or a lost answer).
    pub fn maybe_applied(&self) -> bool {
        matches!(self, ApiError::Server { .. } | ApiError::Network { .. })
    }
}

fn quoted(m: &str) -> String {
    if m.is_empty() {
        String::new()
    } else {
        format!(": {m}")
    }
}

/// What to do about the error codes the providers document.
fn hint(message: &str) -> &'static str {
    const HINTS: &[(&str, &str)] = &[
        (
            "INSUFFICIENT_CREDITS",
            "; add credits at LinkUp (monitoring needs at least 1)",
        ),
        ("INVALID_ACCOUNT", "; check account_id"),
        ("ACCOUNT_INACTIVE", "; reconnect the account at LinkUp"),
        (
            "invalidUrl",
            "; Linked API delivers to public addresses only (server.public_url)",
        ),
    ];
    HINTS
        .iter()
        .find(|(code, _)| message.starts_with(code))
        .map_or("", |(_, h)| h)
}

fn retry_hint(s: Option<u64>) -> String {
    s.map(|s| format!("; retry after {s}s")).unwrap_or_default()
}

/// A successful answer: status and JSON body (`Null` when empty).
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub json: Value,
}

/// A client for one provider's management API.
#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    provider: &'static str,
    auth: (HeaderName, HeaderValue),
    policy: RetryPolicy,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("provider", &self.provider)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    /// `auth` is the header carrying the API key; its value is marked sensitive.
    pub fn new(
        provider: &'static str,
        base: &str,
        auth_header: &'static str,
        api_key: &[u8],
        policy: RetryPolicy,
    ) -> Result<ApiClient, String> {
        let mut value = HeaderValue::from_bytes(api_key)
            .map_err(|_| "api_key contains characters a header cannot carry".to_string())?;
        value.set_sensitive(true);
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10).min(policy.timeout))
            .user_agent(concat!("hookd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(ApiClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            provider,
            auth: (HeaderName::from_static(auth_header), value),
            policy,
        })
    }

    pub fn provider(&self) -> &'static str {
        self.provider
    }

    /// DELETE `path`; a 404 counts as done, since what it names is gone.
    pub async fn delete(&self, path: &str) -> Result<(), ApiError> {
        match self
            .call(Method::DELETE, path, None, Idempotence::Safe)
            .await
        {
            Ok(_) | Err(ApiError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// One call, with the retry rules above. `path` starts with `/`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        idem: Idempotence,
    ) -> Result<Answer, ApiError> {
        let url = format!("{}{path}", self.base);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= self.policy.attempts;
            let wait = match self.once(&method, &url, body).await {
                Ok(Ok(a)) => return Ok(a),
                Ok(Err((status, text, retry_after))) => {
                    let err = self.classify(status, &text, path, retry_after, attempt);
                    let retryable = match status.as_u16() {
                        429 => true,
                        500..=599 => idem == Idempotence::Safe,
                        _ => false,
                    };
                    if !retryable || last {
                        return Err(err);
                    }
                    match retry_after {
                        Some(s) if Duration::from_secs(s) > self.policy.max_retry_after => {
                            return Err(err);
                        }
                        Some(s) => Duration::from_secs(s),
                        None => self.backoff(attempt),
                    }
                }
                Err((never_sent, detail)) => {
                    let err = ApiError::Network {
                        provider: self.provider,
                        url: url.clone(),
                        detail,
                    };
                    if last || !(never_sent || idem == Idempotence::Safe) {
                        return Err(err);
                    }
                    self.backoff(attempt)
                }
            };
            tracing::info!(
                provider = self.provider,
                "{} {path}: retrying in {:.1}s (try {attempt} of {})",
                method,
                wait.as_secs_f64(),
                self.policy.attempts
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// One try: `Ok(Ok)` 2xx, `Ok(Err)` an HTTP error answer, `Err` no answer
    /// (with whether the request certainly never left).
    #[allow(clippy::type_complexity)]
    async fn once(
        &self,
        method: &Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Result<Answer, (StatusCode, String, Option<u64>)>, (bool, String)> {
        let mut rb = self
            .http
            .request(method.clone(), url)
            .timeout(self.policy.timeout)
            .header(self.auth.0.clone(), self.auth.1.clone())
            .header(http::header::ACCEPT, "application/json");
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let resp = rb.send().await.map_err(|e| {
            let detail = if e.is_timeout() {
                format!("no answer within {:?}", self.policy.timeout)
            } else {
                error_chain(&e)
            };
            (e.is_connect(), detail)
        })?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let text = read_capped(resp, 1 << 20)
            .await
            .map_err(|e| (false, format!("the answer broke off: {e}")))?;
        if !status.is_success() {
            return Ok(Err((status, text, retry_after)));
        }
        let json = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|e| (false, format!("not JSON ({e})")))?
        };
        // An error envelope with a 2xx status is still an error.
        if json.get("success") == Some(&Value::Bool(false)) {
            return Ok(Err((StatusCode::BAD_REQUEST, text, None)));
        }
        Ok(Ok(Answer { status, json }))
    }

    fn classify(
        &self,
        status: StatusCode,
        text: &str,
        path: &str,
        retry_after: Option<u64>,
        attempts: u32,
    ) -> ApiError {
        let message = provider_message(text);
        let provider = self.provider;
        let status_n = status.as_u16();
        match status_n {
            401 | 403 => ApiError::Auth {
                provider,
                status: status_n,
                message,
            },
            404 => ApiError::NotFound {
                provider,
                status: status_n,
                what: path.to_string(),
                message,
            },
            429 => ApiError::RateLimited {
                provider,
                status: status_n,
                message,
                retry_after,
            },
            500..=599 => ApiError::Server {
                provider,
                status: status_n,
                message,
                attempts,
            },
            _ => ApiError::Rejected {
                provider,
                status: status_n,
                message,
            },
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .policy
            .initial
            .saturating_mul(1 << (attempt - 1).min(16))
            .min(self.policy.max_delay);
        // Up to 25% jitter so that several hookd instances do not retry in step.
        exp + exp.mul_f64(fastrand::f64() * 0.25)
    }
}

/// `Retry-After` as seconds: either delta-seconds or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<u64> {
    let v = v.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(s);
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .map(|d| d.as_secs())
            .unwrap_or(0),
    )
}

/// The provider's own error text from an error body, on one line.
///
/// LinkUp sends `{error:{code,message}}`, Linked API `{error:{type,message}}`;
/// Linq v2's error shape is not documented, so the common shapes are tried.
pub fn provider_message(text: &str) -> String {
    let msg = match serde_json::from_str::<Value>(text) {
        Ok(v) => json_message(&v).unwrap_or_default(),
        Err(_) => text.trim().to_string(),
    };
    clip_line(&msg, 300)
}

fn json_message(v: &Value) -> Option<String> {
    let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    match v.get("error") {
        Some(Value::String(m)) => return Some(m.clone()),
        Some(e @ Value::Object(_)) => {
            let code = s(e.get("code")).or_else(|| s(e.get("type")));
            let message = s(e.get("message"));
            return match (code, message) {
                (Some(c), Some(m)) => Some(format!("{c}: {m}")),
                (c, m) => c.or(m),
            };
        }
        _ => {}
    }
    if let Some(m) = s(v.get("message")) {
        return Some(m);
    }
    match v.get("errors") {
        Some(Value::Array(a)) => Some(
            a.iter()
                .filter_map(|e| {
                    e.as_str()
                        .map(str::to_string)
                        .or_else(|| s(e.get("message")))
                })
                .collect::<Vec<_>>()
                .join("; "),
        ),
        Some(Value::Object(o)) => Some(
            o.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        _ => None,
    }
}

/// One line, at most `max` characters.
fn clip_line(s: &str, max: usize) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() <= max {
        return one;
    }
    let mut out: String = one.chars().take(max - 1).collect();
    out.push('…');
    out
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = c.source();
    }
    parts.join(": ")
}

/// Reads at most `max` bytes of a body (an error page can be large).
async fn read_capped(mut resp: reqwest::Response, max: usize) -> Result<String, reqwest::Error> {
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = max.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() >= max {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the fake provider does with each connection, in order.
    #[derive(Clone, Copy)]
    enum Conn {
        /// Reads the request and never answers.
        Hang,
        /// Promises 100 bytes, sends 4, closes.
        BreakOff,
        /// 200 with a body that is not JSON.
        Garbage,
        /// 200 `{"ok":true}`.
        Fine,
    }

    /// A provider on 127.0.0.1 misbehaving as scripted; counts connections.
    async fn fake_provider(
        script: Vec<Conn>,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = seen.clone();
        tokio::spawn(async move {
            for step in script {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let reply: &[u8] = match step {
                        Conn::Hang => {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                            return;
                        }
                        Conn::BreakOff => b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"da",
                        Conn::Garbage => {
                            b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n<html>oops</"
                        }
                        Conn::Fine => b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"ok\":true}",
                    };
                    let _ = s.write_all(reply).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        (base, seen)
    }

    fn quick_client(base: &str) -> ApiClient {
        let policy = RetryPolicy {
            attempts: 3,
            initial: Duration::from_millis(10),
            max_delay: Duration::from_millis(20),
            max_retry_after: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
        };
        ApiClient::new("Fake", base, "x-api-key", b"sekrit-key", policy).unwrap()
    }

    #[tokio::test]
    async fn a_provider_that_hangs_times_out_each_try_then_fails_clearly() {
        let (base, seen) = fake_provider(vec![Conn::Hang; 3]).await;
        let err = quick_client(&base)
            .call(Method::GET, "/hooks", None, Idempotence::Safe)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("no answer within"), "{text}");
        assert!(!text.contains("sekrit"), "{text}");
        assert_eq!(
            seen.load(std::sync::atomic::Ordering::SeqCst),
            3,
            "every try was made"
        );
    }

    #[tokio::test]
    async fn an_answer_that_breaks_off_or_is_not_json_is_retried_when_safe() {
        let (base, seen) = fake_provider(vec![Conn::BreakOff, Conn::Garbage, Conn::Fine]).await;
        let a = quick_client(&base)
            .call(Method::GET, "/hooks", None, Idempotence::Safe)
            .await
            .unwrap();
        assert_eq!(a.json["ok"], true);
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_create_whose_answer_is_unreadable_is_not_repeated() {
        // The provider may have created it: the caller re-lists instead.
        for bad in [Conn::BreakOff, Conn::Garbage] {
            let (base, seen) = fake_provider(vec![bad, Conn::Fine]).await;
            let err = quick_client(&base)
                .call(Method::POST, "/hooks", None, Idempotence::Unsafe)
                .await
                .unwrap_err();
            assert!(err.maybe_applied(), "{err}");
            let text = err.to_string();
            assert!(
                text.contains("broke off") || text.contains("not JSON"),
                "{text}"
            );
            assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 1);
        }
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after("3"), Some(3));
        assert_eq!(parse_retry_after(" 0 "), Some(0));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"), Some(0));
        let soon = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(120));
        let got = parse_retry_after(&soon).unwrap();
        assert!((110..=120).contains(&got), "{got}");
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn provider_messages_from_each_envelope() {
        assert_eq!(
            provider_message(
                r#"{"success":false,"error":{"code":"INVALID_API_KEY","message":"Invalid API key"}}"#
            ),
            "INVALID_API_KEY: Invalid API key"
        );
        assert_eq!(
            provider_message(
                r#"{"success":false,"error":{"type":"invalidLinkedApiToken","message":"Token is invalid"}}"#
            ),
            "invalidLinkedApiToken: Token is invalid"
        );
        assert_eq!(
            provider_message(r#"{"error":"Unauthorized"}"#),
            "Unauthorized"
        );
        assert_eq!(
            provider_message(r#"{"errors":["url is invalid","events missing"]}"#),
            "url is invalid; events missing"
        );
        assert_eq!(provider_message("Bad\ngateway\n"), "Bad gateway");
        assert_eq!(provider_message(&"x".repeat(400)).chars().count(), 300);
    }

    #[test]
    fn errors_are_one_line_and_never_carry_the_key() {
        let e = ApiError::Auth {
            provider: "LinkUp",
            status: 403,
            message: "INVALID_API_KEY: Invalid API key".into(),
        };
        assert_eq!(
            e.to_string(),
            "LinkUp refused the API key (403: INVALID_API_KEY: Invalid API key); check api_key"
        );
        let e = ApiError::RateLimited {
            provider: "Linked API",
            status: 429,
            message: String::new(),
            retry_after: Some(90),
        };
        assert_eq!(
            e.to_string(),
            "Linked API is rate limiting us (429); retry after 90s"
        );
        let e = ApiError::Rejected {
            provider: "LinkUp",
            status: 402,
            message: "INSUFFICIENT_CREDITS: Insufficient credits".into(),
        };
        assert_eq!(
            e.to_string(),
            "LinkUp rejected the request (402: INSUFFICIENT_CREDITS: Insufficient credits); add credits at LinkUp (monitoring needs at least 1)"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let c = ApiClient::new("X", "http://x", "x-api-key", b"k", RetryPolicy::default()).unwrap();
        let a = c.backoff(1);
        let d = c.backoff(10);
        assert!(a >= Duration::from_millis(500) && a <= Duration::from_millis(625));
        assert!(d >= Duration::from_secs(8) && d <= Duration::from_secs(10));
    }
}
