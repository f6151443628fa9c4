//! Building a `Scheme` from its `signature` table: scheme names, defaults,
//! and every check that turns a confusing runtime rejection into a config
//! error naming the offending key and the values it could take.

use http::HeaderName;

use super::hmac_template::{HmacScheme, Segment, Template};
use super::mac::{Algo, Encoding};
use super::{Scheme, SchemeError, SignatureConfig};

const SCHEMES: &str = "standard-webhooks, stripe, hmac, linkup, linkedapi, linq, token, none";

fn err(key: &'static str, message: impl Into<String>) -> SchemeError {
    SchemeError {
        key,
        message: message.into(),
    }
}

pub(super) fn from_config(cfg: &SignatureConfig) -> Result<Scheme, SchemeError> {
    let name = cfg.scheme.as_str();
    let allowed: &[&str] = match name {
        "standard-webhooks" | "linkup" | "linkedapi" | "none" => &[],
        "stripe" => &["header"],
        "hmac" => &[
            "header",
            "prefix",
            "encoding",
            "signed",
            "algo",
            "timestamp_header",
            "id_header",
        ],
        "linq" => &["canonical_json"],
        "token" => &["header", "prefix"],
        other => {
            return Err(err(
                "scheme",
                format!("unknown scheme `{other}`; valid schemes: {SCHEMES}"),
            ));
        }
    };
    let set = [
        ("header", cfg.header.is_some()),
        ("prefix", cfg.prefix.is_some()),
        ("encoding", cfg.encoding.is_some()),
        ("signed", cfg.signed.is_some()),
        ("algo", cfg.algo.is_some()),
        ("timestamp_header", cfg.timestamp_header.is_some()),
        ("id_header", cfg.id_header.is_some()),
        ("canonical_json", cfg.canonical_json.is_some()),
    ];
    for (key, present) in set {
        if present && !allowed.contains(&key) {
            let hint = if allowed.is_empty() {
                "it takes no other keys".to_string()
            } else {
                format!("its keys are: {}", allowed.join(", "))
            };
            return Err(err(
                key,
                format!("`{key}` does not apply to scheme `{name}`; remove it ({hint})"),
            ));
        }
    }

    Ok(match name {
        "standard-webhooks" => Scheme::StandardWebhooks,
        "stripe" => Scheme::Stripe {
            header: match &cfg.header {
                Some(h) => header_name("header", h)?,
                None => HeaderName::from_static("stripe-signature"),
            },
        },
        "hmac" => Scheme::Hmac(hmac(cfg)?),
        "linkup" => Scheme::Linkup,
        "linkedapi" => Scheme::LinkedApi,
        "linq" => Scheme::Linq {
            canonical_json: cfg.canonical_json.unwrap_or(false),
        },
        "token" => Scheme::Token {
            header: required_header(cfg, "token", "Authorization")?,
            prefix: match cfg.prefix.as_deref() {
                None | Some("") => None,
                Some(p) if p.bytes().all(|b| (b' '..=b'~').contains(&b)) => Some(p.to_string()),
                Some(_) => {
                    return Err(err(
                        "prefix",
                        "the prefix must be printable ASCII (e.g. \"Bearer \")",
                    ));
                }
            },
        },
        _ => Scheme::None,
    })
}

