//! `kind = "http"` handlers against real local servers (`http_target`):
//! what is sent (envelope or the raw payload, signed, with a webhook-id
//! that survives retries and replay), how answers are judged (2xx, 5xx,
//! 429 with Retry-After, 4xx with and without retry_on_4xx, a hang, a
//! target that is down, a huge answer), TLS with a private CA, the global
//! cap, SIGTERM and SIGKILL with a request in flight, and what `hookd
//! events show`, `hookd deliveries` and `hookd check` tell.
//!
//! Requests are waited for on the target's channel; outcomes on the
//! database, through `eventually` with generous bounds. No sleeps.

mod http_target;
mod support;

use std::path::Path;
use std::time::Duration;

use http_target::{Answer, Target};
use rusqlite::OptionalExtension;
use serde_json::{Value, json};
use support::{
    Proc, TestDaemon, all_settled, bin, eventually, generic_source, post_signed, state_db,
};

const KEY: &str = "k";
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const LONG: Duration = Duration::from_secs(60);

/// A source `s` and one http handler `h` to `url`; `extra` adds keys.
fn config(url: &str, extra: &str) -> String {
    format!(
        "{}[[handler]]\nname = \"h\"\nkind = \"http\"\nurl = \"{url}\"\nbackoff = {{ initial = \"20ms\", max = \"100ms\" }}\n{extra}\n",
        generic_source("s", KEY)
    )
}

async fn send(d: &TestDaemon, body: &str) -> i64 {
    let c = reqwest::Client::new();
    let (status, answer) = post_signed(&c, &d.url("/hooks/s"), KEY, body).await;
    assert_eq!(status, 200, "{answer}");
    answer["id"].as_i64().unwrap()
}

fn event(id: &str) -> String {
    json!({"id": id, "type": "invoice.paid", "data": {"amount": 12, "name": "Zoë"}}).to_string()
}

