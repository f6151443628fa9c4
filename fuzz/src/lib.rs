//! Shared harness for hookd's fuzz targets.
//!
//! Every signature target reads the same plain-text input, so seeds and
//! crash files can be written and read by hand:
//!
//! ```text
//! @secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
//! @now 1700000000
//! webhook-id: msg_1
//! webhook-signature: v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=
//!
//! {"type":"ping"}
//! ```
//!
//! Lines starting with `@` are directives (secrets, clock, scheme options),
//! `Name: value` lines are request headers (invalid ones are dropped, as
//! hyper would refuse them), and everything after the first empty line is
//! the body. Each signature target checks three things:
//!
//! 1. `verify` on the fuzzed request never panics, and a success names a
//!    configured key;
//! 2. round trip: what `sign` produces is accepted, also among other keys
//!    and next to unrelated headers, at both edges of the tolerance window;
//! 3. tamper: one flipped or appended body byte, or a clock one second past
//!    the window, is refused (for schemes that authenticate those).

use std::time::Duration;

use hookd::verify::{Key, Rejection, Request, Scheme, SignatureConfig};
use http::{HeaderMap, HeaderName, HeaderValue};

/// The clock when the input does not set `@now` (2023-11-14).
pub const DEFAULT_NOW: i64 = 1_700_000_000;
/// The tolerance when the input does not set `@tol`.
pub const DEFAULT_TOL: u64 = 300;

/// One parsed fuzz input.
pub struct Case<'a> {
    directives: Vec<(&'a [u8], &'a [u8])>,
    pub headers: HeaderMap,
    pub body: &'a [u8],
}

impl<'a> Case<'a> {
    /// Split `data` into directives, headers and body. Never fails: junk
    /// lines are ignored so that every input reaches the code under test.
    pub fn parse(data: &'a [u8]) -> Case<'a> {
        let (head, body) = split_body(data);
        let mut directives = Vec::new();
        let mut headers = HeaderMap::new();
        for line in head.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(d) = line.strip_prefix(b"@") {
                let sp = d.iter().position(|b| *b == b' ').unwrap_or(d.len());
                let value = d.get(sp + 1..).unwrap_or(b"");
                directives.push((&d[..sp], value));
            } else if let Some(colon) = line.iter().position(|b| *b == b':') {
                let value = &line[colon + 1..];
                let value = value.strip_prefix(b" ").unwrap_or(value);
                if let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(&line[..colon]),
                    HeaderValue::from_bytes(value),
                ) {
                    headers.append(n, v);
                }
            }
        }
        Case {
            directives,
            headers,
            body,
        }
    }

    /// The last value of a directive.
    pub fn get(&self, key: &str) -> Option<&'a [u8]> {
        self.directives
            .iter()
            .rev()
            .find(|(k, _)| *k == key.as_bytes())
            .map(|(_, v)| *v)
    }

    /// A directive as text (lossy), if present.
    pub fn text(&self, key: &str) -> Option<String> {
        self.get(key)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// Every value of a repeatable directive, in order.
    pub fn all(&self, key: &str) -> Vec<&'a [u8]> {
        self.directives
            .iter()
            .filter(|(k, _)| *k == key.as_bytes())
            .map(|(_, v)| *v)
            .collect()
    }

    /// A numeric directive, or `default` when absent or not a number.
    pub fn num<T: std::str::FromStr>(&self, key: &str, default: T) -> T {
        self.get(key)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(default)
    }

    pub fn flag(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
}

/// Headers and body are separated by the first empty line (`\n\n` or `\r\n\r\n`).
fn split_body(data: &[u8]) -> (&[u8], &[u8]) {
    if data.starts_with(b"\n") {
        return (b"", &data[1..]);
    }
    for i in 0..data.len() {
        if data[i..].starts_with(b"\n\n") {
            return (&data[..i], &data[i + 2..]);
        }
        if data[i..].starts_with(b"\r\n\r\n") {
            return (&data[..i], &data[i + 4..]);
        }
    }
    (data, b"")
}

/// A `signature` table with only `scheme` set.
pub fn sig_config(scheme: &str) -> SignatureConfig {
    SignatureConfig {
        scheme: scheme.to_string(),
        ..Default::default()
    }
}

/// Build a scheme from a config the target controls; a config error must
/// name one of the table's keys and say something.
pub fn build(cfg: &SignatureConfig) -> Option<Scheme> {
    match Scheme::from_config(cfg) {
        Ok(s) => Some(s),
        Err(e) => {
            const KEYS: &[&str] = &[
                "scheme",
                "header",
                "prefix",
                "encoding",
                "signed",
                "algo",
                "timestamp_header",
                "id_header",
                "canonical_json",
            ];
            assert!(KEYS.contains(&e.key), "config error names no key: {e:?}");
            assert!(!e.message.is_empty(), "config error without a message");
            None
        }
    }
}

/// `HOOKD_FUZZ_SHOW=1` prints what `verify` said about each input, to
/// see why a seed or a crash file is accepted or refused.
fn show() -> bool {
    static SHOW: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SHOW.get_or_init(|| std::env::var_os("HOOKD_FUZZ_SHOW").is_some_and(|v| v == "1"))
}

/// How a scheme treats the request, for the tamper checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Covers {
    /// Changing the body must be refused.
    pub body: bool,
    /// A clock outside the window must be refused.
    pub timestamp: bool,
}

impl Covers {
    /// A scheme that signs the body together with a timestamp.
    pub const BODY_AND_TIME: Covers = Covers {
        body: true,
        timestamp: true,
    };
    /// A scheme that authenticates neither (a bare token).
    pub const NEITHER: Covers = Covers {
        body: false,
        timestamp: false,
    };
}

