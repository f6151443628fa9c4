//! Properties that hold for every input, checked with proptest where a
//! fuzzer does not fit (the fuzz targets in `fuzz/` look for panics; these
//! generate well-formed inputs and check exact answers):
//!
//! - every scheme accepts what it signed, for arbitrary bodies, secrets,
//!   ids and clocks, and refuses the body with any one byte changed;
//! - the tolerance window is inclusive at both edges and refuses one
//!   second past either;
//! - a config key path (`source[2].signature.scheme`) finds the line it was
//!   written on, however deeply tables, arrays of tables, inline tables and
//!   multi-line arrays nest, and the path at any offset is the one written
//!   there; a mistake anywhere in a generated config is reported on its line.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use hookd::config::KeyPath;
use hookd::config::locate::{line_of, path_at, span_of};
use hookd::verify::{Key, Request, Scheme, SignatureConfig};
use http::HeaderMap;
use proptest::prelude::*;

// ------------------------------------------------------------ schemes ----

fn sig(scheme: &str) -> SignatureConfig {
    SignatureConfig {
        scheme: scheme.to_string(),
        ..Default::default()
    }
}

/// Every scheme shape worth telling apart, and whether its signature
/// covers a timestamp.
fn scheme_configs() -> Vec<(SignatureConfig, bool)> {
    let hmac = |prefix: Option<&str>, encoding: &str, algo: &str, signed: &str| {
        let uses_ts = signed.contains("{timestamp}");
        let cfg = SignatureConfig {
            header: Some("X-Sig".into()),
            prefix: prefix.map(str::to_string),
            encoding: Some(encoding.into()),
            algo: Some(algo.into()),
            signed: Some(signed.into()),
            timestamp_header: uses_ts.then(|| "X-Ts".into()),
            id_header: signed.contains("{id}").then(|| "X-Id".into()),
            ..sig("hmac")
        };
        (cfg, uses_ts)
    };
    vec![
        (sig("standard-webhooks"), true),
        (sig("stripe"), true),
        (
            SignatureConfig {
                header: Some("X-Custom-Stripe".into()),
                ..sig("stripe")
            },
            true,
        ),
        hmac(Some("sha256="), "hex", "sha256", "{body}"),
        hmac(None, "base64", "sha1", "{body}"),
        hmac(Some("v0="), "hex", "sha512", "v0:{timestamp}:{body}"),
        hmac(None, "base64", "sha256", "{id}.{timestamp}.{{{body}}}"),
        (sig("linkup"), true),
        (sig("linkedapi"), true),
        (sig("linq"), true),
        (
            SignatureConfig {
                canonical_json: Some(true),
                ..sig("linq")
            },
            true,
        ),
        (
            SignatureConfig {
                header: Some("Authorization".into()),
                prefix: Some("Bearer ".into()),
                ..sig("token")
            },
            false,
        ),
    ]
}

/// A secret the scheme takes: `whsec_` + base64 for standard-webhooks,
/// printable ASCII for token, and for linq either form.
fn secret_for(scheme: &Scheme, raw: &[u8], whsec: bool) -> Vec<u8> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
    match scheme.name() {
        "standard-webhooks" => format!("whsec_{b64}").into_bytes(),
        "linq" if whsec => format!("whsec_{b64}").into_bytes(),
        "token" => b64.into_bytes(),
        _ => raw.to_vec(),
    }
}

fn to_map(signed: Vec<(http::HeaderName, http::HeaderValue)>) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in signed {
        h.append(n, v);
    }
    h
}

