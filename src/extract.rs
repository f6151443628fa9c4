//! Normalization: pulling the event id, type and time out of a request.
//!
//! Each of `id`, `type`, `time` is an ordered list of extractors; the first
//! that yields a value wins. Providers give presets; generic sources write
//! their own lists. A type alias table maps provider spellings onto the
//! names handlers are configured with (LinkUp emits `message` for what its
//! subscription filter calls `message_received`).

use std::collections::BTreeMap;

use http::HeaderMap;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::timefmt;
use crate::verify::{Scheme, Signed};

/// One way to find a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Extractor {
    /// RFC 6901 pointer into the JSON body.
    Json(String),
    Header(http::HeaderName),
    Const(String),
    /// SHA-256 of the raw body (ids only); marks the id as synthetic.
    Hash,
    /// SHA-256 of the canonical JSON of the values at these pointers (ids
    /// only; synthetic). Unlike `hash` it ignores formatting and other
    /// fields, so the same event read from a stream and from a poll endpoint
    /// gets the same id.
    HashOf(Vec<String>),
    /// The receive time (time only).
    Now,
    /// A value the source's signature covers (`signed:id`,
    /// `signed:timestamp`), read from the verified request.
    Signed(Signed),
}

impl Extractor {
    /// Parses `json:/a/b`, `header:Name`, `const:x`, `hash`, `hash:/a,/b`,
    /// `signed:id`, `signed:timestamp`, `now`.
    pub fn parse(s: &str) -> Result<Extractor, String> {
        if let Some(p) = s.strip_prefix("json:") {
            if !p.is_empty() && !p.starts_with('/') {
                return Err(format!(
                    "{s:?}: a JSON pointer starts with '/' (RFC 6901), e.g. \"json:/data/id\""
                ));
            }
            return Ok(Extractor::Json(p.to_string()));
        }
        if let Some(h) = s.strip_prefix("header:") {
            return http::HeaderName::from_bytes(h.trim().as_bytes())
                .map(Extractor::Header)
                .map_err(|_| format!("{s:?}: {h:?} is not a valid header name"));
        }
        if let Some(c) = s.strip_prefix("const:") {
            return Ok(Extractor::Const(c.to_string()));
        }
        if let Some(list) = s.strip_prefix("hash:") {
            let pointers: Vec<String> = list.split(',').map(|p| p.trim().to_string()).collect();
            if let Some(bad) = pointers.iter().find(|p| !p.starts_with('/')) {
                return Err(format!(
                    "{s:?}: {bad:?} is not a JSON pointer; write hash:/a,/b (RFC 6901 pointers, comma-separated)"
                ));
            }
            return Ok(Extractor::HashOf(pointers));
        }
        if let Some(f) = s.strip_prefix("signed:") {
            return Signed::parse(f)
                .map(Extractor::Signed)
                .ok_or_else(|| format!("{s:?}: a signature covers signed:id or signed:timestamp"));
        }
        match s {
            "hash" => Ok(Extractor::Hash),
            "now" => Ok(Extractor::Now),
            _ => Err(format!(
                "{s:?} is not an extractor; use json:/pointer, header:Name, const:value, signed:id, signed:timestamp, hash or now"
            )),
        }
    }
}

impl std::fmt::Display for Extractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Extractor::Json(p) => write!(f, "json:{p}"),
            Extractor::Header(h) => write!(f, "header:{h}"),
            Extractor::Const(c) => write!(f, "const:{c}"),
            Extractor::Hash => f.write_str("hash"),
            Extractor::HashOf(ps) => write!(f, "hash:{}", ps.join(",")),
            Extractor::Now => f.write_str("now"),
            Extractor::Signed(field) => write!(f, "signed:{}", field.name()),
        }
    }
}

/// The extractor lists of one source.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtractSpec {
    pub id: Vec<Extractor>,
    pub ty: Vec<Extractor>,
    pub time: Vec<Extractor>,
    /// Joined to the type after a `.` when it yields a value: GitHub's
    /// `X-GitHub-Event: pull_request` with `"action": "opened"` in the body
    /// is `pull_request.opened`.
    pub type_suffix: Option<Extractor>,
}

