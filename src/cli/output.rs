//! How listing verbs print: a plain table for people, or one JSON object
//! per line (`--json`) for scripts.

use comfy_table::{ContentArrangement, Table, presets};
use serde::Serialize;

/// Prints rows as NDJSON, or as a table built from `headers` and `cells`.
pub fn print_rows<T: Serialize>(
    rows: &[T],
    json: bool,
    headers: &[&str],
    cells: impl Fn(&T) -> Vec<String>,
) -> anyhow::Result<()> {
    if json {
        for r in rows {
            println!("{}", serde_json::to_string(r)?);
        }
        return Ok(());
    }
    if rows.is_empty() {
        eprintln!("(none)");
        return Ok(());
    }
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(headers.iter().map(|h| h.to_uppercase()));
    for r in rows {
        t.add_row(cells(r));
    }
    println!("{}", t.trim_fmt());
    Ok(())
}

/// Shortens text for a table cell.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}
