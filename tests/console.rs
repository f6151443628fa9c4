//! The web console over HTTP (no browser): hostile payloads show as text,
//! pages are bounded, actions need `console_actions` and the CSRF token,
//! and `[admin] token` guards every page. The pages and actions also run
//! on a PostgreSQL store (in-process, on tests/pg_support's cluster).

mod pg_support;
mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hookd::console::{self, Console};
use hookd::store::Backend;
use hookd::store::deliveries::{AttemptRecord, DeliveryFilter, Next};
use hookd::store::events::NewEvent;
use hookd::store::pg::{PgOptions, PgStore};
use hookd::store::rejected::NewRejection;

use support::*;

/// `base_config` ends with the `[admin]` table, so these lines land in it.
const ACTIONS_ON: &str = "console_actions = true\n\n";

const HOSTILE: &str = r#"{"id":"evil","type":"<img src=x onerror=alert(1)>","note":"</pre><script>alert('pwned')</script>"}"#;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn get(c: &reqwest::Client, url: &str) -> (u16, String) {
    let r = c.get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// A handler that always fails once and is dead after that.
fn dead_end(dir: &std::path::Path) -> String {
    let fail = script(
        dir,
        "fail.sh",
        "#!/bin/sh\necho failing on purpose\nexit 7\n",
    );
    format!(
        "[[handler]]\nname = \"h\"\ncommand = [\"{}\"]\nmax_attempts = 1\n\n",
        fail.display()
    )
}

/// POSTs an urlencoded form (reqwest's `form` feature is off here).
async fn post_form(c: &reqwest::Client, url: &str, pairs: &[(&str, &str)]) -> reqwest::Response {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let body: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect();
    c.post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.join("&"))
        .send()
        .await
        .unwrap()
}

