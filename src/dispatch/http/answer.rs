//! What an http handler's answer means: which statuses succeed, which are
//! retried and which end the delivery, how long `Retry-After` asks to
//! wait, and reading at most a bounded prefix of the body, so a target
//! that answers with gigabytes costs 64 KiB of memory and of the store.

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use http::header::RETRY_AFTER;

/// What an answer's status makes of the attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Success,
    /// A failed attempt, retried with backoff.
    Retry,
    /// A failed attempt that ends the delivery (`dead` at once).
    Final,
}

/// `2xx` succeeds. `408`, `425`, `429` and `5xx` say "later", so they are
/// retried; so is anything else unless `retry_on_4xx` is off, because a
/// receiver's bad deploy (a missing route, a broken auth check) often
/// answers 4xx for a while and the events should survive it.
pub fn verdict(status: u16, retry_on_4xx: bool) -> Verdict {
    match status {
        200..=299 => Verdict::Success,
        408 | 425 | 429 => Verdict::Retry,
        400..=499 if !retry_on_4xx => Verdict::Final,
        _ => Verdict::Retry,
    }
}

/// The metrics label of an answer: `2xx` … `5xx`.
pub fn class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

/// The wait a `Retry-After` header asks for: delay-seconds or an HTTP
/// date (a date in the past asks for none). `None` when absent or unreadable.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The start of a response body: at most `cap` bytes, and whether there
/// was more. Reading stops at the cap (the connection is then dropped
/// rather than drained). A read error keeps what came before it.
pub struct Capped {
    pub bytes: Vec<u8>,
    pub truncated: bool,
    pub error: Option<String>,
}

pub async fn read_capped(resp: &mut reqwest::Response, cap: usize) -> Capped {
    let mut out = Capped {
        bytes: Vec::new(),
        truncated: false,
        error: None,
    };
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = cap - out.bytes.len();
                if chunk.len() > room {
                    out.bytes.extend_from_slice(&chunk[..room]);
                    out.truncated = true;
                    return out;
                }
                out.bytes.extend_from_slice(&chunk);
            }
            Ok(None) => return out,
            Err(e) => {
                out.error = Some(format!("reading the answer failed: {}", super::chain(&e)));
                return out;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_succeed_retry_or_end() {
        for s in [200, 201, 204, 299] {
            assert_eq!(verdict(s, false), Verdict::Success, "{s}");
        }
        for s in [408, 425, 429, 500, 502, 503, 504, 599] {
            assert_eq!(verdict(s, false), Verdict::Retry, "{s}");
        }
        for s in [400, 401, 403, 404, 410, 422] {
            assert_eq!(verdict(s, true), Verdict::Retry, "{s}");
            assert_eq!(verdict(s, false), Verdict::Final, "{s}");
        }
        // A redirect not followed is a failure worth retrying either way.
        assert_eq!(verdict(301, false), Verdict::Retry);
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h, now), None);
        h.insert(RETRY_AFTER, "120".parse().unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(120)));
        h.insert(
            RETRY_AFTER,
            "Sun, 06 Nov 1994 08:50:07 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(30)));
        h.insert(
            RETRY_AFTER,
            "Sun, 06 Nov 1994 08:00:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h, now), None);
    }
}
