//! Signature verification: the schemes of SPEC §3, as pure functions.
//!
//! Everything here works on the raw request (header map + body bytes) and a
//! clock value passed in, so each scheme is table-tested without a server.
//! A scheme is built once from config (`Scheme::from_config`), secrets are
//! turned into MAC keys once (`Scheme::derive_key`), and then every request
//! is checked with `Scheme::verify`. `Scheme::sign` produces the headers the
//! provider would send; `hookd send-test` and the test simulators use it.
//!
//! This file holds the public types and dispatches to one module per scheme.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use zeroize::Zeroizing;

mod canonical_json;
mod config;
mod describe;
mod headers;
mod hmac_template;
mod linq;
mod mac;
mod presets;
mod signed;
mod standard_webhooks;
mod stripe;
mod token;

#[cfg(test)]
mod tests;

pub use canonical_json::of_value as canonical_json;
pub use hmac_template::{HmacScheme, Segment, Template};
pub use mac::{Algo, Encoding};
pub use signed::Signed;

/// The `signature = { … }` table of a `[[source]]`, as written in the config.
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SignatureConfig {
    pub scheme: String,
    pub header: Option<String>,
    pub prefix: Option<String>,
    pub encoding: Option<String>,
    pub signed: Option<String>,
    pub algo: Option<String>,
    pub timestamp_header: Option<String>,
    pub id_header: Option<String>,
    pub canonical_json: Option<bool>,
}

/// A verification scheme, ready to use.
#[derive(Clone, Debug)]
pub enum Scheme {
    /// Standard Webhooks / Svix: `webhook-id`, `webhook-timestamp`,
    /// `webhook-signature: v1,<base64> …` over `{id}.{timestamp}.{body}`.
    StandardWebhooks,
    /// Stripe: `Stripe-Signature: t=…,v1=<hex>…` over `{t}.{body}`.
    Stripe { header: HeaderName },
    /// Generic HMAC over a configurable template (GitHub, Slack, Shopify, …).
    Hmac(HmacScheme),
    /// LinkUp: `X-Linkup-Signature: v1=<hex>` over `{timestamp}.{body}`.
    Linkup,
    /// Linked API: `linked-api-signature: <hex>` over `{timestamp}.{body}`.
    LinkedApi,
    /// Linq: Standard Webhooks, or the legacy `X-Webhook-Signature` variants.
    Linq { canonical_json: bool },
    /// A shared token carried verbatim (after an optional prefix) in a header.
    Token {
        header: HeaderName,
        prefix: Option<String>,
    },
    /// No verification at all (the config loader demands `insecure = true`).
    None,
}

/// A MAC key (or shared token) derived from one configured secret.
///
/// `bytes` is the key the scheme MACs with (or the token). `whsec` is only
/// set for linq when the secret is a `whsec_…` Standard Webhooks secret: it
/// holds the decoded key for the Standard Webhooks variant, while `bytes`
/// keeps the secret text for the legacy variants.
#[derive(Clone)]
pub struct Key {
    bytes: Zeroizing<Vec<u8>>,
    whsec: Option<Zeroizing<Vec<u8>>>,
}

impl Key {
    fn new(bytes: Vec<u8>) -> Key {
        Key {
            bytes: Zeroizing::new(bytes),
            whsec: None,
        }
    }

    /// The MAC key (or token) bytes.
    fn as_bytes(&self) -> &[u8] {
        self.bytes.as_slice()
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// The parts of an HTTP request a scheme looks at.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// What a successful verification found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// Which of the keys matched (0 = first configured secret).
    pub key_index: usize,
    /// Scheme name, and for multi-variant schemes (linq) which variant matched.
    pub variant: &'static str,
}

/// Why a request was refused. Display never reveals an expected value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("missing signature header {0}")]
    MissingHeader(String),
    #[error("malformed {header} header: {detail}")]
    Malformed { header: String, detail: String },
    #[error("timestamp {skew_secs}s outside the tolerance window")]
    OutsideTolerance { skew_secs: i64 },
    #[error("no signature matched any configured secret")]
    NoMatch,
    #[error("no secret is configured for this source")]
    NoKeys,
}

impl Rejection {
    /// Short stable code, used as a metrics label and in `hookd rejected`.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::MissingHeader(_) => "missing_signature",
            Rejection::Malformed { .. } => "malformed_signature",
            Rejection::OutsideTolerance { .. } => "timestamp_out_of_tolerance",
            Rejection::NoMatch => "bad_signature",
            Rejection::NoKeys => "no_secret",
        }
    }
}

