//! Sample events shaped like each provider's (for `hookd send-test`).
//!
//! Named providers get their documented envelope (PROVIDERS.md, the
//! senders' docs); every sample also carries what the source's own
//! extractors look for, so the daemon finds an id and a type in it. The
//! signature headers are added by `hookd send-test`.

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value, json};

use super::ProviderKind;
use crate::config::SourceConfig;
use crate::extract::Extractor;
use crate::timefmt;

/// A sample request: body, the message id to sign with, extra headers.
pub struct Sample {
    pub body: Vec<u8>,
    pub msg_id: String,
    pub headers: HeaderMap,
}

fn random_id() -> String {
    (0..20)
        .map(|_| fastrand::alphanumeric().to_ascii_lowercase())
        .collect()
}

pub fn sample(
    src: &SourceConfig,
    event_type: Option<&str>,
    data: Option<Value>,
    now_us: i64,
) -> Sample {
    let id = random_id();
    let now = timefmt::format_micros(now_us);
    let mut headers = HeaderMap::new();
    let shape = Shape {
        id: &id,
        now: &now,
        now_s: now_us / 1_000_000,
        event_type,
        data,
    };
    let (mut body, ty) = match src.provider {
        ProviderKind::Linkup => linkup(src, shape),
        ProviderKind::Linq => linq(&mut headers, shape),
        ProviderKind::LinkedApi => linkedapi(shape),
        ProviderKind::StandardWebhooks => standard_webhooks(shape),
        ProviderKind::Github => github(&mut headers, shape),
        ProviderKind::Stripe => stripe(shape),
        ProviderKind::Slack => slack(shape),
        ProviderKind::Shopify => shopify(&mut headers, shape),
        ProviderKind::Generic => generic(shape),
    };
    // Whatever the source's own extractors look for is there too (a preset's
    // own fields are already set and left alone).
    let e = &src.extract;
    fill(&mut body, &mut headers, &e.id, &format!("test-{id}"));
    fill(&mut body, &mut headers, &e.ty, &ty);
    fill(&mut body, &mut headers, &e.time, &now);
    Sample {
        body: serde_json::to_vec(&body).unwrap_or_default(),
        msg_id: format!("msg_{id}"),
        headers,
    }
}

/// What every sample is made from.
struct Shape<'a> {
    id: &'a str,
    now: &'a str,
    now_s: i64,
    event_type: Option<&'a str>,
    data: Option<Value>,
}

impl Shape<'_> {
    fn ty(&self, default: &str) -> String {
        self.event_type.unwrap_or(default).to_string()
    }

    /// `--data` as an object, else `default`.
    fn object(self, default: Value) -> Map<String, Value> {
        match self.data {
            Some(Value::Object(m)) => m,
            Some(other) => Map::from_iter([("data".to_string(), other)]),
            None => default.as_object().cloned().unwrap_or_default(),
        }
    }
}

