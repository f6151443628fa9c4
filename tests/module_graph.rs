//! The module graph has no cycles (issue 18).
//!
//! Reads `src/**/*.rs`, takes every path a file names (`use` trees expanded,
//! and `crate::…`/`super::…`/`self::…` paths in code), resolves each to the
//! deepest module it reaches, and records an edge between the two sibling
//! modules under their lowest common ancestor: `source::pull::sse` naming
//! `crate::source::pull::shared::commit` is the edge `sse → shared` among
//! the children of `source::pull`; `config::source` naming `crate::preset`
//! is `config → preset` at the top. A module naming its own ancestor or
//! descendant adds no edge (a child using its parent's types is how a split
//! module is built). Comments, string literals and test-only code
//! (`#[cfg(test)] mod …` blocks and `tests.rs` files) are left out.
//!
//! Method calls are not imports and are not seen: a sibling calling a
//! `pub(super)` method another sibling adds to a shared type is not an edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Cycles that exist and are known, with the reason they may stay for now.
/// Each is the sorted member list of one strongly connected component.
const KNOWN: &[(&str, &[&str], &str)] = &[];

type Module = Vec<String>;

#[test]
fn the_module_graph_has_no_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    collect(&src, &src, &mut files);
    assert!(files.len() > 50, "read the sources ({} files)", files.len());
    let modules: BTreeSet<Module> = files.keys().cloned().collect();

    let mut edges: BTreeMap<Module, BTreeSet<(String, String)>> = BTreeMap::new();
    for (module, text) in &files {
        for path in paths(&strip_tests(&sanitize(text))) {
            let Some(target) = resolve(module, &path, &modules) else {
                continue;
            };
            let common = module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if common == module.len() || common == target.len() {
                continue;
            }
            edges
                .entry(module[..common].to_vec())
                .or_default()
                .insert((module[common].clone(), target[common].clone()));
        }
    }
    let top = edges.get(&Vec::new()).map_or(0, BTreeSet::len);
    assert!(top > 20, "found the edges between top modules ({top})");

    let mut found = Vec::new();
    for (parent, es) in &edges {
        for cycle in cycles(es) {
            let parent = if parent.is_empty() {
                "crate".to_string()
            } else {
                parent.join("::")
            };
            let known = KNOWN
                .iter()
                .any(|(p, members, _)| *p == parent && cycle == *members);
            if !known {
                let shown: Vec<String> = cycle
                    .iter()
                    .map(|m| {
                        let out: Vec<&str> = es
                            .iter()
                            .filter(|(a, b)| a == m && cycle.contains(b))
                            .map(|(_, b)| b.as_str())
                            .collect();
                        format!("{m} -> {}", out.join(", "))
                    })
                    .collect();
                found.push(format!("in {parent}: {}", shown.join("; ")));
            }
        }
    }
    assert!(
        found.is_empty(),
        "module cycles (make one side the leaf):\n{}",
        found.join("\n")
    );
}

/// Every `.rs` file under `dir` by its module path (`mod.rs` is its
/// directory; `lib.rs` and `main.rs` the crate root).
fn collect(root: &Path, dir: &Path, out: &mut BTreeMap<Module, String>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            collect(root, &path, out);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs")
            || path.file_name() == Some("tests.rs".as_ref())
        {
            continue;
        }
        let rel = path
            .strip_prefix(root)
            .expect("under src")
            .with_extension("");
        let mut module: Module = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if module.last().is_some_and(|m| m == "mod") {
            module.pop();
        }
        if module == ["lib"] || module == ["main"] {
            module.clear();
        }
        let text = std::fs::read_to_string(&path).expect("read a source file");
        out.entry(module).or_default().push_str(&text);
    }
}

