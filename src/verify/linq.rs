//! Linq: one secret, several signing conventions seen over time, tried in
//! order — (a) Standard Webhooks when `webhook-signature` is present,
//! (b) `X-Webhook-Signature` = hex HMAC of `{X-Webhook-Timestamp}.{body}`,
//! (c) hex HMAC of the body (optional `sha256=` prefix), and (d) only with
//! `canonical_json = true`, hex HMAC of the body as canonical JSON.
//!
//! Note: (c) carries no timestamp, so it cannot stop replays; the store's
//! idempotency key is what protects a linq source against them.

use std::time::Duration;

use http::{HeaderName, HeaderValue};
use zeroize::Zeroizing;

use super::mac::{self, Algo, Candidates, Encoding};
use super::{Key, Rejection, Request, Verified, canonical_json, headers, standard_webhooks};

const SIGNATURE: HeaderName = HeaderName::from_static("x-webhook-signature");
const TIMESTAMP: HeaderName = HeaderName::from_static("x-webhook-timestamp");

/// Keep the secret text for (b)–(d), and the decoded key for (a) when the
/// secret is a valid `whsec_…` one.
pub(super) fn derive_key(secret: &[u8]) -> Key {
    let whsec = if secret.starts_with(b"whsec_") {
        standard_webhooks::decode_secret(secret)
            .ok()
            .map(Zeroizing::new)
    } else {
        None
    };
    Key {
        bytes: Zeroizing::new(secret.to_vec()),
        whsec,
    }
}

fn whsec_or_text(k: &Key) -> &[u8] {
    match &k.whsec {
        Some(w) => w.as_slice(),
        None => k.bytes.as_slice(),
    }
}

/// Try the variants in order. On failure, report why the first variant the
/// request appeared to use was refused.
pub(super) fn verify(
    canonical: bool,
    req: &Request<'_>,
    keys: &[Key],
    now: i64,
    tolerance: Duration,
) -> Result<Verified, Rejection> {
    let ok = |key_index, variant| Ok(Verified { key_index, variant });
    let mut first: Option<Rejection> = None;

    if standard_webhooks::present(req) {
        match standard_webhooks::verify(req, keys, whsec_or_text, now, tolerance) {
            Ok(i) => return ok(i, "standard-webhooks"),
            Err(e) => first = Some(e),
        }
    }
    if !headers::present(req.headers, &SIGNATURE) {
        return Err(first.unwrap_or_else(|| {
            Rejection::MissingHeader("webhook-signature or x-webhook-signature".to_string())
        }));
    }
    let sigs = match legacy_signatures(req) {
        Ok(sigs) => sigs,
        Err(e) => return Err(first.unwrap_or(e)),
    };

    if headers::present(req.headers, &TIMESTAMP) {
        match timestamp_body(req, keys, &sigs, now, tolerance) {
            Ok(i) => return ok(i, "timestamp-body"),
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    match mac::match_keys(keys, Key::as_bytes, Algo::Sha256, &[req.body], &sigs) {
        Ok(i) => return ok(i, "body"),
        Err(e) => {
            first.get_or_insert(e);
        }
    }
    if canonical
        && let Some(canon) = canonical_json::canonicalize(req.body)
        && let Ok(i) = mac::match_keys(keys, Key::as_bytes, Algo::Sha256, &[&canon], &sigs)
    {
        return ok(i, "canonical-json");
    }
    Err(first.unwrap_or(Rejection::NoMatch))
}

/// The hex signatures in `X-Webhook-Signature`, `sha256=` prefix optional.
fn legacy_signatures(req: &Request<'_>) -> Result<Vec<Vec<u8>>, Rejection> {
    let mut found = Candidates::default();
    for entry in headers::entries(req.headers, &SIGNATURE, true)? {
        let sig = entry.strip_prefix(b"sha256=").unwrap_or(entry);
        found.push(sig, Encoding::Hex, Algo::Sha256);
    }
    found.finish(SIGNATURE.as_str())
}

/// Variant (b): the timestamp window, then the MAC of `{ts}.{body}`.
fn timestamp_body(
    req: &Request<'_>,
    keys: &[Key],
    sigs: &[Vec<u8>],
    now: i64,
    tolerance: Duration,
) -> Result<usize, Rejection> {
    let raw = headers::single(req.headers, &TIMESTAMP)?;
    let ts = mac::parse_timestamp(raw, TIMESTAMP.as_str())?;
    mac::check_window(ts, now, tolerance)?;
    let parts: [&[u8]; 3] = [raw, b".", req.body];
    mac::match_keys(keys, Key::as_bytes, Algo::Sha256, &parts, sigs)
}

/// What Linq sends today: Standard Webhooks headers when the secret is a
/// `whsec_` one, plus the legacy timestamp + `{ts}.{body}` signature.
pub(super) fn sign(key: &Key, body: &[u8], now: i64, id: &str) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = match &key.whsec {
        Some(w) => standard_webhooks::sign(w, body, now, id),
        None => Vec::new(),
    };
    let ts = now.to_string();
    let parts: [&[u8]; 3] = [ts.as_bytes(), b".", body];
    let sig = Encoding::Hex.encode(&Algo::Sha256.mac(&key.bytes, &parts));
    headers::push(&mut out, TIMESTAMP, &ts);
    headers::push(&mut out, SIGNATURE, &sig);
    out
}
