//! Standard Webhooks (and Svix, its origin): `webhook-id`,
//! `webhook-timestamp` and `webhook-signature: v1,<base64> …` over
//! `{id}.{timestamp}.{body}`, keyed by the base64-decoded `whsec_` secret.
//! Linq's current scheme is this one too, so `linq` calls in here.

use std::time::Duration;

use http::{HeaderName, HeaderValue};

use super::mac::{self, Algo, Candidates, Encoding};
use super::{Key, Rejection, Request, Signed, headers};

/// One header family: the spec's names, or Svix's branded aliases.
pub(super) struct Names {
    pub(super) id: HeaderName,
    pub(super) timestamp: HeaderName,
    signature: HeaderName,
}

fn standard() -> Names {
    Names {
        id: HeaderName::from_static("webhook-id"),
        timestamp: HeaderName::from_static("webhook-timestamp"),
        signature: HeaderName::from_static("webhook-signature"),
    }
}

fn svix() -> Names {
    Names {
        id: HeaderName::from_static("svix-id"),
        timestamp: HeaderName::from_static("svix-timestamp"),
        signature: HeaderName::from_static("svix-signature"),
    }
}

/// The header family a request uses: Svix's only when it carries a Svix
/// signature and no standard one. `verify` and `signed_value` share this,
/// so the id extraction reads is the id the MAC covered.
pub(super) fn names_for(h: &http::HeaderMap) -> Names {
    if headers::present(h, &svix().signature) && !headers::present(h, &standard().signature) {
        svix()
    } else {
        standard()
    }
}

/// Which signed value a header of either family carries.
pub(super) fn field_of(name: &HeaderName) -> Option<Signed> {
    [standard(), svix()].into_iter().find_map(|n| {
        if *name == n.id {
            Some(Signed::Id)
        } else if *name == n.timestamp {
            Some(Signed::Timestamp)
        } else {
            None
        }
    })
}

/// Whether the request carries a Standard Webhooks (or Svix) signature.
pub(super) fn present(req: &Request<'_>) -> bool {
    headers::present(req.headers, &standard().signature)
        || headers::present(req.headers, &svix().signature)
}

/// `whsec_<base64>` (prefix optional) → the raw key bytes.
pub(super) fn decode_secret(secret: &[u8]) -> Result<Vec<u8>, String> {
    let b64 = secret.strip_prefix(b"whsec_").unwrap_or(secret);
    if b64.is_empty() {
        return Err("the standard-webhooks secret is empty after the `whsec_` prefix".to_string());
    }
    match mac::base64_decode(b64) {
        Some(key) if !key.is_empty() => Ok(key),
        _ => Err(
            "the standard-webhooks secret must be `whsec_` followed by base64 (as the provider shows it)"
                .to_string(),
        ),
    }
}

/// Verify; `key_bytes` picks the MAC key out of each `Key` (linq keeps two).
pub(super) fn verify(
    req: &Request<'_>,
    keys: &[Key],
    key_bytes: fn(&Key) -> &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<usize, Rejection> {
    let names = names_for(req.headers);
    let entries = headers::entries(req.headers, &names.signature, false)?;
    let id = headers::single(req.headers, &names.id)?;
    let ts_raw = headers::single(req.headers, &names.timestamp)?;
    let ts = mac::parse_timestamp(ts_raw, names.timestamp.as_str())?;
    mac::check_window(ts, now, tolerance)?;

    let mut found = Candidates::default();
    for entry in entries {
        match entry.iter().position(|b| *b == b',') {
            Some(comma) if &entry[..comma] == b"v1" => {
                found.push(&entry[comma + 1..], Encoding::Base64, Algo::Sha256);
            }
            // Other versions (v1a = ed25519, future ones) are skipped.
            Some(_) => found.note("no v1 signature (other versions are not supported)"),
            None => found.note("entry is not `<version>,<signature>`"),
        }
    }
    let sigs = found.finish(names.signature.as_str())?;
    let parts: [&[u8]; 5] = [id, b".", ts_raw, b".", req.body];
    mac::match_keys(keys, key_bytes, Algo::Sha256, &parts, &sigs)
}

/// The three headers a Standard Webhooks sender sets.
pub(super) fn sign(key: &[u8], body: &[u8], now: i64, id: &str) -> Vec<(HeaderName, HeaderValue)> {
    let ts = now.to_string();
    let parts: [&[u8]; 5] = [id.as_bytes(), b".", ts.as_bytes(), b".", body];
    let sig = format!(
        "v1,{}",
        Encoding::Base64.encode(&Algo::Sha256.mac(key, &parts))
    );
    let names = standard();
    let mut out = Vec::new();
    headers::push(&mut out, names.id, id);
    headers::push(&mut out, names.timestamp, &ts);
    headers::push(&mut out, names.signature, &sig);
    out
}
