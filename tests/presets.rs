//! The sender presets (`standard-webhooks`, `github`, `stripe`, `slack`,
//! `shopify`) and the scheme-defined Standard Webhooks extraction.
//!
//! The table test reads requests signed by each sender's own library
//! (`tests/vectors/presets.json`, made by `tests/vectors/presets/generate.py`)
//! and checks that a source configured with nothing but `provider` and
//! `secret` verifies them at the vector's clock, refuses them tampered,
//! under another secret or out of tolerance, and extracts the expected id,
//! type and time. The daemon tests post over 127.0.0.1 to a real daemon:
//! one Standard Webhooks message spelled `webhook-*` then `svix-*` is one
//! event, Slack's `url_verification` is answered and not stored, GitHub's
//! type carries the action.

mod ingest_support;
mod support;

use std::collections::BTreeSet;
use std::path::Path;

use hookd::config::SourceConfig;
use hookd::extract::{Extracted, Input};
use hookd::verify::{Rejection, Request};
use http::{HeaderMap, HeaderName, HeaderValue};
use ingest_support::{self as sig, Headers, post, unix_now};
use serde_json::{Value, json};
use support::*;

const VECTORS: &str = include_str!("vectors/presets.json");
const PRESETS: [&str; 5] = ["standard-webhooks", "github", "stripe", "slack", "shopify"];

/// A source with nothing but `provider` and `secret`.
fn preset_source(provider: &str, secret: &str) -> SourceConfig {
    let text =
        format!("[[source]]\nname = \"s\"\nprovider = \"{provider}\"\nsecret = \"{secret}\"\n");
    let cfg = hookd::config::parse(&text, Path::new("receiver.toml"))
        .unwrap_or_else(|e| panic!("{provider}: {e}"));
    cfg.sources[0].clone()
}

fn header_map(v: &Value) -> HeaderMap {
    let mut h = HeaderMap::new();
    for pair in v.as_array().expect("headers") {
        h.append(
            HeaderName::from_bytes(pair[0].as_str().unwrap().as_bytes()).unwrap(),
            HeaderValue::from_str(pair[1].as_str().unwrap()).unwrap(),
        );
    }
    h
}

fn verify(src: &SourceConfig, h: &HeaderMap, body: &[u8], now: i64) -> Result<(), Rejection> {
    let req = Request { headers: h, body };
    src.scheme
        .verify(&req, &src.keys, now, src.tolerance)
        .map(|_| ())
}

fn extract(src: &SourceConfig, h: &HeaderMap, body: &[u8], now: i64) -> Result<Extracted, String> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let input = Input {
        headers: h,
        body,
        json: json.as_ref(),
        received_at: now * 1_000_000,
        scheme: Some(&src.scheme),
    };
    src.extract
        .extract(&input, &src.type_aliases)
        .map_err(|e| e.code().to_string())
}

/// Another secret of the same shape (Standard Webhooks wants `whsec_` base64).
fn other_secret(secret: &str) -> String {
    if secret.starts_with("whsec_") {
        "whsec_b3RoZXIgc2VjcmV0IGtleQ==".into()
    } else {
        format!("{secret}-other")
    }
}

