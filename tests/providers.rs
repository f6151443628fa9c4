//! Registering with LinkUp, Linq and Linked API, against the provider
//! simulator: idempotent `register`, the documented bodies and auth headers,
//! secrets saved and used at once, duplicate avoidance, the single-webhook
//! rule, `unregister`, provider errors and rate limits, `subscriptions`
//! output, `pause`/`resume`, `recover`, `send-test --remote` and
//! `register = "auto"`. The CLI verbs are the real binary.

mod simulator;
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Method;
use serde_json::{Value, json};
use simulator::{Fault, LINKEDAPI_TOKEN, LINKUP_ACCOUNT, LINKUP_KEY, LINQ_TOKEN, Simulator};
use support::*;

const PUBLIC: &str = "https://hooks.example.com";
const LONG: Duration = Duration::from_secs(20);

/// `base_config` plus `server.public_url`, then `body`.
fn write_cfg(dir: &Path, body: &str) -> PathBuf {
    let text = base_config(dir).replace(
        "[server]\n",
        &format!("[server]\npublic_url = \"{PUBLIC}\"\n"),
    );
    let p = dir.join("receiver.toml");
    std::fs::write(&p, format!("{text}{body}")).unwrap();
    p
}

fn linkup_src(sim: &Simulator, extra: &str) -> String {
    format!(
        "[[source]]\nname = \"lu\"\nprovider = \"linkup\"\naccount_id = \"{LINKUP_ACCOUNT}\"\napi_key = \"{LINKUP_KEY}\"\napi_base = \"{}\"\nevents = [\"message_received\"]\n{extra}\n",
        sim.base
    )
}

fn linq_src(sim: &Simulator, extra: &str) -> String {
    format!(
        "[[source]]\nname = \"lq\"\nprovider = \"linq\"\nevents = [\"message.received\", \"message.sent\"]\nsecret = \"linq-secret-1\"\napi_key = \"{LINQ_TOKEN}\"\napi_base = \"{}\"\n{extra}\n",
        sim.base
    )
}

