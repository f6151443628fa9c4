//! `hookd send-test`: sign a sample event exactly as the provider would and
//! POST it to the running daemon, so a new user sees the whole path work
//! without a provider account.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

use crate::config::{Config, StoreConfig};
use crate::provider::{Mode, sample};
use crate::runtime::Runtime;
use crate::timefmt;

#[derive(Args, Debug)]
pub struct SendTestArgs {
    /// The source to send to (its name in the config)
    pub source: String,
    /// Event type (default: the provider's typical one)
    #[arg(long = "type")]
    pub event_type: Option<String>,
    /// JSON to use as the event's data
    #[arg(long)]
    pub data: Option<String>,
    /// POST here instead of the first server.listen address
    #[arg(long)]
    pub url: Option<String>,
    /// Ask the provider to send its own test event (Linked API webhook.sendTest)
    #[arg(long, conflicts_with_all = ["event_type", "data", "url"])]
    pub remote: bool,
}

pub fn send_test(cfg: &Config, a: SendTestArgs) -> anyhow::Result<ExitCode> {
    let src = cfg
        .source(&a.source)
        .with_context(|| format!("no [[source]] is named {:?}", a.source))?;
    if a.remote {
        return remote(cfg, src);
    }
    if src.mode != Mode::Push {
        bail!(
            "send-test POSTs to push sources; {} is in {} mode",
            src.name,
            src.mode.name()
        );
    }
    let data = a
        .data
        .as_deref()
        .map(serde_json::from_str::<serde_json::Value>)
        .transpose()
        .context("--data is not valid JSON")?;
    let tokio_rt = super::manage::runtime()?;
    let issued = tokio_rt.block_on(issued_secrets(cfg))?;
    let rt = Runtime::new(cfg.clone(), &issued);
    let idx = rt.source_index(&src.name).context("source vanished")?;
    let now = timefmt::now_micros();
    let s = sample::sample(src, a.event_type.as_deref(), data, now);
    let mut headers = s.headers;
    if src.scheme.requires_secret() {
        let key = rt.keys(idx).first().with_context(|| {
            format!("source {} has no secret to sign with (configure secret, or run `hookd register {}`)", src.name, src.name)
        })?;
        let signed = src.scheme.sign(key, &s.body, now / 1_000_000, &s.msg_id);
        set_signed(&mut headers, signed);
    }
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    let url = match a.url {
        Some(u) => u,
        None => {
            let addr = cfg
                .server
                .listen
                .first()
                .context("server.listen is empty; pass --url")?;
            let host = if addr.ip().is_unspecified() {
                "127.0.0.1".to_string()
            } else {
                addr.ip().to_string()
            };
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host
            };
            let scheme = if cfg.server.tls.is_some() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{host}:{}{}", addr.port(), src.path)
        }
    };
    let (status, text) =
        tokio_rt.block_on(post(&url, headers, s.body, cfg.server.tls.is_some()))?;
    println!("POST {url} -> {status} {}", text.trim());
    if status.is_success() {
        Ok(ExitCode::SUCCESS)
    } else {
        if status == http::StatusCode::UNAUTHORIZED {
            eprintln!("hint: `hookd rejected --source {}` shows why", src.name);
        }
        Ok(ExitCode::from(1))
    }
}

/// The secrets providers issued (saved by `hookd register`), to sign
/// with. A SQLite state directory that does not exist (or cannot be read)
/// has none; a PostgreSQL store must answer.
async fn issued_secrets(
    cfg: &Config,
) -> anyhow::Result<std::collections::HashMap<String, Vec<Vec<u8>>>> {
    if let StoreConfig::Sqlite = cfg.store {
        return Ok(match super::open_db(cfg, false) {
            Ok(conn) => crate::store::subscriptions::issued_secrets(&conn)?,
            Err(_) => Default::default(),
        });
    }
    let store = super::manage::store(cfg).await?;
    Ok(store.issued_secrets().await?)
}

/// Puts the signature's headers in place of any the sample set under the
/// same name (an extractor may name a header the scheme sets, such as
/// `webhook-id`): a header sent twice is refused as ambiguous.
fn set_signed(headers: &mut http::HeaderMap, signed: Vec<(http::HeaderName, http::HeaderValue)>) {
    for (name, _) in &signed {
        headers.remove(name);
    }
    for (name, value) in signed {
        headers.append(name, value);
    }
}

/// `--remote`: the provider sends its own test event through its normal
/// delivery path, so this proves the public URL, the proxy and the secret.
fn remote(cfg: &Config, src: &crate::config::SourceConfig) -> anyhow::Result<ExitCode> {
    super::manage::each_with_store(cfg, &[src], |m, store| async move {
        let id = m.send_test(&store).await?;
        Ok(vec![format!(
            "{} is sending a test event to webhook {id}; `hookd events list --source {}` shows it when it arrives",
            m.name(),
            src.name
        )])
    })
}

async fn post(
    url: &str,
    headers: http::HeaderMap,
    body: Vec<u8>,
    tls: bool,
) -> anyhow::Result<(http::StatusCode, String)> {
    // Our own listener on loopback usually has a self-signed certificate.
    let loopback =
        url.contains("://127.") || url.contains("://localhost") || url.contains("://[::1]");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .tls_danger_accept_invalid_certs(tls && loopback)
        .build()?;
    let resp = client
        .post(url)
        .headers(headers)
        .body(body)
        .send()
        .await
        .with_context(|| format!("cannot reach the daemon at {url} (is `hookd run` running?)"))?;
    let status = resp.status();
    Ok((status, resp.text().await.unwrap_or_default()))
}