#[test]
fn every_preset_verifies_and_extracts_what_its_senders_library_signed() {
    let doc: Value = serde_json::from_str(VECTORS).unwrap();
    let mut seen = BTreeSet::new();
    for v in doc["vectors"].as_array().unwrap() {
        let (preset, name) = (v["preset"].as_str().unwrap(), v["name"].as_str().unwrap());
        let what = format!("{preset}/{name} ({})", v["made_with"].as_str().unwrap());
        let secret = v["secret"].as_str().unwrap();
        let src = preset_source(preset, secret);
        let h = header_map(&v["headers"]);
        let body = v["body"].as_str().unwrap().as_bytes();
        let now = v["now"].as_i64().unwrap();

        assert_eq!(verify(&src, &h, body, now), Ok(()), "{what}");
        let tampered = [body, b" "].concat();
        assert_eq!(
            verify(&src, &h, &tampered, now),
            Err(Rejection::NoMatch),
            "{what}: tampered body"
        );
        let other = preset_source(preset, &other_secret(secret));
        assert_eq!(
            verify(&other, &h, body, now),
            Err(Rejection::NoMatch),
            "{what}: other secret"
        );
        if v["timestamped"].as_bool().unwrap() {
            assert_eq!(verify(&src, &h, body, now + 300), Ok(()), "{what}: edge");
            for skew in [301, -301] {
                assert!(
                    matches!(
                        verify(&src, &h, body, now + skew),
                        Err(Rejection::OutsideTolerance { .. })
                    ),
                    "{what}: {skew}s off"
                );
            }
        }

        let expect = &v["expect"];
        let handshake = src.provider.handshake(body);
        if let Some(c) = expect["challenge"].as_str() {
            assert_eq!(handshake, Some(json!({ "challenge": c })), "{what}");
            seen.insert(preset);
            continue;
        }
        assert_eq!(handshake, None, "{what}");
        let got = extract(&src, &h, body, now);
        if let Some(code) = expect["refused"].as_str() {
            assert_eq!(got.map(|e| e.event_id), Err(code.to_string()), "{what}");
            continue;
        }
        let e = got.unwrap_or_else(|c| panic!("{what}: {c}"));
        assert_eq!(e.event_id, expect["event_id"].as_str().unwrap(), "{what}");
        assert!(!e.id_synthetic, "{what}");
        assert_eq!(e.event_type, expect["type"].as_str().unwrap(), "{what}");
        let at = expect["occurred_at"].as_i64().unwrap_or(now);
        assert_eq!(e.occurred_at, Some(at * 1_000_000), "{what}");
        seen.insert(preset);
    }
    assert_eq!(seen, BTreeSet::from(PRESETS), "a vector for every preset");
}

/// The vectors of one message in both spellings extract one id.
#[test]
fn both_spellings_of_a_standard_webhooks_vector_are_one_id() {
    let doc: Value = serde_json::from_str(VECTORS).unwrap();
    let ids = |spelling: &str| -> Vec<String> {
        doc["vectors"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["name"].as_str().unwrap().ends_with(spelling))
            .filter(|v| v["expect"]["event_id"].is_string())
            .map(|v| {
                let src = preset_source("standard-webhooks", v["secret"].as_str().unwrap());
                let body = v["body"].as_str().unwrap().as_bytes();
                extract(&src, &header_map(&v["headers"]), body, 0)
                    .unwrap()
                    .event_id
            })
            .collect()
    };
    let (plain, svix) = (ids("_webhook"), ids("_svix"));
    assert!(!plain.is_empty());
    assert_eq!(plain, svix);
}

// ------------------------------------------------------------ daemon ----

const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn with(mut h: Headers, extra: &[(&str, &str)]) -> Headers {
    h.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    h
}

