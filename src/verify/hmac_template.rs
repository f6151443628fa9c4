//! The generic `hmac` scheme: an HMAC over a configurable template of
//! literal bytes and `{body}`/`{timestamp}`/`{id}`, written hex or base64
//! after an optional prefix. One shape covers GitHub, Slack, Shopify and
//! most "HMAC of the body" providers; LinkUp and Linked API are presets of it.

use std::time::Duration;

use http::{HeaderName, HeaderValue};

use super::mac::{self, Algo, Candidates, Encoding};
use super::{Key, Rejection, Request, headers};

/// A generic HMAC scheme, validated by `Scheme::from_config`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HmacScheme {
    pub algo: Algo,
    /// Header carrying one or more comma/space separated signatures.
    pub header: HeaderName,
    /// Text each signature starts with (e.g. `sha256=`); entries without it
    /// are skipped. Never empty, never contains commas or whitespace.
    pub prefix: Option<String>,
    pub encoding: Encoding,
    /// What is MACed.
    pub signed: Template,
    /// Required when `signed` uses `{timestamp}`; the value is checked
    /// against the tolerance window.
    pub timestamp_header: Option<HeaderName>,
    /// Required when `signed` uses `{id}`.
    pub id_header: Option<HeaderName>,
}

/// One piece of a signed-content template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    Literal(Vec<u8>),
    Body,
    Timestamp,
    Id,
}

/// A parsed `signed` template such as `v0:{timestamp}:{body}`.
/// `{{` and `}}` stand for literal braces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template(pub(super) Vec<Segment>);

impl Template {
    /// Parse a template; the error says what is wrong (never echoes input
    /// beyond the offending placeholder name).
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut segs = Vec::new();
        let mut lit = Vec::new();
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            if let Some(r) = rest.strip_prefix("{{") {
                lit.push(b'{');
                rest = r;
            } else if let Some(r) = rest.strip_prefix("}}") {
                lit.push(b'}');
                rest = r;
            } else if c == '{' {
                let end = rest
                    .find('}')
                    .ok_or("unclosed `{` (write `{{` for a literal brace)")?;
                let seg = match &rest[1..end] {
                    "body" => Segment::Body,
                    "timestamp" => Segment::Timestamp,
                    "id" => Segment::Id,
                    other => {
                        return Err(format!(
                            "unknown placeholder `{{{other}}}`; valid: {{body}}, {{timestamp}}, {{id}}"
                        ));
                    }
                };
                if !lit.is_empty() {
                    segs.push(Segment::Literal(std::mem::take(&mut lit)));
                }
                segs.push(seg);
                rest = &rest[end + 1..];
            } else if c == '}' {
                return Err("unmatched `}` (write `}}` for a literal brace)".to_string());
            } else {
                let mut buf = [0u8; 4];
                lit.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                rest = &rest[c.len_utf8()..];
            }
        }
        if !lit.is_empty() {
            segs.push(Segment::Literal(lit));
        }
        let t = Template(segs);
        if !t.uses(&Segment::Body) {
            return Err("must contain {body}, or the body would not be authenticated".to_string());
        }
        Ok(t)
    }

    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    pub fn uses(&self, seg: &Segment) -> bool {
        self.0.contains(seg)
    }

    /// The byte slices to MAC, in order.
    fn parts<'a>(&'a self, body: &'a [u8], ts: &'a [u8], id: &'a [u8]) -> Vec<&'a [u8]> {
        self.0
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => l.as_slice(),
                Segment::Body => body,
                Segment::Timestamp => ts,
                Segment::Id => id,
            })
            .collect()
    }
}

impl HmacScheme {
    pub(super) fn verify(
        &self,
        req: &Request<'_>,
        keys: &[Key],
        now: i64,
        tolerance: Duration,
    ) -> Result<usize, Rejection> {
        let entries = headers::entries(req.headers, &self.header, true)?;
        let ts: &[u8] = match &self.timestamp_header {
            Some(h) => {
                let raw = headers::single(req.headers, h)?;
                let ts = mac::parse_timestamp(raw, h.as_str())?;
                mac::check_window(ts, now, tolerance)?;
                raw
            }
            None => b"",
        };
        let id: &[u8] = match &self.id_header {
            Some(h) => headers::single(req.headers, h)?,
            None => b"",
        };

        let mut found = Candidates::default();
        for entry in entries {
            match &self.prefix {
                Some(p) => match entry.strip_prefix(p.as_bytes()) {
                    Some(sig) => found.push(sig, self.encoding, self.algo),
                    None => found.note("signature does not start with the expected prefix"),
                },
                None => found.push(entry, self.encoding, self.algo),
            }
        }
        let sigs = found.finish(self.header.as_str())?;
        let parts = self.signed.parts(req.body, ts, id);
        mac::match_keys(keys, Key::as_bytes, self.algo, &parts, &sigs)
    }

    pub(super) fn sign(
        &self,
        key: &[u8],
        body: &[u8],
        now: i64,
        id: &str,
    ) -> Vec<(HeaderName, HeaderValue)> {
        let ts = now.to_string();
        let parts = self.signed.parts(body, ts.as_bytes(), id.as_bytes());
        let sig = self.encoding.encode(&self.algo.mac(key, &parts));
        let value = format!("{}{sig}", self.prefix.as_deref().unwrap_or(""));
        let mut out = Vec::new();
        headers::push(&mut out, self.header.clone(), &value);
        if let Some(h) = &self.timestamp_header {
            headers::push(&mut out, h.clone(), &ts);
        }
        if let Some(h) = &self.id_header {
            headers::push(&mut out, h.clone(), id);
        }
        out
    }
}
