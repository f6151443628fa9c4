//! Presets: what hookd knows about each webhook sender, as data.
//!
//! The ingest side of a provider is a *preset*: its signature scheme, how to
//! find the event id/type/time, type aliases, which delivery modes it has and
//! its API base. A `generic` source has no preset and is configured entirely
//! in TOML. Config validation applies the presets (so an error names the
//! file, line and key of the source table); the control plane (register,
//! list, …) is in [`crate::provider`].
//!
//! This module is a leaf: it may use `verify` and `extract`, and must not
//! import `config`, `provider` or anything that reads a config.

pub mod generic;
pub mod github;
pub mod linkedapi;
pub mod linkup;
pub mod linkup_hosted;
pub mod linq;
pub mod shopify;
pub mod slack;
pub mod standard_webhooks;
pub mod stripe;

use crate::extract::{ExtractSpec, Extractor};
use crate::verify::{Scheme, SignatureConfig};

/// The `provider = "…"` of a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    Linkup,
    Linq,
    LinkedApi,
    StandardWebhooks,
    Github,
    Stripe,
    Slack,
    Shopify,
    Generic,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 9] = [
        ProviderKind::Linkup,
        ProviderKind::Linq,
        ProviderKind::LinkedApi,
        ProviderKind::StandardWebhooks,
        ProviderKind::Github,
        ProviderKind::Stripe,
        ProviderKind::Slack,
        ProviderKind::Shopify,
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
            ProviderKind::StandardWebhooks => "standard-webhooks",
            ProviderKind::Github => "github",
            ProviderKind::Stripe => "stripe",
            ProviderKind::Slack => "slack",
            ProviderKind::Shopify => "shopify",
            ProviderKind::Generic => "generic",
        }
    }

    /// The provider creates the signing secret and hands it out once, at
    /// registration (so hookd stores it rather than reading it from config).
    pub fn issues_secret(self) -> bool {
        matches!(self, ProviderKind::Linkup | ProviderKind::LinkedApi)
    }

    /// hookd can register, list and remove subscriptions at the provider
    /// (the others are set up in the sender's own settings).
    pub fn has_management_api(self) -> bool {
        matches!(
            self,
            ProviderKind::Linkup | ProviderKind::Linq | ProviderKind::LinkedApi
        )
    }

    pub fn preset(self) -> Preset {
        match self {
            ProviderKind::Linkup => linkup::preset(),
            ProviderKind::Linq => linq::preset(),
            ProviderKind::LinkedApi => linkedapi::preset(),
            ProviderKind::StandardWebhooks => standard_webhooks::preset(),
            ProviderKind::Github => github::preset(),
            ProviderKind::Stripe => stripe::preset(),
            ProviderKind::Slack => slack::preset(),
            ProviderKind::Shopify => shopify::preset(),
            ProviderKind::Generic => generic::preset(),
        }
    }

    /// A verified request that is a handshake rather than an event, and the
    /// body to answer it with (Slack's `url_verification` challenge).
    pub fn handshake(self, body: &[u8]) -> Option<serde_json::Value> {
        match self {
            ProviderKind::Slack => slack::challenge(body),
            _ => None,
        }
    }
}

/// What a signature scheme itself defines, for a source without a preset:
/// Standard Webhooks names the message id and its time.
pub fn scheme_extract(scheme: &Scheme) -> ExtractSpec {
    match scheme {
        Scheme::StandardWebhooks => standard_webhooks::extract(),
        _ => ExtractSpec::default(),
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
    /// The `signature` table used when the source has none.
    pub signature: Option<SignatureConfig>,
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

/// A `signature` table naming only a scheme.
pub(crate) fn named(scheme: &str) -> Option<SignatureConfig> {
    Some(SignatureConfig {
        scheme: scheme.to_string(),
        ..Default::default()
    })
}

pub(crate) fn spec(id: &[&str], ty: &[&str], time: &[&str]) -> ExtractSpec {
    ExtractSpec {
        id: extractors(id),
        ty: extractors(ty),
        time: extractors(time),
        type_suffix: None,
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
            if let Some(sig) = &p.signature {
                Scheme::from_config(sig).expect("preset signature is valid");
            }
        }
    }
}