/// The value of the hidden `csrf` input in a page.
fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..at + 64].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_payloads_show_as_text_and_pages_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start_in(dir, &generic_source("s", "k")).await;
    let (c, admin) = (client(), d.admin.clone().unwrap());
    let (st, v) = post_signed(&c, &d.url("/hooks/s"), "k", HOSTILE).await;
    assert_eq!(st, 200);
    let evil = v["id"].as_i64().unwrap();
    for i in 0..4 {
        let body = format!(r#"{{"id":"n{i}","type":"t"}}"#);
        post_signed(&c, &d.url("/hooks/s"), "k", &body).await;
    }

    let r = c
        .get(format!("{admin}/events/{evil}"))
        .send()
        .await
        .unwrap();
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let page = r.text().await.unwrap();
    assert!(
        page.contains("&lt;/pre&gt;&lt;script&gt;alert('pwned')&lt;/script&gt;"),
        "{page}"
    );
    assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(
        !page.contains("<script>") && !page.contains("<img"),
        "{page}"
    );
    assert!(
        !page.contains("Replay this event"),
        "no action buttons when actions are off"
    );

    // Two rows a page, newest first, and a link to the next page.
    let (st, first) = get(&c, &format!("{admin}/?limit=2")).await;
    assert_eq!(st, 200);
    let rows = |html: &str| html.matches("<td><a href=\"/events/").count();
    assert_eq!(rows(&first), 2);
    assert!(first.contains("n3") && !first.contains("n1"));
    let at = first.find("href=\"/?").expect("an Older link") + 6;
    let next = &first[at..at + first[at..].find('"').unwrap()];
    let (_, second) = get(&c, &format!("{admin}{}", next.replace("&amp;", "&"))).await;
    assert_eq!(rows(&second), 2);
    assert!(second.contains("n1") && second.contains("n0") && !second.contains("n3"));
    // A limit of 0 still shows one row; a huge one is capped, not an error.
    assert_eq!(rows(&get(&c, &format!("{admin}/?limit=0")).await.1), 1);
    assert_eq!(
        rows(&get(&c, &format!("{admin}/?limit=99999999")).await.1),
        5
    );
    // Filters, and a status that does not exist.
    let (_, only_t) = get(&c, &format!("{admin}/?type=t&source=s&status=")).await;
    assert_eq!(rows(&only_t), 4);
    assert_eq!(get(&c, &format!("{admin}/?status=bogus")).await.0, 400);
    // Refused requests page the same way.
    for _ in 0..3 {
        c.post(d.url("/hooks/s")).body("{}").send().await.unwrap();
    }
    // Refusals are recorded after the answer, so wait until all three are.
    let recorded = "SELECT COUNT(*) FROM rejected";
    eventually(Duration::from_secs(10), || {
        (d.count(recorded) == 3).then_some(())
    })
    .await;
    let (_, refused) = get(&c, &format!("{admin}/rejected?limit=2")).await;
    assert_eq!(refused.matches("</code>").count(), 2, "{refused}");
    let at = refused.find("href=\"/rejected?").expect("an Older link") + 6;
    let next = &refused[at..at + refused[at..].find('"').unwrap()];
    let (_, rest) = get(&c, &format!("{admin}{}", next.replace("&amp;", "&"))).await;
    assert_eq!(rest.matches("</code>").count(), 1, "{rest}");
    // The other pages answer, the metrics headline counts what arrived.
    assert!(
        first.contains("<b>5</b><span class=\"muted\">accepted</span>"),
        "{first}"
    );
    for p in ["/deliveries?status=dead", "/rejected", "/sources"] {
        assert_eq!(get(&c, &format!("{admin}{p}")).await.0, 200, "{p}");
    }
    assert_eq!(get(&c, &format!("{admin}/events/999999")).await.0, 404);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_are_refused_when_off() {
    let dir = tempfile::tempdir().unwrap();
    let body = format!("{}{}", generic_source("s", "k"), dead_end(dir.path()));
    let d = TestDaemon::start_in(dir, &body).await;
    let (c, admin) = (client(), d.admin.clone().unwrap());
    post_signed(&c, &d.url("/hooks/s"), "k", r#"{"id":"a","type":"t"}"#).await;
    all_settled(d.dir.path(), Duration::from_secs(20)).await;
    let (_, page) = get(&c, &format!("{admin}/deliveries?status=dead")).await;
    assert!(!page.contains("csrf"), "no forms when actions are off");
    let r = post_form(
        &c,
        &format!("{admin}/actions/replay-dead"),
        &[("csrf", "x".repeat(64).as_str()), ("handler", "h")],
    )
    .await;
    assert_eq!(r.status().as_u16(), 403);
    assert!(r.text().await.unwrap().contains("console_actions = true"));
    let dead = "SELECT COUNT(*) FROM deliveries WHERE status = 'dead'";
    assert_eq!(d.count(dead), 1);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_needs_the_pages_csrf_token_and_requeues() {
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "{ACTIONS_ON}{}{}",
        generic_source("s", "k"),
        dead_end(dir.path())
    );
    let d = TestDaemon::start_in(dir, &body).await;
    let (c, admin) = (client(), d.admin.clone().unwrap());
    for id in ["a", "b"] {
        let body = format!(r#"{{"id":"{id}","type":"t"}}"#);
        post_signed(&c, &d.url("/hooks/s"), "k", &body).await;
    }
    all_settled(d.dir.path(), Duration::from_secs(20)).await;
    let attempts = "SELECT COUNT(*) FROM attempts";
    assert_eq!(d.count(attempts), 2);

    let (_, page) = get(&c, &format!("{admin}/deliveries?status=dead")).await;
    assert!(page.contains("Replay all dead of h"), "{page}");
    let csrf = csrf_of(&page);
    // A wrong or missing token changes nothing.
    for bad in ["0".repeat(64), String::new()] {
        let r = post_form(
            &c,
            &format!("{admin}/actions/replay-dead"),
            &[("csrf", bad.as_str()), ("handler", "h")],
        )
        .await;
        assert_eq!(r.status().as_u16(), 403);
        assert!(r.text().await.unwrap().contains("CSRF"));
    }
    assert_eq!(d.count(attempts), 2);
    // Nor does the right token sent from another site's page.
    let r = c
        .post(format!("{admin}/actions/replay-dead"))
        .header("origin", "http://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&handler=h"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    // A page fetched under a rebound DNS name does not get the token.
    let r = c
        .get(format!("{admin}/deliveries?status=dead"))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 421);
    assert!(!r.text().await.unwrap().contains(&csrf));
    assert_eq!(d.count(attempts), 2);
    // A GET is not an action.
    let (st, _) = get(
        &c,
        &format!("{admin}/actions/replay-dead?handler=h&csrf={csrf}"),
    )
    .await;
    assert_eq!(st, 405);

    let r = post_form(
        &c,
        &format!("{admin}/actions/replay-dead"),
        &[("csrf", csrf.as_str()), ("handler", "h")],
    )
    .await;
    assert_eq!(r.status().as_u16(), 303);
    let to = r.headers()["location"].to_str().unwrap().to_string();
    assert!(to.contains("queued=2"), "{to}");
    // Both ran again, as replays, and died again.
    eventually(Duration::from_secs(20), || {
        (d.count(attempts) == 4).then_some(())
    })
    .await;
    let replays = "SELECT COUNT(*) FROM attempts WHERE replay = 1";
    assert_eq!(d.count(replays), 2);

    // One event from its page.
    let (_, page) = get(&c, &format!("{admin}/events/1")).await;
    assert!(page.contains("Replay this event"));
    let r = post_form(
        &c,
        &format!("{admin}/actions/replay-event"),
        &[("csrf", csrf_of(&page).as_str()), ("event", "1")],
    )
    .await;
    assert_eq!(r.status().as_u16(), 303);
    eventually(Duration::from_secs(20), || {
        (d.count(attempts) == 5).then_some(())
    })
    .await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_token_guards_every_page() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("console.token");
    std::fs::write(&token_file, "let-me-in\n").unwrap();
    let body = format!(
        "token = \"file:{}\"\n\n{}",
        token_file.display(),
        generic_source("s", "k")
    );
    let d = TestDaemon::start_in(dir, &body).await;
    let (c, admin) = (client(), d.admin.clone().unwrap());
    for p in ["/", "/events/1", "/deliveries", "/rejected", "/sources"] {
        let (st, page) = get(&c, &format!("{admin}{p}")).await;
        assert_eq!(st, 401, "{p}");
        assert!(page.contains("action=\"/login\""), "{p}: {page}");
    }
    let r = post_form(
        &c,
        &format!("{admin}/actions/replay-event"),
        &[("csrf", "x"), ("event", "1")],
    )
    .await;
    assert_eq!(r.status().as_u16(), 401);
    // Health and metrics stay open for probes and scrapers.
    assert_eq!(get(&c, &format!("{admin}/healthz")).await.0, 200);
    // A bearer header works; a wrong one does not.
    let bearer = |t: &str| c.get(format!("{admin}/")).bearer_auth(t).send();
    assert_eq!(bearer("let-me-in").await.unwrap().status().as_u16(), 200);
    assert_eq!(bearer("let-me-out").await.unwrap().status().as_u16(), 401);
    // The login form: a wrong token is refused, the right one sets a cookie.
    let login = format!("{admin}/login");
    let r = post_form(&c, &login, &[("token", "nope")]).await;
    assert_eq!(r.status().as_u16(), 401);
    let r = post_form(&c, &login, &[("token", "let-me-in")]).await;
    assert_eq!(r.status().as_u16(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    assert!(
        !cookie.contains("let-me-in"),
        "the cookie is a session, not the token"
    );
    let session = cookie.split(';').next().unwrap();
    let r = c
        .get(format!("{admin}/rejected"))
        .header("cookie", session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    d.stop().await;
}

#[test]
fn a_console_token_that_cannot_be_read_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "token = \"env:HOOKD_TEST_NO_SUCH_CONSOLE_TOKEN\"\n",
    );
    let err = hookd::config::load(&path).unwrap_err().to_string();
    assert!(err.contains("admin.token"), "{err}");
    assert!(
        err.contains("receiver.toml:"),
        "names the file and line: {err}"
    );
    assert!(
        err.contains("HOOKD_TEST_NO_SUCH_CONSOLE_TOKEN is not set"),
        "{err}"
    );
}

/// A console with actions on, over `store`, serving on a loopback port;
/// returns its base URL and the dispatcher's wake-up.
async fn console_over(
    store: Backend,
    config: &std::path::Path,
) -> (String, Arc<tokio::sync::Notify>) {
    let cfg = hookd::config::load(config).unwrap();
    let wake = Arc::new(tokio::sync::Notify::new());
    let c = Console {
        store,
        metrics: Arc::new(hookd::metrics::Metrics::new()),
        runtime: hookd::runtime::Runtime::new(cfg, &HashMap::new()).shared(),
        wake: wake.clone(),
        auth: Arc::new(console::auth::Auth::new(None).unwrap()),
        actions: true,
        loopback_only: true,
    };
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, console::router(c)).await });
    (format!("http://{addr}"), wake)
}

/// Stores an event whose one run in `h` died, printing `stderr`.
async fn dead_event(s: &Backend, id: &str, stderr: &str) {
    let e = NewEvent {
        source: "s".into(),
        provider: "generic".into(),
        event_id: id.into(),
        id_synthetic: false,
        event_type: "t".into(),
        type_raw: "t".into(),
        occurred_at: None,
        received_at: hookd::timefmt::now_micros(),
        headers_json: "[]".into(),
        body: bytes::Bytes::from(format!(r#"{{"id":"{id}"}}"#)),
        verified: "hmac".into(),
        handlers: vec!["h".into()],
    };
    s.insert_event(e).await.unwrap();
    let now = hookd::timefmt::now_micros();
    let run = s.claim("h", now, 1).await.unwrap().remove(0);
    let died = AttemptRecord {
        attempt: 1,
        started_at: now,
        outcome: "exit".into(),
        exit_code: Some(7),
        stderr: stderr.as_bytes().to_vec(),
        summary: "exit 7".into(),
        ..Default::default()
    };
    assert!(s.finish(run.delivery, died, Next::Dead, now).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_replay_run_on_a_postgresql_store() {
    let Some(db) = pg_support::database() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "{ACTIONS_ON}{}{}",
            generic_source("s", "k"),
            dead_end(dir.path())
        ),
    );
    let pg = Backend::Postgres(PgStore::open(&db.url, PgOptions::default()).await.unwrap());
    dead_event(&pg, "first", "failing on purpose").await;
    dead_event(&pg, "second", "failing again").await;
    let refused = NewRejection {
        source: Some("s".into()),
        path: "/hooks/s".into(),
        status: 401,
        reason: "no signature matches".into(),
        code: "bad_signature".into(),
        received_at: hookd::timefmt::now_micros(),
        remote: None,
        headers: vec![],
        body: b"{}".to_vec(),
    };
    pg.insert_rejected(refused, 100).await.unwrap();
    let (base, wake) = console_over(pg.clone(), &config).await;
    let c = client();

    let (st, page) = get(&c, &format!("{base}/?limit=1")).await;
    assert_eq!(st, 200);
    assert!(page.contains("second") && !page.contains("first"), "{page}");
    let (_, page) = get(&c, &format!("{base}/events/1")).await;
    assert!(page.contains("failing on purpose"), "{page}");
    let (_, page) = get(&c, &format!("{base}/rejected")).await;
    assert!(page.contains("no signature matches"), "{page}");
    let (st, _) = get(&c, &format!("{base}/sources")).await;
    assert_eq!(st, 200);
    let (_, page) = get(&c, &format!("{base}/deliveries?status=dead")).await;
    assert!(page.contains("Replay all dead of h"), "{page}");

    let r = post_form(
        &c,
        &format!("{base}/actions/replay-dead"),
        &[("csrf", csrf_of(&page).as_str()), ("handler", "h")],
    )
    .await;
    assert_eq!(r.status().as_u16(), 303);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .contains("queued=2")
    );
    // The dispatcher was told (the wake-up keeps its permit until taken).
    tokio::time::timeout(Duration::from_secs(5), wake.notified())
        .await
        .expect("the dispatcher is woken");
    let rows = pg.list_deliveries(DeliveryFilter::default()).await.unwrap();
    let states: Vec<(&str, u32, bool)> = rows
        .iter()
        .map(|r| (r.status.as_str(), r.attempts, r.replay))
        .collect();
    assert_eq!(states, [("pending", 0, true), ("pending", 0, true)]);
}
