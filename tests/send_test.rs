//! `hookd send-test` (the real binary) against a live daemon, for every
//! signature scheme on a generic source and for every provider preset, each
//! with and without an `extract` that names a header the scheme itself
//! sets. Before, such an extractor made the sample carry that header and the
//! signer add it again, so it went out twice and the daemon refused the
//! request (`401 malformed webhook-id header: header is repeated`), or, for
//! a signature header that may list several values, stored it twice.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::*;

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One source: its name, the `[[source]]` lines after `name`, the type
/// send-test's default sample is stored as, and whether the stored id is
/// the signer's message id (`msg_…`).
struct Case {
    name: &'static str,
    lines: String,
    ty: &'static str,
    signed_id: bool,
}

fn case(name: &'static str, lines: &str, ty: &'static str) -> Case {
    Case {
        name,
        lines: lines.to_string(),
        ty,
        signed_id: false,
    }
}

const JSON_EXTRACT: &str = "extract = { id = [\"json:/id\"], type = [\"json:/type\"] }";

/// A generic source with `signature` and `extract` (None: its default).
fn generic(name: &'static str, secret: &str, signature: &str, extract: Option<&str>) -> Case {
    let secret = match secret {
        "" => "insecure = true".to_string(),
        s => format!("secret = \"{s}\""),
    };
    let extract = extract.unwrap_or(JSON_EXTRACT);
    case(
        name,
        &format!("provider = \"generic\"\n{secret}\nsignature = {signature}\n{extract}"),
        "test",
    )
}

fn preset(
    name: &'static str,
    provider: &str,
    secret: &str,
    extract: &str,
    ty: &'static str,
) -> Case {
    case(
        name,
        &format!("provider = \"{provider}\"\nsecret = \"{secret}\"\n{extract}"),
        ty,
    )
}

fn signed(mut c: Case) -> Case {
    c.signed_id = true;
    c
}

fn cases() -> Vec<Case> {
    let sw = "{ scheme = \"standard-webhooks\" }";
    let hmac = "{ scheme = \"hmac\", header = \"X-Sig\", prefix = \"sha256=\" }";
    let hmac_id = "{ scheme = \"hmac\", header = \"X-Sig\", signed = \"{id}.{timestamp}.{body}\", timestamp_header = \"X-Ts\", id_header = \"X-Id\" }";
    let token = "{ scheme = \"token\", header = \"Authorization\", prefix = \"Bearer \" }";
    vec![
        // Every scheme on a generic source.
        signed(generic("g-sw", WHSEC, sw, Some(""))),
        signed(generic(
            "g-sw-x",
            WHSEC,
            sw,
            Some(
                "extract = { id = [\"header:webhook-id\"], type = [\"json:/type\"], time = [\"header:webhook-timestamp\"] }",
            ),
        )),
        signed(generic(
            "g-sw-svix",
            WHSEC,
            sw,
            Some("extract = { id = [\"header:svix-id\"] }"),
        )),
        generic("g-stripe", "whsec_k", "{ scheme = \"stripe\" }", None),
        generic(
            "g-stripe-x",
            "whsec_k",
            "{ scheme = \"stripe\" }",
            Some(
                "extract = { id = [\"json:/id\"], type = [\"json:/type\"], time = [\"header:Stripe-Signature\", \"now\"] }",
            ),
        ),
        generic("g-hmac", "k", hmac, None),
        generic(
            "g-hmac-x",
            "k",
            hmac,
            Some(
                "extract = { id = [\"json:/id\"], type = [\"json:/type\"], time = [\"header:X-Sig\", \"now\"] }",
            ),
        ),
        generic("g-hmac-id", "k", hmac_id, None),
        signed(generic(
            "g-hmac-id-x",
            "k",
            hmac_id,
            Some(
                "extract = { id = [\"header:X-Id\"], type = [\"json:/type\"], time = [\"header:X-Ts\"] }",
            ),
        )),
        generic("g-linkup", "k", "{ scheme = \"linkup\" }", None),
        generic(
            "g-linkup-x",
            "k",
            "{ scheme = \"linkup\" }",
            Some(
                "extract = { id = [\"json:/id\"], type = [\"json:/type\"], time = [\"header:X-Linkup-Timestamp\"] }",
            ),
        ),
        generic("g-linkedapi", "k", "{ scheme = \"linkedapi\" }", None),
        generic(
            "g-linkedapi-x",
            "k",
            "{ scheme = \"linkedapi\" }",
            Some(
                "extract = { id = [\"json:/id\"], type = [\"json:/type\"], time = [\"header:linked-api-signature-timestamp\"] }",
            ),
        ),
        generic("g-linq", WHSEC, "{ scheme = \"linq\" }", None),
        signed(generic(
            "g-linq-x",
            WHSEC,
            "{ scheme = \"linq\" }",
            Some(
                "extract = { id = [\"header:webhook-id\"], type = [\"json:/type\"], time = [\"header:X-Webhook-Timestamp\"] }",
            ),
        )),
        generic("g-token", "tok-123", token, None),
        generic(
            "g-token-x",
            "tok-123",
            token,
            Some(
                "extract = { id = [\"json:/id\"], type = [\"json:/type\"], time = [\"header:Authorization\", \"now\"] }",
            ),
        ),
        // `none` sets no header, so it has no "-x" twin.
        generic("g-none", "", "{ scheme = \"none\" }", None),
        // Every provider preset.
        preset("linkup", "linkup", "k", "", "message_received"),
        preset(
            "linkup-x",
            "linkup",
            "k",
            "extract = { time = [\"header:X-Linkup-Timestamp\"] }",
            "message_received",
        ),
        preset("linq", "linq", WHSEC, "", "message.received"),
        signed(preset(
            "linq-x",
            "linq",
            WHSEC,
            "extract = { id = [\"header:webhook-id\"] }",
            "message.received",
        )),
        preset("linkedapi", "linkedapi", "k", "", "webhook.test"),
        preset(
            "linkedapi-x",
            "linkedapi",
            "k",
            "extract = { time = [\"header:linked-api-signature-timestamp\"] }",
            "webhook.test",
        ),
        signed(preset("sw", "standard-webhooks", WHSEC, "", "hookd.test")),
        signed(preset(
            "sw-x",
            "standard-webhooks",
            WHSEC,
            "extract = { id = [\"header:webhook-id\"], time = [\"header:webhook-timestamp\"] }",
            "hookd.test",
        )),
        preset("github", "github", "k", "", "ping"),
        preset(
            "github-x",
            "github",
            "k",
            "extract = { time = [\"header:X-Hub-Signature-256\", \"now\"] }",
            "ping",
        ),
        preset(
            "stripe",
            "stripe",
            "whsec_k",
            "",
            "payment_intent.succeeded",
        ),
        preset(
            "stripe-x",
            "stripe",
            "whsec_k",
            "extract = { time = [\"header:Stripe-Signature\", \"json:/created\"] }",
            "payment_intent.succeeded",
        ),
        preset("slack", "slack", "k", "", "app_mention"),
        preset(
            "slack-x",
            "slack",
            "k",
            "extract = { time = [\"header:X-Slack-Request-Timestamp\"] }",
            "app_mention",
        ),
        preset("shopify", "shopify", "k", "", "orders/create"),
        preset(
            "shopify-x",
            "shopify",
            "k",
            "extract = { time = [\"header:X-Shopify-Hmac-Sha256\", \"now\"] }",
            "orders/create",
        ),
    ]
}

