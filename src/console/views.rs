//! The console's HTML, written with `maud`: every interpolated value is
//! escaped, so a payload or header full of markup shows as text. The pages
//! carry their own small stylesheet and no script; [`security_headers`]
//! forbids loading anything from elsewhere.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{Html, Response};
use http::{HeaderValue, header};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::store::deliveries::{AttemptRow, DeliveryFilter, DeliveryRow};
use crate::store::events::{EventDetail, EventFilter, EventRow, STATUSES as EVENT_STATUSES};
use crate::store::pull_status::PullStatus;
use crate::store::rejected::RejectedRow;

const STYLE: &str = "
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:.6em 1.2em;display:flex;gap:1.4em;align-items:baseline}
header a{color:#cfd8ea;text-decoration:none}header strong{font-size:1.1em}
main{padding:1em 1.2em}h1{font-size:1.3em;margin:.2em 0 .6em}h2{font-size:1.1em;margin:1.2em 0 .4em}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:.3em .6em;border-bottom:1px solid #e3e6ec;vertical-align:top}
th{background:#eef0f4;font-weight:600}
pre{background:#fff;border:1px solid #e3e6ec;padding:.6em;overflow:auto;max-height:30em;white-space:pre-wrap;word-break:break-all}
form.inline{display:inline}input,select,button{font:inherit;padding:.15em .4em}
.filters{margin-bottom:.8em;display:flex;gap:.5em;flex-wrap:wrap;align-items:center}
.metrics{display:flex;gap:.6em;flex-wrap:wrap;margin-bottom:1em}
.metric{background:#fff;border:1px solid #e3e6ec;padding:.4em .8em;min-width:6em}
.metric b{display:block;font-size:1.3em}
.s-succeeded,.s-ok{color:#17803d}.s-dead{color:#b42318;font-weight:600}
.s-failed,.s-exit,.s-timeout,.s-signal{color:#b54708}.s-pending,.s-running{color:#175cd3}
.notice{background:#ecfdf3;border:1px solid #abefc6;padding:.5em .8em;margin-bottom:1em}
.muted{color:#667085}nav.pages{margin-top:.8em}
";

/// Adds the console's security headers to every answer: nothing may be
/// loaded from elsewhere, no script runs, no framing, no sniffing.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn page(title: &str, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    title { (title) " · hookd" }
                    style { (PreEscaped(STYLE)) }
                }
                body {
                    header {
                        strong { "hookd" }
                        a href="/" { "Events" }
                        a href="/deliveries?status=dead" { "Deliveries" }
                        a href="/rejected" { "Rejected" }
                        a href="/sources" { "Sources" }
                        a href="/metrics" { "Metrics" }
                    }
                    main { (body) }
                }
            }
        }
        .into_string(),
    )
}

/// A metric figure: whole numbers without a fraction (and never `-0`).
fn figure(v: f64) -> String {
    let v = v + 0.0;
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.3}")
    }
}

/// A status word with its colour class.
fn status(s: &str) -> Markup {
    html! { span class=(format!("s-{}", s.split(' ').next().unwrap_or(s))) { (s) } }
}

/// A link to the next page, when there is one.
fn next_page(more: bool, href: String) -> Markup {
    html! {
        @if more { nav.pages { a href=(href) { "Older →" } } }
    }
}

/// Builds a query string from the set pairs (values percent-encoded).
fn query(pairs: &[(&str, Option<String>)]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", enc(v))))
        .collect::<Vec<_>>()
        .join("&")
}

pub fn problem(title: &str, detail: &str) -> Html<String> {
    page(title, html! { h1 { (title) } p { (detail) } })
}

pub fn login(error: Option<&str>) -> Html<String> {
    page(
        "Log in",
        html! {
            h1 { "Console token" }
            @if let Some(e) = error { p.notice { (e) } }
            p.muted { "This console needs the token set by [admin] token." }
            form method="post" action="/login" {
                input type="password" name="token" autocomplete="current-password" autofocus;
                " "
                button type="submit" { "Log in" }
            }
        },
    )
}

pub fn events(
    f: &EventFilter,
    size: usize,
    rows: &[EventRow],
    more: bool,
    metrics: &[(&str, f64)],
) -> Html<String> {
    let next = rows.last().map(|r| {
        format!(
            "/?{}",
            query(&[
                ("source", f.source.clone()),
                ("type", f.type_glob.clone()),
                ("status", f.status.clone()),
                ("limit", Some(size.to_string())),
                ("before", Some(r.id.to_string())),
            ])
        )
    });
    page(
        "Events",
        html! {
            div.metrics {
                @for (label, v) in metrics {
                    div.metric { b { (figure(*v)) } span.muted { (label) } }
                }
            }
            h1 { "Events" }
            form.filters method="get" action="/" {
                input name="source" placeholder="source" value=[f.source.as_deref()];
                input name="type" placeholder="type glob, e.g. message.*" value=[f.type_glob.as_deref()];
                select name="status" {
                    option value="" { "any status" }
                    @for s in EVENT_STATUSES {
                        option value=(s) selected[f.status.as_deref() == Some(s)] { (s) }
                    }
                }
                button type="submit" { "Filter" }
            }
            table {
                thead { tr { th { "id" } th { "received" } th { "source" } th { "type" } th { "event id" } th { "status" } } }
                tbody {
                    @for r in rows {
                        tr {
                            td { a href=(format!("/events/{}", r.id)) { (r.id) } }
                            td { (r.received_at) }
                            td { (r.source) }
                            td { (r.event_type) }
                            td { (r.event_id) }
                            td {
                                (status(&r.status))
                                @if r.duplicates > 0 { span.muted { " (+" (r.duplicates) " dup)" } }
                            }
                        }
                    }
                }
            }
            @if rows.is_empty() { p.muted { "No events match." } }
            (next_page(more, next.unwrap_or_default()))
        },
    )
}

/// What the event page shows.
pub struct EventView<'a> {
    pub event: &'a EventDetail,
    pub deliveries: &'a [DeliveryRow],
    pub attempts: &'a [AttemptRow],
    /// Older attempts left out to keep the page bounded.
    pub hidden_attempts: usize,
    pub queued: Option<usize>,
}

