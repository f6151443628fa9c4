//! The keys of a `kind = "http"` handler (issue 16): where an event is
//! forwarded, with which method, body and headers, and how it is signed.
//!
//! Everything that can be checked before the first delivery is checked
//! here, so a typo in a URL, a header or a CA file is a config error naming
//! the file, the line and the key, not a failed attempt at 3 a.m. The
//! result is an immutable [`HttpTarget`]; the dispatcher builds one
//! connection pool per target (`dispatch::http`).

use std::path::PathBuf;

use http::{HeaderName, HeaderValue};
use serde::Deserialize;

use super::locate::KeyPath;
use super::validate::{VResult, clean_path};
use crate::secret::SecretRef;
use crate::verify::{Key, Scheme, SignatureConfig};

/// What the request body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyMode {
    /// hookd's JSON envelope, as an exec handler gets it on stdin.
    Envelope,
    /// The sender's raw body, byte for byte.
    Payload,
}

/// The `sign = { … }` table as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSign {
    scheme: String,
    secret: Option<String>,
    header: Option<String>,
    prefix: Option<String>,
    encoding: Option<String>,
    signed: Option<String>,
    algo: Option<String>,
    timestamp_header: Option<String>,
    id_header: Option<String>,
}

/// The http keys of a `[[handler]]`, gathered from its flat table.
#[derive(Default)]
pub(super) struct RawHttp {
    pub url: Option<String>,
    pub method: Option<String>,
    pub body: Option<String>,
    pub headers: Option<std::collections::BTreeMap<String, String>>,
    pub sign: Option<RawSign>,
    pub follow_redirects: Option<bool>,
    pub retry_on_4xx: Option<bool>,
    pub ca_file: Option<String>,
}

impl RawHttp {
    /// The keys that are set, for the error a non-http handler gets.
    pub fn set_keys(&self) -> Vec<&'static str> {
        [
            ("url", self.url.is_some()),
            ("method", self.method.is_some()),
            ("body", self.body.is_some()),
            ("headers", self.headers.is_some()),
            ("sign", self.sign.is_some()),
            ("follow_redirects", self.follow_redirects.is_some()),
            ("retry_on_4xx", self.retry_on_4xx.is_some()),
            ("ca_file", self.ca_file.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, set)| set.then_some(k))
        .collect()
    }
}

/// How outgoing requests are signed: a scheme hookd also verifies, and its key.
#[derive(Clone, Debug)]
pub struct Signer {
    pub scheme: Scheme,
    pub key: Key,
    /// Where the secret came from (for `hookd check`).
    pub secret: SecretRef,
}

/// A validated http handler target.
#[derive(Clone)]
pub struct HttpTarget {
    pub url: UrlTemplate,
    pub method: http::Method,
    pub body: BodyMode,
    /// Values may be secrets: they are marked sensitive and never printed.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub sign: Option<Signer>,
    pub follow_redirects: bool,
    /// Whether a 4xx other than 408, 425 and 429 is retried.
    pub retry_on_4xx: bool,
    pub ca_file: Option<PathBuf>,
    /// The certificates of `ca_file`, read and parsed at load.
    pub ca_certs: Vec<reqwest::Certificate>,
}

impl std::fmt::Debug for HttpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("HttpTarget")
            .field("url", &self.url.0)
            .field("method", &self.method)
            .field("body", &self.body)
            .field("headers", &names)
            .field("sign", &self.sign.as_ref().map(|s| s.scheme.name()))
            .field("follow_redirects", &self.follow_redirects)
            .field("retry_on_4xx", &self.retry_on_4xx)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// A URL that may contain `{source}` and `{type}`, checked to be a valid
/// http(s) URL once they are filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlTemplate(String);