fn verify(
    scheme: &Scheme,
    h: &HeaderMap,
    body: &[u8],
    keys: &[Key],
    now: i64,
    tol: u64,
) -> Result<usize, String> {
    scheme
        .verify(
            &Request { headers: h, body },
            keys,
            now,
            Duration::from_secs(tol),
        )
        .map(|v| v.key_index)
        .map_err(|e| e.code().to_string())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_scheme_accepts_what_it_signed_and_refuses_a_changed_body(
        which in 0..scheme_configs().len(),
        raw in proptest::collection::vec(any::<u8>(), 1..48),
        other in proptest::collection::vec(any::<u8>(), 1..48),
        whsec in any::<bool>(),
        body in proptest::collection::vec(any::<u8>(), 0..256),
        id in "[A-Za-z0-9_.:-]{1,40}",
        now in 0i64..=4_102_444_800,
        flip_at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let (cfg, _) = &scheme_configs()[which];
        let scheme = Scheme::from_config(cfg).unwrap();
        let key = scheme.derive_key(&secret_for(&scheme, &raw, whsec)).unwrap();
        let other_key = scheme.derive_key(&secret_for(&scheme, &other, !whsec)).unwrap();
        let h = to_map(scheme.sign(&key, &body, now, &id));

        prop_assert_eq!(verify(&scheme, &h, &body, std::slice::from_ref(&key), now, 300), Ok(0));
        if raw != other {
            // The signing key is found second in a rotation list.
            prop_assert_eq!(verify(&scheme, &h, &body, &[other_key.clone(), key.clone()], now, 300), Ok(1));
            prop_assert_eq!(
                verify(&scheme, &h, &body, std::slice::from_ref(&other_key), now, 300),
                Err("bad_signature".to_string())
            );
        }
        if scheme.name() != "token" {
            let mut changed = body.clone();
            if changed.is_empty() {
                changed.push(flip);
            } else {
                changed[flip_at.index(body.len())] ^= flip;
            }
            prop_assert!(verify(&scheme, &h, &changed, std::slice::from_ref(&key), now, 300).is_err());
        }
    }

    #[test]
    fn the_tolerance_window_is_inclusive_at_both_edges(
        which in 0..scheme_configs().len(),
        raw in proptest::collection::vec(any::<u8>(), 1..32),
        ts in 0i64..=i64::MAX / 2,
        tol in prop_oneof![0u64..=10, 0u64..=1_000_000, Just(u64::MAX / 4)],
    ) {
        let (cfg, timestamped) = &scheme_configs()[which];
        let scheme = Scheme::from_config(cfg).unwrap();
        let key = scheme.derive_key(&secret_for(&scheme, &raw, true)).unwrap();
        let body = br#"{"id":"e1","type":"t"}"#;
        let h = to_map(scheme.sign(&key, body, ts, "msg_1"));
        let keys = std::slice::from_ref(&key);
        let t = i64::try_from(tol).unwrap();
        for at in [ts.checked_add(t), ts.checked_sub(t), Some(ts)].into_iter().flatten() {
            prop_assert_eq!(verify(&scheme, &h, body, keys, at, tol), Ok(0), "at {}", at);
        }
        for at in [ts.checked_add(t + 1), ts.checked_sub(t + 1)].into_iter().flatten() {
            let got = verify(&scheme, &h, body, keys, at, tol);
            if *timestamped {
                prop_assert_eq!(got, Err("timestamp_out_of_tolerance".to_string()), "at {}", at);
            } else {
                prop_assert_eq!(got, Ok(0));
            }
        }
    }
}

// --------------------------------------------------------- key paths ----

/// A generated TOML value.
#[derive(Clone, Debug)]
enum Node {
    Scalar(String),
    /// `key = [a, b]`, optionally one element per line.
    List(Vec<String>, bool),
    /// `key = { a = 1, b = "x" }`
    Inline(Vec<(String, String)>),
    /// `[path.key]`
    Table(Vec<(String, Node)>),
    /// `[[path.key]]`, once per element.
    Tables(Vec<Vec<(String, Node)>>),
}

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i32>().prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        // Strings holding what a naive line-based locator would trip on.
        "[a-zA-Z0-9 .:/#=\\[\\]{},]{0,12}".prop_map(|s| format!("{s:?}")),
        Just("\"two\\nlines\"".to_string()),
    ]
}

fn key_name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,5}"
}

