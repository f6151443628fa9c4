//! Canonical JSON for linq's opt-in `canonical_json` variant: the body
//! parsed and re-serialised compactly with object keys sorted recursively.
//! This is the only place hookd MACs anything but the raw body bytes, and it
//! exists because some Linq senders signed the re-serialised object.
//!
//! Keys sort by Unicode code point (as Python's `sort_keys`); numbers print
//! as serde_json prints them (`1.0` stays `1.0`), strings are escaped as
//! serde_json does (non-ASCII kept as UTF-8).

use serde_json::Value;

/// `None` when the body is not JSON (the variant then simply does not apply).
pub(super) fn canonicalize(body: &[u8]) -> Option<Vec<u8>> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let mut out = Vec::with_capacity(body.len());
    write(&value, &mut out).ok()?;
    Some(out)
}

/// The canonical bytes of an already parsed value (for content ids).
pub fn of_value(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = write(value, &mut out);
    out
}

fn write(value: &Value, out: &mut Vec<u8>) -> serde_json::Result<()> {
    match value {
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k)?;
                out.push(b':');
                write(v, out)?;
            }
            out.push(b'}');
        }
        scalar => serde_json::to_writer(&mut *out, scalar)?,
    }
    Ok(())
}
