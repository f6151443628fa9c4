//! What a handler sees (SPEC §5): the envelope on stdin and the
//! environment it runs in.
//!
//! The environment is built from nothing: PATH, HOME and LANG (from the
//! daemon's own, with safe defaults), the handler's configured `env`, and
//! the `HOOKD_*` variables. Nothing else of the daemon's environment leaks
//! into a handler.

use serde_json::{Value, json};

use crate::config::HandlerConfig;
use crate::store::deliveries::Claimed;
use crate::timefmt;

/// The envelope JSON for one claimed delivery.
pub fn envelope(c: &Claimed) -> Vec<u8> {
    let payload = serde_json::from_slice::<Value>(&c.body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&c.body).into_owned()));
    let v = json!({
        "id": c.event,
        "event_id": c.event_id,
        "source": c.source,
        "provider": c.provider,
        "type": c.event_type,
        "occurred_at": c.occurred_at.map(timefmt::format_micros),
        "received_at": timefmt::format_micros(c.received_at),
        "attempt": c.attempt,
        "replay": c.replay,
        "payload": payload,
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

/// PATH, HOME and LANG from the daemon (or safe defaults), then the
/// handler's own `env`, which may override them.
fn base_environment(h: &HandlerConfig) -> Vec<(String, String)> {
    let inherit = |name: &str, default: &str| {
        (
            name.to_string(),
            std::env::var(name).unwrap_or_else(|_| default.to_string()),
        )
    };
    let mut env = vec![
        inherit("PATH", "/usr/local/bin:/usr/bin:/bin"),
        inherit("HOME", "/"),
        inherit("LANG", "C.UTF-8"),
    ];
    for (k, v) in &h.env {
        env.retain(|(name, _)| name != k);
        env.push((k.clone(), String::from_utf8_lossy(v.expose()).into_owned()));
    }
    env
}

/// The complete environment of one run.
pub fn environment(h: &HandlerConfig, c: &Claimed) -> Vec<(String, String)> {
    let mut env = base_environment(h);
    env.extend([
        ("HOOKD_EVENT_ID".to_string(), c.event_id.clone()),
        ("HOOKD_EVENT_TYPE".to_string(), c.event_type.clone()),
        ("HOOKD_SOURCE".to_string(), c.source.clone()),
        ("HOOKD_ATTEMPT".to_string(), c.attempt.to_string()),
        ("HOOKD_DELIVERY_ID".to_string(), c.delivery.to_string()),
        (
            "HOOKD_RECEIVED_AT".to_string(),
            timefmt::format_micros(c.received_at),
        ),
        (
            "HOOKD_REPLAY".to_string(),
            if c.replay { "1" } else { "0" }.to_string(),
        ),
    ]);
    env
}

/// The environment of a stream handler's long-lived process: no per-event
/// variables (those travel in each envelope).
pub fn stream_environment(h: &HandlerConfig) -> Vec<(String, String)> {
    let mut env = base_environment(h);
    env.push(("HOOKD_HANDLER".to_string(), h.name.clone()));
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claimed(body: &[u8]) -> Claimed {
        Claimed {
            delivery: 7,
            handler: "h".into(),
            attempt: 2,
            replay: true,
            event: 3,
            event_id: "evt_1".into(),
            source: "linq".into(),
            provider: "linq".into(),
            event_type: "message.received".into(),
            occurred_at: None,
            received_at: 0,
            body: body.to_vec(),
            ahead: false,
            claimed_at: 0,
        }
    }

    #[test]
    fn envelope_fields() {
        let v: Value = serde_json::from_slice(&envelope(&claimed(br#"{"a":1}"#))).unwrap();
        assert_eq!(v["id"], 3);
        assert_eq!(v["event_id"], "evt_1");
        assert_eq!(v["attempt"], 2);
        assert_eq!(v["replay"], true);
        assert_eq!(v["payload"]["a"], 1);
        assert!(v["occurred_at"].is_null());
        let v: Value = serde_json::from_slice(&envelope(&claimed(b"a=1&b=2"))).unwrap();
        assert_eq!(v["payload"], "a=1&b=2");
    }
}