/// A config error inside the `signature` table: which key, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemeError {
    pub key: &'static str,
    pub message: String,
}

impl Scheme {
    /// Build and validate a scheme from its `signature` table.
    pub fn from_config(cfg: &SignatureConfig) -> Result<Scheme, SchemeError> {
        config::from_config(cfg)
    }

    /// The scheme name as written in the config.
    pub fn name(&self) -> &'static str {
        match self {
            Scheme::StandardWebhooks => "standard-webhooks",
            Scheme::Stripe { .. } => "stripe",
            Scheme::Hmac(_) => "hmac",
            Scheme::Linkup => "linkup",
            Scheme::LinkedApi => "linkedapi",
            Scheme::Linq { .. } => "linq",
            Scheme::Token { .. } => "token",
            Scheme::None => "none",
        }
    }

    /// Turn one configured secret into a key. The error never contains the
    /// secret.
    pub fn derive_key(&self, secret: &[u8]) -> Result<Key, String> {
        if !self.requires_secret() {
            return Err("scheme `none` does not use a secret; remove it".to_string());
        }
        if secret.is_empty() {
            return Err(format!("the secret for scheme `{}` is empty", self.name()));
        }
        let whsec_family = matches!(self, Scheme::Stripe { .. } | Scheme::Linq { .. });
        if whsec_family && secret == b"whsec_" {
            return Err(format!(
                "the secret for scheme `{}` is only the `whsec_` prefix; paste the whole secret",
                self.name()
            ));
        }
        match self {
            Scheme::StandardWebhooks => standard_webhooks::decode_secret(secret).map(Key::new),
            Scheme::Linq { .. } => Ok(linq::derive_key(secret)),
            Scheme::Token { .. } => token::derive_key(secret).map(Key::new),
            _ => Ok(Key::new(secret.to_vec())),
        }
    }

    /// Check one request against every key; report which key matched.
    pub fn verify(
        &self,
        req: &Request<'_>,
        keys: &[Key],
        now: i64,
        tolerance: Duration,
    ) -> Result<Verified, Rejection> {
        if !self.requires_secret() {
            return Ok(Verified {
                key_index: 0,
                variant: "none",
            });
        }
        if keys.is_empty() {
            return Err(Rejection::NoKeys);
        }
        let key_index = match self {
            Scheme::StandardWebhooks => {
                standard_webhooks::verify(req, keys, Key::as_bytes, now, tolerance)?
            }
            Scheme::Stripe { header } => stripe::verify(header, req, keys, now, tolerance)?,
            Scheme::Hmac(h) => h.verify(req, keys, now, tolerance)?,
            Scheme::Linkup => presets::linkup().verify(req, keys, now, tolerance)?,
            Scheme::LinkedApi => presets::linkedapi().verify(req, keys, now, tolerance)?,
            Scheme::Linq { canonical_json } => {
                return linq::verify(*canonical_json, req, keys, now, tolerance);
            }
            Scheme::Token { header, prefix } => {
                token::verify(header, prefix.as_deref(), req, keys)?
            }
            Scheme::None => 0,
        };
        Ok(Verified {
            key_index,
            variant: self.name(),
        })
    }

    /// The headers the provider would send for `body` at time `now`.
    /// `id` is used by schemes that carry a message id.
    pub fn sign(
        &self,
        key: &Key,
        body: &[u8],
        now: i64,
        id: &str,
    ) -> Vec<(HeaderName, HeaderValue)> {
        match self {
            Scheme::StandardWebhooks => standard_webhooks::sign(&key.bytes, body, now, id),
            Scheme::Stripe { header } => stripe::sign(header, &key.bytes, body, now),
            Scheme::Hmac(h) => h.sign(&key.bytes, body, now, id),
            Scheme::Linkup => presets::linkup().sign(&key.bytes, body, now, id),
            Scheme::LinkedApi => presets::linkedapi().sign(&key.bytes, body, now, id),
            Scheme::Linq { .. } => linq::sign(key, body, now, id),
            Scheme::Token { header, prefix } => token::sign(header, prefix.as_deref(), &key.bytes),
            Scheme::None => Vec::new(),
        }
    }

    /// Whether the scheme needs at least one secret (false only for `none`).
    pub fn requires_secret(&self) -> bool {
        !matches!(self, Scheme::None)
    }
}
