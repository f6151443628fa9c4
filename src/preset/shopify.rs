//! Shopify webhooks: `X-Shopify-Hmac-Sha256` is the base64 HMAC-SHA256 of
//! the body keyed by the app's secret; `X-Shopify-Webhook-Id` identifies
//! the delivery (kept on retries), `X-Shopify-Topic` is the type
//! (`orders/create`) and `X-Shopify-Triggered-At` the time.

use super::{Mode, Preset, spec};
use crate::verify::SignatureConfig;

pub fn preset() -> Preset {
    Preset {
        signature: Some(SignatureConfig {
            scheme: "hmac".into(),
            header: Some("X-Shopify-Hmac-Sha256".into()),
            encoding: Some("base64".into()),
            signed: Some("{body}".into()),
            ..Default::default()
        }),
        extract: spec(
            &["header:X-Shopify-Webhook-Id"],
            &["header:X-Shopify-Topic"],
            &["header:X-Shopify-Triggered-At", "now"],
        ),
        aliases: &[],
        modes: &[Mode::Push],
        api_base: None,
    }
}