/// (status, attempts, last_error) of the delivery of `event_id` to `handler`.
fn delivery(dir: &Path, event_id: &str, handler: &str) -> Option<(String, i64, Option<String>)> {
    state_db(dir)
        .query_row(
            "SELECT d.status, d.attempts, d.last_error FROM deliveries d JOIN events e ON e.id = d.event
             WHERE e.event_id = ?1 AND d.handler = ?2",
            [event_id, handler],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .unwrap()
}

/// Waits for the delivery to reach `status`; returns (attempts, last_error).
async fn settled(d: &TestDaemon, event_id: &str, handler: &str, status: &str) -> (i64, String) {
    eventually(LONG, || {
        delivery(d.dir.path(), event_id, handler)
            .filter(|(s, _, _)| s == status)
            .map(|(_, n, e)| (n, e.unwrap_or_default()))
    })
    .await
}

#[derive(Debug)]
struct Attempt {
    outcome: String,
    http_status: Option<u16>,
    duration_us: i64,
    response: Vec<u8>,
    truncated: bool,
}

fn attempts(d: &TestDaemon, event_id: &str, handler: &str) -> Vec<Attempt> {
    let c = state_db(d.dir.path());
    let mut stmt = c
        .prepare(
            "SELECT a.outcome, a.http_status, a.duration_us, a.stdout, a.stdout_truncated
             FROM attempts a JOIN deliveries d ON d.id = a.delivery JOIN events e ON e.id = d.event
             WHERE e.event_id = ?1 AND d.handler = ?2 ORDER BY a.id",
        )
        .unwrap();
    stmt.query_map([event_id, handler], |r| {
        Ok(Attempt {
            outcome: r.get(0)?,
            http_status: r.get(1)?,
            duration_us: r.get(2)?,
            response: r.get::<_, Option<Vec<u8>>>(3)?.unwrap_or_default(),
            truncated: r.get(4)?,
        })
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

fn outcomes(a: &[Attempt]) -> Vec<(&str, Option<u16>)> {
    a.iter()
        .map(|a| (a.outcome.as_str(), a.http_status))
        .collect()
}

/// Runs a CLI verb against the daemon's config; its stdout.
async fn hookd_ok(d: &TestDaemon, args: &[&str]) -> String {
    let out = tokio::process::Command::new(bin())
        .arg("-c")
        .arg(&d.config_path)
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "hookd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Checks a request's Standard Webhooks signature with hookd's verifier
/// (the one tested against the official vectors) at the time it carries.
fn verify_signature(seen: &http_target::Seen) {
    let scheme = hookd::verify::Scheme::StandardWebhooks;
    let key = scheme.derive_key(WHSEC.as_bytes()).unwrap();
    let ts: i64 = seen.header("webhook-timestamp").parse().unwrap();
    let req = hookd::verify::Request {
        headers: &seen.headers,
        body: &seen.body,
    };
    scheme
        .verify(&req, &[key], ts, Duration::from_secs(1))
        .unwrap_or_else(|e| panic!("signature does not verify: {e}"));
}

// -------------------------------------------------------------- tests ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_sends_the_signed_envelope_and_records_the_answer() {
    let mut t = Target::start().await;
    t.plan([Answer::Status(
        200,
        vec![("content-type", "text/plain".into())],
        b"thanks".to_vec(),
    )]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "Bearer s3cr3t\n").unwrap();
    let extra = format!(
        "headers = {{ Authorization = \"file:{}\" }}\nsign = {{ scheme = \"standard-webhooks\", secret = \"{WHSEC}\" }}",
        dir.path().join("token").display()
    );
    let d = TestDaemon::start_in(
        dir,
        &config(&format!("{}/in/{{source}}/{{type}}", t.base), &extra),
    )
    .await;
    let id = send(&d, &event("e1")).await;

    let seen = t.next().await;
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/in/s/invoice.paid");
    assert_eq!(seen.header("content-type"), "application/json");
    assert_eq!(seen.header("authorization"), "Bearer s3cr3t");
    assert_eq!(seen.header("hookd-event-id"), "e1");
    assert_eq!(seen.header("hookd-attempt"), "1");
    assert!(seen.header("webhook-id").starts_with("msg_"));
    verify_signature(&seen);
    let env: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(env["id"], id);
    assert_eq!(env["event_id"], "e1");
    assert_eq!(env["type"], "invoice.paid");
    assert_eq!(env["payload"]["data"]["name"], "Zoë");

    assert_eq!(settled(&d, "e1", "h", "succeeded").await.0, 1);
    let a = attempts(&d, "e1", "h");
    assert_eq!(outcomes(&a), [("ok", Some(200))]);
    assert_eq!(a[0].response, b"thanks");
    assert!(a[0].duration_us > 0);

    let show = hookd_ok(&d, &["events", "show", &id.to_string()]).await;
    assert!(show.contains("attempt 1 of h: ok (HTTP 200)"), "{show}");
    assert!(show.contains("response:\n      thanks"), "{show}");
    assert!(
        !show.contains("s3cr3t"),
        "a header secret was printed: {show}"
    );
    let metrics = reqwest::get(format!("{}/metrics", d.admin.as_ref().unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("hookd_http_answers_total{handler=\"h\",class=\"2xx\"} 1"),
        "{metrics}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_is_retried_with_the_same_webhook_id_and_so_is_a_replay() {
    let mut t = Target::start().await;
    t.plan([Answer::Status(503, vec![], b"deploying".to_vec())]);
    let extra = format!("sign = {{ scheme = \"standard-webhooks\", secret = \"{WHSEC}\" }}");
    let d = TestDaemon::start(&config(&t.base, &extra)).await;
    let id = send(&d, &event("e1")).await;

    let first = t.next().await;
    let second = t.next().await;
    assert_eq!(settled(&d, "e1", "h", "succeeded").await.0, 2);
    assert_eq!(
        outcomes(&attempts(&d, "e1", "h")),
        [("http", Some(503)), ("ok", Some(200))]
    );
    assert_eq!(first.header("webhook-id"), second.header("webhook-id"));
    assert_eq!(
        (
            first.header("hookd-attempt"),
            second.header("hookd-attempt")
        ),
        ("1", "2")
    );
    verify_signature(&second);

    hookd_ok(&d, &["replay", &id.to_string()]).await;
    let replayed = t.next().await;
    assert_eq!(replayed.header("webhook-id"), first.header("webhook-id"));
    assert_eq!(replayed.header("hookd-replay"), "1");
    verify_signature(&replayed);

    let show = hookd_ok(&d, &["events", "show", &id.to_string()]).await;
    assert!(show.contains("http (HTTP 503)"), "{show}");
    assert!(show.contains("deploying"), "{show}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_up_to_backoff_max() {
    let mut t = Target::start().await;
    let too_late = vec![("retry-after", "3600".to_string())];
    t.plan([
        Answer::Status(429, vec![("retry-after", "1".into())], vec![]),
        Answer::Status(429, too_late, vec![]),
    ]);
    let extra = "backoff = { initial = \"20ms\", max = \"2s\" }";
    let cfg =
        config(&t.base, "").replace("backoff = { initial = \"20ms\", max = \"100ms\" }\n", "");
    let d = TestDaemon::start(&format!("{cfg}{extra}\n")).await;
    send(&d, &event("e1")).await;

    let (a, b, c) = (t.next().await, t.next().await, t.next().await);
    let (asked, capped) = (b.at - a.at, c.at - b.at);
    assert!(
        asked >= Duration::from_secs(1),
        "Retry-After: 1 waited {asked:?}"
    );
    assert!(
        capped >= Duration::from_secs(2) && capped < Duration::from_secs(10),
        "Retry-After: 3600 with backoff.max 2s waited {capped:?}"
    );
    assert_eq!(settled(&d, "e1", "h", "succeeded").await.0, 3);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_hangs_times_out_and_ends_dead() {
    let mut t = Target::start().await;
    t.plan([Answer::Hang, Answer::Hang]);
    let d = TestDaemon::start(&config(&t.base, "timeout = \"300ms\"\nmax_attempts = 2")).await;
    let id = send(&d, &event("e1")).await;
    t.next().await;
    t.next().await;
    let (n, err) = settled(&d, "e1", "h", "dead").await;
    assert_eq!(n, 2);
    assert!(err.contains("within 300ms"), "{err}");
    let a = attempts(&d, "e1", "h");
    assert_eq!(outcomes(&a), [("timeout", None), ("timeout", None)]);
    assert!(a.iter().all(|a| a.duration_us >= 300_000), "{a:?}");
    let listed = hookd_ok(&d, &["deliveries", "--json"]).await;
    let row: Value = serde_json::from_str(listed.lines().next().unwrap()).unwrap();
    assert_eq!(
        (row["event"].as_i64(), row["status"].as_str()),
        (Some(id), Some("dead"))
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_is_down_is_dead_after_max_attempts() {
    // A port bound but not listening: connections are refused, and no
    // other test can be given the port while this socket holds it.
    let held = tokio::net::TcpSocket::new_v4().unwrap();
    held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = held.local_addr().unwrap().port();
    let d = TestDaemon::start(&config(
        &format!("http://127.0.0.1:{port}/x"),
        "max_attempts = 3",
    ))
    .await;
    let id = send(&d, &event("e1")).await;
    let (n, err) = settled(&d, "e1", "h", "dead").await;
    assert_eq!(n, 3);
    assert!(err.to_lowercase().contains("refused"), "{err}");
    assert_eq!(
        outcomes(&attempts(&d, "e1", "h")),
        [("connect_error", None); 3]
    );
    let show = hookd_ok(&d, &["events", "show", &id.to_string()]).await;
    assert!(show.contains("    error:"), "the reason is shown: {show}");
    let listed = hookd_ok(&d, &["deliveries"]).await;
    assert!(listed.contains("no answer from"), "{listed}");
    d.stop().await;
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_answer_is_read_only_up_to_the_cap() {
    let mut t = Target::start().await;
    t.plan([Answer::Huge(64 << 20)]);
    let d = TestDaemon::start(&config(&t.base, "")).await;
    send(&d, &event("e1")).await;
    t.next().await;
    settled(&d, "e1", "h", "succeeded").await;
    let a = attempts(&d, "e1", "h");
    assert_eq!(a[0].response.len(), 64 << 10);
    assert!(a[0].truncated);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca_from_ca_file() {
    let mut t = Target::start_tls().await;
    let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/certs/ca.pem");
    let cfg = format!(
        "{}[[handler]]\nname = \"other\"\nkind = \"http\"\nurl = \"{}\"\nmax_attempts = 1\n",
        config(&t.base, &format!("ca_file = \"{}\"", ca.display())),
        t.base
    );
    let d = TestDaemon::start(&cfg).await;
    send(&d, &event("e1")).await;
    let seen = t.next().await;
    assert_eq!(
        seen.version,
        http::Version::HTTP_2,
        "h2 is offered over TLS"
    );
    settled(&d, "e1", "h", "succeeded").await;
    // Without the CA, the same target's certificate is not trusted.
    let (_, err) = settled(&d, "e1", "other", "dead").await;
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_payload_is_the_senders_bytes_exactly() {
    let mut t = Target::start().await;
    let d = TestDaemon::start(&config(&t.base, "body = \"payload\"\nmethod = \"PUT\"")).await;
    let raw =
        "{ \"id\" : \"e1\",\n  \"type\":\"invoice.paid\", \"n\": 1.50, \"s\": \"\\u00e9 é\" }\n";
    send(&d, raw).await;
    let seen = t.next().await;
    assert_eq!(seen.method, "PUT");
    assert_eq!(seen.body.as_ref(), raw.as_bytes());
    assert_eq!(seen.header("content-type"), "application/json");
    settled(&d, "e1", "h", "succeeded").await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4xx_is_retried_unless_retry_on_4xx_is_false() {
    let not_found = || Answer::Status(404, vec![], b"no such route".to_vec());
    let (mut lenient, mut strict) = (Target::start().await, Target::start().await);
    lenient.plan([not_found()]);
    strict.plan([not_found()]);
    let cfg = format!(
        "{}[[handler]]\nname = \"strict\"\nkind = \"http\"\nurl = \"{}\"\nretry_on_4xx = false\n",
        config(&lenient.base, ""),
        strict.base
    );
    let d = TestDaemon::start(&cfg).await;
    send(&d, &event("e1")).await;
    strict.next().await;
    let (n, err) = settled(&d, "e1", "strict", "dead").await;
    assert_eq!(n, 1);
    assert!(err.contains("HTTP 404 Not Found: no such route"), "{err}");
    assert!(err.contains("retry_on_4xx = false"), "{err}");
    lenient.next().await;
    lenient.next().await;
    assert_eq!(settled(&d, "e1", "h", "succeeded").await.0, 2);
    assert_eq!(
        outcomes(&attempts(&d, "e1", "h")),
        [("http", Some(404)), ("ok", Some(200))]
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_runs_count_against_max_concurrency() {
    let mut t = Target::start().await;
    t.plan(std::iter::repeat_n(Answer::Gated, 6));
    let cfg = config(&t.base, "concurrency = 8");
    // max_concurrency lives in [daemon], which TestDaemon writes itself.
    let dir = tempfile::tempdir().unwrap();
    let base = support::base_config(dir.path()).replacen(
        "[daemon]\n",
        "[daemon]\nmax_concurrency = 2\n",
        1,
    );
    let path = dir.path().join("receiver.toml");
    std::fs::write(&path, format!("{base}{cfg}")).unwrap();
    let conf = hookd::config::load(&path).unwrap();
    let daemon = hookd::daemon::Daemon::start(conf, hookd::daemon::StartOptions::default())
        .await
        .unwrap();
    let c = reqwest::Client::new();
    let url = format!("http://{}/hooks/s", daemon.push_addrs[0]);
    for i in 0..6 {
        let (status, _) = post_signed(&c, &url, KEY, &event(&format!("e{i}"))).await;
        assert_eq!(status, 200);
    }
    t.next().await;
    t.next().await;
    // Which slot a released answer frees, and so which delivery goes next,
    // is the dispatcher's business: let every answer through at once.
    t.release(6);
    for _ in 0..4 {
        t.next().await;
        assert!(t.in_flight() <= 2, "{} requests at once", t.in_flight());
    }
    eventually(LONG, || {
        let n: i64 = state_db(dir.path())
            .query_row(
                "SELECT COUNT(*) FROM deliveries WHERE status = 'succeeded'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        (n == 6).then_some(())
    })
    .await;
    assert_eq!(t.max_in_flight(), 2);
    daemon.shutdown().await;
}

/// Writes a config for the `hookd` binary in `dir` with a short shutdown grace.
fn proc_config(dir: &Path, body: &str) -> std::path::PathBuf {
    let base =
        support::base_config(dir).replace("shutdown_grace = \"5s\"", "shutdown_grace = \"1s\"");
    let path = dir.join("receiver.toml");
    std::fs::write(&path, format!("{base}{body}")).unwrap();
    path
}

async fn send_to(p: &Proc, body: &str) {
    let (status, answer) =
        post_signed(&reqwest::Client::new(), &p.url("/hooks/s"), KEY, body).await;
    assert_eq!(status, 200, "{answer}");
}

fn proc_outcomes(dir: &Path, event_id: &str, handler: &str) -> Vec<(String, Option<u16>)> {
    let c = state_db(dir);
    let mut stmt = c
        .prepare(
            "SELECT a.outcome, a.http_status FROM attempts a JOIN deliveries d ON d.id = a.delivery
             JOIN events e ON e.id = d.event WHERE e.event_id = ?1 AND d.handler = ?2 ORDER BY a.id",
        )
        .unwrap();
    stmt.query_map([event_id, handler], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn ok_after_interrupted() -> Vec<(String, Option<u16>)> {
    vec![("interrupted".into(), None), ("ok".into(), Some(200))]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_request_finish_and_hands_back_one_that_hangs() {
    let (mut quick, mut stuck) = (Target::start().await, Target::start().await);
    quick.plan([Answer::Gated]);
    stuck.plan([Answer::Hang]);
    let tmp = tempfile::tempdir().unwrap();
    let body = format!(
        "{}[[handler]]\nname = \"stuck\"\nkind = \"http\"\nurl = \"{}\"\nevents = [\"stuck\"]\n",
        config(&quick.base, "events = [\"invoice.paid\"]"),
        stuck.base
    );
    let cfg = proc_config(tmp.path(), &body);
    let mut p = Proc::spawn(&cfg, &[]);
    send_to(&p, &event("q1")).await;
    send_to(&p, &json!({"id": "s1", "type": "stuck"}).to_string()).await;
    quick.next().await;
    let first = stuck.next().await;
    p.signal(libc::SIGTERM);
    p.wait_for("STOPPING=1");
    quick.release(1);
    assert_eq!(p.wait(LONG), Some(0));
    let dir = tmp.path();
    assert_eq!(delivery(dir, "q1", "h").unwrap().0, "succeeded");
    assert_eq!(
        delivery(dir, "s1", "stuck").unwrap().0,
        "pending",
        "handed back, not failed"
    );

    let _p = Proc::spawn(&cfg, &[]);
    let again = stuck.next().await;
    assert_eq!(again.header("webhook-id"), first.header("webhook-id"));
    all_settled(dir, LONG).await;
    assert_eq!(proc_outcomes(dir, "s1", "stuck"), ok_after_interrupted());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_request_counts_it_interrupted_and_hands_back_the_held() {
    // One slot. The first request waits until every event is stored; fast
    // answers then make the slot claim the rest ahead, and the sixth
    // request hangs while it holds them.
    let mut t = Target::start().await;
    let fast = std::iter::repeat_n(Answer::Status(200, vec![], vec![]), 4);
    t.plan(
        std::iter::once(Answer::Gated)
            .chain(fast)
            .chain([Answer::Hang]),
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cfg = proc_config(dir, &config(&t.base, "concurrency = 1"));
    let p = Proc::spawn(&cfg, &[]);
    for i in 0..20 {
        send_to(&p, &event(&format!("e{i:02}"))).await;
    }
    t.release(1);
    let mut sent_before = Vec::new();
    for _ in 0..6 {
        sent_before.push(t.next().await);
    }
    let hung = sent_before.pop().unwrap();
    let held: i64 = eventually(LONG, || {
        let n: i64 = state_db(dir)
            .query_row(
                "SELECT COUNT(*) FROM deliveries WHERE status = 'running' AND ahead = 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        (n >= 2).then_some(n)
    })
    .await;
    p.kill();

    let _p = Proc::spawn(&cfg, &[]);
    all_settled(dir, LONG).await;
    let hung_id = hung.header("hookd-event-id").to_string();
    assert_eq!(proc_outcomes(dir, &hung_id, "h"), ok_after_interrupted());
    let mut resent = None;
    while let Ok(seen) = t.requests.try_recv() {
        if seen.header("hookd-event-id") == hung_id {
            resent = Some(seen);
        }
    }
    let resent = resent.expect("the interrupted request was sent again");
    assert_eq!(resent.header("webhook-id"), hung.header("webhook-id"));
    assert_eq!(resent.header("hookd-attempt"), "2");
    let answered: Vec<&str> = sent_before
        .iter()
        .map(|s| s.header("hookd-event-id"))
        .collect();
    for i in 0..20 {
        let id = format!("e{i:02}");
        let got = proc_outcomes(dir, &id, "h");
        if answered.contains(&id.as_str()) {
            // Answered, but its record may not have committed before the
            // kill: then it is sent again (at least once).
            assert!(
                got == [("ok".to_string(), Some(200))] || got == ok_after_interrupted(),
                "{id}: {got:?}"
            );
        } else if id != hung_id {
            assert_eq!(
                got,
                [("ok".to_string(), Some(200))],
                "{id} was held, not sent, at the kill ({held} held): handed back uncounted"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_shows_the_target_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "Bearer s3cr3t\n").unwrap();
    let extra = format!(
        "headers = {{ Authorization = \"file:{}\" }}\nsign = {{ scheme = \"standard-webhooks\", secret = \"{WHSEC}\" }}\nbody = \"payload\"",
        dir.path().join("token").display()
    );
    let cfg = support::write_config(
        dir.path(),
        &config("https://billing.internal/in/{type}", &extra),
    );
    let out = std::process::Command::new(bin())
        .arg("-c")
        .arg(&cfg)
        .arg("check")
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("http   events [*] sources [*] -> POST https://billing.internal/in/{type} (payload), signed standard-webhooks with <literal>, headers [authorization]"),
        "{text}"
    );
    assert!(
        !text.contains("s3cr3t") && !text.contains("MfKQ9r8"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_followed_only_when_asked() {
    let mut t = Target::start().await;
    let moved = || {
        Answer::Status(
            307,
            vec![("location", "/moved".to_string())],
            b"see /moved".to_vec(),
        )
    };
    t.plan([moved(), moved()]);
    let cfg = format!(
        "{}[[handler]]\nname = \"follows\"\nkind = \"http\"\nurl = \"{}/old\"\nfollow_redirects = true\nevents = [\"follow\"]\n",
        config(
            &format!("{}/old", t.base),
            "max_attempts = 1\nevents = [\"stay\"]"
        ),
        t.base
    );
    let d = TestDaemon::start(&cfg).await;
    send(&d, &json!({"id": "e1", "type": "stay"}).to_string()).await;
    let (_, err) = settled(&d, "e1", "h", "dead").await;
    assert!(err.starts_with("HTTP 307"), "{err}");
    assert_eq!(t.next().await.path, "/old");
    send(&d, &json!({"id": "e2", "type": "follow"}).to_string()).await;
    settled(&d, "e2", "follows", "succeeded").await;
    let paths = [t.next().await.path, t.next().await.path];
    assert_eq!(paths, ["/old", "/moved"]);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_moves_the_url_sends_the_next_event_to_the_new_target() {
    let (mut old, mut new) = (Target::start().await, Target::start().await);
    let d = TestDaemon::start(&config(&old.base, "")).await;
    send(&d, &event("e1")).await;
    assert_eq!(old.next().await.header("hookd-event-id"), "e1");
    settled(&d, "e1", "h", "succeeded").await;

    let text = format!(
        "{}{}",
        support::base_config(d.dir.path()),
        config(&new.base, "")
    );
    let cfg = hookd::config::parse(&text, &d.config_path).unwrap();
    d.daemon().reload(cfg).await.unwrap();
    send(&d, &event("e2")).await;
    assert_eq!(new.next().await.header("hookd-event-id"), "e2");
    settled(&d, "e2", "h", "succeeded").await;
    assert!(old.requests.try_recv().is_err(), "the old target got e2");
    d.stop().await;
}