/// What normalization found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extracted {
    pub event_id: String,
    /// True when the id was made up (hash of the body), not given by the provider.
    pub id_synthetic: bool,
    /// The normalized (aliased) type handlers match on.
    pub event_type: String,
    /// The type exactly as the provider sent it.
    pub type_raw: String,
    pub occurred_at: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    #[error("no event id found (tried {0})")]
    NoId(String),
    #[error("no event type found (tried {0})")]
    NoType(String),
}

impl ExtractError {
    pub fn code(&self) -> &'static str {
        match self {
            ExtractError::NoId(_) => "no_event_id",
            ExtractError::NoType(_) => "no_event_type",
        }
    }
}

/// The request as extraction sees it. `json` is the parsed body, if it parsed.
pub struct Input<'a> {
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub json: Option<&'a Value>,
    pub received_at: i64,
    /// The scheme that verified the request, for `signed:` extractors.
    pub scheme: Option<&'a Scheme>,
}

impl ExtractSpec {
    pub fn extract(
        &self,
        input: &Input<'_>,
        aliases: &BTreeMap<String, String>,
    ) -> Result<Extracted, ExtractError> {
        let (event_id, id_synthetic) = self
            .id
            .iter()
            .find_map(|e| match e {
                Extractor::Hash => Some((
                    format!("sha256:{}", hex::encode(Sha256::digest(input.body))),
                    true,
                )),
                Extractor::HashOf(ps) => hash_of(ps, input).map(|v| (v, true)),
                other => text_value(other, input).map(|v| (v, false)),
            })
            .ok_or_else(|| ExtractError::NoId(list(&self.id)))?;
        let type_raw = self
            .ty
            .iter()
            .find_map(|e| text_value(e, input))
            .ok_or_else(|| ExtractError::NoType(list(&self.ty)))?;
        let full = match self.type_suffix.as_ref().and_then(|e| text_value(e, input)) {
            Some(suffix) => format!("{type_raw}.{suffix}"),
            None => type_raw.clone(),
        };
        let event_type = aliases.get(&full).cloned().unwrap_or(full);
        let occurred_at = self.time.iter().find_map(|e| time_value(e, input));
        Ok(Extracted {
            event_id,
            id_synthetic,
            event_type,
            type_raw,
            occurred_at,
        })
    }
}

fn list(es: &[Extractor]) -> String {
    if es.is_empty() {
        return "no extractors configured".to_string();
    }
    es.iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The value at a JSON pointer (RFC 6901), as `Value::pointer` finds it
/// but without its two string copies per token, which every extraction
/// paid; a token is unescaped only when it holds a `~`.
pub fn pointer<'a>(v: &'a Value, p: &str) -> Option<&'a Value> {
    if p.is_empty() {
        return Some(v);
    }
    p.strip_prefix('/')?.split('/').try_fold(v, |v, token| {
        let token = match token.contains('~') {
            true => std::borrow::Cow::Owned(token.replace("~1", "/").replace("~0", "~")),
            false => std::borrow::Cow::Borrowed(token),
        };
        match v {
            Value::Object(m) => m.get(token.as_ref()),
            Value::Array(a) => array_index(&token).and_then(|i| a.get(i)),
            _ => None,
        }
    })
}

/// An array index token: digits, no sign, no leading zero (as serde_json).
fn array_index(token: &str) -> Option<usize> {
    if token.starts_with('+') || (token.starts_with('0') && token.len() > 1) {
        return None;
    }
    token.parse().ok()
}

/// Longest id or type hookd accepts; longer values are not ids.
const MAX_TEXT: usize = 512;

fn text_value(e: &Extractor, input: &Input<'_>) -> Option<String> {
    let v = match e {
        Extractor::Json(p) => match pointer(input.json?, p)? {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return None,
        },
        Extractor::Header(h) => input.headers.get(h)?.to_str().ok()?.trim().to_string(),
        Extractor::Const(c) => c.clone(),
        Extractor::Signed(f) => {
            let v = input.scheme?.signed_value(*f, input.headers)?;
            std::str::from_utf8(v).ok()?.trim().to_string()
        }
        Extractor::Hash | Extractor::HashOf(_) | Extractor::Now => return None,
    };
    (!v.is_empty() && v.len() <= MAX_TEXT && !v.chars().any(char::is_control)).then_some(v)
}

