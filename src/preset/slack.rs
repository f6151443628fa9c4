//! Slack Events API: `X-Slack-Signature: v0=<hex>` over
//! `v0:{X-Slack-Request-Timestamp}:{body}` (5 minutes' tolerance, the
//! source's default). An `event_callback` carries `event_id` (the same on
//! Slack's retries) and the event in `event` (its `type` is what handlers
//! match, e.g. `app_mention`). Slack checks a new Request URL with a signed
//! `url_verification` request that must be answered with its `challenge`;
//! that is a handshake, neither stored nor dispatched.

use serde_json::{Value, json};

use super::{Mode, Preset, spec};
use crate::verify::SignatureConfig;

pub fn preset() -> Preset {
    Preset {
        signature: Some(SignatureConfig {
            scheme: "hmac".into(),
            header: Some("X-Slack-Signature".into()),
            prefix: Some("v0=".into()),
            encoding: Some("hex".into()),
            signed: Some("v0:{timestamp}:{body}".into()),
            timestamp_header: Some("X-Slack-Request-Timestamp".into()),
            ..Default::default()
        }),
        // Callbacks without an event (`app_rate_limited`) have only a type.
        extract: spec(
            &["json:/event_id", "hash"],
            &["json:/event/type", "json:/type"],
            &["json:/event_time", "now"],
        ),
        aliases: &[],
        modes: &[Mode::Push],
        api_base: None,
    }
}

/// The answer to a `url_verification` request: `{"challenge": …}`.
pub fn challenge(body: &[u8]) -> Option<Value> {
    let v: Value = serde_json::from_slice(body).ok()?;
    if v.get("type")?.as_str()? != "url_verification" {
        return None;
    }
    let c = v.get("challenge")?.as_str()?;
    Some(json!({ "challenge": c }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_url_verification_with_a_challenge_is_a_handshake() {
        let body = br#"{"token":"t","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
        assert_eq!(
            challenge(body),
            Some(json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}))
        );
        assert_eq!(challenge(br#"{"type":"url_verification"}"#), None);
        assert_eq!(
            challenge(br#"{"type":"event_callback","challenge":"x"}"#),
            None
        );
        assert_eq!(challenge(b"token=x&challenge=y"), None);
    }
}
