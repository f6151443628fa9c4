//! Sample events shaped like each provider's (for `hookd send-test`).
//!
//! Named providers get their documented envelope (PROVIDERS.md); a generic
//! source gets a JSON body, and headers, built from its own extractors so
//! that the daemon can find an id and a type in it.

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
    let body = match src.provider {
        ProviderKind::Linkup => {
            let mut event = match data {
                Some(Value::Object(m)) => m,
                _ => json!({
                    "sender_name": "Ada Lovelace",
                    "message_text": "hello from hookd send-test",
                    "sender_profile": "https://www.linkedin.com/in/example",
                })
                .as_object()
                .cloned()
                .unwrap_or_default(),
            };
            event.insert("type".into(), json!(event_type.unwrap_or("message")));
            // LinkUp's timestamps carry no zone.
            json!({
                "account_id": src.account_id.clone().unwrap_or_else(|| "acc_test".into()),
                "account_name": "hookd test",
                "event": event,
                "timestamp": now.trim_end_matches('Z'),
            })
        }
        ProviderKind::Linq => {
            let ty = event_type.unwrap_or("message.received");
            if let Ok(v) = HeaderValue::from_str(ty) {
                headers.insert(HeaderName::from_static("x-webhook-event"), v);
            }
            json!({
                "api_version": "v2",
                "event_id": format!("wh_evt_{id}"),
                "event_type": ty,
                "created_at": now,
                "data": data.unwrap_or_else(|| json!({
                    "id": "msg_test", "chat_id": "chat_test", "text": "hello from hookd send-test",
                    "from_phone": "+15555550100", "service": "iMessage", "attachments": [],
                })),
            })
        }
        ProviderKind::LinkedApi => {
            let ty = event_type.unwrap_or("webhook.test");
            json!({
                "id": format!("{ty}:test-{id}"),
                "type": ty,
                "createdAt": now,
                "data": data.unwrap_or_else(|| json!({ "message": "Hello from hookd send-test" })),
            })
        }
        ProviderKind::Generic => {
            let mut body = match data {
                Some(v @ Value::Object(_)) => v,
                Some(other) => json!({ "data": other }),
                None => json!({ "message": "hello from hookd send-test" }),
            };
            let ty = event_type.unwrap_or("test");
            fill(
                &mut body,
                &mut headers,
                &src.extract.id,
                &format!("test-{id}"),
            );
            fill(&mut body, &mut headers, &src.extract.ty, ty);
            fill(&mut body, &mut headers, &src.extract.time, &now);
            body
        }
    };
    Sample {
        body: serde_json::to_vec(&body).unwrap_or_default(),
        msg_id: format!("msg_{id}"),
        headers,
    }
}

/// Puts `value` where the first usable extractor of the list looks.
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
                if let Ok(v) = HeaderValue::from_str(value) {
                    headers.insert(h.clone(), v);
                }
                return;
            }
            Extractor::Const(_) | Extractor::Hash | Extractor::HashOf(_) | Extractor::Now => {
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