/// The body as pretty JSON, or as text when it is not JSON.
fn pretty(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}

fn replay_event_form(csrf: &str, id: i64) -> Markup {
    html! {
        form.inline method="post" action="/actions/replay-event" {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="event" value=(id);
            button type="submit" { "Replay this event" }
        }
    }
}

pub fn event(v: &EventView<'_>, csrf: Option<&str>) -> Html<String> {
    let (e, r) = (v.event, &v.event.row);
    page(
        &format!("Event {}", r.id),
        html! {
            @if let Some(n) = v.queued { p.notice { "Queued " (n) " run(s) for replay." } }
            h1 { "Event " (r.id) " " (status(&r.status)) }
            @if let Some(csrf) = csrf { p { (replay_event_form(csrf, r.id)) } }
            table {
                tr { th { "source / provider" } td { (r.source) " / " (r.provider) } }
                tr { th { "event id" } td { (r.event_id) @if r.id_synthetic { span.muted { " (synthetic: hash of the body)" } } } }
                tr { th { "type" } td { (r.event_type) span.muted { " (as sent: " (e.type_raw) ")" } } }
                tr { th { "occurred at" } td { (r.occurred_at.as_deref().unwrap_or("-")) } }
                tr { th { "received at" } td { (r.received_at) } }
                tr { th { "verified" } td { (e.verified) } }
                tr { th { "duplicates received" } td { (r.duplicates) } }
            }
            h2 { "Payload" }
            pre #payload { (pretty(&e.body)) }
            h2 { "Headers" }
            table {
                @for (k, val) in &e.headers { tr { th { (k) } td { (val) } } }
            }
            h2 { "Deliveries" }
            table {
                thead { tr { th { "id" } th { "handler" } th { "status" } th { "attempts" } th { "next attempt / last error" } } }
                @for d in v.deliveries {
                    tr {
                        td { (d.id) }
                        td { (d.handler) }
                        td { (status(&d.shown_status())) }
                        td { (d.attempts) }
                        td { (d.next_attempt_at.as_deref().or(d.last_error.as_deref()).unwrap_or("")) }
                    }
                }
            }
            h2 { "Attempts" }
            @if v.attempts.is_empty() { p.muted { "No attempt yet." } }
            @if v.hidden_attempts > 0 {
                p.muted { (v.hidden_attempts) " older attempt(s) not shown; hookd events show " (r.id) " lists them all." }
            }
            @for a in v.attempts { (attempt(a)) }
        },
    )
}

fn attempt(a: &AttemptRow) -> Markup {
    let code = match (a.exit_code, a.signal) {
        (Some(c), _) => format!("exit {c}"),
        (_, Some(s)) => format!("signal {s}"),
        _ => "-".into(),
    };
    html! {
        div.attempt {
            p {
                b { "attempt " (a.attempt) " of " (a.handler) }
                @if a.replay { " (replay)" }
                ": " (status(&a.outcome)) " (" (code) ") at " (a.started_at)
                " in " (format!("{:.1}", a.duration_ms)) " ms"
            }
            @for (name, text, cut) in [("stdout", &a.stdout, a.stdout_truncated), ("stderr", &a.stderr, a.stderr_truncated)] {
                @if !text.is_empty() {
                    p.muted { (name) @if cut { " (truncated)" } }
                    pre { (text) }
                }
            }
        }
    }
}

