//! The generic provider: any sender, described entirely by the source's
//! `signature` and `extract` tables. No preset, no management API.

use super::{Mode, Preset};
use crate::extract::ExtractSpec;

pub fn preset() -> Preset {
    Preset {
        signature: None,
        extract: ExtractSpec::default(),
        aliases: &[],
        modes: &[Mode::Push, Mode::Sse, Mode::Poll],
        api_base: None,
    }
}
