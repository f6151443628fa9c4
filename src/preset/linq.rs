//! Linq partner API v2: ingest preset.
//!
//! The v2 envelope is `{event_id, event_type, created_at, data}`; the
//! Standard Webhooks and legacy headers repeat the id and type, so they are
//! fallbacks. The signature is the multi-variant `linq` scheme.

use super::{Mode, Preset, named, spec};

pub fn preset() -> Preset {
    Preset {
        signature: named("linq"),
        extract: spec(
            &["json:/event_id", "header:webhook-id"],
            &["json:/event_type", "header:X-Webhook-Event"],
            &["json:/created_at", "header:X-Webhook-Timestamp", "now"],
        ),
        aliases: &[],
        modes: &[Mode::Push],
        api_base: Some("https://api.linqapp.com"),
    }
}