/// What the deliveries page shows.
pub struct DeliveriesView<'a> {
    pub filter: &'a DeliveryFilter,
    pub size: usize,
    pub rows: &'a [DeliveryRow],
    pub more: bool,
    pub handlers: &'a [String],
    pub queued: Option<usize>,
}

pub fn deliveries(v: &DeliveriesView<'_>, csrf: Option<&str>) -> Html<String> {
    let f = v.filter;
    let next = v.rows.last().map(|r| {
        format!(
            "/deliveries?{}",
            query(&[
                ("status", f.status.clone()),
                ("handler", f.handler.clone()),
                ("limit", Some(v.size.to_string())),
                ("before", Some(r.id.to_string())),
            ])
        )
    });
    page(
        "Deliveries",
        html! {
            @if let Some(n) = v.queued { p.notice { "Queued " (n) " run(s) for replay." } }
            h1 { "Deliveries" @if let Some(s) = &f.status { " · " (s) } }
            p.filters {
                @for s in ["failed", "dead", "pending", "running", "succeeded"] {
                    a href=(format!("/deliveries?status={s}")) { (s) }
                }
                a href="/deliveries" { "all" }
            }
            @if let (Some(csrf), Some("dead")) = (csrf, f.status.as_deref()) {
                p {
                    @for h in v.handlers {
                        form.inline method="post" action="/actions/replay-dead" {
                            input type="hidden" name="csrf" value=(csrf);
                            input type="hidden" name="handler" value=(h);
                            button type="submit" { "Replay all dead of " (h) }
                        }
                        " "
                    }
                }
            }
            table {
                thead { tr { th { "id" } th { "event" } th { "source" } th { "type" } th { "handler" } th { "status" } th { "attempts" } th { "next attempt / last error" } } }
                tbody {
                    @for r in v.rows {
                        tr {
                            td { (r.id) }
                            td { a href=(format!("/events/{}", r.event)) { (r.event) } }
                            td { (r.source) }
                            td { (r.event_type) }
                            td { (r.handler) }
                            td { (status(&r.shown_status())) }
                            td { (r.attempts) }
                            td { (r.next_attempt_at.as_deref().or(r.last_error.as_deref()).unwrap_or("")) }
                        }
                    }
                }
            }
            @if v.rows.is_empty() { p.muted { "No deliveries match." } }
            (next_page(v.more, next.unwrap_or_default()))
        },
    )
}

pub fn rejected(rows: &[RejectedRow], size: usize, more: bool) -> Html<String> {
    let next = rows
        .last()
        .map(|r| format!("/rejected?limit={size}&before={}", r.id));
    page(
        "Rejected",
        html! {
            h1 { "Rejected requests" }
            table {
                thead { tr { th { "received" } th { "source / path" } th { "status" } th { "reason" } th { "body" } } }
                tbody {
                    @for r in rows {
                        tr {
                            td { (r.received_at) }
                            td { (r.source.as_deref().unwrap_or(&r.path)) }
                            td { (r.status) }
                            td { (r.reason) }
                            td { code { (r.body_preview) } span.muted { " (" (r.body_len) " bytes)" } }
                        }
                    }
                }
            }
            @if rows.is_empty() { p.muted { "Nothing was refused." } }
            (next_page(more, next.unwrap_or_default()))
        },
    )
}

pub fn sources(rows: &[PullStatus]) -> Html<String> {
    page(
        "Sources",
        html! {
            h1 { "Pull sources" }
            table {
                thead { tr { th { "source" } th { "mode" } th { "state" } th { "since" } th { "events" } th { "last event" } th { "position" } th { "last error" } } }
                tbody {
                    @for r in rows {
                        tr {
                            td { (r.source) }
                            td { (r.mode) }
                            td { (status(&r.state)) }
                            td { (r.state_since) }
                            td { (r.events) }
                            td { (r.last_event_at.as_deref().unwrap_or("-")) }
                            td { (r.cursor.as_deref().or(r.last_event_id.as_deref()).unwrap_or("-")) }
                            td { (r.last_error.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
            @if rows.is_empty() { p.muted { "No SSE or poll source has run." } }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_text_is_escaped() {
        let html = problem("t", "<script>alert(1)</script>\"'&").0;
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;'&amp;"),
            "{html}"
        );
        assert!(!html.contains("<script>"));
    }

    #[test]
    fn figures_read_well() {
        assert_eq!(figure(-0.0), "0");
        assert_eq!(figure(5.0), "5");
        assert_eq!(figure(0.25), "0.250");
    }

    #[test]
    fn query_strings_are_encoded() {
        assert_eq!(
            query(&[
                ("type", Some("a b&c".into())),
                ("x", None),
                ("n", Some("2".into()))
            ]),
            "type=a%20b%26c&n=2"
        );
    }
}
