//! The headers that let the receiving service trust and dedup a forwarded
//! event: a `webhook-id` that stays the same for one event and handler (on
//! every retry and on replay), and, when `sign` is configured, a signature
//! over the exact bytes sent, made with the same code hookd verifies
//! incoming Standard Webhooks and HMAC signatures with.

use http::{HeaderName, HeaderValue};
use sha2::{Digest, Sha256};

use crate::config::http::Signer;

/// The id a receiver dedups on: derived from the handler, the source and
/// the provider's event id, so it does not change across retries, replays
/// or a rebuilt database, and two handlers pointed at one service do not
/// collide.
pub fn webhook_id(handler: &str, source: &str, event_id: &str) -> String {
    let mut h = Sha256::new();
    for part in [handler, source, event_id] {
        // Length-prefixed, so ("a", "bc") and ("ab", "c") differ.
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    format!("msg_{}", hex::encode(&h.finalize()[..16]))
}

/// The identifying and signing headers of one attempt sent at `now_secs`
/// (Unix seconds) with `body`.
pub fn headers(
    signer: Option<&Signer>,
    id: &str,
    body: &[u8],
    now_secs: i64,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = vec![(
        HeaderName::from_static("webhook-id"),
        // A hex id is always a valid header value.
        HeaderValue::from_str(id).unwrap_or(HeaderValue::from_static("")),
    )];
    if let Some(s) = signer {
        for (name, value) in s.scheme.sign(&s.key, body, now_secs, id) {
            out.retain(|(n, _)| *n != name);
            out.push((name, value));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_id_is_stable_and_tells_handlers_and_events_apart() {
        let id = webhook_id("billing", "stripe", "evt_1");
        assert_eq!(id, webhook_id("billing", "stripe", "evt_1"));
        assert!(id.starts_with("msg_") && id.len() == 4 + 32, "{id}");
        assert_ne!(id, webhook_id("audit", "stripe", "evt_1"));
        assert_ne!(id, webhook_id("billing", "stripe", "evt_2"));
        assert_ne!(
            webhook_id("ab", "c", "e"),
            webhook_id("a", "bc", "e"),
            "parts are delimited"
        );
    }

    #[test]
    fn hmac_signs_the_body_with_the_configured_header_prefix_and_encoding() {
        use crate::verify::{Scheme, SignatureConfig};
        use hmac::{Hmac, KeyInit, Mac};
        let scheme = Scheme::from_config(&SignatureConfig {
            scheme: "hmac".into(),
            header: Some("X-Billing-Signature".into()),
            prefix: Some("sha256=".into()),
            encoding: Some("hex".into()),
            ..Default::default()
        })
        .unwrap();
        let signer = Signer {
            key: scheme.derive_key(b"s3cret").unwrap(),
            scheme,
            secret: crate::secret::SecretRef::parse("env:X"),
        };
        let body = br#"{"id":1}"#;
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(body);
        let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let h = headers(Some(&signer), "msg_x", body, 1_700_000_000);
        let got: Vec<(&str, &str)> = h
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                ("webhook-id", "msg_x"),
                ("x-billing-signature", want.as_str())
            ]
        );
    }

    #[test]
    fn unsigned_requests_still_carry_the_id() {
        let h = headers(None, "msg_x", b"{}", 1);
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].0, "webhook-id");
        assert_eq!(h[0].1, "msg_x");
    }
}