/// `hookd -c cfg send-test ARGS…`: (exit code, stdout + stderr).
async fn send_test(cfg: &Path, args: Vec<String>) -> (i32, String) {
    let cfg = cfg.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let out = assert_cmd::Command::new(bin())
            .arg("-c")
            .arg(&cfg)
            .arg("send-test")
            .args(&args)
            .env("RUST_BACKTRACE", "0")
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    })
    .await
    .unwrap()
}

/// (event_id, type, stored header names) of the one event of `source`.
fn stored(d: &TestDaemon, source: &str) -> Vec<(String, String, Vec<String>)> {
    d.db()
        .prepare("SELECT event_id, type, headers FROM events WHERE source = ?1")
        .unwrap()
        .query_map([source], |r| {
            let headers: String = r.get(2)?;
            let pairs: Vec<(String, String)> = serde_json::from_str(&headers).unwrap();
            Ok((
                r.get(0)?,
                r.get(1)?,
                pairs.into_iter().map(|p| p.0).collect(),
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_is_accepted_for_every_scheme_and_preset() {
    let cases = cases();
    let body: String = cases
        .iter()
        .map(|c| format!("[[source]]\nname = \"{}\"\n{}\n\n", c.name, c.lines))
        .collect();
    let d = TestDaemon::start(&body).await;
    let schemes: BTreeSet<&str> = d
        .daemon()
        .runtime
        .load()
        .config
        .sources
        .iter()
        .map(|s| s.scheme.name())
        .collect();
    assert_eq!(schemes.len(), 8, "every scheme is covered: {schemes:?}");

    for c in &cases {
        let url = d.url(&format!("/hooks/{}", c.name));
        let (code, out) = send_test(&d.config_path, vec![c.name.into(), "--url".into(), url]).await;
        assert_eq!(code, 0, "{}: {out}", c.name);
        assert!(
            out.contains("-> 200 ") && out.contains("\"accepted\""),
            "{}: {out}",
            c.name
        );
        let rows = stored(&d, c.name);
        assert_eq!(rows.len(), 1, "{}: {rows:?}", c.name);
        let (id, ty, names) = &rows[0];
        assert_eq!(ty, c.ty, "{}", c.name);
        assert_eq!(id.starts_with("msg_"), c.signed_id, "{}: id {id}", c.name);
        let unique: BTreeSet<&String> = names.iter().collect();
        assert_eq!(
            unique.len(),
            names.len(),
            "{}: a header sent twice: {names:?}",
            c.name
        );
    }
    assert_eq!(d.count("SELECT COUNT(*) FROM rejected"), 0);

    // --type picks GitHub's event and action; --data becomes the payload.
    let (code, out) = send_test(
        &d.config_path,
        [
            "github",
            "--type",
            "pull_request.opened",
            "--data",
            "{\"number\":7}",
            "--url",
        ]
        .map(String::from)
        .into_iter()
        .chain([d.url("/hooks/github")])
        .collect(),
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let row: (String, Vec<u8>) = d
        .db()
        .query_row(
            "SELECT type, body FROM events WHERE source = 'github' ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(row.0, "pull_request.opened");
    let payload: Value = serde_json::from_slice(&row.1).unwrap();
    assert_eq!(
        (payload["action"].as_str(), payload["number"].as_i64()),
        (Some("opened"), Some(7))
    );
    d.stop().await;
}
