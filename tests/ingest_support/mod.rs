//! Helpers shared by the ingest, hostile-input and store-fault tests:
//! signing requests the way each provider does (written here from the
//! published schemes, independently of `hookd::verify`, so a bug that is
//! symmetric in hookd's signer and verifier still shows), posting them, and
//! a raw HTTP/1.1 client for requests a client library would tidy up.

#![allow(dead_code)]

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Header name/value pairs of a signed request.
pub type Headers = Vec<(String, String)>;

/// A deadline for anything the tests wait on over the network: generous,
/// because a loaded 2-core machine is slow, and only there so a bug shows
/// as a failure instead of a hung test.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// HMAC-SHA256 over the concatenation of `parts`.
pub fn mac256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn h(name: &str, value: impl Into<String>) -> (String, String) {
    (name.to_string(), value.into())
}

/// Standard Webhooks: key = base64-decoded secret after `whsec_`; `family`
/// is `webhook` or `svix`.
pub fn standard_webhooks(family: &str, secret: &str, id: &str, ts: i64, body: &[u8]) -> Headers {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .unwrap();
    let t = ts.to_string();
    let sig = mac256(&key, &[id.as_bytes(), b".", t.as_bytes(), b".", body]);
    vec![
        h(&format!("{family}-id"), id),
        h(&format!("{family}-timestamp"), t),
        h(&format!("{family}-signature"), format!("v1,{}", b64(&sig))),
    ]
}

/// Stripe: `t=…,v1=<hex>` over `{t}.{body}`, keyed by the secret text.
pub fn stripe(secret: &str, ts: i64, body: &[u8]) -> Headers {
    let t = ts.to_string();
    let sig = mac256(secret.as_bytes(), &[t.as_bytes(), b".", body]);
    vec![h(
        "Stripe-Signature",
        format!("t={t},v1={}", hex::encode(sig)),
    )]
}

/// GitHub: `X-Hub-Signature-256: sha256=<hex>` over the body.
pub fn github(secret: &str, body: &[u8]) -> Headers {
    vec![h(
        "X-Hub-Signature-256",
        format!("sha256={}", hex::encode(mac256(secret.as_bytes(), &[body]))),
    )]
}

/// Shopify: `X-Shopify-Hmac-Sha256: <base64>` over the body.
pub fn shopify(secret: &str, body: &[u8]) -> Headers {
    vec![h(
        "X-Shopify-Hmac-Sha256",
        b64(&mac256(secret.as_bytes(), &[body])),
    )]
}

/// Slack: `X-Slack-Signature: v0=<hex>` over `v0:{ts}:{body}`.
pub fn slack(secret: &str, ts: i64, body: &[u8]) -> Headers {
    let t = ts.to_string();
    let sig = mac256(secret.as_bytes(), &[b"v0:", t.as_bytes(), b":", body]);
    vec![
        h("X-Slack-Signature", format!("v0={}", hex::encode(sig))),
        h("X-Slack-Request-Timestamp", t),
    ]
}

/// A generic template over `{id}.{timestamp}.{body}` in three headers.
pub fn id_template(secret: &str, id: &str, ts: i64, body: &[u8]) -> Headers {
    let t = ts.to_string();
    let sig = mac256(
        secret.as_bytes(),
        &[id.as_bytes(), b".", t.as_bytes(), b".", body],
    );
    vec![
        h("X-Sig", hex::encode(sig)),
        h("X-Ts", t),
        h("X-Msg-Id", id),
    ]
}

/// LinkUp: `X-Linkup-Signature: v1=<hex>` over `{ts}.{body}`.
pub fn linkup(secret: &str, ts: i64, body: &[u8]) -> Headers {
    let t = ts.to_string();
    let sig = mac256(secret.as_bytes(), &[t.as_bytes(), b".", body]);
    vec![
        h("X-Linkup-Signature", format!("v1={}", hex::encode(sig))),
        h("X-Linkup-Timestamp", t),
    ]
}

/// Linked API: `linked-api-signature: <hex>` over `{ts}.{body}`.
pub fn linkedapi(secret: &str, ts: i64, body: &[u8]) -> Headers {
    let t = ts.to_string();
    let sig = mac256(secret.as_bytes(), &[t.as_bytes(), b".", body]);
    vec![
        h("linked-api-signature", hex::encode(sig)),
        h("linked-api-signature-timestamp", t),
    ]
}

/// Linq's legacy signature with a timestamp: hex over `{ts}.{body}`.
pub fn linq_timestamped(secret: &str, ts: i64, body: &[u8]) -> Headers {
    let t = ts.to_string();
    let sig = mac256(secret.as_bytes(), &[t.as_bytes(), b".", body]);
    vec![
        h("X-Webhook-Signature", hex::encode(sig)),
        h("X-Webhook-Timestamp", t),
    ]
}

/// Linq's oldest signature: `sha256=<hex>` over the body alone.
pub fn linq_body(secret: &str, body: &[u8]) -> Headers {
    vec![h(
        "X-Webhook-Signature",
        format!("sha256={}", hex::encode(mac256(secret.as_bytes(), &[body]))),
    )]
}