fn hmac(cfg: &SignatureConfig) -> Result<HmacScheme, SchemeError> {
    let header = required_header(cfg, "hmac", "X-Hub-Signature-256")?;
    let algo = match cfg.algo.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("sha256") => Algo::Sha256,
        Some("sha1") => Algo::Sha1,
        Some("sha512") => Algo::Sha512,
        Some(other) => {
            return Err(err(
                "algo",
                format!("unknown algo `{other}`; valid: sha1, sha256 (default), sha512"),
            ));
        }
    };
    let encoding = match cfg
        .encoding
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("hex") => Encoding::Hex,
        Some("base64") => Encoding::Base64,
        Some(other) => {
            return Err(err(
                "encoding",
                format!("unknown encoding `{other}`; valid: hex (default), base64"),
            ));
        }
    };
    let prefix = match cfg.prefix.as_deref() {
        None | Some("") => None,
        Some(p) if p.bytes().all(|b| b.is_ascii_graphic() && b != b',') => Some(p.to_string()),
        Some(_) => {
            return Err(err(
                "prefix",
                "the prefix must be printable ASCII without spaces or commas (e.g. \"sha256=\"); \
                 those separate several signatures in one header",
            ));
        }
    };
    let signed = Template::parse(cfg.signed.as_deref().unwrap_or("{body}"))
        .map_err(|m| err("signed", format!("invalid `signed` template: {m}")))?;
    let timestamp_header = optional_header("timestamp_header", cfg.timestamp_header.as_deref())?;
    let id_header = optional_header("id_header", cfg.id_header.as_deref())?;
    pair(
        &signed,
        &Segment::Timestamp,
        timestamp_header.is_some(),
        "timestamp_header",
        "{timestamp}",
        "the unix timestamp (e.g. \"X-Slack-Request-Timestamp\")",
    )?;
    pair(
        &signed,
        &Segment::Id,
        id_header.is_some(),
        "id_header",
        "{id}",
        "the message id",
    )?;
    distinct(&header, timestamp_header.as_ref(), id_header.as_ref())?;
    Ok(HmacScheme {
        algo,
        header,
        prefix,
        encoding,
        signed,
        timestamp_header,
        id_header,
    })
}

/// A placeholder and the header that fills it come together: one without
/// the other is either unverifiable or an unauthenticated header.
fn pair(
    signed: &Template,
    seg: &Segment,
    has_header: bool,
    key: &'static str,
    placeholder: &str,
    what: &str,
) -> Result<(), SchemeError> {
    match (signed.uses(seg), has_header) {
        (true, false) => Err(err(
            key,
            format!("`signed` uses {placeholder}, so `{key}` must name the header carrying {what}"),
        )),
        (false, true) => Err(err(
            key,
            format!(
                "`{key}` is set but `signed` does not use {placeholder}, so that header would not be \
                 authenticated; add {placeholder} to `signed` or remove `{key}`"
            ),
        )),
        _ => Ok(()),
    }
}

/// The signature, timestamp and id must travel in different headers: a
/// header holding two of them would be repeated in every request, and
/// hookd refuses repeated headers, so nothing could ever verify.
fn distinct(
    header: &HeaderName,
    timestamp_header: Option<&HeaderName>,
    id_header: Option<&HeaderName>,
) -> Result<(), SchemeError> {
    let clash = |key: &'static str, name: &HeaderName, other: &str| {
        err(
            key,
            format!(
                "`{key}` names {name}, the same header as `{other}`; each value needs its own header"
            ),
        )
    };
    if let Some(t) = timestamp_header
        && t == header
    {
        return Err(clash("timestamp_header", t, "header"));
    }
    if let Some(i) = id_header {
        if i == header {
            return Err(clash("id_header", i, "header"));
        }
        if timestamp_header == Some(i) {
            return Err(clash("id_header", i, "timestamp_header"));
        }
    }
    Ok(())
}

fn required_header(
    cfg: &SignatureConfig,
    scheme: &str,
    example: &str,
) -> Result<HeaderName, SchemeError> {
    match &cfg.header {
        Some(h) => header_name("header", h),
        None => Err(err(
            "header",
            format!(
                "scheme `{scheme}` needs `header`, the request header carrying the signature (e.g. \"{example}\")"
            ),
        )),
    }
}

fn optional_header(
    key: &'static str,
    value: Option<&str>,
) -> Result<Option<HeaderName>, SchemeError> {
    value.map(|h| header_name(key, h)).transpose()
}

fn header_name(key: &'static str, value: &str) -> Result<HeaderName, SchemeError> {
    HeaderName::from_bytes(value.as_bytes())
        .map_err(|_| err(key, format!("`{value}` is not a valid HTTP header name")))
}