fn linkedapi_src(sim: &Simulator, extra: &str) -> String {
    format!(
        "[[source]]\nname = \"la\"\nprovider = \"linkedapi\"\napi_key = \"{LINKEDAPI_TOKEN}\"\napi_base = \"{}\"\npayload_mode = \"thin\"\n{extra}\n",
        sim.base
    )
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the real binary: `hookd -c cfg ARGS…`.
fn hookd(cfg: &Path, args: &[&str]) -> Out {
    let out = assert_cmd::Command::new(bin())
        .arg("-c")
        .arg(cfg)
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0")
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `hookd … ` that must succeed.
fn ok(cfg: &Path, args: &[&str]) -> String {
    let o = hookd(cfg, args);
    assert_eq!(o.code, 0, "hookd {args:?}: {}{}", o.stdout, o.stderr);
    o.stdout
}

/// (remote_id, secret) saved for `source`.
fn saved(dir: &Path, source: &str) -> Option<(Option<String>, Option<Vec<u8>>)> {
    state_db(dir)
        .query_row(
            "SELECT remote_id, secret FROM subscriptions WHERE source = ?1",
            [source],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ok()
}

async fn linkup_emit(sim: &Simulator, id: &str, inner: Value, secret: Option<&str>) -> Option<u16> {
    let (s, id, secret) = (sim.sim.clone(), id.to_string(), secret.map(str::to_string));
    sim.on_sim(async move { s.linkup_emit(&id, inner, secret.as_deref()).await })
        .await
}

/// An in-process daemon plus the same config with `public_url` for the CLI.
async fn daemon(body: &str, sim: &Simulator) -> (TestDaemon, PathBuf) {
    let d = TestDaemon::start(body).await;
    sim.route_public(PUBLIC, &d.base);
    let cfg = write_cfg(d.dir.path(), body);
    (d, cfg)
}

// ------------------------------------------------------------- LinkUp ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linkup_register_twice_is_one_webhook_and_its_secret_verifies_pushes() {
    let sim = Simulator::start();
    let (d, cfg) = daemon(&linkup_src(&sim, ""), &sim).await;

    let first = ok(&cfg, &["register", "lu"]);
    assert!(
        first.starts_with("lu: created LinkUp subscription "),
        "{first}"
    );
    assert!(first.contains("signing secret saved"), "{first}");
    let second = ok(&cfg, &["register", "lu"]);
    assert!(
        second.starts_with("lu: reused LinkUp subscription "),
        "{second}"
    );

    let hooks = sim.linkup_webhooks();
    assert_eq!(hooks.len(), 1, "one webhook at LinkUp");
    assert_eq!(sim.calls(Method::POST, "/v2/webhooks").len(), 1);
    let create = &sim.calls(Method::POST, "/v2/webhooks")[0];
    assert_eq!(create.path, "/v2/webhooks");
    assert_eq!(create.header("x-api-key"), Some(LINKUP_KEY));
    assert_eq!(
        create.json(),
        json!({ "account_id": LINKUP_ACCOUNT, "url": format!("{PUBLIC}/hooks/lu"),
                "events": ["message_received"], "enable_signature": true })
    );
    for r in sim.requests("/v2/") {
        assert_eq!(
            r.header("x-api-key"),
            Some(LINKUP_KEY),
            "{} {}",
            r.method,
            r.path
        );
    }
    // Created active: no /start needed.
    assert!(sim.requests("/start").is_empty());

    // The one-time secret is in the state store, private to us.
    let w = &hooks[0];
    let (remote_id, secret) = saved(d.dir.path(), "lu").unwrap();
    assert_eq!(remote_id.as_deref(), Some(w.id.as_str()));
    assert_eq!(secret.as_deref(), w.secret.as_deref().map(str::as_bytes));
    let mode = std::os::unix::fs::MetadataExt::mode(
        &std::fs::metadata(d.dir.path().join("state/hookd.db")).unwrap(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // The daemon was already running: it accepts a push signed with the
    // new secret at once, and refuses one signed with another.
    let ev = json!({ "type": "message", "sender_name": "Ada", "message_text": "hi" });
    assert_eq!(linkup_emit(&sim, &w.id, ev.clone(), None).await, Some(200));
    assert_eq!(
        linkup_emit(
            &sim,
            &w.id,
            json!({"type": "message", "message_text": "forged"}),
            Some("not-the-secret")
        )
        .await,
        Some(401)
    );
    assert_eq!(
        d.count("SELECT COUNT(*) FROM events WHERE source = 'lu' AND type = 'message_received'"),
        1
    );
    eventually(LONG, || {
        (d.count("SELECT COUNT(*) FROM rejected WHERE source = 'lu'") == 1).then_some(())
    })
    .await;

    let out = ok(&cfg, &["unregister", "lu"]);
    assert!(
        out.contains(&format!("removed LinkUp subscription {}", w.id)),
        "{out}"
    );
    assert!(sim.linkup_webhooks().is_empty());
    assert_eq!(
        sim.calls(Method::DELETE, &format!("/v2/webhooks/{}", w.id))
            .len(),
        1
    );
    assert!(saved(d.dir.path(), "lu").is_none());
    d.stop().await;
}

#[test]
fn linkup_starts_a_stopped_webhook_pauses_resumes_and_rotates_a_lost_secret() {
    let sim = Simulator::start();
    sim.lock().linkup.create_stopped = true;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_cfg(dir.path(), &linkup_src(&sim, ""));
    let out = ok(&cfg, &["register"]);
    assert!(out.contains("created LinkUp subscription"), "{out}");
    let id = sim.linkup_webhooks()[0].id.clone();
    assert_eq!(
        sim.calls(Method::POST, &format!("/v2/webhooks/{id}/start"))
            .len(),
        1
    );
    assert!(sim.linkup_webhook(&id).unwrap().is_active);

    ok(&cfg, &["pause", "lu"]);
    assert!(!sim.linkup_webhook(&id).unwrap().is_active);
    assert_eq!(
        sim.calls(Method::POST, &format!("/v2/webhooks/{id}/stop"))
            .len(),
        1
    );
    ok(&cfg, &["resume", "lu"]);
    assert!(sim.linkup_webhook(&id).unwrap().is_active);

    // A fresh state directory (the secret is gone): register adopts the
    // same webhook and asks for a new secret instead of creating another.
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    let out = ok(&cfg, &["register", "lu"]);
    assert!(
        out.contains(&format!("updated LinkUp subscription {id}")),
        "{out}"
    );
    assert_eq!(sim.linkup_webhooks().len(), 1);
    assert_eq!(sim.calls(Method::POST, "/rotate-secret").len(), 1);
    let (_, secret) = saved(dir.path(), "lu").unwrap();
    assert_eq!(
        secret.as_deref(),
        sim.linkup_webhook(&id)
            .unwrap()
            .secret
            .as_deref()
            .map(str::as_bytes)
    );
}

#[test]
fn linkup_hosted_mode_registers_without_url_or_signing() {
    let sim = Simulator::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_cfg(dir.path(), &linkup_src(&sim, "mode = \"poll\""));
    ok(&cfg, &["register", "lu"]);
    ok(&cfg, &["register", "lu"]);
    let create = &sim.calls(Method::POST, "/v2/webhooks")[0];
    assert_eq!(
        create.json(),
        json!({ "account_id": LINKUP_ACCOUNT, "events": ["message_received"] })
    );
    assert_eq!(sim.linkup_webhooks().len(), 1);
    let (id, secret) = saved(dir.path(), "lu").unwrap();
    assert_eq!(id.as_deref(), Some(sim.linkup_webhooks()[0].id.as_str()));
    assert_eq!(secret, None);
}

// --------------------------------------------------------------- Linq ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linq_creates_once_then_updates_and_delivers_once() {
    let sim = Simulator::start();
    let (d, cfg) = daemon(&linq_src(&sim, ""), &sim).await;
    ok(&cfg, &["register", "lq"]);
    let out = ok(&cfg, &["register", "lq"]);
    assert!(out.starts_with("lq: reused Linq subscription 1 "), "{out}");
    assert_eq!(sim.linq_subscriptions().len(), 1);
    let posts = sim.calls(Method::POST, "/api/partner/v2/webhook_subscriptions");
    assert_eq!(posts.len(), 1, "created once");
    let body = json!({ "webhook_subscription": {
        "webhook_url": format!("{PUBLIC}/hooks/lq"), "version": 2, "secret": "linq-secret-1",
        "active": true, "events": ["message.received", "message.sent"] } });
    assert_eq!(posts[0].json(), body);
    let puts = sim.calls(Method::PUT, "/api/partner/v2/webhook_subscriptions/1");
    assert_eq!(puts.len(), 1, "the second register updated");
    assert_eq!(puts[0].json(), body);
    for r in sim.requests("/api/partner/") {
        assert_eq!(r.header("x-linq-integration-token"), Some(LINQ_TOKEN));
    }

    // Linq signs with the secret we gave it; one subscription, one delivery.
    let sim2 = sim.sim.clone();
    let statuses = sim
        .on_sim(async move {
            sim2.linq_emit("message.received", json!({"id": "m1", "text": "hi"}))
                .await
        })
        .await;
    assert_eq!(statuses, vec![Some(200)]);
    assert_eq!(
        d.count("SELECT COUNT(*) FROM events WHERE source = 'lq'"),
        1
    );

    ok(&cfg, &["pause", "lq"]);
    let last = sim
        .calls(Method::PUT, "/webhook_subscriptions/1")
        .pop()
        .unwrap();
    assert_eq!(last.json()["webhook_subscription"]["active"], false);
    assert!(!sim.linq_subscriptions()[0].active);
    ok(&cfg, &["resume", "lq"]);
    assert!(sim.linq_subscriptions()[0].active);

    let out = ok(&cfg, &["unregister", "lq"]);
    assert!(out.contains("removed Linq subscription 1"), "{out}");
    assert!(sim.linq_subscriptions().is_empty());
    assert_eq!(
        sim.calls(Method::DELETE, "/webhook_subscriptions/1").len(),
        1
    );
    let out = ok(&cfg, &["unregister", "lq"]);
    assert!(out.contains("nothing to remove"), "{out}");
    d.stop().await;
}

#[test]
fn linq_adopts_an_existing_subscription_to_our_url_instead_of_duplicating() {
    let sim = Simulator::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_cfg(dir.path(), &linq_src(&sim, ""));
    // Someone subscribed our URL by hand, with other events and inactive;
    // another subscription goes elsewhere.
    {
        use simulator::linq::Subscription;
        let mut g = sim.lock();
        for (id, url, events, active) in [
            (
                7,
                format!("{PUBLIC}/hooks/lq"),
                vec!["message.read".to_string()],
                false,
            ),
            (
                8,
                "https://example.org/linq".to_string(),
                vec!["message.received".to_string()],
                true,
            ),
        ] {
            g.linq.subscriptions.push(Subscription {
                id,
                webhook_url: url,
                version: 2,
                events,
                active,
                secret: None,
                created_at: "2024-01-15T10:30:00Z".into(),
                updated_at: "2024-01-15T10:30:00Z".into(),
            });
        }
    }
    let out = ok(&cfg, &["register", "lq"]);
    assert!(out.starts_with("lq: updated Linq subscription 7 "), "{out}");
    assert!(sim.calls(Method::POST, "/webhook_subscriptions").is_empty());
    let subs = sim.linq_subscriptions();
    assert_eq!(subs.len(), 2);
    let ours = subs.iter().find(|s| s.id == 7).unwrap();
    assert!(ours.active);
    assert_eq!(ours.events, vec!["message.received", "message.sent"]);
    assert_eq!(ours.secret.as_deref(), Some("linq-secret-1"));
    // Unregister removes ours only.
    ok(&cfg, &["unregister", "lq"]);
    let left: Vec<u64> = sim.linq_subscriptions().iter().map(|s| s.id).collect();
    assert_eq!(left, vec![8]);
}

// --------------------------------------------------------- Linked API ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linkedapi_refuses_a_foreign_webhook_unless_takeover_then_tests_remotely() {
    let sim = Simulator::start();
    let foreign = sim.linkedapi_preset("https://other.example.net/hook");
    let (d, cfg) = daemon(&linkedapi_src(&sim, ""), &sim).await;

    let o = hookd(&cfg, &["register", "la"]);
    assert_eq!(o.code, 1, "{}{}", o.stdout, o.stderr);
    assert_eq!(o.stderr.lines().count(), 1, "{}", o.stderr);
    assert!(
        o.stderr
            .starts_with("hookd: source la: Linked API allows one webhook per client"),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr.contains("https://other.example.net/hook") && o.stderr.contains("takeover = true"),
        "{}",
        o.stderr
    );
    assert_eq!(sim.linkedapi_webhook().unwrap().id, foreign, "left alone");
    assert!(sim.requests("/admin/webhook.set").is_empty());
    assert!(sim.requests("/admin/webhook.delete").is_empty());

    let cfg = write_cfg(d.dir.path(), &linkedapi_src(&sim, "takeover = true"));
    let out = ok(&cfg, &["register", "la"]);
    assert!(out.contains("replaced Linked API subscription"), "{out}");
    assert!(
        out.contains("it pointed at https://other.example.net/hook before"),
        "{out}"
    );
    assert!(out.contains("signing secret saved"), "{out}");
    let del = &sim.requests("/admin/webhook.delete")[0];
    assert_eq!(del.json(), json!({ "id": foreign }));
    let set = sim.requests("/admin/webhook.set");
    assert_eq!(set.len(), 1);
    assert_eq!(set[0].method, Method::POST);
    assert_eq!(
        set[0].json(),
        json!({ "url": format!("{PUBLIC}/hooks/la"), "payloadMode": "thin", "signingEnabled": true })
    );
    for r in sim.requests("/admin/") {
        assert_eq!(r.header("linked-api-token"), Some(LINKEDAPI_TOKEN));
        assert!(r.header("identification-token").is_none());
    }
    let w = sim.linkedapi_webhook().unwrap();
    assert_eq!(w.url, format!("{PUBLIC}/hooks/la"));
    let (_, secret) = saved(d.dir.path(), "la").unwrap();
    assert_eq!(secret.as_deref(), w.secret.as_deref().map(str::as_bytes));

    // Idempotent: the URL matches, so it is reused.
    let out = ok(&cfg, &["register", "la"]);
    assert!(
        out.starts_with(&format!("la: reused Linked API subscription {}", w.id)),
        "{out}"
    );
    assert_eq!(sim.requests("/admin/webhook.set").len(), 1);

    // The provider's own test event arrives signed with the saved secret.
    let out = ok(&cfg, &["send-test", "la", "--remote"]);
    assert!(out.contains("is sending a test event"), "{out}");
    assert_eq!(sim.requests("/admin/webhook.sendTest").len(), 1);
    eventually(LONG, || {
        (d.count("SELECT COUNT(*) FROM events WHERE source = 'la' AND type = 'webhook.test'") == 1)
            .then_some(())
    })
    .await;

    let out = ok(&cfg, &["unregister", "la"]);
    assert!(
        out.contains(&format!("removed Linked API subscription {}", w.id)),
        "{out}"
    );
    assert!(sim.linkedapi_webhook().is_none());
    assert!(saved(d.dir.path(), "la").is_none());
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linkedapi_recover_replays_failed_deliveries_once() {
    let sim = Simulator::start();
    let d = TestDaemon::start(&linkedapi_src(&sim, "")).await;
    let cfg = write_cfg(d.dir.path(), &linkedapi_src(&sim, ""));
    ok(&cfg, &["register", "la"]);
    // No route to hookd yet: the delivery fails at the provider.
    let s = sim.sim.clone();
    let (failed, status) = sim
        .on_sim(async move {
            s.linkedapi_emit(
                "workflow.completed",
                "wf-1",
                json!({"workflowId": "wf-1", "status": "completed"}),
            )
            .await
        })
        .await
        .unwrap();
    assert_eq!(status, None);
    let s = sim.sim.clone();
    sim.on_sim(async move { s.linkedapi_emit("account.active", "acc-1", json!({})).await })
        .await
        .unwrap();
    sim.route_public(PUBLIC, &d.base);
    let out = ok(&cfg, &["recover", "la"]);
    assert!(
        out.contains("redeliver 2 failed deliveries (of 2 listed)"),
        "{out}"
    );
    let replays = sim.requests("/admin/webhook.replayDelivery");
    assert_eq!(replays.len(), 2);
    assert!(
        replays
            .iter()
            .any(|r| r.json() == json!({ "deliveryId": failed }))
    );
    eventually(LONG, || {
        (d.count("SELECT COUNT(*) FROM events WHERE source = 'la'") == 2).then_some(())
    })
    .await;
    assert_eq!(
        d.count("SELECT COUNT(*) FROM events WHERE event_id = 'workflow.completed:wf-1'"),
        1
    );
    // Nothing failed any more: a second recover replays nothing.
    eventually(LONG, || {
        sim.linkedapi_deliveries()
            .iter()
            .all(|x| x.status == "success")
            .then_some(())
    })
    .await;
    let out = ok(&cfg, &["recover"]);
    assert!(out.contains("redeliver 0 failed deliveries"), "{out}");
    d.stop().await;
}

// ------------------------------------------------- errors and retries ----

#[test]
fn provider_auth_errors_are_one_line_naming_the_source_and_the_message() {
    let sim = Simulator::start();
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "{}{}",
        linkup_src(&sim, "").replace(LINKUP_KEY, "wrong-key"),
        linkedapi_src(&sim, "").replace(LINKEDAPI_TOKEN, "linked_wrong")
    );
    let cfg = write_cfg(dir.path(), &body);
    let o = hookd(&cfg, &["register"]);
    assert_eq!(o.code, 1);
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert_eq!(
        lines,
        vec![
            "hookd: source lu: LinkUp refused the API key (403: INVALID_API_KEY: Invalid API key); check api_key",
            "hookd: source la: Linked API refused the API key (401: invalidLinkedApiToken: The linked-api-token is invalid); check api_key",
        ],
        "{}",
        o.stderr
    );
    // Not retried: one call each.
    assert_eq!(sim.requests("/v2/webhooks").len(), 1);
    assert_eq!(sim.requests("/admin/").len(), 1);

    // A 401 from Linq (its error body is undocumented) reads the same way.
    let cfg = write_cfg(dir.path(), &linq_src(&sim, ""));
    sim.fault(
        Fault::new("/api/partner/v2/webhook_subscriptions", 401)
            .body(json!({"error": "Token revoked"})),
    );
    let o = hookd(&cfg, &["subscriptions"]);
    assert_eq!(o.code, 1);
    assert_eq!(
        o.stderr.trim_end(),
        "hookd: source lq: Linq refused the API key (401: Token revoked); check api_key"
    );
}

#[test]
fn rate_limits_are_retried_after_retry_after_and_server_errors_with_backoff() {
    let sim = Simulator::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_cfg(dir.path(), &linkup_src(&sim, ""));
    sim.fault(
        Fault::new("/v2/webhooks", 429)
            .method(Method::GET)
            .retry_after("1"),
    );
    sim.fault(Fault::new("/v2/webhooks", 500).method(Method::POST));
    let out = ok(&cfg, &["register", "lu"]);
    assert!(out.contains("created LinkUp subscription"), "{out}");
    let lists = sim.calls(Method::GET, "/v2/webhooks");
    assert!(lists.len() >= 2, "{}", lists.len());
    // The retry waited at least what Retry-After asked for.
    let gap = lists[1].at.duration_since(lists[0].at);
    assert!(gap >= Duration::from_millis(950), "{gap:?}");
    // The create that failed with 500 was not blindly repeated: hookd
    // listed again, found nothing, and created exactly one webhook.
    assert_eq!(sim.calls(Method::POST, "/v2/webhooks").len(), 2);
    assert_eq!(sim.linkup_webhooks().len(), 1);

    // Rate limited for longer than hookd will wait: a clear error.
    sim.fault(Fault::new("/admin/", 429).retry_after("3600"));
    let cfg = write_cfg(dir.path(), &linkedapi_src(&sim, ""));
    let o = hookd(&cfg, &["subscriptions", "la"]);
    assert_eq!(o.code, 1);
    assert_eq!(
        o.stderr.trim_end(),
        "hookd: source la: Linked API is rate limiting us (429: tooManyRequests: Too many requests: 100 per 60 seconds); retry after 3600s"
    );
}

// ------------------------------------------------------ subscriptions ----

#[test]
fn subscriptions_table_and_json_for_each_provider() {
    let sim = Simulator::start();
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "{}{}{}{}",
        linkup_src(&sim, ""),
        linq_src(&sim, ""),
        linkedapi_src(&sim, ""),
        generic_source("gh", "k")
    );
    let cfg = write_cfg(dir.path(), &body);

    // Before registering: one `missing` row per managed source, none for gh.
    let rows = json_rows(&ok(&cfg, &["subscriptions", "--json"]));
    let status: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["source"].as_str().unwrap().into(),
                r["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        status,
        vec![
            ("lu".into(), "missing".into()),
            ("lq".into(), "missing".into()),
            ("la".into(), "missing".into())
        ]
    );

    let out = ok(&cfg, &["register"]);
    assert_eq!(out.lines().count(), 3, "{out}");
    let o = hookd(&cfg, &["register", "gh"]);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr
            .contains("source gh: the generic provider has no management API"),
        "{}",
        o.stderr
    );

    // Someone else's Linq subscription shows up as `other`; a paused one as drift.
    sim.lock()
        .linq
        .subscriptions
        .push(simulator::linq::Subscription {
            id: 99,
            webhook_url: "https://example.org/linq".into(),
            version: 2,
            events: vec!["message.read".into()],
            active: true,
            secret: None,
            created_at: "2024-01-15T10:30:00Z".into(),
            updated_at: "2024-01-15T10:30:00Z".into(),
        });
    ok(&cfg, &["pause", "lu"]);

    let table = ok(&cfg, &["subscriptions"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 5, "{table}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "SOURCE", "PROVIDER", "ID", "STATUS", "ACTIVE", "URL", "EVENTS", "DETAIL"
        ]
    );
    let lu_id = sim.linkup_webhooks()[0].id.clone();
    let la_id = sim.linkedapi_webhook().unwrap().id;
    let expect = [
        vec![
            "lu",
            "linkup",
            &lu_id,
            "drift",
            "no",
            "https://hooks.example.com/hooks/lu",
            "message_received",
            "stopped",
        ],
        vec![
            "lq",
            "linq",
            "1",
            "ours",
            "yes",
            "https://hooks.example.com/hooks/lq",
            "message.received,message.sent",
        ],
        vec![
            "lq",
            "linq",
            "99",
            "other",
            "yes",
            "https://example.org/linq",
            "message.read",
        ],
        vec![
            "la",
            "linkedapi",
            &la_id,
            "ours",
            "yes",
            "https://hooks.example.com/hooks/la",
            "",
        ],
    ];
    for (line, want) in lines[1..].iter().zip(expect) {
        let got: Vec<&str> = line.split_whitespace().collect();
        let want: Vec<&str> = want.into_iter().filter(|s| !s.is_empty()).collect();
        assert_eq!(got, want, "{table}");
    }

    let rows = json_rows(&ok(&cfg, &["subscriptions", "--json", "lq"]));
    assert_eq!(rows.len(), 2);
    let ours = &rows[0];
    assert_eq!(ours["source"], "lq");
    assert_eq!(ours["provider"], "linq");
    assert_eq!(ours["id"], "1");
    assert_eq!(ours["status"], "ours");
    assert_eq!(ours["active"], true);
    assert_eq!(ours["url"], format!("{PUBLIC}/hooks/lq"));
    assert_eq!(ours["events"], json!(["message.received", "message.sent"]));
    assert_eq!(ours["registered_id"], "1");
    assert_eq!(ours["wanted"]["url"], format!("{PUBLIC}/hooks/lq"));
    assert_eq!(ours["extra"]["secret_configured"], true);
    assert_eq!(rows[1]["status"], "other");

    let rows = json_rows(&ok(&cfg, &["subscriptions", "--json", "lu", "la"]));
    assert_eq!(rows[0]["status"], "drift");
    assert_eq!(rows[0]["detail"], "stopped");
    assert_eq!(rows[0]["extra"]["account_id"], LINKUP_ACCOUNT);
    assert_eq!(rows[1]["extra"]["payloadMode"], "thin");
}

