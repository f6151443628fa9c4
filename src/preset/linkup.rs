//! LinkUp (linkupapi.com) v2 webhooks: ingest preset.
//!
//! Push bodies carry no documented event id (PROVIDERS.md §1), so the id
//! falls back to a hash of the body; poll items carry `event_id`. The emitted
//! type `message` is what the subscription filter calls `message_received`.

use super::{Mode, Preset, named, spec};

pub fn preset() -> Preset {
    Preset {
        signature: named("linkup"),
        extract: spec(
            &["json:/event_id", "hash"],
            &["json:/event/type", "json:/type"],
            &["json:/timestamp", "json:/created_at", "now"],
        ),
        aliases: &[("message", "message_received")],
        modes: &[Mode::Push, Mode::Sse, Mode::Poll],
        api_base: Some("https://api.linkupapi.com"),
    }
}
