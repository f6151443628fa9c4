//! Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]` over
//! `{t}.{body}`, keyed by the whole `whsec_…` string as bytes (Stripe does
//! not base64-decode it, unlike Standard Webhooks). Other schemes such as
//! `v0` are ignored.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::mac::{self, Algo, Candidates, Encoding};
use super::{Key, Rejection, Request, headers};

pub(super) fn verify(
    header: &HeaderName,
    req: &Request<'_>,
    keys: &[Key],
    now: i64,
    tolerance: Duration,
) -> Result<usize, Rejection> {
    let name = header.as_str();
    let malformed = |detail: &str| Rejection::Malformed {
        header: name.to_string(),
        detail: detail.to_string(),
    };
    let value = headers::single(req.headers, header)?;

    let mut t: Option<&[u8]> = None;
    let mut found = Candidates::default();
    for item in value.split(|b| *b == b',') {
        let item = item.trim_ascii();
        let Some(eq) = item.iter().position(|b| *b == b'=') else {
            continue; // empty or junk entries carry nothing
        };
        let (k, v) = (item[..eq].trim_ascii(), item[eq + 1..].trim_ascii());
        match k {
            b"t" if t.is_some_and(|prev| prev != v) => {
                return Err(malformed("conflicting t= timestamps"));
            }
            b"t" => t = Some(v),
            b"v1" => found.push(v, Encoding::Hex, Algo::Sha256),
            _ => {} // v0 and future schemes
        }
    }
    let t = t.ok_or_else(|| malformed("no t= timestamp"))?;
    let ts = mac::parse_timestamp(t, name)?;
    mac::check_window(ts, now, tolerance)?;
    found.note("no v1= signature");
    let sigs = found.finish(name)?;
    let parts: [&[u8]; 3] = [t, b".", req.body];
    mac::match_keys(keys, Key::as_bytes, Algo::Sha256, &parts, &sigs)
}

/// The `t=` of a verified `Stripe-Signature` header (`signed:timestamp`).
pub(super) fn signed_timestamp<'a>(header: &HeaderName, h: &'a HeaderMap) -> Option<&'a [u8]> {
    let value = headers::single(h, header).ok()?;
    value.split(|b| *b == b',').find_map(|item| {
        let eq = item.iter().position(|b| *b == b'=')?;
        (item[..eq].trim_ascii() == b"t").then(|| item[eq + 1..].trim_ascii())
    })
}

pub(super) fn sign(
    header: &HeaderName,
    key: &[u8],
    body: &[u8],
    now: i64,
) -> Vec<(HeaderName, HeaderValue)> {
    let t = now.to_string();
    let parts: [&[u8]; 3] = [t.as_bytes(), b".", body];
    let sig = Encoding::Hex.encode(&Algo::Sha256.mac(key, &parts));
    let mut out = Vec::new();
    headers::push(&mut out, header.clone(), &format!("t={t},v1={sig}"));
    out
}