/// The code without comments, and with every string and char literal
/// emptied (`""`, `' '`), so that neither can hold a path or a brace.
fn sanitize(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < c.len() {
        let at = |k: usize| c.get(k).copied().unwrap_or('\0');
        match c[i] {
            '/' if at(i + 1) == '/' => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            }
            '/' if at(i + 1) == '*' => {
                let mut depth = 0;
                loop {
                    if i >= c.len() {
                        break;
                    }
                    if c[i] == '/' && at(i + 1) == '*' {
                        depth += 1;
                        i += 2;
                    } else if c[i] == '*' && at(i + 1) == '/' {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                out.push(' ');
            }
            'r' | 'b' if !is_ident(at(i.wrapping_sub(1))) && raw_start(&c, i).is_some() => {
                let (hashes, body) = raw_start(&c, i).expect("checked");
                i = body;
                loop {
                    if i >= c.len() {
                        break;
                    }
                    if c[i] == '"' && (0..hashes).all(|h| at(i + 1 + h) == '#') {
                        i += 1 + hashes;
                        break;
                    }
                    i += 1;
                }
                out.push_str("\"\"");
            }
            '"' => {
                i += 1;
                while i < c.len() && c[i] != '"' {
                    i += if c[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            '\'' if at(i + 1) == '\\' => {
                i += 2;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
                out.push_str("' '");
            }
            '\'' if at(i + 2) == '\'' => {
                i += 3;
                out.push_str("' '");
            }
            ch => {
                out.push(ch);
                i += 1;
            }
        }
    }
    out
}

fn is_ident(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_'
}

/// At `r"`, `r#"`, `br"`, `b"`…: the number of `#` and where the body starts.
fn raw_start(c: &[char], i: usize) -> Option<(usize, usize)> {
    let mut k = i;
    if c.get(k) == Some(&'b') {
        k += 1;
    }
    let raw = c.get(k) == Some(&'r');
    if raw {
        k += 1;
    }
    if !raw && k == i {
        return None;
    }
    let mut hashes = 0;
    while raw && c.get(k) == Some(&'#') {
        hashes += 1;
        k += 1;
    }
    (c.get(k) == Some(&'"')).then_some((hashes, k + 1))
}

/// The code without `#[cfg(test)]` modules (their braces matched).
fn strip_tests(code: &str) -> String {
    let mut out = String::new();
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "#[cfg(test)]".len()..];
        let item = after.trim_start();
        let item = item.strip_prefix("pub(crate) ").unwrap_or(item);
        let item = item.strip_prefix("pub(super) ").unwrap_or(item);
        if let Some(m) = item.strip_prefix("mod ") {
            let open = m.find(['{', ';']).expect("a mod item ends");
            if m.as_bytes()[open] == b'{' {
                let body = &m[open..];
                let mut depth = 0;
                let mut end = body.len();
                for (k, ch) in body.char_indices() {
                    match ch {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = k + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                rest = &body[end..];
            } else {
                rest = &m[open + 1..];
            }
        } else {
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Every path the code names: `use` trees expanded, and paths in code that
/// start at `crate`, `super` or `self`.
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code.to_string();
    // `use` items (also `pub use`, `pub(crate) use`).
    let mut plain = String::new();
    while let Some(at) = find_word(&rest, "use") {
        plain.push_str(&rest[..at]);
        let end = rest[at..].find(';').map_or(rest.len(), |e| at + e);
        let tree = rest[at + 3..end]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let mut tree = tree.trim().to_string();
        for token in ["::", "{", "}", ","] {
            tree = tree
                .replace(&format!(" {token}"), token)
                .replace(&format!("{token} "), token);
        }
        for p in expand(&tree) {
            let p = p.split(" as ").next().unwrap_or(&p).to_string();
            out.push(p.split("::").map(str::to_string).collect());
        }
        rest = rest[(end + 1).min(rest.len())..].to_string();
    }
    plain.push_str(&rest);
    // Paths in code.
    let chars: Vec<char> = plain.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if is_ident(chars[i]) && (i == 0 || !(is_ident(chars[i - 1]) || chars[i - 1] == ':')) {
            let mut j = i;
            while j < chars.len() && (is_ident(chars[j]) || chars[j] == ':') {
                j += 1;
            }
            let word: String = chars[i..j].iter().collect();
            let segs: Vec<String> = word
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            if segs.len() > 1 && ["crate", "super", "self"].contains(&segs[0].as_str()) {
                out.push(segs);
            }
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

/// Where `word` starts as a whole word.
fn find_word(s: &str, word: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(k) = s[from..].find(word) {
        let at = from + k;
        let before = s[..at].chars().next_back();
        let after = s[at + word.len()..].chars().next();
        if !before.is_some_and(is_ident) && after.is_some_and(char::is_whitespace) {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

/// `a::{b, c::{d, self}}` → `a::b`, `a::c::d`, `a::c`.
fn expand(tree: &str) -> Vec<String> {
    let Some(open) = tree.find('{') else {
        return vec![tree.to_string()];
    };
    let prefix = &tree[..open];
    let body = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (k, ch) in body.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&body[start..k]);
                start = k + 1;
            }
            _ => {}
        }
    }
    parts.push(&body[start..]);
    let mut out = Vec::new();
    for part in parts.into_iter().filter(|p| !p.is_empty()) {
        for e in expand(part) {
            if e == "self" {
                out.push(prefix.trim_end_matches(':').to_string());
            } else {
                out.push(format!("{prefix}{e}"));
            }
        }
    }
    out
}

/// The deepest module `path`, named in `from`, reaches; None for a path
/// that does not start at `crate`, `super` or `self`.
fn resolve(from: &Module, path: &[String], modules: &BTreeSet<Module>) -> Option<Module> {
    let mut segs = path.iter().peekable();
    let mut base: Module = match segs.peek()?.as_str() {
        "crate" => {
            segs.next();
            Vec::new()
        }
        "super" | "self" => {
            let mut b = from.clone();
            while let Some(s) = segs.peek() {
                match s.as_str() {
                    "super" => {
                        b.pop();
                    }
                    "self" => {}
                    _ => break,
                }
                segs.next();
            }
            b
        }
        _ => return None,
    };
    for s in segs {
        base.push(s.clone());
        if !modules.contains(&base) {
            base.pop();
            break;
        }
    }
    Some(base)
}

/// The strongly connected components of more than one module, each sorted.
fn cycles(edges: &BTreeSet<(String, String)>) -> Vec<Vec<String>> {
    let mut graph: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in edges {
        graph.entry(a).or_default().push(b);
        graph.entry(b).or_default();
    }
    // Reachability closure: the graphs are small.
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from];
        while let Some(v) = todo.pop() {
            for &w in &graph[v] {
                if seen.insert(w) {
                    todo.push(w);
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&str, BTreeSet<&str>> = graph.keys().map(|&v| (v, reach(v))).collect();
    let mut out: Vec<Vec<String>> = Vec::new();
    for &v in graph.keys() {
        if !reached[v].contains(v) {
            continue;
        }
        let mut scc: Vec<String> = graph
            .keys()
            .filter(|&&w| reached[v].contains(w) && reached[w].contains(v))
            .map(|w| w.to_string())
            .collect();
        scc.sort();
        if !out.contains(&scc) {
            out.push(scc);
        }
    }
    out
}
