//! The extractors of `src/extract.rs`: `json:/pointer`, `header:Name`,
//! `const:x`, `hash`, `now`, parsed from `@id`/`@type`/`@time` directives
//! and run against the input's headers and body (`@alias from=to` adds a
//! type alias, `@received N` sets the receive time).
//!
//! Checked: parsing never panics and `parse(display(e)) == e`; extraction
//! never panics; what it returns obeys the documented limits (non-empty,
//! at most 512 bytes, no control characters, aliases applied, `hash` ids
//! marked synthetic and equal to the body's SHA-256).
#![no_main]

use std::collections::BTreeMap;

use hookd::extract::{ExtractSpec, Extractor, Input};
use hookd_fuzz::Case;
use libfuzzer_sys::fuzz_target;

fn extractors(case: &Case<'_>, key: &str) -> Vec<Extractor> {
    case.all(key)
        .iter()
        .filter_map(|raw| {
            let text = String::from_utf8_lossy(raw);
            let e = Extractor::parse(&text).ok()?;
            let again = Extractor::parse(&e.to_string());
            assert_eq!(
                again.as_ref(),
                Ok(&e),
                "display of {e:?} does not parse back"
            );
            Some(e)
        })
        .collect()
}

fn plausible_text(s: &str) {
    assert!(!s.is_empty() && s.len() <= 512, "bad length: {s:?}");
    assert!(!s.chars().any(char::is_control), "control character: {s:?}");
}

fuzz_target!(|data: &[u8]| {
    let case = Case::parse(data);
    let spec = ExtractSpec {
        id: extractors(&case, "id"),
        ty: extractors(&case, "type"),
        time: extractors(&case, "time"),
    };
    let aliases: BTreeMap<String, String> = case
        .all("alias")
        .iter()
        .filter_map(|a| {
            let a = String::from_utf8_lossy(a);
            let (k, v) = a.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect();
    let json: Option<serde_json::Value> = serde_json::from_slice(case.body).ok();
    let received_at = case.num("received", 1_700_000_000_000_000i64);
    let input = Input {
        headers: &case.headers,
        body: case.body,
        json: json.as_ref(),
        received_at,
    };
    match spec.extract(&input, &aliases) {
        Ok(x) => {
            if x.id_synthetic {
                let want = hookd_fuzz::sha256_hex(case.body);
                assert_eq!(x.event_id, format!("sha256:{want}"));
            } else {
                plausible_text(&x.event_id);
            }
            plausible_text(&x.type_raw);
            let aliased = aliases.get(&x.type_raw).unwrap_or(&x.type_raw);
            assert_eq!(&x.event_type, aliased);
            if spec.time.first() == Some(&Extractor::Now) {
                assert_eq!(x.occurred_at, Some(received_at));
            }
        }
        Err(e) => assert!(!e.to_string().is_empty() && !e.code().is_empty()),
    }
});
