//! GitHub webhooks: `X-Hub-Signature-256: sha256=<hex>` over the body, the
//! delivery id in `X-GitHub-Delivery` (kept across redeliveries), the event
//! in `X-GitHub-Event`. Many events also say what happened in the body's
//! `action`, so the type is `pull_request.opened` rather than a bare
//! `pull_request`; events without one (`push`, `ping`) stay as they are.

use super::{Mode, Preset, extractors, spec};
use crate::verify::SignatureConfig;

pub fn preset() -> Preset {
    let mut extract = spec(
        &["header:X-GitHub-Delivery"],
        &["header:X-GitHub-Event"],
        &["now"],
    );
    extract.type_suffix = extractors(&["json:/action"]).pop();
    Preset {
        signature: Some(SignatureConfig {
            scheme: "hmac".into(),
            header: Some("X-Hub-Signature-256".into()),
            prefix: Some("sha256=".into()),
            encoding: Some("hex".into()),
            signed: Some("{body}".into()),
            ..Default::default()
        }),
        extract,
        aliases: &[],
        modes: &[Mode::Push],
        api_base: None,
    }
}
