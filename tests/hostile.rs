//! Hostile input: malformed and adversarial HTTP sent over raw TCP (a
//! client library would tidy it up), each with the answer SPEC §4 and HTTP
//! give it, nothing stored for anything refused, slow clients cut off by
//! `header_timeout`/`request_timeout`, and well-formed traffic still served
//! while the attack goes on.

mod ingest_support;
mod support;

use std::time::Duration;

use ingest_support::*;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Short timeouts so slow clients are cut off quickly; a small body limit.
const SERVER: &str = "header_timeout = \"2s\"\nrequest_timeout = \"4s\"\nmax_body = \"64KiB\"";

fn sources() -> String {
    let generic = |name: &str, secret: &str, sig: &str, extract: &str| {
        format!(
            "[[source]]\nname = \"{name}\"\nprovider = \"generic\"\nsecret = \"{secret}\"\nsignature = {sig}\nextract = {extract}\n\n"
        )
    };
    let json = r#"{ id = ["json:/id"], type = ["json:/type"] }"#;
    [
        generic(
            "gh",
            "k",
            r#"{ scheme = "hmac", header = "X-Hub-Signature-256", prefix = "sha256=" }"#,
            json,
        ),
        generic(
            "b64",
            "b64k",
            r#"{ scheme = "hmac", header = "X-Mac", encoding = "base64" }"#,
            json,
        ),
        generic(
            "sl",
            "slk",
            r#"{ scheme = "hmac", header = "X-Slack-Signature", prefix = "v0=", signed = "v0:{timestamp}:{body}", timestamp_header = "X-Slack-Request-Timestamp" }"#,
            json,
        ),
        generic("sw", SW_SECRET, r#"{ scheme = "standard-webhooks" }"#, json),
        generic("st", "whsec_st", r#"{ scheme = "stripe" }"#, json),
        generic(
            "raw",
            "k",
            r#"{ scheme = "hmac", header = "X-Hub-Signature-256", prefix = "sha256=" }"#,
            r#"{ id = ["json:/id", "hash"], type = ["const:raw"] }"#,
        ),
    ]
    .concat()
}

fn body(id: &str) -> Vec<u8> {
    format!(r#"{{"id":"{id}","type":"t"}}"#).into_bytes()
}

fn gh_sig(body: &[u8]) -> Vec<u8> {
    format!("sha256={}", hex::encode(mac256(b"k", &[body]))).into_bytes()
}

fn hex_sig(key: &[u8], parts: &[&[u8]]) -> String {
    hex::encode(mac256(key, parts))
}

/// What a hostile request must get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    Status(u16),
}
use Want::*;

struct Probe {
    what: String,
    request: Vec<u8>,
    want: Want,
}

fn probe(what: impl Into<String>, request: Vec<u8>, want: Want) -> Probe {
    Probe {
        what: what.into(),
        request,
        want,
    }
}

/// Runs each probe on its own connection and checks the answer; for 401
/// and 422 also that the refusal reached the rejected log. Returns how many
/// probes were meant to be stored (accepted).
async fn run(d: &TestDaemon, probes: Vec<Probe>) -> i64 {
    let a = addr(d);
    let mut accepted = 0;
    let mut logged = d.count("SELECT COUNT(*) FROM rejected");
    for p in probes {
        let before = d.count("SELECT COUNT(*) FROM events");
        let got = raw(&a, &p.request).await;
        let status = got.as_ref().map(|r| r.status);
        let shown = got
            .as_ref()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned());
        let Status(want) = p.want;
        assert_eq!(status, Some(want), "{}: {shown:?}", p.what);
        let after = d.count("SELECT COUNT(*) FROM events");
        if p.want == Status(200) {
            let word = got.as_ref().unwrap().json()["status"].clone();
            assert_eq!(word, "accepted", "{}", p.what);
            accepted += 1;
            assert_eq!(after, before + 1, "{}: stored", p.what);
        } else {
            assert_eq!(after, before, "{}: nothing stored", p.what);
        }
        if matches!(p.want, Status(401) | Status(422)) {
            logged += 1;
            eventually(PATIENCE, || {
                (d.count("SELECT COUNT(*) FROM rejected") >= logged).then_some(())
            })
            .await;
        }
    }
    accepted
}

#[tokio::test]
async fn malformed_and_oversized_headers() {
    let d = start_daemon(SERVER, &sources()).await;
    let b = body("h1");
    let sig = gh_sig(&b);
    let gh = |hs: &[(&str, &[u8])], body: &[u8]| raw_post("/hooks/gh", hs, body);
    let big = vec![b'a'; 70 << 10];
    let kib = vec![b'b'; 1024];
    let many_kib: Vec<(String, Vec<u8>)> = (0..80)
        .map(|i| (format!("X-Pad-{i}"), kib.clone()))
        .collect();
    let many_small: Vec<(String, Vec<u8>)> = (0..150)
        .map(|i| (format!("X-N-{i}"), b"1".to_vec()))
        .collect();
    let refs = |v: &[(String, Vec<u8>)]| -> Vec<u8> {
        let mut hs: Vec<(&str, &[u8])> = v.iter().map(|(k, v)| (k.as_str(), &v[..])).collect();
        hs.push(("X-Hub-Signature-256", &sig));
        raw_post("/hooks/gh", &hs, &b)
    };
    let ts = unix_now().to_string();
    let slack = |t: &[u8]| hex_sig(b"slk", &[b"v0:", t, b":", &b]);
    let sl_sig = format!("v0={}", slack(ts.as_bytes()));
    let probes = vec![
        probe("no signature header", gh(&[], &b), Status(401)),
        probe(
            "signature header with an empty value",
            gh(&[("X-Hub-Signature-256", b"")], &b),
            Status(401),
        ),
        probe(
            "two junk signature headers",
            gh(
                &[
                    ("X-Hub-Signature-256", b"sha256=00"),
                    ("X-Hub-Signature-256", b"sha256=11"),
                ],
                &b,
            ),
            Status(401),
        ),
        probe(
            "a junk and a valid signature header (several signatures are allowed)",
            gh(
                &[
                    ("X-Hub-Signature-256", b"sha256=00"),
                    ("X-Hub-Signature-256", &sig),
                ],
                &b,
            ),
            Status(200),
        ),
        probe(
            "repeated timestamp header",
            raw_post(
                "/hooks/sl",
                &[
                    ("X-Slack-Signature", sl_sig.as_bytes()),
                    ("X-Slack-Request-Timestamp", ts.as_bytes()),
                    ("X-Slack-Request-Timestamp", ts.as_bytes()),
                ],
                &b,
            ),
            Status(401),
        ),
        probe(
            "repeated Stripe-Signature header",
            raw_post(
                "/hooks/st",
                &[
                    ("Stripe-Signature", format!("t={ts},v1=00").as_bytes()),
                    ("Stripe-Signature", format!("t={ts},v1=11").as_bytes()),
                ],
                &b,
            ),
            Status(401),
        ),
        probe(
            "signature header with invalid UTF-8",
            gh(&[("X-Hub-Signature-256", b"sha256=\xff\xfe\xfd")], &b),
            Status(401),
        ),
        probe(
            "a 70 KiB header",
            gh(&[("X-Hub-Signature-256", &sig), ("X-Big", &big)], &b),
            Status(431),
        ),
        probe("80 headers of 1 KiB", refs(&many_kib), Status(431)),
        probe("150 small headers", refs(&many_small), Status(431)),
        probe(
            "two different Content-Length headers",
            b"POST /hooks/gh HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
                .to_vec(),
            Status(400),
        ),
        probe(
            "negative Content-Length",
            b"POST /hooks/gh HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n".to_vec(),
            Status(400),
        ),
        probe(
            "a header line without a colon",
            b"POST /hooks/gh HTTP/1.1\r\nHost: x\r\nnonsense\r\nContent-Length: 0\r\n\r\n"
                .to_vec(),
            Status(400),
        ),
        probe(
            "a NUL in a header value",
            gh(&[("X-Hub-Signature-256", b"sha256=\0abc")], &b),
            Status(400),
        ),
        probe(
            "garbage request line",
            b"\x16\x03\x01 not http at all\r\n\r\n".to_vec(),
            Status(400),
        ),
    ];
    let accepted = run(&d, probes).await;
    assert_eq!(d.count("SELECT COUNT(*) FROM events"), accepted);
    assert_eq!(accepted, 1);
    d.stop().await;
}

#[tokio::test]
async fn huge_chunked_and_broken_bodies() {
    let d = start_daemon(SERVER, &sources()).await;
    let over = {
        let mut v = br#"{"id":"big","type":"t","pad":""#.to_vec();
        v.resize(100 << 10, b'x');
        v
    };
    let sig_over = gh_sig(&over);
    let ok = body("chunked-ok");
    let sig_ok = gh_sig(&ok);
    let probes = vec![
        probe(
            "Content-Length of 10 GB, no body sent",
            b"POST /hooks/gh HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\nX-Hub-Signature-256: sha256=00\r\n\r\n".to_vec(),
            Status(413),
        ),
        probe(
            "100 KiB body with its length (limit 64 KiB)",
            raw_post("/hooks/gh", &[("X-Hub-Signature-256", &sig_over)], &over),
            Status(413),
        ),
        probe(
            "100 KiB chunked body without a length",
            raw_chunked(
                "/hooks/gh",
                &[("X-Hub-Signature-256", &sig_over)],
                &over.chunks(4096).collect::<Vec<_>>(),
            ),
            Status(413),
        ),
        probe(
            "chunked body under the limit, validly signed",
            raw_chunked(
                "/hooks/gh",
                &[("X-Hub-Signature-256", &sig_ok)],
                &ok.chunks(5).collect::<Vec<_>>(),
            ),
            Status(200),
        ),
        probe(
            "chunk size that is not hex",
            b"POST /hooks/gh HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nX-Hub-Signature-256: sha256=00\r\n\r\nzz\r\nhello\r\n0\r\n\r\n".to_vec(),
            Status(400),
        ),
        // RFC 9112 §6.3: Transfer-Encoding wins over Content-Length; the
        // body read is the chunked one ("hello"), which is not signed.
        probe(
            "chunked and Content-Length together",
            b"POST /hooks/gh HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\nX-Hub-Signature-256: sha256=00\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec(),
            Status(401),
        ),
    ];
    let accepted = run(&d, probes).await;

    // A body that ends before its Content-Length: the client half-closes.
    let mut s = TcpStream::connect(addr(&d)).await.unwrap();
    s.write_all(&raw_post(
        "/hooks/gh",
        &[("X-Hub-Signature-256", &sig_ok), ("Content-Length", b"500")],
        &ok,
    ))
    .await
    .unwrap();
    s.shutdown().await.unwrap();
    let got = read_response(&mut s).await;
    assert!(
        got.as_ref().is_none_or(|r| r.status == 400),
        "truncated body: {got:?}"
    );
    assert_eq!(d.count("SELECT COUNT(*) FROM events"), accepted);
    assert_eq!(accepted, 1);
    d.stop().await;
}

#[tokio::test]
async fn invalid_utf8_and_deeply_nested_bodies() {
    let d = start_daemon(SERVER, &sources()).await;
    let binary: Vec<u8> = (0..=255u8)
        .rev()
        .chain([0xc3, 0x28, 0xed, 0xa0, 0x80])
        .collect();
    let deep_array = [vec![b'['; 30_000], vec![b']'; 30_000]].concat();
    let deep_with_id = {
        let mut v = br#"{"id":"deep","type":"t","x":"#.to_vec();
        v.extend(std::iter::repeat_n(b'[', 1000));
        v.extend(std::iter::repeat_n(b']', 1000));
        v.push(b'}');
        v
    };
    let deep_object: Vec<u8> = {
        let mut v = Vec::new();
        for _ in 0..10_000 {
            v.extend_from_slice(br#"{"a":"#);
        }
        v.extend_from_slice(b"1");
        v.extend(std::iter::repeat_n(b'}', 10_000));
        v
    };
    let gh = |b: &[u8]| raw_post("/hooks/gh", &[("X-Hub-Signature-256", &gh_sig(b))], b);
    let probes = vec![
        probe(
            "invalid UTF-8, signed, id from JSON",
            gh(&binary),
            Status(422),
        ),
        probe(
            "invalid UTF-8, unsigned",
            raw_post(
                "/hooks/gh",
                &[("X-Hub-Signature-256", b"sha256=00")],
                &binary,
            ),
            Status(401),
        ),
        probe(
            "invalid UTF-8, signed, id by hash: stored as sent",
            raw_post(
                "/hooks/raw",
                &[("X-Hub-Signature-256", &gh_sig(&binary))],
                &binary,
            ),
            Status(200),
        ),
        probe("30 000 nested arrays, signed", gh(&deep_array), Status(422)),
        probe(
            "30 000 nested arrays, unsigned",
            raw_post(
                "/hooks/gh",
                &[("X-Hub-Signature-256", b"sha256=00")],
                &deep_array,
            ),
            Status(401),
        ),
        probe(
            "10 000 nested objects, signed",
            gh(&deep_object),
            Status(422),
        ),
        probe(
            "1000 levels under a valid id (over the parser's depth limit)",
            gh(&deep_with_id),
            Status(422),
        ),
    ];
    let accepted = run(&d, probes).await;
    assert_eq!(accepted, 1);
    let stored: Vec<u8> = d
        .db()
        .query_row("SELECT body FROM events WHERE source = 'raw'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(stored, binary, "raw bytes kept exactly");
    // Still answering.
    let ok = body("after");
    let r = raw(&addr(&d), &gh(&ok)).await.unwrap();
    assert_eq!(r.status, 200);
    d.stop().await;
}

#[tokio::test]
async fn odd_spacing_many_signatures_and_bad_encodings() {
    let d = start_daemon(SERVER, &sources()).await;
    let mut probes = Vec::new();
    let mut n = 0;
    let mut next = || {
        n += 1;
        body(&format!("s{n}"))
    };
    let gh = |sig: &[u8], b: &[u8]| raw_post("/hooks/gh", &[("X-Hub-Signature-256", sig)], b);
    let hexsig = |b: &[u8]| hex_sig(b"k", &[b]);

    let b = next();
    let s = format!("  sha256={}\t ", hexsig(&b));
    probes.push(probe(
        "spaces around the value",
        gh(s.as_bytes(), &b),
        Status(200),
    ));
    let b = next();
    let s = format!("sha256=00,\t sha256={} ,sha256=11", hexsig(&b));
    probes.push(probe(
        "tabs and spaces between entries",
        gh(s.as_bytes(), &b),
        Status(200),
    ));
    let b = next();
    let s = format!("sha256= {}", hexsig(&b));
    probes.push(probe(
        "a space inside an entry",
        gh(s.as_bytes(), &b),
        Status(401),
    ));
    let b = next();
    let s = format!("SHA256={}", hexsig(&b));
    probes.push(probe(
        "prefix in another case",
        gh(s.as_bytes(), &b),
        Status(401),
    ));
    let b = next();
    let s = format!("sha256={}", hexsig(&b).to_uppercase());
    probes.push(probe("upper-case hex", gh(s.as_bytes(), &b), Status(200)));
    let b = next();
    let mut s = "sha256=00ff,".repeat(500);
    s += &format!("sha256={}", hexsig(&b));
    probes.push(probe(
        "500 junk signatures, then the valid one",
        gh(s.as_bytes(), &b),
        Status(200),
    ));
    let b = next();
    let s = "sha256=00112233,".repeat(3000);
    probes.push(probe(
        "3000 junk signatures",
        gh(s.as_bytes(), &b),
        Status(401),
    ));
    let b = next();
    let s = ",".repeat(60_000);
    probes.push(probe("60 000 commas", gh(s.as_bytes(), &b), Status(401)));
    let b = next();
    let good = hexsig(&b);
    for (what, sig) in [
        ("odd-length hex", format!("sha256={}", &good[1..])),
        ("non-hex characters", format!("sha256=zz{}", &good[2..])),
        ("31 bytes", format!("sha256={}", &good[2..])),
        ("33 bytes", format!("sha256={good}00")),
        ("hex with 0x", format!("sha256=0x{good}")),
    ] {
        probes.push(probe(what, gh(sig.as_bytes(), &b), Status(401)));
    }
    // base64 source.
    let b = next();
    let mac = mac256(b"b64k", &[&b]);
    let good = b64(&mac);
    let b64p = |v: &str, b: &[u8]| raw_post("/hooks/b64", &[("X-Mac", v.as_bytes())], b);
    probes.push(probe(
        "base64 without padding",
        b64p(good.trim_end_matches('='), &b),
        Status(200),
    ));
    let b = next();
    let good = b64(&mac256(b"b64k", &[&b]));
    for (what, sig) in [
        (
            "base64 with characters outside the alphabet",
            format!("!{}", &good[1..]),
        ),
        (
            "base64 with a space inside",
            format!("{} {}", &good[..10], &good[10..]),
        ),
        ("base64 of the wrong length", b64(&[1u8; 16])),
        ("hex where base64 is expected", hex::encode([7u8; 32])),
        ("empty base64", String::new()),
    ] {
        probes.push(probe(what, b64p(&sig, &b), Status(401)));
    }
    // Standard Webhooks.
    let now = unix_now().to_string();
    let key = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        SW_SECRET.trim_start_matches("whsec_"),
    )
    .unwrap();
    let mut sw = |sig_value: &dyn Fn(&str) -> String, want: Want, what: &str| {
        let b = next();
        let id = format!("msg_{}", probes.len());
        let good = b64(&mac256(
            &key,
            &[id.as_bytes(), b".", now.as_bytes(), b".", &b],
        ));
        probes.push(probe(
            what,
            raw_post(
                "/hooks/sw",
                &[
                    ("webhook-id", id.as_bytes()),
                    ("webhook-timestamp", now.as_bytes()),
                    ("webhook-signature", sig_value(&good).as_bytes()),
                ],
                &b,
            ),
            want,
        ));
    };
    sw(
        &|g| format!("v1,AAAA v1,{g}"),
        Status(200),
        "standard-webhooks: junk then valid",
    );
    sw(
        &|g| format!("v1,{g}\tv1,AAAA"),
        Status(200),
        "standard-webhooks: tab separated",
    );
    sw(
        &|g| format!("v1, {g}"),
        Status(401),
        "standard-webhooks: space after the comma",
    );
    sw(
        &|g| format!("v2,{g}"),
        Status(401),
        "standard-webhooks: wrong version tag",
    );
    sw(
        &|g| format!("v1a,{g}"),
        Status(401),
        "standard-webhooks: asymmetric tag",
    );
    sw(
        &|g| g.to_string(),
        Status(401),
        "standard-webhooks: no version tag",
    );
    sw(
        &|g| format!("v1,{}", &g[..g.len() - 4]),
        Status(401),
        "standard-webhooks: truncated",
    );
    // Stripe.
    let mut st = |value: &dyn Fn(&str, &str) -> String, want: Want, what: &str| {
        let b = next();
        let good = hex_sig(b"whsec_st", &[now.as_bytes(), b".", &b]);
        probes.push(probe(
            what,
            raw_post(
                "/hooks/st",
                &[("Stripe-Signature", value(&now, &good).as_bytes())],
                &b,
            ),
            want,
        ));
    };
    st(
        &|t, g| format!("t={t}, v1={g}"),
        Status(200),
        "stripe: spaces after commas",
    );
    st(
        &|t, g| format!("v1=00,t={t},v0=ff,v1={g}"),
        Status(200),
        "stripe: reordered, two v1",
    );
    st(&|_, g| format!("v1={g}"), Status(401), "stripe: no t=");
    st(
        &|t, g| format!("t={t},t=1,v1={g}"),
        Status(401),
        "stripe: two different t=",
    );
    st(
        &|t, g| format!("t={t},v0={g}"),
        Status(401),
        "stripe: only v0",
    );
    st(
        &|t, _| format!("t={t},v1="),
        Status(401),
        "stripe: empty v1",
    );
    let accepted = run(&d, probes).await;
    assert_eq!(d.count("SELECT COUNT(*) FROM events"), accepted);
    d.stop().await;
}

#[tokio::test]
async fn timestamps_with_signs_fractions_and_huge_values() {
    let d = start_daemon(SERVER, &sources()).await;
    let now = unix_now();
    let key = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        SW_SECRET.trim_start_matches("whsec_"),
    )
    .unwrap();
    let values: Vec<(String, Want)> = vec![
        (format!("+{now}"), Status(401)),
        (format!("-{now}"), Status(401)),
        ("-1".into(), Status(401)),
        (format!("{now}.5"), Status(401)),
        (format!("{now}.0"), Status(401)),
        (format!("{now}e0"), Status(401)),
        ("1e9".into(), Status(401)),
        (format!("0x{now:x}"), Status(401)),
        (format!("{now} 1"), Status(401)),
        ("0".into(), Status(401)),
        (format!("0000{now}"), Status(200)),
        ("9223372036854775807".into(), Status(401)),
        ("9223372036854775808".into(), Status(401)),
        ("99999999999999999999999999999999".into(), Status(401)),
        ("١٧٠٠٠٠٠٠٠٠".into(), Status(401)),
        (format!("{now}"), Status(200)),
    ];
    let mut probes = Vec::new();
    for (i, (t, want)) in values.iter().enumerate() {
        let t = t.as_bytes();
        // Each signed correctly over the timestamp as sent, so only the
        // timestamp rule decides.
        let b = body(&format!("ts{i}"));
        let sl = format!("v0={}", hex_sig(b"slk", &[b"v0:", t, b":", &b]));
        probes.push(probe(
            format!("slack timestamp {:?}", String::from_utf8_lossy(t)),
            raw_post(
                "/hooks/sl",
                &[
                    ("X-Slack-Signature", sl.as_bytes()),
                    ("X-Slack-Request-Timestamp", t),
                ],
                &b,
            ),
            *want,
        ));
        let b = body(&format!("sw{i}"));
        let id = format!("msg_{i}");
        let sw = format!(
            "v1,{}",
            b64(&mac256(&key, &[id.as_bytes(), b".", t, b".", &b]))
        );
        probes.push(probe(
            format!(
                "standard-webhooks timestamp {:?}",
                String::from_utf8_lossy(t)
            ),
            raw_post(
                "/hooks/sw",
                &[
                    ("webhook-id", id.as_bytes()),
                    ("webhook-timestamp", t),
                    ("webhook-signature", sw.as_bytes()),
                ],
                &b,
            ),
            *want,
        ));
        let b = body(&format!("st{i}"));
        let st = format!(
            "t={},v1={}",
            String::from_utf8_lossy(t),
            hex_sig(b"whsec_st", &[t, b".", &b])
        );
        // A space inside t= is only an entry separator for Stripe's
        // trimmed parser; leave that one to the other schemes.
        if !t.contains(&b' ') {
            probes.push(probe(
                format!("stripe t={:?}", String::from_utf8_lossy(t)),
                raw_post("/hooks/st", &[("Stripe-Signature", st.as_bytes())], &b),
                *want,
            ));
        }
    }
    let accepted = run(&d, probes).await;
    assert_eq!(d.count("SELECT COUNT(*) FROM events"), accepted);
    assert_eq!(accepted, 6);
    d.stop().await;
}

/// Writes `bytes` one at a time every `gap` until the server ends the
/// connection; returns what the server sent back.
async fn dribble(s: TcpStream, bytes: Vec<u8>, gap: Duration) -> Vec<u8> {
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        for b in bytes.iter().cycle() {
            if wr.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(gap).await;
        }
    });
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout_at(deadline, tokio::io::AsyncReadExt::read(&mut rd, &mut chunk))
            .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
            Err(_) => {
                writer.abort();
                panic!("a slow client was never cut off");
            }
        }
    }
    writer.abort();
    got
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    let d = start_daemon(SERVER, &sources()).await;
    // Headers that never end: one byte every 100 ms, forever.
    let s = TcpStream::connect(addr(&d)).await.unwrap();
    let head = b"POST /hooks/gh HTTP/1.1\r\nHost: x\r\nX-Slow: ".to_vec();
    let mut endless = head.clone();
    endless.extend(std::iter::repeat_n(b'a', 1_000_000));
    let got = dribble(s, endless, Duration::from_millis(100)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );

    assert_eq!(d.count("SELECT COUNT(*) FROM events"), 0);
    d.stop().await;
}