/// Entries with unique keys (TOML forbids duplicates).
fn unique<T>(entries: Vec<(String, T)>) -> Vec<(String, T)> {
    let mut seen = std::collections::HashSet::new();
    entries
        .into_iter()
        .filter(|(k, _)| seen.insert(k.clone()))
        .collect()
}

fn table() -> impl Strategy<Value = Vec<(String, Node)>> {
    let leaf = prop_oneof![
        4 => scalar().prop_map(Node::Scalar),
        1 => (proptest::collection::vec(scalar(), 1..4), any::<bool>())
            .prop_map(|(v, multi)| Node::List(v, multi)),
        1 => proptest::collection::vec((key_name(), scalar()), 1..4)
            .prop_map(|v| Node::Inline(unique(v))),
    ];
    let node = leaf.prop_recursive(4, 48, 4, |inner| {
        let entries =
            move || proptest::collection::vec((key_name(), inner.clone()), 0..4).prop_map(unique);
        prop_oneof![
            entries().prop_map(Node::Table),
            proptest::collection::vec(entries(), 1..3).prop_map(Node::Tables),
        ]
    });
    proptest::collection::vec((key_name(), node), 1..5).prop_map(unique)
}

/// Where a leaf was written: its key path, line, and byte offsets of its
/// key and value.
struct Leaf {
    path: KeyPath,
    line: usize,
    key_at: usize,
    value_at: usize,
}

struct Writer {
    text: String,
    leaves: Vec<Leaf>,
    noise: u64,
}

impl Writer {
    /// Blank lines and comments that look like headers, now and then.
    fn noise(&mut self) {
        self.noise = self.noise.wrapping_mul(6364136223846793005).wrapping_add(1);
        match self.noise >> 61 {
            0 => self.text.push('\n'),
            1 => self.text.push_str("# [not.a.table]\n"),
            2 => self.text.push_str("   # key = \"value\"\n\n"),
            _ => {}
        }
    }

    fn leaf(&mut self, path: KeyPath, key_at: usize, value_at: usize) {
        let line = line_of(&self.text, value_at);
        self.leaves.push(Leaf {
            path,
            line,
            key_at,
            value_at,
        });
    }

    /// The scalar-ish entries of a table (they must precede its sub-tables).
    fn entries(&mut self, path: &KeyPath, entries: &[(String, Node)]) {
        for (k, node) in entries {
            let p = path.key(k);
            let key_at = self.text.len();
            match node {
                Node::Scalar(v) => {
                    let _ = write!(self.text, "{k} = ");
                    self.leaf(p, key_at, self.text.len());
                    let _ = writeln!(self.text, "{v}");
                }
                Node::List(items, multi) => {
                    let _ = write!(self.text, "{k} = [");
                    for (i, v) in items.iter().enumerate() {
                        if *multi {
                            self.text.push_str("\n  ");
                        }
                        let at = self.text.len();
                        self.leaf(p.index(i), at, at);
                        let _ = write!(self.text, "{v},");
                    }
                    self.text.push_str(if *multi { "\n]\n" } else { "]\n" });
                }
                Node::Inline(fields) => {
                    let _ = write!(self.text, "{k} = {{ ");
                    for (i, (fk, fv)) in fields.iter().enumerate() {
                        if i > 0 {
                            self.text.push_str(", ");
                        }
                        let fkey_at = self.text.len();
                        let _ = write!(self.text, "{fk} = ");
                        self.leaf(p.key(fk), fkey_at, self.text.len());
                        self.text.push_str(fv);
                    }
                    self.text.push_str(" }\n");
                }
                Node::Table(_) | Node::Tables(_) => continue,
            }
            self.noise();
        }
    }