/// One message sent as `webhook-*` and retried as `svix-*` is one event,
/// for the preset, a generic source with no extract table, and one with
/// the README's old `id = ["header:webhook-id"]`. An unsigned `webhook-id`
/// added to a svix-signed request is not the id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_webhooks_spellings_are_one_message() {
    let sources = format!(
        "[[source]]\nname = \"preset\"\nprovider = \"standard-webhooks\"\nsecret = \"{SW_SECRET}\"\n\n\
         [[source]]\nname = \"bare\"\nprovider = \"generic\"\nsecret = \"{SW_SECRET}\"\n\
         signature = {{ scheme = \"standard-webhooks\" }}\n\n\
         [[source]]\nname = \"named\"\nprovider = \"generic\"\nsecret = \"{SW_SECRET}\"\n\
         signature = {{ scheme = \"standard-webhooks\" }}\n\
         extract = {{ id = [\"header:webhook-id\"], type = [\"json:/type\"] }}\n\n"
    );
    let d = TestDaemon::start(&sources).await;
    let c = reqwest::Client::new();
    let body =
        br#"{"type":"invoice.paid","timestamp":"2026-01-01T00:00:00Z","data":{"id":"in_1"}}"#;
    for name in ["preset", "bare", "named"] {
        let url = d.url(&format!("/hooks/{name}"));
        let ts = unix_now();
        let first = post(
            &c,
            &url,
            &sig::standard_webhooks("webhook", SW_SECRET, "msg_1", ts, body),
            body,
        )
        .await;
        assert_eq!(
            (first.status, first.word()),
            (200, "accepted"),
            "{name}: {first:?}"
        );
        let retry = sig::standard_webhooks("svix", SW_SECRET, "msg_1", ts + 5, body);
        let second = post(&c, &url, &retry, body).await;
        assert_eq!(
            (second.status, second.word()),
            (200, "duplicate"),
            "{name}: {second:?}"
        );
        assert_eq!(second.json["id"], first.json["id"], "{name}");
        // The svix-signed id counts, not a webhook-id header beside it.
        let forged = with(retry, &[("webhook-id", "msg_other")]);
        let third = post(&c, &url, &forged, body).await;
        assert_eq!(
            (third.status, third.word()),
            (200, "duplicate"),
            "{name}: {third:?}"
        );
        let other = sig::standard_webhooks("svix", SW_SECRET, "msg_2", ts, body);
        let fourth = post(&c, &url, &other, body).await;
        assert_eq!(
            (fourth.status, fourth.word()),
            (200, "accepted"),
            "{name}: {fourth:?}"
        );
        let rows: Vec<(String, String, i64)> = d
            .db()
            .prepare("SELECT event_id, type, occurred_at FROM events WHERE source = ?1 ORDER BY id")
            .unwrap()
            .query_map([name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let ids: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(ids, ["msg_1", "msg_2"], "{name}");
        assert!(
            rows.iter().all(|r| r.1 == "invoice.paid"),
            "{name}: {rows:?}"
        );
        assert_eq!(
            rows[0].2,
            ts * 1_000_000,
            "{name}: time is the signed timestamp"
        );
    }
    assert_eq!(d.count("SELECT COUNT(*) FROM rejected"), 0);
    d.stop().await;
}

/// A signed `url_verification` is answered with its challenge and stored
/// nowhere; an unsigned one is refused like any other request; events are
/// stored by `event_id` with the inner type, and Slack's retry is a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_answers_its_challenge_and_stores_events_once() {
    let secret = "8f742231b10e8888abcd99yyyzzz85a5";
    let d = TestDaemon::start(&format!(
        "[[source]]\nname = \"slack\"\nprovider = \"slack\"\nsecret = \"{secret}\"\n\n\
         [[handler]]\nname = \"h\"\ncommand = [\"/bin/true\"]\n\n"
    ))
    .await;
    let c = reqwest::Client::new();
    let url = d.url("/hooks/slack");
    let challenge = br#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let r = post(
        &c,
        &url,
        &sig::slack(secret, unix_now(), challenge),
        challenge,
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.json,
        json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
    );
    let forged = post(
        &c,
        &url,
        &sig::slack("not-the-secret", unix_now(), challenge),
        challenge,
    )
    .await;
    assert_eq!(forged.status, 401, "{forged:?}");
    assert!(forged.json.get("challenge").is_none());
    let stale = post(
        &c,
        &url,
        &sig::slack(secret, unix_now() - 600, challenge),
        challenge,
    )
    .await;
    assert_eq!(stale.status, 401, "{stale:?}");
    assert_eq!(d.count("SELECT COUNT(*) FROM events"), 0);

    let event = br#"{"token":"x","team_id":"T1","api_app_id":"A1","event":{"type":"app_mention","user":"U1","text":"hi","ts":"1.2","channel":"C1"},"type":"event_callback","event_id":"Ev0PV52K21","event_time":1700000000}"#;
    let first = post(&c, &url, &sig::slack(secret, unix_now(), event), event).await;
    assert_eq!((first.status, first.word()), (200, "accepted"), "{first:?}");
    let retry = with(
        sig::slack(secret, unix_now(), event),
        &[("X-Slack-Retry-Num", "1")],
    );
    let second = post(&c, &url, &retry, event).await;
    assert_eq!(
        (second.status, second.word()),
        (200, "duplicate"),
        "{second:?}"
    );
    let row: (String, String, i64) = d
        .db()
        .query_row("SELECT event_id, type, occurred_at FROM events", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!(
        row,
        (
            "Ev0PV52K21".into(),
            "app_mention".into(),
            1_700_000_000_000_000
        )
    );
    assert_eq!(
        d.count("SELECT COUNT(*) FROM deliveries"),
        1,
        "one event dispatched, no challenge"
    );
    d.stop().await;
}