#[tokio::test]
async fn silent_and_stalled_preface_connections_are_cut_off() {
    let d = start_daemon(SERVER, &sources()).await;
    // Connects and sends nothing at all.
    let mut idle = TcpStream::connect(addr(&d)).await.unwrap();
    // Sends the start of the HTTP/2 preface, so the protocol is still
    // undecided, then nothing.
    let mut stalled = TcpStream::connect(addr(&d)).await.unwrap();
    stalled.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    // One byte of an HTTP/1 request line, then nothing.
    let mut one = TcpStream::connect(addr(&d)).await.unwrap();
    one.write_all(b"P").await.unwrap();
    // The whole HTTP/2 preface, then no SETTINGS frame.
    let mut preface = TcpStream::connect(addr(&d)).await.unwrap();
    preface
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    closed_by_server(&mut idle).await;
    closed_by_server(&mut stalled).await;
    closed_by_server(&mut one).await;
    closed_by_server(&mut preface).await;
    d.stop().await;
}

#[tokio::test]
async fn slow_bodies_get_408_and_are_not_stored() {
    let d = start_daemon(SERVER, &sources()).await;
    let b = body("slow");
    // With a length: the body trickles in.
    let mut s = TcpStream::connect(addr(&d)).await.unwrap();
    let mut head = raw_post(
        "/hooks/gh",
        &[
            ("X-Hub-Signature-256", &gh_sig(&b)),
            ("Content-Length", b"1000"),
        ],
        b"",
    );
    s.write_all(&head).await.unwrap();
    let got = dribble(s, vec![b' '; 1000], Duration::from_millis(100)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");

    // Chunked: chunks trickle in.
    head = raw_post(
        "/hooks/gh",
        &[
            ("X-Hub-Signature-256", &gh_sig(&b)),
            ("Transfer-Encoding", b"chunked"),
        ],
        b"",
    );
    let mut s = TcpStream::connect(addr(&d)).await.unwrap();
    s.write_all(&head).await.unwrap();
    let got = dribble(s, b"1\r\na\r\n".to_vec(), Duration::from_millis(100)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert_eq!(d.count("SELECT COUNT(*) FROM events"), 0);
    d.stop().await;
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let d = start_daemon(SERVER, &sources()).await;
    let mut s = TcpStream::connect(addr(&d)).await.unwrap();
    let b = body("ka");
    let mut req = b"POST /hooks/gh HTTP/1.1\r\nHost: x\r\n".to_vec();
    req.extend_from_slice(
        format!("Content-Length: {}\r\nX-Hub-Signature-256: ", b.len()).as_bytes(),
    );
    req.extend_from_slice(&gh_sig(&b));
    req.extend_from_slice(b"\r\n\r\n");
    req.extend_from_slice(&b);
    s.write_all(&req).await.unwrap();
    let r = read_response(&mut s).await.expect("an answer");
    assert_eq!(r.status, 200);
    // Then silence: the connection must not stay open forever.
    closed_by_server(&mut s).await;
    d.stop().await;
}

#[tokio::test]
async fn well_formed_traffic_is_served_during_slowloris() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let d = start_daemon(SERVER, &sources()).await;
    let a = addr(&d);
    let cut = Arc::new(AtomicUsize::new(0));
    let mut attackers = tokio::task::JoinSet::new();
    // 16 silent, 48 slow-header and 16 slow-body connections, each
    // reopened as soon as the daemon cuts it off.
    for i in 0..80 {
        let (a, cut) = (a.clone(), cut.clone());
        attackers.spawn(async move {
            while let Ok(mut s) = TcpStream::connect(&a).await {
                match i {
                    0..16 => drop(closed_by_server(&mut s).await),
                    16..64 => {
                        let head = b"POST /hooks/gh HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaa";
                        drop(dribble(s, head.to_vec(), Duration::from_millis(50)).await)
                    }
                    _ => {
                        let mut h = b"POST /hooks/gh HTTP/1.1\r\nHost: x\r\nX-Hub-Signature-256: sha256=00\r\nContent-Length: 60000\r\n\r\n".to_vec();
                        h.extend(std::iter::repeat_n(b'x', 1000));
                        drop(dribble(s, h, Duration::from_millis(50)).await)
                    }
                }
                cut.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    // Well-formed requests until every attacker was cut off about twice:
    // the attack was on all along, and each request was answered 200.
    let c = reqwest::Client::new();
    let mut sent = 0;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while sent < 20 || cut.load(Ordering::Relaxed) < 160 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "attackers were cut off only {} times",
            cut.load(Ordering::Relaxed)
        );
        let b = body(&format!("during-{sent}"));
        let sig = String::from_utf8(gh_sig(&b)).unwrap();
        let r = post(
            &c,
            &d.url("/hooks/gh"),
            &vec![("X-Hub-Signature-256".into(), sig)],
            &b,
        )
        .await;
        assert_eq!((r.status, r.word()), (200, "accepted"), "{:?}", r.json);
        sent += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    attackers.abort_all();
    assert_eq!(d.count("SELECT COUNT(*) FROM events"), sent);
    d.stop().await;
}

#[tokio::test]
async fn paths_uris_and_expect_continue() {
    let d = start_daemon(SERVER, &sources()).await;
    let b = body("p1");
    let sig = gh_sig(&b);
    let at = |path: &str| raw_post(path, &[("X-Hub-Signature-256", &sig)], &b);
    let long = format!("/hooks/gh?{}", "q".repeat(70 << 10));
    let probes = vec![
        probe("dot segments", at("/hooks/x/../gh"), Status(404)),
        probe("double slash", at("//hooks/gh"), Status(404)),
        probe("percent-encoded name", at("/hooks/%67h"), Status(404)),
        probe("a 70 KiB URI", at(&long), Status(431)),
        probe(
            "Expect: 100-continue with a body over the limit",
            b"POST /hooks/gh HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1000000\r\nX-Hub-Signature-256: sha256=00\r\n\r\n".to_vec(),
            Status(413),
        ),
        probe("origin form, valid", at("/hooks/gh"), Status(200)),
    ];
    let accepted = run(&d, probes).await;
    assert_eq!(accepted, 1);

    // A client that waits for 100 Continue before sending the body (curl
    // does for larger bodies) gets it, and then its answer.
    let b = body("expect");
    let mut s = TcpStream::connect(addr(&d)).await.unwrap();
    let head = format!(
        "POST /hooks/gh HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {}\r\nX-Hub-Signature-256: {}\r\nConnection: close\r\n\r\n",
        b.len(),
        String::from_utf8(gh_sig(&b)).unwrap()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let cont = read_response(&mut s).await.expect("100 Continue");
    assert_eq!(cont.status, 100);
    s.write_all(&b).await.unwrap();
    let r = read_response(&mut s).await.expect("an answer");
    assert_eq!(
        (r.status, r.json()["status"].as_str()),
        (200, Some("accepted"))
    );
    assert_eq!(d.count("SELECT COUNT(*) FROM events"), 2);
    d.stop().await;
}

#[tokio::test]
async fn http2_with_prior_knowledge_is_served() {
    let d = start_daemon(SERVER, &sources()).await;
    let c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for i in 0..3 {
        let b = body(&format!("h2-{i}"));
        let r = c
            .post(d.url("/hooks/gh"))
            .timeout(PATIENCE)
            .header("X-Hub-Signature-256", gh_sig(&b))
            .body(b)
            .send()
            .await
            .unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(r.status().as_u16(), 200);
    }
    assert_eq!(d.count("SELECT COUNT(*) FROM events"), 3);
    d.stop().await;
}

/// An HTTP/2 client that opens a connection, answers SETTINGS and PINGs
/// like any real client, and never starts a stream. Returns whether the
/// server said GOAWAY before it closed the connection.
async fn idle_h2_client(addr: &str) -> bool {
    use tokio::io::AsyncReadExt;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap(); // empty SETTINGS
    let mut goaway = false;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let mut head = [0u8; 9];
        match tokio::time::timeout_at(deadline, s.read_exact(&mut head)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return goaway,
            Err(_) => panic!("an idle HTTP/2 connection was kept open for {PATIENCE:?}"),
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let mut payload = vec![0u8; len];
        if s.read_exact(&mut payload).await.is_err() {
            return goaway;
        }
        match (kind, flags & 1) {
            (4, 0) => {
                let _ = s.write_all(&[0, 0, 0, 4, 1, 0, 0, 0, 0]).await;
            }
            (6, 0) => {
                let mut ack = vec![0, 0, 8, 6, 1, 0, 0, 0, 0];
                ack.extend_from_slice(&payload);
                let _ = s.write_all(&ack).await;
            }
            (7, _) => goaway = true,
            _ => {}
        }
    }
}

#[tokio::test]
async fn idle_http2_connections_are_closed() {
    let d = start_daemon(SERVER, &sources()).await;
    assert!(idle_h2_client(&addr(&d)).await, "closed without GOAWAY");
    d.stop().await;
}

/// Many large bodies at once: the memory held for bodies is capped (64 MiB
/// here), the request that would go past it gets 503 with Retry-After
/// instead of growing the heap, and once the big bodies are gone a normal
/// request is accepted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_memory_is_capped_across_connections() {
    let d = start_daemon(
        "header_timeout = \"30s\"\nrequest_timeout = \"60s\"\nmax_body = \"16MiB\"",
        &sources(),
    )
    .await;
    let a = addr(&d);
    const PART: usize = 9 << 20; // sent of each 10 MiB body: 8 of them pass 64 MiB
    let head = |i: usize| {
        format!(
            "POST /hooks/gh HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Hub-Signature-256: sha256=00\r\nContent-Length: {}\r\n\r\n",
            (10 << 20) + i
        )
    };
    let filler = vec![b' '; PART];
    let mut held = Vec::new();
    let mut busy = None;
    for i in 0..8 {
        let mut s = TcpStream::connect(&a).await.unwrap();
        s.write_all(head(i).as_bytes()).await.unwrap();
        // The server may answer 503 and stop reading part-way.
        let _ = s.write_all(&filler).await;
        held.push(s);
        // A connection refused for memory answers at once; the others wait.
        let last = held.last_mut().unwrap();
        if let Ok(Some(r)) =
            tokio::time::timeout(Duration::from_millis(500), read_response(last)).await
        {
            busy = Some(r);
            break;
        }
    }
    let r = busy.expect("some request past the body budget is refused");
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.header("retry-after"), Some("1"));
    drop(held);
    let client = reqwest::Client::new();
    let b = body("after-the-flood");
    // The dropped connections release their bytes as the server notices.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let ok = loop {
        let r = post(&client, &d.url("/hooks/gh"), &github("k", &b), &b).await;
        if r.status != 503 || std::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(ok.status, 200);
    assert_eq!(ok.word(), "accepted");
    assert_eq!(d.count("SELECT count(*) FROM events"), 1);
}