impl UrlTemplate {
    pub fn parse(text: &str) -> Result<UrlTemplate, String> {
        let rest = text.replace("{source}", "").replace("{type}", "");
        if rest.contains(['{', '}']) {
            return Err(format!(
                "{text:?} has a placeholder other than {{source}} and {{type}}"
            ));
        }
        let t = UrlTemplate(text.to_string());
        let url = reqwest::Url::parse(&t.render("source", "type"))
            .map_err(|e| format!("{text:?} is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{text:?} must be an http:// or https:// URL"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("{text:?} has no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "{text:?} carries credentials; put them in headers (e.g. Authorization = \"env:NAME\") so they stay secret"
            ));
        }
        Ok(t)
    }

    /// The URL for one event; the values are percent-encoded.
    pub fn render(&self, source: &str, event_type: &str) -> String {
        self.0
            .replace("{source}", &percent_encode(source))
            .replace("{type}", &percent_encode(event_type))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Every byte but RFC 3986's unreserved ones as `%XX`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn at<T>(p: &KeyPath, r: Result<T, String>) -> VResult<T> {
    r.map_err(|m| (p.clone(), m))
}

/// Validates the http keys of handler `p`; `base` is the config's directory.
pub(super) fn validate(r: RawHttp, p: &KeyPath, base: &std::path::Path) -> VResult<HttpTarget> {
    let url = r.url.ok_or_else(|| {
        (
            p.key("url"),
            "an http handler needs url = \"http(s)://host/path\"".to_string(),
        )
    })?;
    let url = at(&p.key("url"), UrlTemplate::parse(&url))?;
    let method = match r.method.as_deref().unwrap_or("POST") {
        "POST" => http::Method::POST,
        "PUT" => http::Method::PUT,
        m => return Err((p.key("method"), format!("{m:?} is not one of: POST, PUT"))),
    };
    let body = match r.body.as_deref().unwrap_or("envelope") {
        "envelope" => BodyMode::Envelope,
        "payload" => BodyMode::Payload,
        b => {
            return Err((
                p.key("body"),
                format!("{b:?} is not one of: envelope, payload"),
            ));
        }
    };
    let ca_file = r.ca_file.map(|f| clean_path(&base.join(f)));
    let ca_certs = match &ca_file {
        Some(f) => at(&p.key("ca_file"), read_ca_file(f))?,
        None => Vec::new(),
    };
    Ok(HttpTarget {
        url,
        method,
        body,
        headers: headers(r.headers.unwrap_or_default(), &p.key("headers"), base)?,
        sign: r
            .sign
            .map(|s| signer(s, &p.key("sign"), base))
            .transpose()?,
        follow_redirects: r.follow_redirects.unwrap_or(false),
        retry_on_4xx: r.retry_on_4xx.unwrap_or(true),
        ca_file,
        ca_certs,
    })
}

/// Headers hookd sets itself; the config may not override them.
const OWN_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

fn headers(
    raw: std::collections::BTreeMap<String, String>,
    p: &KeyPath,
    base: &std::path::Path,
) -> VResult<Vec<(HeaderName, HeaderValue)>> {
    let mut out = Vec::new();
    for (name, value) in raw {
        let kp = p.key(&name);
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| (kp.clone(), format!("{name:?} is not a valid header name")))?;
        if OWN_HEADERS.contains(&n.as_str()) || n.as_str().starts_with("hookd-") {
            return Err((kp, format!("{name} is set by hookd itself")));
        }
        // Header values are often credentials: a reference is resolved,
        // anything else is taken as written (no warning, as with env).
        let v = at(&kp, SecretRef::parse(&value).resolve(base))?;
        let mut v = HeaderValue::from_bytes(v.expose()).map_err(|_| {
            (
                kp.clone(),
                "the value contains bytes a header cannot carry (a newline?)".to_string(),
            )
        })?;
        v.set_sensitive(true);
        out.push((n, v));
    }
    Ok(out)
}

/// Schemes hookd can sign outgoing requests with.
const SIGN_SCHEMES: &[&str] = &["standard-webhooks", "hmac"];

fn signer(r: RawSign, p: &KeyPath, base: &std::path::Path) -> VResult<Signer> {
    if !SIGN_SCHEMES.contains(&r.scheme.as_str()) {
        return Err((
            p.key("scheme"),
            format!(
                "{:?} is not one of: {} (the schemes an http handler signs with)",
                r.scheme,
                SIGN_SCHEMES.join(", ")
            ),
        ));
    }
    let secret = r.secret.clone().ok_or_else(|| {
        (
            p.key("secret"),
            "signing needs a secret, e.g. secret = \"env:NAME\"".to_string(),
        )
    })?;
    let cfg = SignatureConfig {
        scheme: r.scheme,
        header: r.header,
        prefix: r.prefix,
        encoding: r.encoding,
        signed: r.signed,
        algo: r.algo,
        timestamp_header: r.timestamp_header,
        id_header: r.id_header,
        canonical_json: None,
    };
    let scheme = Scheme::from_config(&cfg).map_err(|e| (p.key(e.key), e.message))?;
    let secret_ref = SecretRef::parse(&secret);
    let value = at(&p.key("secret"), secret_ref.resolve(base))?;
    let key = at(&p.key("secret"), scheme.derive_key(value.expose()))?;
    Ok(Signer {
        scheme,
        key,
        secret: secret_ref,
    })
}

/// The PEM certificates of a private CA file.
fn read_ca_file(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{} is not PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_templates_are_checked_and_filled_encoded() {
        let t = UrlTemplate::parse("http://127.0.0.1:9000/hooks/{source}/{type}").unwrap();
        assert_eq!(
            t.render("linq", "message received/x"),
            "http://127.0.0.1:9000/hooks/linq/message%20received%2Fx"
        );
        for (bad, why) in [
            ("ftp://h/x", "http:// or https://"),
            ("http://h/{id}", "placeholder"),
            ("not a url", "not a URL"),
            ("http://u:p@h/x", "credentials"),
        ] {
            let e = UrlTemplate::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
