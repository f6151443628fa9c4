//! Providers: what hookd knows about each webhook sender.
//!
//! The ingest side of a provider is a *preset*: its signature scheme, how to
//! find the event id/type/time, type aliases, which delivery modes it has and
//! its API base. A `generic` source has no preset and is configured entirely
//! in TOML. The control plane (register, list, …) is in [`manage`].

pub mod generic;
pub mod linkedapi;
pub mod linkup;
pub mod linkup_hosted;
pub mod linq;
pub mod manage;
pub mod sample;

use crate::extract::{ExtractSpec, Extractor};

/// The `provider = "…"` of a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    Linkup,
    Linq,
    LinkedApi,
    Generic,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 4] = [
        ProviderKind::Linkup,
        ProviderKind::Linq,
        ProviderKind::LinkedApi,
        ProviderKind::Generic,
    ];

    pub fn parse(s: &str) -> Option<ProviderKind> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }

    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::Linkup => "linkup",
            ProviderKind::Linq => "linq",
            ProviderKind::LinkedApi => "linkedapi",
            ProviderKind::Generic => "generic",
        }
    }

    /// The provider creates the signing secret and hands it out once, at
    /// registration (so hookd stores it rather than reading it from config).
    pub fn issues_secret(self) -> bool {
        matches!(self, ProviderKind::Linkup | ProviderKind::LinkedApi)
    }

    pub fn preset(self) -> Preset {
        match self {
            ProviderKind::Linkup => linkup::preset(),
            ProviderKind::Linq => linq::preset(),
            ProviderKind::LinkedApi => linkedapi::preset(),
            ProviderKind::Generic => generic::preset(),
        }
    }
}

/// How events reach hookd from a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    Push,
    Sse,
    Poll,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "push" => Some(Mode::Push),
            "sse" => Some(Mode::Sse),
            "poll" => Some(Mode::Poll),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Mode::Push => "push",
            Mode::Sse => "sse",
            Mode::Poll => "poll",
        }
    }
}

/// The ingest defaults of a provider.
#[derive(Clone, Debug)]
pub struct Preset {
    /// Signature scheme name used when the source has no `signature` table.
    pub scheme: Option<&'static str>,
    pub extract: ExtractSpec,
    pub aliases: &'static [(&'static str, &'static str)],
    pub modes: &'static [Mode],
    pub api_base: Option<&'static str>,
}

/// Builds an extractor list from preset literals (which are known-good).
pub(crate) fn extractors(list: &[&str]) -> Vec<Extractor> {
    list.iter()
        .map(|s| Extractor::parse(s).expect("preset extractors are valid"))
        .collect()
}

pub(crate) fn spec(id: &[&str], ty: &[&str], time: &[&str]) -> ExtractSpec {
    ExtractSpec {
        id: extractors(id),
        ty: extractors(ty),
        time: extractors(time),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_builds_and_names_round_trip() {
        for k in ProviderKind::ALL {
            assert_eq!(ProviderKind::parse(k.name()), Some(k));
            let p = k.preset();
            assert!(p.modes.contains(&Mode::Push));
        }
    }
}