/// A whole target for a scheme with nothing to configure beyond its name
/// (the provider presets): build it and run [`check_scheme`].
pub fn check_preset(data: &[u8], scheme: &str) {
    let case = Case::parse(data);
    let scheme = build(&sig_config(scheme)).expect("valid scheme");
    check_scheme(&scheme, &case, Covers::BODY_AND_TIME);
}

/// The three checks of the module comment, for one scheme.
pub fn check_scheme(scheme: &Scheme, case: &Case<'_>, covers: Covers) {
    let keys: Vec<Key> = case
        .all("secret")
        .iter()
        .filter_map(|s| derive(scheme, s))
        .collect();
    let now: i64 = case.num("now", DEFAULT_NOW);
    let tol = Duration::from_secs(case.num("tol", DEFAULT_TOL));

    // 1. The fuzzed request as it is.
    let req = Request {
        headers: &case.headers,
        body: case.body,
    };
    let verdict = scheme.verify(&req, &keys, now, tol);
    if show() {
        eprintln!("verify: {verdict:?}");
    }
    match verdict {
        Ok(v) => assert!(
            v.key_index < keys.len(),
            "matched a key that does not exist"
        ),
        Err(e) => check_rejection(&e, &case.all("secret")),
    }

    // 2 and 3 need a key and a clock `sign` can write.
    let Some(key) = keys.last() else { return };
    if now < 0 {
        return;
    }
    let id = match case.text("id") {
        Some(id) if HeaderValue::from_str(&id).is_ok() => id,
        _ => "msg_fuzz".to_string(),
    };
    let signed = scheme.sign(key, case.body, now, &id);
    let mut headers = HeaderMap::new();
    for (n, v) in &signed {
        headers.append(n.clone(), v.clone());
    }
    let accepts = |headers: &HeaderMap, body: &[u8], keys: &[Key], at: i64| {
        scheme.verify(&Request { headers, body }, keys, at, tol)
    };

    // 2. Round trip, alone and among the other keys (listed first).
    let alone = accepts(&headers, case.body, std::slice::from_ref(key), now);
    assert_eq!(
        alone.as_ref().map(|v| v.key_index),
        Ok(0),
        "own signature refused"
    );
    let among = accepts(&headers, case.body, &keys, now);
    let index = among
        .expect("own signature refused among other keys")
        .key_index;
    assert!(index < keys.len());

    // ...next to headers the signature does not involve.
    let mut noisy = headers.clone();
    for (n, v) in &case.headers {
        if !headers.contains_key(n) {
            noisy.append(n.clone(), v.clone());
        }
    }
    if noisy.len() != headers.len() {
        let r = accepts(&noisy, case.body, std::slice::from_ref(key), now);
        assert!(r.is_ok(), "unrelated headers broke verification: {r:?}");
    }

    // ...at both edges of the window (inclusive).
    let tol_s = i64::try_from(tol.as_secs()).unwrap_or(i64::MAX);
    for at in [now.checked_add(tol_s), now.checked_sub(tol_s)]
        .into_iter()
        .flatten()
    {
        let r = accepts(&headers, case.body, std::slice::from_ref(key), at);
        assert!(r.is_ok(), "refused at the edge of the window ({at}): {r:?}");
    }

    // 3. Tampering.
    if covers.timestamp {
        let past = tol_s.checked_add(1);
        for at in [
            past.and_then(|p| now.checked_add(p)),
            past.and_then(|p| now.checked_sub(p)),
        ]
        .into_iter()
        .flatten()
        {
            let r = accepts(&headers, case.body, std::slice::from_ref(key), at);
            assert!(r.is_err(), "accepted outside the window ({at})");
        }
    }
    if covers.body {
        let mut body = case.body.to_vec();
        if body.is_empty() {
            body.push(case.num("flip", 1u8));
        } else {
            let at = case.num("at", 0usize) % body.len();
            body[at] ^= case.num("flip", 1u8).max(1);
        }
        let r = accepts(&headers, &body, &keys, now);
        assert!(r.is_err(), "accepted a changed body: {r:?}");
        let mut longer = case.body.to_vec();
        longer.push(b' ');
        let r = accepts(&headers, &longer, &keys, now);
        assert!(r.is_err(), "accepted a body with a byte appended: {r:?}");
    }
}

/// `derive_key`, checking that its error never echoes the secret.
fn derive(scheme: &Scheme, secret: &[u8]) -> Option<Key> {
    match scheme.derive_key(secret) {
        Ok(k) => {
            assert!(
                !format!("{k:?}").contains("whsec_"),
                "Key debug shows the secret"
            );
            Some(k)
        }
        Err(e) => {
            assert!(!e.is_empty());
            assert!(
                !leaks(&e, secret),
                "derive_key error echoes the secret: {e}"
            );
            None
        }
    }
}

/// A refusal's text must exist, have a stable code, and never contain a
/// configured secret.
fn check_rejection(e: &Rejection, secrets: &[&[u8]]) {
    let text = e.to_string();
    assert!(!text.is_empty() && !e.code().is_empty());
    for s in secrets {
        assert!(
            !leaks(&text, s),
            "a rejection message contains a secret: {text}"
        );
    }
}

/// Whether `text` contains `secret`. Only secrets that cannot be mistaken
/// for the messages' own words count: 8+ bytes with an uppercase letter and
/// a digit (messages are lowercase, and header names always are).
fn leaks(text: &str, secret: &[u8]) -> bool {
    let distinctive = secret.len() >= 8
        && secret.iter().any(u8::is_ascii_uppercase)
        && secret.iter().any(u8::is_ascii_digit);
    distinctive && text.as_bytes().windows(secret.len()).any(|w| w == secret)
}

/// Hex SHA-256, as the `hash` extractor writes it.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}
