//! Standard Webhooks senders (Svix and those built on it such as Clerk and
//! Resend, and every other sender of the spec): the spec fixes the
//! signature and names the message id (`webhook-id`, the idempotency key,
//! also spelled `svix-id`) and its timestamp; its payload convention
//! `{type, timestamp, data}` gives the type. A `generic` source with
//! `scheme = "standard-webhooks"` gets the same extraction.

use super::{Mode, Preset, named, spec};
use crate::extract::ExtractSpec;

/// The id and time are the signed ones, so a message sent as `webhook-*`
/// and retried as `svix-*` is one event.
pub fn extract() -> ExtractSpec {
    spec(&["signed:id"], &["json:/type"], &["signed:timestamp"])
}

pub fn preset() -> Preset {
    Preset {
        signature: named("standard-webhooks"),
        extract: extract(),
        aliases: &[],
        modes: &[Mode::Push],
        api_base: None,
    }
}