    /// A table's entries, then its sub-tables under `[header]` lines.
    fn table(&mut self, path: &KeyPath, dotted: &str, entries: &[(String, Node)]) {
        self.entries(path, entries);
        for (k, node) in entries {
            let name = if dotted.is_empty() {
                k.clone()
            } else {
                format!("{dotted}.{k}")
            };
            match node {
                Node::Table(sub) => {
                    let _ = writeln!(self.text, "[{name}]");
                    self.noise();
                    self.table(&path.key(k), &name, sub);
                }
                Node::Tables(elems) => {
                    for (i, sub) in elems.iter().enumerate() {
                        let _ = writeln!(self.text, "[[{name}]]");
                        self.noise();
                        self.table(&path.key(k).index(i), &name, sub);
                    }
                }
                _ => {}
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn key_paths_find_their_lines_at_any_nesting(doc in table(), noise in any::<u64>()) {
        let mut w = Writer { text: String::new(), leaves: Vec::new(), noise };
        w.table(&KeyPath::root(), "", &doc);
        let parsed = toml::de::DeTable::parse(&w.text);
        prop_assert!(parsed.is_ok(), "generated invalid TOML:\n{}", w.text);
        let parsed = parsed.unwrap();
        for leaf in &w.leaves {
            let span = span_of(&parsed, &leaf.path);
            prop_assert_eq!(
                line_of(&w.text, span.start), leaf.line,
                "span_of({}) in:\n{}", leaf.path, w.text
            );
            prop_assert_eq!(
                path_at(&parsed, leaf.value_at).to_string(), leaf.path.to_string(),
                "path_at(value) in:\n{}", w.text
            );
            if leaf.key_at != leaf.value_at {
                let at_key = path_at(&parsed, leaf.key_at).to_string();
                prop_assert_eq!(at_key, leaf.path.to_string(), "path_at(key) in:\n{}", w.text);
            }
        }
    }
}

// ---------------------------------------- config errors on their line ----

/// One mistake to plant: the line to write and the key path it must be
/// reported under (`{i}` is the table's index).
const MISTAKES: &[(&str, &str)] = &[
    ("tolerance = \"soon\"", "source[{i}].tolerance"),
    (
        "signature = { scheme = \"hmac\", header = \"X-Sig\", encoding = \"rot13\" }",
        "source[{i}].signature.encoding",
    ),
    (
        "extract = { id = [\"hash\"], type = [\"const:t\", \"bogus\"] }",
        "source[{i}].extract.type[1]",
    ),
    ("mode = \"carrier-pigeon\"", "source[{i}].mode"),
    ("colour = \"blue\"", "source[{i}]"),
];

fn source(i: usize, with_extract: bool) -> String {
    let mut s =
        format!("[[source]]\nname = \"s{i}\"\nprovider = \"generic\"\nsecret = \"env:PATH\"\n");
    if with_extract {
        s.push_str("extract = { id = [\"hash\"], type = [\"const:t\"] }\n");
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn a_mistake_anywhere_is_reported_on_its_line(
        n in 1usize..6,
        at in any::<prop::sample::Index>(),
        which in 0..MISTAKES.len(),
        blank in proptest::collection::vec(0usize..3, 6),
    ) {
        let bad = at.index(n);
        let (mistake, key) = MISTAKES[which];
        let mut text = String::from("[daemon]\nstate_dir = \"/tmp/x\"\n\n");
        let mut want_line = 0;
        for (i, blank) in blank.iter().take(n).enumerate() {
            text.push_str(&"\n".repeat(*blank));
            let plants_extract = mistake.starts_with("extract");
            text.push_str(&source(i, !(i == bad && plants_extract)));
            if !mistake.starts_with("signature") || i != bad {
                text.push_str("signature = { scheme = \"hmac\", header = \"X-Sig\" }\n");
            }
            if i == bad {
                want_line = text.matches('\n').count() + 1;
                text.push_str(mistake);
                text.push('\n');
            }
        }
        let err = hookd::config::parse(&text, Path::new("r.toml")).unwrap_err();
        let key = key.replace("{i}", &bad.to_string());
        prop_assert!(err.key == key || err.key.starts_with(&format!("{key}.")), "{} in:\n{}", err, text);
        prop_assert_eq!(err.line, Some(want_line), "{} in:\n{}", err, text);
    }
}