/// `sha256:` of the canonical JSON array of the values at `pointers`
/// (missing ones as null); None when the body is not JSON or none is present.
fn hash_of(pointers: &[String], input: &Input<'_>) -> Option<String> {
    let json = input.json?;
    let values: Vec<Value> = pointers
        .iter()
        .map(|p| pointer(json, p).cloned().unwrap_or(Value::Null))
        .collect();
    if values.iter().all(Value::is_null) {
        return None;
    }
    let canonical = crate::verify::canonical_json(&Value::Array(values));
    Some(format!("sha256:{}", hex::encode(Sha256::digest(canonical))))
}

fn time_value(e: &Extractor, input: &Input<'_>) -> Option<i64> {
    match e {
        Extractor::Now => Some(input.received_at),
        Extractor::Json(p) => match pointer(input.json?, p)? {
            Value::String(s) => timefmt::parse_lenient(s),
            Value::Number(n) => timefmt::parse_unix(n.as_i64()?),
            _ => None,
        },
        other => timefmt::parse_lenient(&text_value(other, input)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_finds_what_serde_json_finds() {
        let v = serde_json::json!({
            "a": {"b": [10, {"c~d": 1, "e/f": 2, "": 3}], "0": "zero"},
            "x": null, "01": "not an index", "": {"": "empty keys"}
        });
        let pointers = [
            "",
            "/",
            "/a",
            "/a/b",
            "/a/b/0",
            "/a/b/1",
            "/a/b/01",
            "/a/b/+1",
            "/a/b/2",
            "/a/b/-1",
            "/a/b/1/c~0d",
            "/a/b/1/e~1f",
            "/a/b/1/",
            "/a/0",
            "/x",
            "/x/y",
            "/01",
            "//",
            "a",
            "/a/b/1/c~d",
            "/a/b/18446744073709551616",
            "/~2",
        ];
        for p in pointers {
            assert_eq!(pointer(&v, p), v.pointer(p), "{p:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn pointer_agrees_with_serde_json(
            keys in proptest::collection::vec("[a-b0-2~/+]{0,3}", 0..4),
            idx in proptest::collection::vec(0usize..3, 0..4),
        ) {
            // A small nested value whose keys are drawn from the same alphabet.
            let mut v = serde_json::json!([{"a": [1, {"b": 2}], "0": {"~": [3]}, "/": "s"}, "t"]);
            for (k, i) in keys.iter().zip(&idx) {
                v = serde_json::json!({ k.clone(): [v.clone(), i] , "1": v });
            }
            let p: String = keys.iter().map(|k| format!("/{k}")).collect();
            proptest::prop_assert_eq!(pointer(&v, &p), v.pointer(&p));
            let escaped: String = keys.iter().map(|k| format!("/{}", k.replace('~', "~0").replace('/', "~1"))).collect();
            proptest::prop_assert_eq!(pointer(&v, &escaped), v.pointer(&escaped));
        }
    }

    fn spec(id: &[&str], ty: &[&str], time: &[&str]) -> ExtractSpec {
        let p = |v: &[&str]| v.iter().map(|s| Extractor::parse(s).unwrap()).collect();
        ExtractSpec {
            id: p(id),
            ty: p(ty),
            time: p(time),
            type_suffix: None,
        }
    }

    fn run(s: &ExtractSpec, headers: &HeaderMap, body: &str) -> Result<Extracted, ExtractError> {
        let json: Option<Value> = serde_json::from_str(body).ok();
        let aliases = BTreeMap::from([("message".to_string(), "message_received".to_string())]);
        s.extract(
            &Input {
                headers,
                body: body.as_bytes(),
                json: json.as_ref(),
                received_at: 42,
                scheme: None,
            },
            &aliases,
        )
    }

    #[test]
    fn first_extractor_that_yields_wins() {
        let s = spec(
            &["json:/missing", "json:/event_id", "hash"],
            &["json:/event/type"],
            &["json:/ts", "now"],
        );
        let e = run(
            &s,
            &HeaderMap::new(),
            r#"{"event_id":"e1","event":{"type":"message"},"ts":"2025-05-21T21:30:00Z"}"#,
        )
        .unwrap();
        assert_eq!(e.event_id, "e1");
        assert!(!e.id_synthetic);
        assert_eq!(e.event_type, "message_received");
        assert_eq!(e.type_raw, "message");
        assert_eq!(e.occurred_at, Some(1_747_863_000_000_000));
    }

    #[test]
    fn ids_and_types_with_nul_or_other_control_characters_are_refused() {
        // PostgreSQL text cannot hold NUL: refused here (422), both stores
        // answer alike instead of one failing the commit.
        let s = spec(&["json:/id"], &["json:/type"], &[]);
        let h = HeaderMap::new();
        for bad in [r#""a\u0000b""#, r#""a\nb""#, r#""\u001b[31m""#] {
            let id = run(&s, &h, &format!(r#"{{"id":{bad},"type":"t"}}"#));
            assert!(matches!(id, Err(ExtractError::NoId(_))), "{bad}: {id:?}");
            let ty = run(&s, &h, &format!(r#"{{"id":"i","type":{bad}}}"#));
            assert!(matches!(ty, Err(ExtractError::NoType(_))), "{bad}: {ty:?}");
        }
        assert!(run(&s, &h, r#"{"id":"a b","type":"t"}"#).is_ok());
    }

    #[test]
    fn hash_of_pointers_ignores_formatting_and_other_fields() {
        let s = spec(
            &["hash:/account_id,/event,/timestamp"],
            &["json:/event/type"],
            &[],
        );
        let h = HeaderMap::new();
        let stream = run(
            &s,
            &h,
            r#"{"account_id":"a1","event":{"type":"message","message_text":"hi"},"timestamp":"t"}"#,
        )
        .unwrap();
        let polled = run(
            &s,
            &h,
            r#"{ "timestamp": "t", "account_name": "Ada", "event": {"message_text": "hi", "type": "message"}, "account_id": "a1" }"#,
        )
        .unwrap();
        assert!(stream.id_synthetic);
        assert_eq!(stream.event_id, polled.event_id);
        let other = run(
            &s,
            &h,
            r#"{"account_id":"a1","event":{"type":"message","message_text":"ho"},"timestamp":"t"}"#,
        )
        .unwrap();
        assert_ne!(stream.event_id, other.event_id);
        assert!(matches!(
            run(&s, &h, r#"{"event":null,"x":1}"#),
            Err(ExtractError::NoId(_))
        ));
        assert_eq!(
            Extractor::parse("hash:/a, /b").unwrap().to_string(),
            "hash:/a,/b"
        );
        assert!(Extractor::parse("hash:a").is_err());
    }

    #[test]
    fn hash_and_headers() {
        let s = spec(&["json:/id", "hash"], &["header:X-GitHub-Event"], &["now"]);
        let mut h = HeaderMap::new();
        h.insert("x-github-event", "push".parse().unwrap());
        let e = run(&s, &h, "not json").unwrap();
        assert!(e.id_synthetic);
        assert_eq!(
            e.event_id,
            format!("sha256:{}", hex::encode(Sha256::digest(b"not json")))
        );
        assert_eq!(e.event_type, "push");
        assert_eq!(e.occurred_at, Some(42));
    }

    #[test]
    fn numbers_consts_and_failures() {
        let s = spec(&["json:/id"], &["const:ping"], &["json:/created"]);
        let e = run(&s, &HeaderMap::new(), r#"{"id":123,"created":1700000000}"#).unwrap();
        assert_eq!(
            (e.event_id.as_str(), e.event_type.as_str()),
            ("123", "ping")
        );
        assert_eq!(e.occurred_at, Some(1_700_000_000_000_000));
        let err = run(&s, &HeaderMap::new(), r#"{"id":{"nested":1}}"#).unwrap_err();
        assert_eq!(err.to_string(), "no event id found (tried json:/id)");
        let s = spec(&["hash"], &["json:/type"], &[]);
        assert_eq!(
            run(&s, &HeaderMap::new(), r#"{"type":""}"#)
                .unwrap_err()
                .code(),
            "no_event_type"
        );
    }

    #[test]
    fn parse_errors_are_readable() {
        assert!(
            Extractor::parse("json:data/id")
                .unwrap_err()
                .contains("RFC 6901")
        );
        assert!(Extractor::parse("header:bad name").is_err());
        assert!(
            Extractor::parse("body")
                .unwrap_err()
                .contains("json:/pointer")
        );
    }
}