fn json_rows(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

// ------------------------------------------------------------- auto ----

#[test]
fn register_auto_at_run_start_and_the_secret_is_used_at_once() {
    let sim = Simulator::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_cfg(dir.path(), &linkup_src(&sim, "register = \"auto\""));
    let p = Proc::spawn(&cfg, &[]);
    sim.route_public(PUBLIC, &format!("http://{}", p.addr));
    let deadline = std::time::Instant::now() + LONG;
    let id = loop {
        if let Some((Some(id), Some(_))) = saved(dir.path(), "lu") {
            break id;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not registered; stderr: {}",
            p.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(sim.linkup_webhooks().len(), 1);
    let (s, id2) = (sim.sim.clone(), id.clone());
    let status = sim.on_sim_blocking(async move {
        s.linkup_emit(&id2, json!({"type": "message", "message_text": "hi"}), None)
            .await
    });
    assert_eq!(status, Some(200), "stderr: {}", p.stderr());
    assert!(
        p.stderr()
            .contains(&format!("created LinkUp subscription {id}")),
        "{}",
        p.stderr()
    );
    assert!(
        !p.stderr()
            .contains(&sim.linkup_webhook(&id).unwrap().secret.unwrap())
    );
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait(LONG), Some(0));

    // A second start reuses the webhook.
    let p = Proc::spawn(&cfg, &[]);
    let deadline = std::time::Instant::now() + LONG;
    while !p.stderr().contains("reused LinkUp subscription") {
        assert!(
            std::time::Instant::now() < deadline,
            "stderr: {}",
            p.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(sim.linkup_webhooks().len(), 1);
    assert_eq!(sim.calls(Method::POST, "/v2/webhooks").len(), 1);
}

/// A `register = "auto"` source added by a reload is registered then; a
/// second reload only finds it again (no duplicate).
#[test]
fn register_auto_runs_again_after_a_reload() {
    let sim = Simulator::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_cfg(dir.path(), &linq_src(&sim, ""));
    let mut p = Proc::spawn(&cfg, &[]);
    sim.route_public(PUBLIC, &format!("http://{}", p.addr));
    assert!(sim.linkup_webhooks().is_empty());

    let wait_log = |p: &Proc, what: &str| {
        let deadline = std::time::Instant::now() + LONG;
        while !p.stderr().contains(what) {
            assert!(
                std::time::Instant::now() < deadline,
                "no {what:?}; stderr: {}",
                p.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    write_cfg(
        dir.path(),
        &format!(
            "{}{}",
            linq_src(&sim, ""),
            linkup_src(&sim, "register = \"auto\"")
        ),
    );
    p.signal(libc::SIGHUP);
    p.wait_for("RELOADING=1");
    p.wait_for("READY=1");
    wait_log(&p, "created LinkUp subscription");
    assert_eq!(sim.linkup_webhooks().len(), 1);

    p.signal(libc::SIGHUP);
    p.wait_for("RELOADING=1");
    p.wait_for("READY=1");
    wait_log(&p, "reused LinkUp subscription");
    assert_eq!(sim.linkup_webhooks().len(), 1);
    assert_eq!(sim.calls(Method::POST, "/v2/webhooks").len(), 1);
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait(LONG), Some(0));
}