fn header(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

fn linkup(src: &SourceConfig, s: Shape<'_>) -> (Value, String) {
    let ty = s.ty("message");
    let now = s.now.trim_end_matches('Z').to_string();
    let mut event = s.object(json!({
        "sender_name": "Ada Lovelace",
        "message_text": "hello from hookd send-test",
        "sender_profile": "https://www.linkedin.com/in/example",
    }));
    event.insert("type".into(), json!(ty));
    // LinkUp's timestamps carry no zone.
    let body = json!({
        "account_id": src.account_id.clone().unwrap_or_else(|| "acc_test".into()),
        "account_name": "hookd test",
        "event": event,
        "timestamp": now,
    });
    (body, ty)
}

fn linq(headers: &mut HeaderMap, s: Shape<'_>) -> (Value, String) {
    let ty = s.ty("message.received");
    header(headers, "x-webhook-event", &ty);
    let body = json!({
        "api_version": "v2",
        "event_id": format!("wh_evt_{}", s.id),
        "event_type": ty,
        "created_at": s.now,
        "data": s.data.unwrap_or_else(|| json!({
            "id": "msg_test", "chat_id": "chat_test", "text": "hello from hookd send-test",
            "from_phone": "+15555550100", "service": "iMessage", "attachments": [],
        })),
    });
    (body, ty)
}

fn linkedapi(s: Shape<'_>) -> (Value, String) {
    let ty = s.ty("webhook.test");
    let body = json!({
        "id": format!("{ty}:test-{}", s.id),
        "type": ty,
        "createdAt": s.now,
        "data": s.data.unwrap_or_else(|| json!({ "message": "Hello from hookd send-test" })),
    });
    (body, ty)
}

/// The spec's payload convention; the id and timestamp are the signer's.
fn standard_webhooks(s: Shape<'_>) -> (Value, String) {
    let ty = s.ty("hookd.test");
    let body = json!({
        "type": ty,
        "timestamp": s.now,
        "data": s.data.unwrap_or_else(|| json!({ "message": "hello from hookd send-test" })),
    });
    (body, ty)
}

/// `--type pull_request.opened` is event `pull_request` with that action.
fn github(headers: &mut HeaderMap, s: Shape<'_>) -> (Value, String) {
    let ty = s.ty("ping");
    let (event, action) = match ty.split_once('.') {
        Some((e, a)) => (e.to_string(), Some(a.to_string())),
        None => (ty.clone(), None),
    };
    header(headers, "x-github-event", &event);
    header(headers, "x-github-delivery", &format!("test-{}", s.id));
    header(headers, "x-github-hook-id", "0");
    let mut body = s.object(json!({
        "zen": "Keep it logically awesome.",
        "sender": { "login": "hookd" },
    }));
    if let Some(a) = action {
        body.insert("action".into(), json!(a));
    }
    (Value::Object(body), ty)
}

fn stripe(s: Shape<'_>) -> (Value, String) {
    let ty = s.ty("payment_intent.succeeded");
    let body = json!({
        "id": format!("evt_test_{}", s.id),
        "object": "event",
        "api_version": "2024-06-20",
        "created": s.now_s,
        "livemode": false,
        "type": ty,
        "data": { "object": s.data.unwrap_or_else(|| json!({ "id": "pi_test", "object": "payment_intent" })) },
    });
    (body, ty)
}

fn slack(s: Shape<'_>) -> (Value, String) {
    let ty = s.ty("app_mention");
    let (id, now_s) = (s.id.to_ascii_uppercase(), s.now_s);
    let mut event = s.object(json!({
        "user": "U0000000000", "text": "hello from hookd send-test",
        "channel": "C0000000000", "ts": format!("{now_s}.000100"),
    }));
    event.insert("type".into(), json!(ty));
    let body = json!({
        "token": "hookd-send-test",
        "team_id": "T0000000000",
        "api_app_id": "A0000000000",
        "type": "event_callback",
        "event_id": format!("Ev{id}"),
        "event_time": now_s,
        "event": event,
    });
    (body, ty)
}

fn shopify(headers: &mut HeaderMap, s: Shape<'_>) -> (Value, String) {
    let ty = s.ty("orders/create");
    header(headers, "x-shopify-topic", &ty);
    header(headers, "x-shopify-webhook-id", &format!("test-{}", s.id));
    header(headers, "x-shopify-triggered-at", s.now);
    header(headers, "x-shopify-shop-domain", "hookd-test.myshopify.com");
    let body = s.object(json!({ "id": 1, "note": "hello from hookd send-test" }));
    (Value::Object(body), ty)
}

/// A generic source's sample is whatever its extractors look for.
fn generic(s: Shape<'_>) -> (Value, String) {
    let ty = s.ty("test");
    let body = match s.data {
        Some(v @ Value::Object(_)) => v,
        Some(other) => json!({ "data": other }),
        None => json!({ "message": "hello from hookd send-test" }),
    };
    (body, ty)
}

/// Puts `value` where the first usable extractor of the list looks, unless
/// something is there already.
fn fill(body: &mut Value, headers: &mut HeaderMap, list: &[Extractor], value: &str) {
    for e in list {
        match e {
            Extractor::Json(p) if !p.is_empty() => {
                if body.pointer(p).is_none() {
                    set_pointer(body, p, json!(value));
                }
                return;
            }
            Extractor::Header(h) => {
                if !headers.contains_key(h)
                    && let Ok(v) = HeaderValue::from_str(value)
                {
                    headers.insert(h.clone(), v);
                }
                return;
            }
            // The signer sets what the signature covers.
            Extractor::Const(_)
            | Extractor::Hash
            | Extractor::HashOf(_)
            | Extractor::Now
            | Extractor::Signed(_) => {
                return;
            }
            Extractor::Json(_) => {}
        }
    }
}

/// Sets a value at an RFC 6901 pointer, creating objects on the way.
fn set_pointer(root: &mut Value, pointer: &str, v: Value) {
    let mut cur = root;
    let parts: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect();
    for (i, part) in parts.iter().enumerate() {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let Value::Object(m) = cur else { return };
        if i + 1 == parts.len() {
            m.insert(part.clone(), v);
            return;
        }
        cur = m
            .entry(part.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_builds_nested_objects() {
        let mut v = json!({"a": 1});
        set_pointer(&mut v, "/x/y~1z", json!("id"));
        assert_eq!(v, json!({"a": 1, "x": {"y/z": "id"}}));
    }
}