/// GitHub, Stripe and Shopify presets over HTTP: the stored id and type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_stripe_and_shopify_presets_store_id_and_type() {
    let d = TestDaemon::start(
        "[[source]]\nname = \"gh\"\nprovider = \"github\"\nsecret = \"gh-secret\"\n\n\
         [[source]]\nname = \"st\"\nprovider = \"stripe\"\nsecret = \"whsec_stripe\"\n\n\
         [[source]]\nname = \"sh\"\nprovider = \"shopify\"\nsecret = \"shop-secret\"\n\n",
    )
    .await;
    let c = reqwest::Client::new();
    let pr = br#"{"action":"opened","number":1}"#;
    let gh = |delivery: &str, event: &str, body: &[u8]| {
        with(
            sig::github("gh-secret", body),
            &[("X-GitHub-Delivery", delivery), ("X-GitHub-Event", event)],
        )
    };
    let r = post(&c, &d.url("/hooks/gh"), &gh("d-1", "pull_request", pr), pr).await;
    assert_eq!((r.status, r.word()), (200, "accepted"), "{r:?}");
    let push = br#"{"ref":"refs/heads/main"}"#;
    let r = post(&c, &d.url("/hooks/gh"), &gh("d-2", "push", push), push).await;
    assert_eq!((r.status, r.word()), (200, "accepted"), "{r:?}");
    let r = post(&c, &d.url("/hooks/gh"), &gh("d-1", "pull_request", pr), pr).await;
    assert_eq!(
        (r.status, r.word()),
        (200, "duplicate"),
        "a redelivery: {r:?}"
    );
    let wrong = with(
        sig::github("other", pr),
        &[("X-GitHub-Delivery", "d-3"), ("X-GitHub-Event", "x")],
    );
    assert_eq!(post(&c, &d.url("/hooks/gh"), &wrong, pr).await.status, 401);

    let evt = br#"{"id":"evt_1","object":"event","type":"invoice.paid","created":1700000000,"data":{"object":{}}}"#;
    let r = post(
        &c,
        &d.url("/hooks/st"),
        &sig::stripe("whsec_stripe", unix_now(), evt),
        evt,
    )
    .await;
    assert_eq!((r.status, r.word()), (200, "accepted"), "{r:?}");

    let order = br#"{"id":1}"#;
    let shop = with(
        sig::shopify("shop-secret", order),
        &[
            ("X-Shopify-Topic", "orders/create"),
            ("X-Shopify-Webhook-Id", "wh-1"),
        ],
    );
    let r = post(&c, &d.url("/hooks/sh"), &shop, order).await;
    assert_eq!((r.status, r.word()), (200, "accepted"), "{r:?}");

    let rows: Vec<(String, String, String)> = d
        .db()
        .prepare("SELECT source, event_id, type FROM events ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let want = [
        ("gh", "d-1", "pull_request.opened"),
        ("gh", "d-2", "push"),
        ("st", "evt_1", "invoice.paid"),
        ("sh", "wh-1", "orders/create"),
    ]
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()));
    assert_eq!(rows, want);
    d.stop().await;
}

/// `hookd check` shows what each preset fills in (and no secret).
#[test]
fn check_prints_what_a_preset_fills_in() {
    let dir = tempfile::tempdir().unwrap();
    let body: String = PRESETS
        .iter()
        .map(|p| {
            format!("[[source]]\nname = \"{p}\"\nprovider = \"{p}\"\nsecret = \"{SW_SECRET}\"\n\n")
        })
        .collect();
    let cfg = write_config(dir.path(), &body);
    let out = assert_cmd::Command::new(bin())
        .args(["-c", cfg.to_str().unwrap(), "check"])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "signature standard-webhooks webhook-id/-timestamp/-signature (or svix-*)",
        "id [signed:id]  type [json:/type]  time [signed:timestamp]",
        "signature hmac x-hub-signature-256: sha256=<hex HMAC-SHA256 of {body}>",
        "id [header:x-github-delivery]  type [header:x-github-event], then \".\" + json:/action when present  time [now]",
        "signature stripe stripe-signature: t=<timestamp>,v1=<hex of {t}.{body}>",
        "id [json:/id]  type [json:/type]  time [json:/created]",
        "signature hmac x-slack-signature: v0=<hex HMAC-SHA256 of v0:{timestamp}:{body}>, {timestamp} from x-slack-request-timestamp",
        "id [json:/event_id, hash]  type [json:/event/type, json:/type]  time [json:/event_time, now]",
        "signature hmac x-shopify-hmac-sha256: <base64 HMAC-SHA256 of {body}>",
        "id [header:x-shopify-webhook-id]  type [header:x-shopify-topic]  time [header:x-shopify-triggered-at, now]",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(!text.contains(SW_SECRET.trim_start_matches("whsec_")));
}
