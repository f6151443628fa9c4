//! Every relative link in README.md and docs/*.md resolves: the file
//! exists, and a `#anchor` names a heading of the target (GitHub's slugs).
//! No network: links with a scheme (`https:`, `mailto:`) are not followed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The pages checked: README.md and every Markdown file under docs/.
fn pages() -> Vec<PathBuf> {
    let mut out = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|e| e.expect("docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    out.extend(docs);
    out
}

/// Lines outside fenced code blocks, with inline code spans blanked out.
fn prose(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut clean = String::new();
        let mut in_code = false;
        for c in line.chars() {
            if c == '`' {
                in_code = !in_code;
                clean.push(' ');
            } else {
                clean.push(if in_code { ' ' } else { c });
            }
        }
        out.push(clean);
    }
    out
}

/// Link targets: `[text](target)`, `![alt](target)` and `[ref]: target`.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in prose(text) {
        let mut rest = line.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            // `[x](path "title")`: the target is the first word.
            let target = after[..end].split_whitespace().next().unwrap_or("");
            out.push(target.trim_matches(['<', '>']).to_string());
            rest = &after[end..];
        }
        let t = line.trim_start();
        if t.starts_with('[')
            && let Some((label, target)) = t.split_once("]:")
            && !label.contains("](")
            && let Some(target) = target.split_whitespace().next()
        {
            out.push(target.to_string());
        }
    }
    out
}

/// GitHub's anchor for a heading: lowercase, spaces to `-`, every other
/// character but letters, digits, `-` and `_` dropped.
fn slug(heading: &str) -> String {
    // Link text stands for the link; emphasis and code marks are dropped.
    let mut text = String::new();
    let mut rest = heading;
    while let Some(i) = rest.find("](") {
        let Some(end) = rest[i..].find(')') else {
            break;
        };
        text.push_str(&rest[..i]);
        rest = &rest[i + end + 1..];
    }
    text.push_str(rest);
    text.trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// Every anchor a page offers, duplicates numbered as GitHub does (`-1`, …).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let heading = line.trim_start_matches('#');
        if !heading.starts_with(' ') {
            continue;
        }
        let base = slug(heading);
        let mut s = base.clone();
        let mut n = 0;
        while seen.contains(&s) {
            n += 1;
            s = format!("{base}-{n}");
        }
        seen.insert(s);
    }
    seen
}

/// The broken links of `text`, a page in directory `dir` (named `page`).
fn broken(page: &Path, text: &str) -> Vec<String> {
    let dir = page.parent().expect("a page has a directory");
    let mut bad = Vec::new();
    for link in links(text) {
        if link.is_empty() || link.contains("://") || link.starts_with("mailto:") {
            continue;
        }
        let (file, anchor) = match link.split_once('#') {
            Some((f, a)) => (f, Some(a)),
            None => (link.as_str(), None),
        };
        let (target, target_text) = if file.is_empty() {
            (page.to_path_buf(), Some(text.to_string()))
        } else {
            let t = dir.join(file);
            if !t.exists() {
                bad.push(format!(
                    "{}: {link}: no such file {}",
                    page.display(),
                    t.display()
                ));
                continue;
            }
            let body = t
                .extension()
                .is_some_and(|e| e == "md")
                .then(|| std::fs::read_to_string(&t).expect("readable"));
            (t, body)
        };
        if let Some(a) = anchor {
            match target_text {
                Some(body) if anchors(&body).contains(a) => {}
                Some(_) => bad.push(format!(
                    "{}: {link}: {} has no heading with anchor #{a}",
                    page.display(),
                    target.display()
                )),
                None => bad.push(format!(
                    "{}: {link}: an anchor into a file that is not Markdown",
                    page.display()
                )),
            }
        }
    }
    bad
}

#[test]
fn slugs_follow_github() {
    assert_eq!(
        slug(" Following live: `hookd tail` and the web console"),
        "following-live-hookd-tail-and-the-web-console"
    );
    assert_eq!(
        slug(" What the providers leave open, and what hookd chose"),
        "what-the-providers-leave-open-and-what-hookd-chose"
    );
    assert_eq!(slug(" `[source.sse]`"), "sourcesse");
    assert_eq!(
        slug(" LinkUp (linkupapi.com, v2 webhooks)"),
        "linkup-linkupapicom-v2-webhooks"
    );
    assert_eq!(slug(" See [the spec](x.md) now"), "see-the-spec-now");
    let a = anchors("# Top\n## Top\n```\n# not a heading\n```\n#no\n");
    assert_eq!(a, BTreeSet::from(["top".to_string(), "top-1".to_string()]));
}

#[test]
fn the_checker_finds_broken_links() {
    // A page as if in docs/: one good link and three broken ones.
    let page = root().join("docs").join("probe.md");
    let text = "# Probe\n\
        [ok](reliability.md#reliability) [self](#probe) [up](../README.md)\n\
        [gone](no-such-page.md) [bad anchor](reliability.md#no-such-heading) [self](#nope)\n\
        `[in code](not-checked.md)`\n";
    let bad = broken(&page, text);
    assert_eq!(bad.len(), 3, "{bad:#?}");
    assert!(bad[0].contains("no-such-page.md"), "{bad:#?}");
    assert!(bad[1].contains("#no-such-heading"), "{bad:#?}");
    assert!(bad[2].contains("#nope"), "{bad:#?}");
}

#[test]
fn every_relative_link_resolves() {
    let pages = pages();
    assert!(pages.len() > 5, "README.md and docs/*.md: {pages:?}");
    let mut bad = Vec::new();
    let mut checked = 0;
    for page in &pages {
        let text = std::fs::read_to_string(page).expect("readable page");
        checked += links(&text).len();
        bad.extend(broken(page, &text));
    }
    assert!(
        checked > 20,
        "only {checked} links found; is the parser broken?"
    );
    assert!(bad.is_empty(), "broken links:\n{}", bad.join("\n"));
}
