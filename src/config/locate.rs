//! Maps between config key paths and source lines.
//!
//! Serde reports *where* (a byte span) and validation knows *what* (a key
//! path such as `source[2].signature.scheme`); an operator needs both, as
//! `file:line: key: message`. This walks toml's spanned document tree to
//! translate one into the other.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One step of a key path: a table key or an array index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A key path inside the config document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    pub fn root() -> KeyPath {
        KeyPath(Vec::new())
    }
    pub fn key(&self, k: &str) -> KeyPath {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_string()));
        p
    }
    pub fn index(&self, i: usize) -> KeyPath {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }
}

impl std::fmt::Display for KeyPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for seg in &self.0 {
            match seg {
                Seg::Key(k) if first => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        if first {
            f.write_str("(top level)")?;
        }
        Ok(())
    }
}

/// 1-based line number of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The span of the value at `path`, or of its nearest existing ancestor.
pub fn span_of(doc: &Spanned<DeTable<'_>>, path: &KeyPath) -> Range<usize> {
    let mut best = doc.span();
    let mut cur: Option<&DeValue<'_>> = None;
    let mut table: Option<&DeTable<'_>> = Some(doc.get_ref());
    for seg in &path.0 {
        let next: Option<&Spanned<DeValue<'_>>> = match (seg, table, cur) {
            (Seg::Key(k), Some(t), _) => t.get_key_value(k.as_str()).map(|(key, v)| {
                // Prefer the key's own line for scalars: "key = value".
                best = key.span();
                v
            }),
            (Seg::Index(i), _, Some(DeValue::Array(a))) => a.get(*i),
            _ => None,
        };
        let Some(v) = next else { break };
        if !matches!(seg, Seg::Key(_)) || matches!(v.get_ref(), DeValue::Table(_)) {
            best = v.span();
        }
        cur = Some(v.get_ref());
        table = match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => None,
        };
    }
    best
}

/// The deepest key path whose key or value span contains `offset`. Tables
/// only span their header (`[[source]]`), so every branch is searched.
pub fn path_at(doc: &Spanned<DeTable<'_>>, offset: usize) -> KeyPath {
    let mut path = KeyPath::root();
    find_in_table(doc.get_ref(), offset, &mut path);
    path
}

fn find_in_table(t: &DeTable<'_>, offset: usize, path: &mut KeyPath) -> bool {
    for (k, v) in t.iter() {
        path.0.push(Seg::Key(k.get_ref().to_string()));
        if find_in_value(v.get_ref(), offset, path)
            || k.span().contains(&offset)
            || v.span().contains(&offset)
        {
            return true;
        }
        path.0.pop();
    }
    false
}

fn find_in_value(v: &DeValue<'_>, offset: usize, path: &mut KeyPath) -> bool {
    match v {
        DeValue::Table(t) => find_in_table(t, offset, path),
        DeValue::Array(a) => a.iter().enumerate().any(|(i, item)| {
            path.0.push(Seg::Index(i));
            let hit = find_in_value(item.get_ref(), offset, path) || item.span().contains(&offset);
            if !hit {
                path.0.pop();
            }
            hit
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "[daemon]\nretention = \"x\"\n\n[[source]]\nname = \"a\"\n\n[[source]]\nname = \"b\"\nsignature = { scheme = \"zz\" }\n";

    #[test]
    fn finds_lines_of_nested_keys() {
        let doc = DeTable::parse(DOC).unwrap();
        let p = KeyPath::root()
            .key("source")
            .index(1)
            .key("signature")
            .key("scheme");
        assert_eq!(line_of(DOC, span_of(&doc, &p).start), 9);
        let p = KeyPath::root().key("daemon").key("retention");
        assert_eq!(line_of(DOC, span_of(&doc, &p).start), 2);
        // A missing key falls back to its table.
        let p = KeyPath::root().key("source").index(0).key("secret");
        assert_eq!(line_of(DOC, span_of(&doc, &p).start), 4);
    }

    #[test]
    fn finds_path_at_offset() {
        let doc = DeTable::parse(DOC).unwrap();
        let off = DOC.find("zz").unwrap();
        assert_eq!(path_at(&doc, off).to_string(), "source[1].signature.scheme");
    }
}
