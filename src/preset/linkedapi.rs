//! Linked API (linkedapi.io) admin webhooks: ingest preset.
//!
//! The envelope is `{id, type, createdAt, data}`; `id` is stable across
//! retries and replays (`"<type>:<entity id>"`), so it is the dedup key.

use super::{Mode, Preset, named, spec};

pub fn preset() -> Preset {
    Preset {
        signature: named("linkedapi"),
        extract: spec(&["json:/id"], &["json:/type"], &["json:/createdAt", "now"]),
        aliases: &[],
        modes: &[Mode::Push],
        api_base: Some("https://api.linkedapi.io"),
    }
}
