//! Stripe webhooks: the `Stripe-Signature` scheme, and the Event object
//! in the body gives the id (`evt_…`, the same on every retry), the type
//! (`payment_intent.succeeded`) and `created` (unix seconds).

use super::{Mode, Preset, named, spec};

pub fn preset() -> Preset {
    Preset {
        signature: named("stripe"),
        extract: spec(&["json:/id"], &["json:/type"], &["json:/created"]),
        aliases: &[],
        modes: &[Mode::Push],
        api_base: None,
    }
}
