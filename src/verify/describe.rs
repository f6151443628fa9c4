//! A ready scheme in one line, for `hookd check`: which headers it reads and
//! what it MACs, so an operator sees what a provider preset filled in
//! without reading the source. Never mentions a key.

use super::hmac_template::{Segment, Template};
use super::{Scheme, presets};

impl std::fmt::Display for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for seg in &self.0 {
            match seg {
                Segment::Literal(l) => {
                    let text = String::from_utf8_lossy(l);
                    f.write_str(&text.replace('{', "{{").replace('}', "}}"))?;
                }
                Segment::Body => f.write_str("{body}")?,
                Segment::Timestamp => f.write_str("{timestamp}")?,
                Segment::Id => f.write_str("{id}")?,
            }
        }
        Ok(())
    }
}

impl Scheme {
    /// E.g. `hmac x-hub-signature-256: sha256=<hex HMAC-SHA256 of {body}>`.
    pub fn describe(&self) -> String {
        match self {
            Scheme::StandardWebhooks => {
                "standard-webhooks webhook-id/-timestamp/-signature (or svix-*): v1,<base64 of {id}.{timestamp}.{body}>".into()
            }
            Scheme::Stripe { header } => format!("stripe {header}: t=<timestamp>,v1=<hex of {{t}}.{{body}}>"),
            Scheme::Hmac(h) => hmac(h),
            Scheme::Linkup => hmac(&presets::linkup()).replacen("hmac", "linkup", 1),
            Scheme::LinkedApi => hmac(&presets::linkedapi()).replacen("hmac", "linkedapi", 1),
            Scheme::Linq { .. } => {
                "linq: standard-webhooks headers when present, else x-webhook-signature".into()
            }
            Scheme::Token { header, prefix } => {
                format!("token {header}: {}<secret>", prefix.as_deref().unwrap_or(""))
            }
            Scheme::None => "none (insecure)".into(),
        }
    }
}

fn hmac(h: &super::HmacScheme) -> String {
    let algo = match h.algo {
        super::Algo::Sha1 => "SHA1",
        super::Algo::Sha256 => "SHA256",
        super::Algo::Sha512 => "SHA512",
    };
    let enc = match h.encoding {
        super::Encoding::Hex => "hex",
        super::Encoding::Base64 => "base64",
    };
    let mut out = format!(
        "hmac {}: {}<{enc} HMAC-{algo} of {}>",
        h.header,
        h.prefix.as_deref().unwrap_or(""),
        h.signed
    );
    if let Some(t) = &h.timestamp_header {
        out += &format!(", {{timestamp}} from {t}");
    }
    if let Some(i) = &h.id_header {
        out += &format!(", {{id}} from {i}");
    }
    out
}
