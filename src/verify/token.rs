//! The `token` scheme: the shared secret itself travels in a header
//! (optionally after a prefix such as `Bearer `, matched ignoring ASCII
//! case). The token is compared in constant time;
//! only the length can leak, which the spec accepts.

use http::{HeaderName, HeaderValue};
use subtle::ConstantTimeEq;

use super::{Key, Rejection, Request, headers};

/// A token must be sendable as a header value, or it could never match.
pub(super) fn derive_key(secret: &[u8]) -> Result<Vec<u8>, String> {
    if !secret.iter().all(|b| b.is_ascii_graphic()) {
        return Err(
            "the token must be printable ASCII without spaces (it is sent verbatim in a header)"
                .to_string(),
        );
    }
    Ok(secret.to_vec())
}

pub(super) fn verify(
    header: &HeaderName,
    prefix: Option<&str>,
    req: &Request<'_>,
    keys: &[Key],
) -> Result<usize, Rejection> {
    let value = headers::single(req.headers, header)?;
    let token = match prefix {
        Some(p) => {
            strip_prefix_any_case(value, p.as_bytes()).ok_or_else(|| Rejection::Malformed {
                header: header.as_str().to_string(),
                detail: "value does not start with the expected prefix".to_string(),
            })?
        }
        None => value,
    };
    for (i, key) in keys.iter().enumerate() {
        if bool::from(key.bytes.as_slice().ct_eq(token)) {
            return Ok(i);
        }
    }
    Err(Rejection::NoMatch)
}

/// The prefix is matched ignoring ASCII case: it is usually an HTTP
/// authentication scheme (`Bearer `), which RFC 9110 §11.1 makes
/// case-insensitive. The token after it is compared exactly.
fn strip_prefix_any_case<'a>(value: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let (head, rest) = value.split_at_checked(prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then_some(rest)
}

pub(super) fn sign(
    header: &HeaderName,
    prefix: Option<&str>,
    token: &[u8],
) -> Vec<(HeaderName, HeaderValue)> {
    let mut value = prefix.unwrap_or("").as_bytes().to_vec();
    value.extend_from_slice(token);
    HeaderValue::from_bytes(&value)
        .map(|v| vec![(header.clone(), v)])
        .unwrap_or_default()
}
