//! `docs/configuration.md` documents every key the config parser accepts,
//! and no key it would refuse; every key of `receiver.toml.example`
//! (commented-out ones included) is among them.
//!
//! The accepted keys come from the parser's own raw structs
//! (`hookd::config::keys::accepted`, which walks their `Deserialize`
//! impls), not from a list kept here, so adding a key to the parser without
//! a row on the page fails this test.

use std::collections::BTreeSet;
use std::path::Path;

use hookd::config::keys::{Key, accepted};

const PAGE: &str = "docs/configuration.md";

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The keys the page documents: the first cell of each table row, when it
/// is one backticked name (`| \`server.listen\` | …`).
fn documented(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once("` |").map(|(k, _)| k.to_string()))
        .filter(|k| !k.contains('`'))
        .collect()
}

#[test]
fn the_walker_sees_every_level_of_the_config() {
    let keys = accepted();
    let has = |p: &str, free_form: bool| {
        keys.contains(&Key {
            path: p.to_string(),
            free_form,
        })
    };
    for p in [
        "daemon",
        "daemon.state_dir",
        "store.url",
        "source.name",
        "source.signature.timestamp_header",
        "source.extract.type",
        "source.sse.auth.prefix",
        "source.poll.backoff.max",
        "handler.backoff.initial",
        "handler.sign.id_header",
    ] {
        assert!(has(p, false), "{p} missing from {keys:#?}");
    }
    for p in ["handler.env", "handler.headers", "source.type_aliases"] {
        assert!(has(p, true), "{p} should be a free-form table");
    }
    // The parser refuses what is not on the list, so the list is the whole set.
    let e = hookd::config::parse("[daemon]\nstate_dirr = \"x\"\n", Path::new("t.toml"))
        .expect_err("an unknown key is an error");
    assert_eq!(e.key, "daemon.state_dirr", "{e}");
}

#[test]
fn every_accepted_key_has_a_row_and_every_row_is_a_key() {
    let page = read(PAGE);
    let rows = documented(&page);
    let keys: BTreeSet<String> = accepted().into_iter().map(|k| k.path).collect();
    let missing: Vec<&String> = keys.difference(&rows).collect();
    assert!(
        missing.is_empty(),
        "{PAGE} has no row (`| \\`key\\` | type | default | meaning |`) for: {missing:#?}"
    );
    let unknown: Vec<&String> = rows.difference(&keys).collect();
    assert!(
        unknown.is_empty(),
        "{PAGE} documents keys the parser does not accept: {unknown:#?}"
    );
}

/// `# key = value` and `# [table]` lines of the example, uncommented.
fn uncomment(text: &str) -> String {
    text.lines()
        .map(|l| {
            let Some(rest) = l.strip_prefix('#') else {
                return l.to_string();
            };
            let rest = rest.strip_prefix(' ').unwrap_or(rest);
            let name_end = rest
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap_or(rest.len());
            let is_key = name_end > 0 && rest[name_end..].trim_start().starts_with('=');
            let is_table = rest.starts_with('[') && rest.trim_end().ends_with(']');
            if is_key || is_table {
                rest.to_string()
            } else {
                format!("#{rest}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every key path in a TOML document, array indexes left out.
fn paths(prefix: &str, table: &toml::Table, out: &mut BTreeSet<String>) {
    for (k, v) in table {
        let p = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        out.insert(p.clone());
        match v {
            toml::Value::Table(t) => paths(&p, t, out),
            toml::Value::Array(items) => {
                for item in items {
                    if let toml::Value::Table(t) = item {
                        paths(&p, t, out);
                    }
                }
            }
            _ => {}
        }
    }
}

#[test]
fn every_key_of_the_example_is_documented() {
    let rows = documented(&read(PAGE));
    let keys = accepted();
    let free_form: Vec<&str> = keys
        .iter()
        .filter(|k| k.free_form)
        .map(|k| k.path.as_str())
        .collect();
    let example = read("receiver.toml.example");
    let mut found = BTreeSet::new();
    for text in [example.clone(), uncomment(&example)] {
        let table: toml::Table = toml::from_str(&text).unwrap_or_else(|e| {
            panic!("receiver.toml.example (with `# key =` lines uncommented): {e}\n{text}")
        });
        paths("", &table, &mut found);
    }
    for must in [
        "server.tls_cert",
        "store.url",
        "admin.token",
        "source.api_key",
    ] {
        assert!(
            found.contains(must),
            "the commented-out {must} was not read: {found:#?}"
        );
    }
    let undocumented: Vec<&String> = found
        .iter()
        .filter(|p| {
            // A name inside a free-form table (an env variable, a header) is not a key.
            let inside_free_form = free_form
                .iter()
                .any(|f| p.strip_prefix(f).is_some_and(|r| r.starts_with('.')));
            !inside_free_form && !rows.contains(*p)
        })
        .collect();
    assert!(
        undocumented.is_empty(),
        "keys of receiver.toml.example missing from {PAGE}: {undocumented:#?}"
    );
}
