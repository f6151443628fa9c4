//! Signature verification: the schemes of SPEC §3, as pure functions.
//!
//! Everything here works on the raw request (header map + body bytes) and a
//! clock value passed in, so each scheme is table-tested without a server.
//! A scheme is built once from config (`Scheme::from_config`), secrets are
//! turned into MAC keys once (`Scheme::derive_key`), and then every request
//! is checked with `Scheme::verify`. `Scheme::sign` produces the headers the
//! provider would send; `hookd send-test` and the test simulators use it.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use zeroize::Zeroizing;

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
    None,
}

/// A MAC key (or shared token) derived from one configured secret.
#[derive(Clone)]
pub struct Key(Zeroizing<Vec<u8>>);

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
    pub fn from_config(_cfg: &SignatureConfig) -> Result<Scheme, SchemeError> {
        Ok(Scheme::None)
    }
    pub fn name(&self) -> &'static str {
        "none"
    }
    pub fn derive_key(&self, secret: &[u8]) -> Result<Key, String> {
        Ok(Key(Zeroizing::new(secret.to_vec())))
    }
    pub fn verify(
        &self,
        _req: &Request<'_>,
        _keys: &[Key],
        _now: i64,
        _tolerance: Duration,
    ) -> Result<Verified, Rejection> {
        Ok(Verified {
            key_index: 0,
            variant: "none",
        })
    }
    pub fn sign(
        &self,
        _key: &Key,
        _body: &[u8],
        _now: i64,
        _id: &str,
    ) -> Vec<(HeaderName, HeaderValue)> {
        Vec::new()
    }
    pub fn requires_secret(&self) -> bool {
        false
    }
}