/// An answer: status, JSON body (Null when not JSON) and headers.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub json: serde_json::Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    pub fn word(&self) -> &str {
        self.json["status"].as_str().unwrap_or("")
    }
}

/// POSTs `body` with `headers` (plus a JSON content type).
pub async fn post(client: &reqwest::Client, url: &str, headers: &Headers, body: &[u8]) -> Reply {
    let mut rb = client
        .post(url)
        .timeout(PATIENCE)
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (k, v) in headers {
        rb = rb.header(k, v);
    }
    let r = rb
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let bytes = r.bytes().await.unwrap_or_default();
    Reply {
        status,
        json: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        headers,
    }
}

/// A response read off a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Builds an HTTP/1.1 POST with exactly these header lines and body,
/// nothing added but `Host`, `Connection: close` and a `Content-Length`
/// (unless the headers already say how the body is framed).
pub fn raw_post(path: &str, headers: &[(&str, &[u8])], body: &[u8]) -> Vec<u8> {
    let mut out =
        format!("POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n").into_bytes();
    let framed = headers.iter().any(|(k, _)| {
        k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding")
    });
    if !framed {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    for (k, v) in headers {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// Sends `request` on a fresh connection and reads one response. `None`
/// when the server closed (or reset) the connection without answering.
pub async fn raw(addr: &str, request: &[u8]) -> Option<RawResponse> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before reading everything (e.g. 413);
    // a failed write is not the result, the answer (or its absence) is.
    let _ = s.write_all(request).await;
    read_response(&mut s).await
}

/// Reads one HTTP/1.1 response (Content-Length or chunked body, or up to
/// EOF). `None` when the connection ends before a status line and headers.
pub async fn read_response(s: &mut TcpStream) -> Option<RawResponse> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout(PATIENCE, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return None,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("no response within {PATIENCE:?}"),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = buf[head_end + 4..].to_vec();
    if (100..200).contains(&status) || status == 204 || status == 304 {
        // No body by definition; anything after belongs to what follows.
        return Some(RawResponse {
            status,
            headers,
            body: Vec::new(),
        });
    }
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let want = get("content-length").and_then(|v| v.parse::<usize>().ok());
    let chunked = get("transfer-encoding").is_some_and(|v| v.contains("chunked"));
    loop {
        if want.is_some_and(|n| body.len() >= n) || (chunked && find(&body, b"0\r\n\r\n").is_some())
        {
            break;
        }
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout(PATIENCE, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => body.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("response body not complete within {PATIENCE:?}"),
        }
    }
    if let Some(n) = want {
        body.truncate(n);
    }
    if chunked {
        body = dechunk(&body);
    }
    Some(RawResponse {
        status,
        headers,
        body,
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = find(b, b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..i]).trim(), 16).unwrap_or(0);
        if n == 0 || b.len() < i + 2 + n {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + n]);
        b = &b[(i + 4 + n).min(b.len())..];
    }
    out
}

/// Waits until the server ends the connection: reads (discarding) until
/// EOF or reset. Panics after `PATIENCE` — a connection the server never
/// cuts off is the failure these tests look for.
pub async fn closed_by_server(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("the server kept the connection open for {PATIENCE:?}"),
        }
    }
}

/// Starts an in-process daemon whose `[server]` table gets `server_extra`
/// (e.g. short timeouts) on top of the usual test settings.
pub async fn start_daemon(server_extra: &str, body: &str) -> crate::support::TestDaemon {
    start_daemon_in(tempfile::tempdir().unwrap(), server_extra, body).await
}

/// [`start_daemon`] in a directory the caller prepared (state in `dir/state`).
pub async fn start_daemon_in(
    dir: tempfile::TempDir,
    server_extra: &str,
    body: &str,
) -> crate::support::TestDaemon {
    let config_path = dir.path().join("receiver.toml");
    let text = format!(
        "[daemon]\nstate_dir = \"{}\"\nshutdown_grace = \"5s\"\n\n[server]\nlisten = [\"127.0.0.1:0\"]\n{server_extra}\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n{body}",
        dir.path().join("state").display()
    );
    std::fs::write(&config_path, text).unwrap();
    let cfg = hookd::config::load(&config_path).unwrap_or_else(|e| panic!("test config: {e}"));
    let daemon = hookd::daemon::Daemon::start(cfg, Default::default())
        .await
        .unwrap();
    let base = format!("http://{}", daemon.push_addrs[0]);
    let admin = daemon.admin_addr.map(|a| format!("http://{a}"));
    crate::support::TestDaemon {
        dir,
        config_path,
        daemon: Some(daemon),
        base,
        admin,
    }
}

/// `host:port` of a daemon's first push listener.
pub fn addr(d: &crate::support::TestDaemon) -> String {
    d.daemon().push_addrs[0].to_string()
}

/// An HTTP/1.1 chunked POST: `chunks` as given, then the last chunk.
pub fn raw_chunked(path: &str, headers: &[(&str, &[u8])], chunks: &[&[u8]]) -> Vec<u8> {
    let mut h: Vec<(&str, &[u8])> = headers.to_vec();
    h.push(("Transfer-Encoding", b"chunked"));
    let mut out = raw_post(path, &h, b"");
    for c in chunks {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}
