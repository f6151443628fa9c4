//! Push ingest end to end, against a real daemon on 127.0.0.1: every
//! signature scheme accepts what its provider sends (with either of two
//! configured secrets) and stores it once; a repeat is a duplicate; forged,
//! stale, future and incomplete requests are refused with 401, stored
//! nowhere but the rejected log; the other SPEC §4 answers (404, 405, 413,
//! 422, 503 + Retry-After); concurrency; and `hookd check` on a broken file.

mod ingest_support;
mod support;

use ingest_support::{self as sig, Headers, PATIENCE, Reply, post, unix_now};
use support::*;

/// How one scheme is configured, signed and shaped.
struct Case {
    /// The `[[source]]` lines after `name` (provider, signature, extract).
    source: &'static str,
    secrets: [&'static str; 2],
    wrong: &'static str,
    sign: fn(secret: &str, id: &str, ts: i64, body: &[u8]) -> Headers,
    /// A body as the provider would send it, for event `id`.
    body: fn(id: &str) -> Vec<u8>,
    /// Whether a timestamp is signed (stale/future must be refused).
    timestamped: bool,
    /// Whether the body is covered by the signature (token schemes: no).
    signs_body: bool,
    /// The event id hookd should store for `id`, when not `id` itself.
    stored_id: fn(id: &str, body: &[u8]) -> String,
    /// Without one of its headers the request still looks like another
    /// variant of the scheme, which then does not match (linq's fallbacks).
    missing_reads_as_mismatch: bool,
}

fn generic_body(id: &str) -> Vec<u8> {
    format!(r#"{{"id":"{id}","type":"order.created","amount":1200}}"#).into_bytes()
}

fn same_id(id: &str, _: &[u8]) -> String {
    id.to_string()
}

const GENERIC_EXTRACT: &str = r#"extract = { id = ["json:/id"], type = ["json:/type"] }"#;

/// Valid with either secret, duplicates, and every refusal, for one scheme.
async fn exercise(case: Case) {
    let cfg = format!(
        "[[source]]\nname = \"s\"\n{}\nsecrets = [\"{}\", \"{}\"]\n\n",
        case.source, case.secrets[0], case.secrets[1]
    );
    let d = TestDaemon::start(&cfg).await;
    let c = reqwest::Client::new();
    let url = d.url("/hooks/s");
    let now = unix_now();
    let events = |d: &TestDaemon| d.count("SELECT COUNT(*) FROM events");
    let mut rejected = 0;

    // Valid, signed with the first secret: stored once, as sent.
    let b1 = (case.body)("evt_1");
    let h1 = (case.sign)(case.secrets[0], "msg_1", now, &b1);
    let r = post(&c, &url, &h1, &b1).await;
    assert_eq!((r.status, r.word()), (200, "accepted"), "{:?}", r.json);
    let id1 = r.json["id"].as_i64().expect("row id in the answer");
    let (event_id, body, verified, dups): (String, Vec<u8>, String, i64) = d
        .db()
        .query_row(
            "SELECT event_id, body, verified, duplicates FROM events WHERE id = ?1",
            [id1],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(event_id, (case.stored_id)("evt_1", &b1));
    assert_eq!(body, b1, "the raw body is stored byte for byte");
    assert!(verified.ends_with("key 0"), "{verified}");
    assert_eq!(dups, 0);

    // The same event again: exactly the same request, then re-signed later.
    let r = post(&c, &url, &h1, &b1).await;
    assert_eq!((r.status, r.word()), (200, "duplicate"), "{:?}", r.json);
    assert_eq!(r.json["id"].as_i64(), Some(id1));
    let again = (case.sign)(case.secrets[0], "msg_1", now + 1, &b1);
    let r = post(&c, &url, &again, &b1).await;
    assert_eq!((r.status, r.word()), (200, "duplicate"), "{:?}", r.json);
    assert_eq!(events(&d), 1);
    assert_eq!(
        d.count(&format!("SELECT duplicates FROM events WHERE id = {id1}")),
        2
    );

    // The second configured secret works too.
    let b2 = (case.body)("evt_2");
    let r = post(
        &c,
        &url,
        &(case.sign)(case.secrets[1], "msg_2", now, &b2),
        &b2,
    )
    .await;
    assert_eq!((r.status, r.word()), (200, "accepted"), "{:?}", r.json);
    let id2 = r.json["id"].as_i64().unwrap();
    let verified: String = d
        .db()
        .query_row("SELECT verified FROM events WHERE id = ?1", [id2], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(verified.ends_with("key 1"), "{verified}");
    let mut stored = 2;

    // Refusals: 401, nothing stored, one row each in the rejected log.
    let b3 = (case.body)("evt_3");
    let mut refusals: Vec<(&str, Headers, Vec<u8>, &str)> = vec![(
        "wrong secret",
        (case.sign)(case.wrong, "msg_3", now, &b3),
        b3.clone(),
        "bad_signature",
    )];
    if case.signs_body {
        let mut tampered = b3.clone();
        let at = tampered.len() / 2;
        tampered[at] ^= 0x01;
        refusals.push((
            "tampered body",
            (case.sign)(case.secrets[0], "msg_3", now, &b3),
            tampered,
            "bad_signature",
        ));
    }
    let full = (case.sign)(case.secrets[0], "msg_3", now, &b3);
    for i in 0..full.len() {
        let mut missing = full.clone();
        missing.remove(i);
        let code = if case.missing_reads_as_mismatch && i > 0 {
            "bad_signature"
        } else {
            "missing_signature"
        };
        refusals.push(("missing header", missing, b3.clone(), code));
    }
    refusals.push((
        "no headers at all",
        Vec::new(),
        b3.clone(),
        "missing_signature",
    ));
    if case.timestamped {
        let stale = (case.sign)(case.secrets[0], "msg_3", now - 600, &b3);
        let future = (case.sign)(case.secrets[0], "msg_3", now + 600, &b3);
        refusals.push(("stale", stale, b3.clone(), "timestamp_out_of_tolerance"));
        refusals.push(("future", future, b3.clone(), "timestamp_out_of_tolerance"));
    }
    for (what, headers, body, code) in refusals {
        let r = post(&c, &url, &headers, &body).await;
        assert_eq!(r.status, 401, "{what}: {:?}", r.json);
        assert_eq!(r.word(), "rejected", "{what}");
        let reason = r.json["reason"].as_str().unwrap_or("");
        for s in case.secrets {
            assert!(!reason.contains(s), "{what}: the reason leaks a secret");
        }
        assert_eq!(events(&d), stored, "{what}: nothing stored");
        rejected += 1;
        eventually(PATIENCE, || {
            (d.count("SELECT COUNT(*) FROM rejected") == rejected).then_some(())
        })
        .await;
        let (status, logged_code, headers): (i64, String, String) = d
            .db()
            .query_row(
                "SELECT status, code, headers FROM rejected ORDER BY id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(status, 401, "{what}");
        // A missing id/timestamp header reads as malformed for some schemes.
        let codes = [code, "malformed_signature"];
        assert!(
            codes.contains(&logged_code.as_str()),
            "{what}: code {logged_code}, want {code}"
        );
        for s in case.secrets {
            assert!(
                !headers.contains(s),
                "{what}: a secret was stored in the log"
            );
        }
    }

    // Inside the window in both directions: accepted.
    if case.timestamped {
        for (n, ts) in [(4, now - 120), (5, now + 120)] {
            let b = (case.body)(&format!("evt_{n}"));
            let r = post(
                &c,
                &url,
                &(case.sign)(case.secrets[0], &format!("msg_{n}"), ts, &b),
                &b,
            )
            .await;
            assert_eq!((r.status, r.word()), (200, "accepted"), "{:?}", r.json);
            stored += 1;
        }
    }
    assert_eq!(events(&d), stored);
    assert_eq!(
        d.count("SELECT COUNT(*) FROM (SELECT DISTINCT source, event_id FROM events)"),
        stored
    );
    d.stop().await;
}

#[tokio::test]
async fn standard_webhooks() {
    exercise(Case {
        source: r#"provider = "generic"
signature = { scheme = "standard-webhooks" }
extract = { id = ["header:webhook-id"], type = ["json:/type"] }"#,
        secrets: [
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_c2Vjb25kLWtleS1ieXRlcy0xMjM0NTY3OA==",
        ],
        wrong: "whsec_d3Jvbmcta2V5LWJ5dGVzLTEyMzQ1Njc4OQ==",
        sign: |s, id, ts, b| sig::standard_webhooks("webhook", s, id, ts, b),
        body: generic_body,
        timestamped: true,
        signs_body: true,
        stored_id: |id, _| id.replace("evt", "msg"),
        missing_reads_as_mismatch: false,
    })
    .await;
}

#[tokio::test]
async fn standard_webhooks_with_svix_headers() {
    exercise(Case {
        source: r#"provider = "generic"
signature = { scheme = "standard-webhooks" }
extract = { id = ["header:svix-id"], type = ["json:/type"] }"#,
        secrets: [
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_c2Vjb25kLWtleS1ieXRlcy0xMjM0NTY3OA==",
        ],
        wrong: "whsec_d3Jvbmcta2V5LWJ5dGVzLTEyMzQ1Njc4OQ==",
        sign: |s, id, ts, b| sig::standard_webhooks("svix", s, id, ts, b),
        body: generic_body,
        timestamped: true,
        signs_body: true,
        stored_id: |id, _| id.replace("evt", "msg"),
        missing_reads_as_mismatch: false,
    })
    .await;
}

#[tokio::test]
async fn stripe_scheme() {
    exercise(Case {
        source: r#"provider = "generic"
signature = { scheme = "stripe" }
extract = { id = ["json:/id"], type = ["json:/type"] }"#,
        secrets: ["whsec_stripe_first", "whsec_stripe_second"],
        wrong: "whsec_stripe_wrong",
        sign: |s, _, ts, b| sig::stripe(s, ts, b),
        body: generic_body,
        timestamped: true,
        signs_body: true,
        stored_id: same_id,
        missing_reads_as_mismatch: false,
    })
    .await;
}

#[tokio::test]
async fn hmac_hex_with_prefix() {
    exercise(Case {
        source: r#"provider = "generic"
signature = { scheme = "hmac", header = "X-Hub-Signature-256", prefix = "sha256=", encoding = "hex" }
extract = { id = ["json:/id"], type = ["json:/type"] }"#,
        secrets: ["gh-first", "gh-second"],
        wrong: "gh-wrong",
        sign: |s, _, _, b| sig::github(s, b),
        body: generic_body,
        timestamped: false,
        signs_body: true,
        stored_id: same_id,
        missing_reads_as_mismatch: false,
    })
    .await;
}

#[tokio::test]
async fn hmac_base64() {
    exercise(Case {
        source: r#"provider = "generic"
signature = { scheme = "hmac", header = "X-Shopify-Hmac-Sha256", encoding = "base64" }
extract = { id = ["json:/id"], type = ["json:/type"] }"#,
        secrets: ["shop-first", "shop-second"],
        wrong: "shop-wrong",
        sign: |s, _, _, b| sig::shopify(s, b),
        body: generic_body,
        timestamped: false,
        signs_body: true,
        stored_id: same_id,
        missing_reads_as_mismatch: false,
    })
    .await;
}

#[tokio::test]
async fn hmac_template_with_timestamp_header() {
    exercise(Case {
        source: r#"provider = "generic"
signature = { scheme = "hmac", header = "X-Slack-Signature", prefix = "v0=", signed = "v0:{timestamp}:{body}", timestamp_header = "X-Slack-Request-Timestamp" }
extract = { id = ["json:/id"], type = ["json:/type"] }"#,
        secrets: ["slack-first", "slack-second"],
        wrong: "slack-wrong",
        sign: |s, _, ts, b| sig::slack(s, ts, b),
        body: generic_body,
        timestamped: true,
        signs_body: true,
        stored_id: same_id,
        missing_reads_as_mismatch: false,
    })
    .await;
}

#[tokio::test]
async fn hmac_template_with_id_and_timestamp() {
    exercise(Case {
        source: r#"provider = "generic"
signature = { scheme = "hmac", header = "X-Sig", signed = "{id}.{timestamp}.{body}", timestamp_header = "X-Ts", id_header = "X-Msg-Id" }
extract = { id = ["header:X-Msg-Id"], type = ["json:/type"] }"#,
        secrets: ["tpl-first", "tpl-second"],
        wrong: "tpl-wrong",
        sign: sig::id_template,
        body: generic_body,
        timestamped: true,
        signs_body: true,
        stored_id: |id, _| id.replace("evt", "msg"),
        missing_reads_as_mismatch: false,
    })
    .await;
}

#[tokio::test]
async fn linkup() {
    // LinkUp documents no event id: the preset falls back to a hash of the
    // body, and its `message` type is stored as `message_received`.
    exercise(Case {
        source: r#"provider = "linkup""#,
        secrets: ["linkup-first", "linkup-second"],
        wrong: "linkup-wrong",
        sign: |s, _, ts, b| sig::linkup(s, ts, b),
        body: |id| {
            format!(r#"{{"type":"message","account_id":"acc","data":{{"text":"hi {id}"}}}}"#)
                .into_bytes()
        },
        timestamped: true,
        signs_body: true,
        stored_id: |_, body| {
            use sha2::Digest;
            format!("sha256:{}", hex::encode(sha2::Sha256::digest(body)))
        },
        missing_reads_as_mismatch: false,
    })
    .await;
    // (The alias is checked in `linkup_message_alias_and_hash_id`.)
}

#[tokio::test]
async fn linkup_message_alias_and_hash_id() {
    let d =
        TestDaemon::start("[[source]]\nname = \"lu\"\nprovider = \"linkup\"\nsecret = \"k\"\n\n")
            .await;
    let body = br#"{"type":"message","data":{"text":"hi"}}"#;
    let r = post(
        &reqwest::Client::new(),
        &d.url("/hooks/lu"),
        &sig::linkup("k", unix_now(), body),
        body,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let (ty, raw, synthetic): (String, String, bool) = d
        .db()
        .query_row("SELECT type, type_raw, id_synthetic FROM events", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!(
        (ty.as_str(), raw.as_str(), synthetic),
        ("message_received", "message", true)
    );
    d.stop().await;
}

#[tokio::test]
async fn linkedapi() {
    exercise(Case {
        source: r#"provider = "linkedapi""#,
        secrets: [
            "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0",
            "1111111111111111111111111111111111111111111111111111111111111111",
        ],
        wrong: "2222222222222222222222222222222222222222222222222222222222222222",
        sign: |s, _, ts, b| sig::linkedapi(s, ts, b),
        body: |id| {
            format!(
                r#"{{"id":"{id}","type":"workflow.completed","createdAt":"2025-05-21T21:30:00Z","data":{{}}}}"#
            )
            .into_bytes()
        },
        timestamped: true,
        signs_body: true,
        stored_id: same_id,
        missing_reads_as_mismatch: false,
    })
    .await;
}

fn linq_body_json(id: &str) -> Vec<u8> {
    format!(
        r#"{{"event_id":"{id}","event_type":"message.received","created_at":"2025-05-21T21:30:00Z","data":{{"text":"hi"}}}}"#
    )
    .into_bytes()
}

const LINQ_SECRETS: [&str; 2] = [
    "whsec_bGlucS1maXJzdC1zZWNyZXQtYnl0ZXM=",
    "whsec_bGlucS1zZWNvbmQtc2VjcmV0LWJ5dGVz",
];

#[tokio::test]
async fn linq_standard_webhooks_variant() {
    exercise(Case {
        source: r#"provider = "linq""#,
        secrets: LINQ_SECRETS,
        wrong: "whsec_d3Jvbmcta2V5LWJ5dGVzLTEyMzQ1Njc4OQ==",
        sign: |s, id, ts, b| sig::standard_webhooks("webhook", s, id, ts, b),
        body: linq_body_json,
        timestamped: true,
        signs_body: true,
        stored_id: same_id,
        missing_reads_as_mismatch: false,
    })
    .await;
}

#[tokio::test]
async fn linq_timestamped_variant() {
    exercise(Case {
        source: r#"provider = "linq""#,
        secrets: LINQ_SECRETS,
        wrong: "whsec_d3Jvbmcta2V5LWJ5dGVzLTEyMzQ1Njc4OQ==",
        sign: |s, _, ts, b| sig::linq_timestamped(s, ts, b),
        body: linq_body_json,
        timestamped: true,
        signs_body: true,
        stored_id: same_id,
        missing_reads_as_mismatch: true,
    })
    .await;
}

#[tokio::test]
async fn linq_body_only_variant() {
    exercise(Case {
        source: r#"provider = "linq""#,
        secrets: ["linq-plain-first", "linq-plain-second"],
        wrong: "linq-plain-wrong",
        sign: |s, _, _, b| sig::linq_body(s, b),
        body: linq_body_json,
        timestamped: false,
        signs_body: true,
        stored_id: same_id,
        missing_reads_as_mismatch: false,
    })
    .await;
}

#[tokio::test]
async fn token_scheme() {
    exercise(Case {
        source: r#"provider = "generic"
signature = { scheme = "token", header = "Authorization", prefix = "Bearer " }
extract = { id = ["json:/id"], type = ["json:/type"] }"#,
        secrets: ["tok-first-0123456789", "tok-second-0123456789"],
        wrong: "tok-wrong-0123456789",
        sign: |s, _, _, _| vec![("Authorization".into(), format!("Bearer {s}"))],
        body: generic_body,
        timestamped: false,
        signs_body: false,
        stored_id: same_id,
        missing_reads_as_mismatch: false,
    })
    .await;
}

#[tokio::test]
async fn token_is_never_stored_with_the_event() {
    let d = TestDaemon::start(&format!(
        "[[source]]\nname = \"s\"\nprovider = \"generic\"\nsecret = \"tok-abcdef\"\nsignature = {{ scheme = \"token\", header = \"X-Token\" }}\n{GENERIC_EXTRACT}\n\n"
    ))
    .await;
    let body = generic_body("e1");
    let r = post(
        &reqwest::Client::new(),
        &d.url("/hooks/s"),
        &vec![("X-Token".into(), "tok-abcdef".into())],
        &body,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let headers: String = d
        .db()
        .query_row("SELECT headers FROM events", [], |r| r.get(0))
        .unwrap();
    assert!(!headers.contains("tok-abcdef"), "{headers}");
    assert!(
        !headers.to_ascii_lowercase().contains("x-token"),
        "{headers}"
    );
    d.stop().await;
}

#[tokio::test]
async fn none_scheme_needs_insecure_and_then_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let without = format!(
        "[[source]]\nname = \"open\"\nprovider = \"generic\"\nsignature = {{ scheme = \"none\" }}\n{GENERIC_EXTRACT}\n"
    );
    let err = hookd::config::load(&write_config(dir.path(), &without)).unwrap_err();
    assert!(err.to_string().contains("insecure"), "{err}");

    let d = TestDaemon::start(&format!("{without}insecure = true\n\n")).await;
    let c = reqwest::Client::new();
    let body = generic_body("open-1");
    let r = post(&c, &d.url("/hooks/open"), &Vec::new(), &body).await;
    assert_eq!((r.status, r.word()), (200, "accepted"), "{:?}", r.json);
    let r = post(&c, &d.url("/hooks/open"), &Vec::new(), &body).await;
    assert_eq!((r.status, r.word()), (200, "duplicate"), "{:?}", r.json);
    assert_eq!(d.count("SELECT COUNT(*) FROM events"), 1);
    d.stop().await;
}

/// A generic GitHub-style source (secret `k`, ids and types from the body).
fn small_source() -> String {
    format!(
        "[[source]]\nname = \"s\"\nprovider = \"generic\"\nsecret = \"k\"\nsignature = {{ scheme = \"hmac\", header = \"X-Hub-Signature-256\", prefix = \"sha256=\" }}\n{GENERIC_EXTRACT}\n\n"
    )
}

#[tokio::test]
async fn unknown_path_is_404_and_other_methods_405() {
    let d = TestDaemon::start(&small_source()).await;
    let c = reqwest::Client::new();
    let body = generic_body("e1");
    let signed = sig::github("k", &body);
    for path in ["/hooks/nope", "/hooks/s/", "/hooks", "/", "/hooks/S"] {
        let r = post(&c, &d.url(path), &signed, &body).await;
        assert_eq!(r.status, 404, "{path}: {:?}", r.json);
    }
    for m in ["GET", "PUT", "DELETE", "PATCH"] {
        let r = c
            .request(m.parse().unwrap(), d.url("/hooks/s"))
            .timeout(PATIENCE)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 405, "{m}");
        assert_eq!(
            r.headers().get("allow").and_then(|v| v.to_str().ok()),
            Some("POST"),
            "{m}"
        );
    }
    // A query string does not change the route.
    let r = post(&c, &d.url("/hooks/s?delivery=1"), &signed, &body).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(d.count("SELECT COUNT(*) FROM events"), 1);
    d.stop().await;
}

#[tokio::test]
async fn body_over_max_body_is_413_and_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start_in(dir, &small_source()).await;
    // The default max_body is 1 MiB.
    let max = d.daemon().runtime.load().config.server.max_body;
    let c = reqwest::Client::new();
    let mut big = br#"{"id":"big","type":"t","pad":""#.to_vec();
    big.resize(max + 1, b'x');
    let r = post(&c, &d.url("/hooks/s"), &sig::github("k", &big), &big).await;
    assert_eq!(r.status, 413, "{:?}", r.json);

    // Exactly max_body is fine.
    let mut fits = br#"{"id":"fits","type":"t","pad":""#.to_vec();
    fits.resize(max - 2, b'x');
    fits.extend_from_slice(b"\"}");
    let r = post(&c, &d.url("/hooks/s"), &sig::github("k", &fits), &fits).await;
    assert_eq!(r.status, 200, "{:?}", r.json);

    // Streamed without a length: cut off at the limit all the same.
    let stream = futures_util::stream::iter(
        (0..(max / 8192 + 2)).map(|_| Ok::<_, std::io::Error>(vec![b'y'; 8192])),
    );
    let r = c
        .post(d.url("/hooks/s"))
        .timeout(PATIENCE)
        .header("X-Hub-Signature-256", "sha256=00")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    assert_eq!(
        d.count("SELECT COUNT(*) FROM events WHERE event_id = 'big'"),
        0
    );
    assert_eq!(d.count("SELECT COUNT(*) FROM events"), 1);
    d.stop().await;
}

#[tokio::test]
async fn missing_id_or_type_is_422_and_logged() {
    let d = TestDaemon::start(&small_source()).await;
    let c = reqwest::Client::new();
    let cases: [(&[u8], &str); 5] = [
        (br#"{"type":"t"}"#, "no_event_id"),
        (br#"{"id":"x"}"#, "no_event_type"),
        (br#"{"id":{"nested":1},"type":"t"}"#, "no_event_id"),
        (b"not json at all", "no_event_id"),
        (br#"{"id":"","type":"t"}"#, "no_event_id"),
    ];
    for (i, (body, code)) in cases.iter().enumerate() {
        let r = post(&c, &d.url("/hooks/s"), &sig::github("k", body), body).await;
        assert_eq!(r.status, 422, "{code}: {:?}", r.json);
        assert_eq!(r.word(), "unprocessable");
        assert!(!r.json["reason"].as_str().unwrap_or("").is_empty());
        eventually(PATIENCE, || {
            (d.count("SELECT COUNT(*) FROM rejected") == i as i64 + 1).then_some(())
        })
        .await;
        let (status, got): (i64, String) = d
            .db()
            .query_row(
                "SELECT status, code FROM rejected ORDER BY id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((status, got.as_str()), (422, *code));
    }
    assert_eq!(d.count("SELECT COUNT(*) FROM events"), 0);
    d.stop().await;
}

#[tokio::test]
async fn rejected_verb_shows_why_a_secret_is_wrong() {
    let d = TestDaemon::start(&small_source()).await;
    let body = generic_body("e1");
    let r = post(
        &reqwest::Client::new(),
        &d.url("/hooks/s"),
        &sig::github("not-the-secret", &body),
        &body,
    )
    .await;
    assert_eq!(r.status, 401);
    eventually(PATIENCE, || {
        (d.count("SELECT COUNT(*) FROM rejected") == 1).then_some(())
    })
    .await;
    let out = std::process::Command::new(bin())
        .args(["-c", d.config_path.to_str().unwrap(), "rejected", "--json"])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let line: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(line["source"], "s");
    assert_eq!(line["status"], 401);
    assert!(
        line["reason"]
            .as_str()
            .unwrap()
            .contains("no signature matched")
    );
    d.stop().await;
}

#[tokio::test]
async fn two_hundred_concurrent_events_are_each_stored_once() {
    let d = TestDaemon::start(&small_source()).await;
    let c = reqwest::Client::new();
    let url = d.url("/hooks/s");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let (c, url) = (c.clone(), url.clone());
        tasks.spawn(async move {
            let body = generic_body(&format!("c{i}"));
            let r = post(&c, &url, &sig::github("k", &body), &body).await;
            (r.status, r.word().to_string())
        });
    }
    let answers = tasks.join_all().await;
    let accepted = answers
        .iter()
        .filter(|a| *a == &(200, "accepted".to_string()))
        .count();
    assert_eq!(accepted, 200, "{answers:?}");
    assert_eq!(d.count("SELECT COUNT(*) FROM events"), 200);
    assert_eq!(
        d.count("SELECT COUNT(DISTINCT event_id) FROM events WHERE event_id LIKE 'c%'"),
        200
    );
    let stats = d.daemon().store.sqlite().expect("a SQLite store").stats();
    assert!(stats.commits >= 1 && stats.failed_commits == 0, "{stats:?}");
    d.stop().await;
}

#[tokio::test]
async fn racing_copies_of_one_event_are_stored_once() {
    let d = TestDaemon::start(&small_source()).await;
    let c = reqwest::Client::new();
    let url = d.url("/hooks/s");
    let mut tasks = tokio::task::JoinSet::new();
    // 50 events, each sent 4 times at once: 200 requests in flight.
    for i in 0..200 {
        let (c, url) = (c.clone(), url.clone());
        tasks.spawn(async move {
            let body = generic_body(&format!("r{}", i % 50));
            let r = post(&c, &url, &sig::github("k", &body), &body).await;
            (r.status, r.word().to_string(), r.json["id"].as_i64())
        });
    }
    let answers = tasks.join_all().await;
    assert!(answers.iter().all(|a| a.0 == 200), "{answers:?}");
    let count = |w: &str| answers.iter().filter(|a| a.1 == w).count();
    assert_eq!((count("accepted"), count("duplicate")), (50, 150));
    assert_eq!(d.count("SELECT COUNT(*) FROM events"), 50);
    assert_eq!(d.count("SELECT SUM(duplicates) FROM events"), 150);
    d.stop().await;
}

/// Sends one event and expects 503 + Retry-After, and that it is not stored
/// in the database file that `db` opens.
async fn expect_503(d: &TestDaemon, id: &str) -> Reply {
    let body = generic_body(id);
    let r = post(
        &reqwest::Client::new(),
        &d.url("/hooks/s"),
        &sig::github("k", &body),
        &body,
    )
    .await;
    assert_eq!(r.status, 503, "{:?}", r.json);
    let retry = r.headers.get("retry-after").expect("Retry-After on a 503");
    let secs: u64 = retry
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds");
    assert!(secs >= 1);
    assert_eq!(r.word(), "unavailable");
    r
}

#[tokio::test]
async fn removed_state_directory_is_503_never_200() {
    let d = TestDaemon::start(&small_source()).await;
    let c = reqwest::Client::new();
    let body = generic_body("before");
    assert_eq!(
        post(&c, &d.url("/hooks/s"), &sig::github("k", &body), &body)
            .await
            .status,
        200
    );
    let state = d.dir.path().join("state");
    std::fs::remove_dir_all(&state).unwrap();
    for i in 0..3 {
        expect_503(&d, &format!("after-{i}")).await;
    }
    // Recreating an empty directory does not make the old (unlinked)
    // database acceptable again.
    std::fs::create_dir(&state).unwrap();
    expect_503(&d, "after-recreate").await;
    assert!(
        !state.join("hookd.db").exists() || {
            let n: i64 = rusqlite::Connection::open(state.join("hookd.db"))
                .unwrap()
                .query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))
                .unwrap();
            n == 0
        }
    );
    d.stop().await;
}

#[tokio::test]
async fn replaced_database_file_is_503_never_200() {
    let d = TestDaemon::start(&small_source()).await;
    let c = reqwest::Client::new();
    let body = generic_body("before");
    assert_eq!(
        post(&c, &d.url("/hooks/s"), &sig::github("k", &body), &body)
            .await
            .status,
        200
    );
    let db = d.dir.path().join("state/hookd.db");
    // As a careless restore would: a copy renamed over the live file.
    let copy = d.dir.path().join("state/restored.db");
    std::fs::copy(&db, &copy).unwrap();
    std::fs::rename(&copy, &db).unwrap();
    expect_503(&d, "after-replace").await;
    assert_eq!(
        d.count("SELECT COUNT(*) FROM events WHERE event_id = 'after-replace'"),
        0
    );
    d.stop().await;
}

#[tokio::test]
async fn readyz_reports_a_broken_store() {
    let d = TestDaemon::start(&small_source()).await;
    let admin = d.admin.clone().expect("admin listener");
    let c = reqwest::Client::new();
    let get = |p: &'static str| {
        let c = c.clone();
        let u = format!("{admin}{p}");
        async move {
            c.get(u)
                .timeout(PATIENCE)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(get("/readyz").await, 200);
    std::fs::remove_dir_all(d.dir.path().join("state")).unwrap();
    assert_eq!(get("/readyz").await, 503);
    d.stop().await;
}

#[test]
fn check_names_file_line_and_key_of_a_mistake() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        // (the mistake, the key the message must name, the line it is on)
        ("bogus_key = 1", "bogus_key"),
        ("tolerance = \"five minutes\"", "tolerance"),
        (
            "signature = { scheme = \"hmac\", header = \"X-Sig\", encoding = \"hexx\" }",
            "encoding",
        ),
        ("provider = \"nope\"", "provider"),
    ];
    for (mistake, key) in cases {
        let mut lines = vec![
            "[daemon]".to_string(),
            format!("state_dir = \"{}\"", dir.path().join("state").display()),
            String::new(),
            "[[source]]".to_string(),
            "name = \"s\"".to_string(),
        ];
        if !mistake.starts_with("provider") {
            lines.push("provider = \"generic\"".to_string());
        }
        lines.push("secret = \"k\"".to_string());
        if !mistake.starts_with("signature") {
            lines.push("signature = { scheme = \"hmac\", header = \"X-Sig\" }".to_string());
        }
        lines.push(GENERIC_EXTRACT.to_string());
        lines.push(mistake.to_string());
        let line = lines.len();
        let path = dir.path().join("broken.toml");
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let out = assert_cmd::Command::new(bin())
            .args(["-c", path.to_str().unwrap(), "check"])
            .env("RUST_BACKTRACE", "0")
            .env("RUST_LIB_BACKTRACE", "0")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{mistake}: {stderr}");
        let want = format!("{}:{line}", path.display());
        assert!(stderr.contains(&want), "{mistake}: want {want} in {stderr}");
        assert!(
            stderr.contains(key),
            "{mistake}: want key {key} in {stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
    // And a valid file passes, printing the plan.
    let ok = write_config(dir.path(), &small_source());
    assert_cmd::Command::new(bin())
        .args(["-c", ok.to_str().unwrap(), "check"])
        .assert()
        .success()
        .stdout(predicates::str::contains("POST /hooks/s"));
}

#[tokio::test]
async fn the_same_id_in_two_sources_is_two_events() {
    let body = format!(
        "{}{}",
        small_source(),
        small_source().replace("name = \"s\"", "name = \"t\"")
    );
    let d = TestDaemon::start(&body).await;
    let c = reqwest::Client::new();
    let ev = generic_body("same");
    for path in ["/hooks/s", "/hooks/t"] {
        let r = post(&c, &d.url(path), &sig::github("k", &ev), &ev).await;
        assert_eq!(
            (r.status, r.word()),
            (200, "accepted"),
            "{path}: {:?}",
            r.json
        );
    }
    assert_eq!(d.count("SELECT COUNT(DISTINCT source) FROM events"), 2);
    d.stop().await;
}

/// A self-signed certificate for 127.0.0.1 made with the openssl CLI, or
/// `None` where it is not installed.
fn self_signed(dir: &std::path::Path) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let ok = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some((cert, key))
}

#[tokio::test]
async fn https_listener_verifies_and_stores() {
    let dir = tempfile::tempdir().unwrap();
    let Some((cert, key)) = self_signed(dir.path()) else {
        eprintln!("skipped: no openssl CLI to make a test certificate");
        return;
    };
    let server = format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"\nheader_timeout = \"2s\"",
        cert.display(),
        key.display()
    );
    let d = sig::start_daemon_in(dir, &server, &small_source()).await;
    let addr = d.daemon().push_addrs[0];
    let c = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap()])
        .build()
        .unwrap();
    let url = format!("https://{addr}/hooks/s");
    let body = generic_body("tls-1");
    let r = post(&c, &url, &sig::github("k", &body), &body).await;
    assert_eq!((r.status, r.word()), (200, "accepted"), "{:?}", r.json);
    let r = post(&c, &url, &sig::github("wrong", &body), &body).await;
    assert_eq!(r.status, 401);
    // Plain HTTP on the TLS port gets nowhere.
    let plain = sig::raw(&addr.to_string(), &sig::raw_post("/hooks/s", &[], b"{}")).await;
    assert!(plain.is_none(), "{plain:?}");
    // A client that connects and never starts the handshake is cut off.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    sig::closed_by_server(&mut s).await;
    assert_eq!(d.count("SELECT COUNT(*) FROM events"), 1);
    d.stop().await;
}
