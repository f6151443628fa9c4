//! The signatures of http handlers match the official Standard Webhooks
//! library byte for byte. The expected values in
//! `tests/vectors/http-signing-vectors.json` were made by the Python
//! `standardwebhooks` package (`tests/vectors/make_http_signing_vectors.py`),
//! so this test needs no Python.

use base64::Engine as _;
use hookd::config::http::Signer;
use hookd::dispatch::http::sign;
use hookd::secret::SecretRef;
use hookd::verify::Scheme;
use serde_json::Value;

#[test]
fn standard_webhooks_signatures_match_the_official_library() {
    let text = include_str!("vectors/http-signing-vectors.json");
    let file: Value = serde_json::from_str(text).unwrap();
    let vectors = file["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 8, "the vector file lost its vectors");
    for v in vectors {
        let secret = v["secret"].as_str().unwrap();
        let signer = Signer {
            scheme: Scheme::StandardWebhooks,
            key: Scheme::StandardWebhooks
                .derive_key(secret.as_bytes())
                .unwrap(),
            secret: SecretRef::parse("env:UNUSED"),
        };
        let body = base64::engine::general_purpose::STANDARD
            .decode(v["payload_base64"].as_str().unwrap())
            .unwrap();
        let id = v["msg_id"].as_str().unwrap();
        let ts = v["timestamp"].as_i64().unwrap();
        let headers = sign::headers(Some(&signer), id, &body, ts);
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.to_str().unwrap().to_string())
                .unwrap_or_else(|| panic!("no {name} header"))
        };
        assert_eq!(get("webhook-id"), id);
        assert_eq!(get("webhook-timestamp"), ts.to_string());
        assert_eq!(
            get("webhook-signature"),
            v["signature"].as_str().unwrap(),
            "{v}"
        );
        assert_eq!(headers.len(), 3, "one of each header: {headers:?}");
    }
}
