//! Reading headers defensively: exactly-one-value lookups, and splitting a
//! header that carries several signatures. Header values are handled as
//! bytes; nothing here trusts them to be UTF-8.

use http::{HeaderMap, HeaderName, HeaderValue};

use super::Rejection;

/// The single value of a header: `MissingHeader` when absent, `Malformed`
/// when repeated (an ambiguous timestamp or id must not be guessed at).
pub(super) fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<&'a [u8], Rejection> {
    let mut values = headers.get_all(name).iter();
    let first = values
        .next()
        .ok_or_else(|| Rejection::MissingHeader(name.as_str().to_string()))?;
    if values.next().is_some() {
        return Err(Rejection::Malformed {
            header: name.as_str().to_string(),
            detail: "header is repeated".to_string(),
        });
    }
    Ok(first.as_bytes())
}

/// All entries of a signature header (every occurrence of it), split on
/// commas and ASCII whitespace, with empty entries dropped.
pub(super) fn entries<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
    split_on_comma: bool,
) -> Result<Vec<&'a [u8]>, Rejection> {
    let values = headers.get_all(name);
    if values.iter().next().is_none() {
        return Err(Rejection::MissingHeader(name.as_str().to_string()));
    }
    Ok(values
        .iter()
        .flat_map(|v| {
            v.as_bytes()
                .split(move |b| b.is_ascii_whitespace() || (split_on_comma && *b == b','))
        })
        .filter(|e| !e.is_empty())
        .collect())
}

/// Whether any value of the header is present.
pub(super) fn present(headers: &HeaderMap, name: &HeaderName) -> bool {
    headers.contains_key(name)
}

/// Append a header to a signed request, dropping a value that cannot be a
/// header (only caller-chosen text such as an `id` with control characters
/// can hit this; MACs, timestamps and encodings are always valid).
pub(super) fn push(out: &mut Vec<(HeaderName, HeaderValue)>, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        out.push((name, v));
    }
}
